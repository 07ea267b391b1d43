/*
 * libFuzzer target: csrc/h1.c, the native transport's response parser, fed as reads deliver bytes.
 *
 * The first input byte says whether the request was a HEAD; the rest is what the server sent, ending with the
 * connection closing. It is parsed twice: in one piece, and in chunks of sizes drawn from the input. What must
 * hold for any input: no memory error (ASan), no undefined behaviour (UBSan), the header block and the trailers
 * within the engine's limit, a body no longer than the input, and the same outcome, status, header block and body
 * however the bytes were cut into reads: a parser that depends on where a read ends would fail real responses at
 * random.
 *
 *   make fuzz-h1 FUZZ_SECONDS=600      a longer run by hand; make test runs a short one
 */
#include "../../csrc/locust_c.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  buf_t head, body;
  int rc, status;
  size_t fields;
} outcome_t;

static int on_field(void *ud, const h1_parser_t *p, const char *name, size_t name_len, const char *v, size_t n) {
  outcome_t *o = ud;
  (void)p, (void)name, (void)v;
  if (name_len == 0 && n > 0) o->fields++;
  o->fields++;
  return 0;
}

static int on_body(void *ud, const char *data, size_t len) {
  outcome_t *o = ud;
  return buf_append(&o->body, data, len) == 0 ? 0 : REQ_ERR_NO_MEMORY;
}

static const h1_callbacks_t callbacks = {on_field, NULL, on_body};

/* Parses data in reads of the sizes seed draws (seed 0: one read), then the close. */
static void parse(const uint8_t *data, size_t size, int no_body, uint32_t seed, outcome_t *o) {
  h1_parser_t p;
  size_t off = 0;
  memset(o, 0, sizeof(*o));
  h1_begin(&p, no_body);
  o->rc = H1_MORE;
  while (off < size && o->rc == H1_MORE) {
    size_t n = size - off, used = 0;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      n = 1 + (seed >> 16) % 64;
      if (n > size - off) n = size - off;
    }
    o->rc = h1_execute(&p, &o->head, (const char *)data + off, n, &used, &callbacks, o);
    if (used > n) abort();
    if (o->rc == H1_MORE && used != n) abort(); /* a read is taken whole unless the response ended in it */
    off += used;
  }
  if (o->rc == H1_MORE) o->rc = h1_finish(&p, o->head.len);
  o->status = p.status;
  if (o->head.len > ENGINE_MAX_HEAD_BYTES || p.trailer_bytes > ENGINE_MAX_HEAD_BYTES + 1) abort();
  if (o->body.len > size) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  outcome_t whole, pieces;
  int no_body;
  if (size < 1) return 0;
  no_body = data[0] & 1;
  parse(data + 1, size - 1, no_body, 0, &whole);
  parse(data + 1, size - 1, no_body, (uint32_t)size * 2654435761u | 1, &pieces);
  if (whole.rc != pieces.rc || whole.status != pieces.status || whole.head.len != pieces.head.len ||
      whole.body.len != pieces.body.len || whole.fields != pieces.fields ||
      (whole.head.len && memcmp(whole.head.data, pieces.head.data, whole.head.len) != 0) ||
      (whole.body.len && memcmp(whole.body.data, pieces.body.data, whole.body.len) != 0))
    abort();
  buf_free(&whole.head);
  buf_free(&whole.body);
  buf_free(&pieces.head);
  buf_free(&pieces.body);
  return 0;
}
