/*
 * libFuzzer target: csrc/decode.c, the engine's content decoder, as the write callback drives it.
 *
 * The input chooses a coding (gzip, deflate, br, identity) and a body limit, then is fed as a compressed body in
 * chunks of varying size, each chunk re-fed until it is used up the way libcurl hands a paused chunk over again,
 * with a small budget per call as the engine's decode budget imposes. What must hold for any input: no memory
 * error (ASan), no undefined behaviour (UBSan), the output never past the limit by more than the one byte that
 * says "too large", and every call either consumes input, produces output, ends the stream or fails: never a
 * transfer that stalls.
 *
 *   make fuzz FUZZ_SECONDS=600      a longer run by hand; make test runs a short one
 */
#include "../../csrc/locust_c.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *codings[] = {"gzip", "deflate", "br", "identity"};
  decoder_t d;
  buf_t out = {0};
  size_t max, off = 0;
  uint32_t seed;
  int rc;
  if (size < 2) return 0;
  memset(&d, 0, sizeof(d));
  if (decode_begin(&d, codings[data[0] & 3], strlen(codings[data[0] & 3])) != 0) return 0;
  max = (data[0] & 4) ? 0 : 1 + (size_t)data[1] * 1024; /* 0: no limit */
  seed = (uint32_t)size * 2654435761u;
  data += 2;
  size -= 2;
  rc = 0;
  while (off < size && rc == 0) {
    size_t n, skip = 0;
    seed = seed * 1103515245u + 12345u;
    n = 1 + (seed >> 16) % 4096;
    if (n > size - off) n = size - off;
    while (rc == 0 && (skip < n || decode_pending(&d))) {
      size_t used = 0, before = out.len;
      rc = decode_write(&d, (const char *)data + off + skip, n - skip, &out, max, 8192, &used);
      if (rc == 0 && used == 0 && out.len == before && !d.finished) abort(); /* no progress: it would stall */
      skip += used;
    }
    if (max > 0 && out.len > max + 1) abort(); /* past the limit by more than the byte that reports it */
    if (out.len > 1 << 20) out.len = 0;        /* the fuzzer's own memory: the limit is checked above */
    off += n;
  }
  if (rc == 0) (void)decode_finish(&d);
  decode_end(&d);
  buf_free(&out);
  return 0;
}
