/*
 * Content decoding (gzip, deflate, br) of response bodies, done by the engine rather than by libcurl.
 *
 * libcurl 7.88 decodes without a bound (a 1 MB gzip bomb becomes 1 GiB in memory) and takes a compressed stream
 * that stops short for a complete one (a cut gzip body is a success with half its content). Here the decoded
 * body is bounded by the user's max_response_bytes as it is produced, and a stream that did not reach its end
 * fails the request. Runs on the engine thread, inside libcurl's write callback.
 */
#include "locust_c.h"

#include <brotli/decode.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* Decoded bytes are produced into the body buffer in steps of this size. */
#define DECODE_STEP (64 * 1024)

/* Trims optional white space around a header value. */
static void decode_trim(const char **v, size_t *n) {
  while (*n > 0 && ((*v)[*n - 1] == '\r' || (*v)[*n - 1] == '\n' || (*v)[*n - 1] == ' ' || (*v)[*n - 1] == '\t'))
    (*n)--;
  while (*n > 0 && (**v == ' ' || **v == '\t')) {
    (*v)++;
    (*n)--;
  }
}

static int decode_is(const char *v, size_t n, const char *name) {
  return n == strlen(name) && strncasecmp(v, name, n) == 0;
}

/*
 * A Content-Encoding header of the response. One coding is understood, as FastHttpUser understands one; a list
 * ("gzip, br") or a coding nobody asked for fails the request rather than hand a user bytes it cannot read.
 */
int decode_begin(decoder_t *d, const char *value, size_t n) {
  decode_trim(&value, &n);
  decode_end(d);
  if (n == 0 || decode_is(value, n, "identity")) return 0;
  if (decode_is(value, n, "gzip") || decode_is(value, n, "x-gzip"))
    d->coding = CODING_GZIP;
  else if (decode_is(value, n, "deflate"))
    d->coding = CODING_DEFLATE;
  else if (decode_is(value, n, "br"))
    d->coding = CODING_BR;
  else
    return REQ_ERR_BAD_ENCODING;
  return 0;
}

static int decode_start(decoder_t *d, const unsigned char *data, size_t len) {
  if (d->coding == CODING_BR) {
    d->br = BrotliDecoderCreateInstance(NULL, NULL, NULL);
    return d->br != NULL ? 0 : REQ_ERR_NO_MEMORY;
  }
  memset(&d->z, 0, sizeof(d->z));
  int bits = 15 + 32; /* gzip or zlib, told apart by the header */
  /* "deflate" is meant to be zlib-wrapped, but servers also send the raw format: a zlib header says which. */
  if (d->coding == CODING_DEFLATE && !(len >= 2 && (data[0] & 0x0f) == 8 && ((data[0] << 8) | data[1]) % 31 == 0))
    bits = -15;
  if (inflateInit2(&d->z, bits) != Z_OK) return REQ_ERR_NO_MEMORY;
  d->z_ready = 1;
  return 0;
}

/*
 * Decodes the len bytes at data into out, which may grow to max bytes (0: no limit), and stops early once it has
 * produced at least budget bytes: *used says how many input bytes it took. Returns 0, or the REQ_ERR_* that fails
 * the request. Bytes after the end of the stream are ignored, as zlib's own tools ignore them.
 */
int decode_write(decoder_t *d, const char *data, size_t len, buf_t *out, size_t max, size_t budget, size_t *used) {
  const unsigned char *in = (const unsigned char *)data;
  size_t start_len = len, start_out = out->len;
  int rc = 0;
  *used = len;
  if (d->coding == CODING_NONE) {
    if (max > 0 && out->len + len > max) return REQ_ERR_BODY_TOO_LARGE;
    return buf_append(out, data, len) == 0 ? 0 : REQ_ERR_NO_MEMORY;
  }
  if (d->finished || (len == 0 && !d->pending)) return 0;
  d->received = 1;
  if (!d->z_ready && d->br == NULL) {
    /* Two bytes tell a zlib header from raw deflate: a body that starts with one byte alone waits for the next. */
    unsigned char first[2];
    if (d->coding == CODING_DEFLATE && d->nheld + len < 2) {
      d->held = in[0];
      d->nheld = 1;
      return 0;
    }
    /* Only deflate looks at them; a gzip or br body may start with a single byte (a one-byte chunk). */
    first[0] = d->nheld ? d->held : in[0];
    first[1] = d->nheld ? in[0] : (len > 1 ? in[1] : 0);
    if ((rc = decode_start(d, first, d->coding == CODING_DEFLATE ? 2 : 0)) != 0) return rc;
    if (d->nheld) { /* the held byte is part of the zlib header or the first block: it yields no output */
      unsigned char held = d->held, none;
      d->nheld = 0;
      d->z.next_in = &held;
      d->z.avail_in = 1;
      d->z.next_out = &none; /* zlib wants a buffer, even one it may not write to */
      d->z.avail_out = 0;
      rc = inflate(&d->z, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_BUF_ERROR) return REQ_ERR_BAD_ENCODING;
      if (d->z.avail_in != 0) return REQ_ERR_BAD_ENCODING;
    }
  }
  /* A step that filled its room may have left output inside the decoder, with no input left to push it out. */
  while ((len > 0 || d->pending) && !d->finished && out->len - start_out < budget) {
    size_t room;
    if (buf_reserve(out, DECODE_STEP) != 0) return REQ_ERR_NO_MEMORY;
    room = out->cap - out->len;
    if (room > DECODE_STEP) room = DECODE_STEP; /* so that the budget is kept to within a step */
    if (max > 0 && room > max - out->len + 1) room = max - out->len + 1; /* one byte over says "too large" */
    if (d->coding == CODING_BR) {
      size_t avail_in = len, avail_out = room;
      uint8_t *next_out = (uint8_t *)out->data + out->len;
      BrotliDecoderResult r = BrotliDecoderDecompressStream(d->br, &avail_in, &in, &avail_out, &next_out, NULL);
      out->len += room - avail_out;
      len = avail_in;
      if (r == BROTLI_DECODER_RESULT_ERROR) return REQ_ERR_BAD_ENCODING;
      if (r == BROTLI_DECODER_RESULT_SUCCESS) d->finished = 1;
      d->pending = r == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT;
    } else {
      d->z.next_in = (Bytef *)in;
      d->z.avail_in = (uInt)(len > UINT32_MAX ? UINT32_MAX : len);
      d->z.next_out = (Bytef *)out->data + out->len;
      d->z.avail_out = (uInt)(room > UINT32_MAX ? UINT32_MAX : room);
      uInt before_in = d->z.avail_in, before_out = d->z.avail_out;
      rc = inflate(&d->z, Z_NO_FLUSH);
      out->len += before_out - d->z.avail_out;
      in += before_in - d->z.avail_in;
      len -= before_in - d->z.avail_in;
      if (rc == Z_STREAM_END)
        d->finished = 1;
      else if (rc == Z_MEM_ERROR)
        return REQ_ERR_NO_MEMORY;
      else if (rc != Z_OK && rc != Z_BUF_ERROR)
        return REQ_ERR_BAD_ENCODING;
      else if (rc == Z_BUF_ERROR && d->z.avail_out != 0 && len > 0)
        return REQ_ERR_BAD_ENCODING; /* no progress with room and input to spare: the stream is broken */
      d->pending = !d->finished && d->z.avail_out == 0;
    }
    if (max > 0 && out->len > max) return REQ_ERR_BODY_TOO_LARGE;
  }
  *used = d->finished ? start_len : start_len - len;
  return 0;
}

/* Output waits inside the decoder: it must be called again, with no more input if need be. */
int decode_pending(const decoder_t *d) { return d->pending && !d->finished; }

/* At the end of the body: 0 when the compressed stream was complete (or there was none), else why not. */
int decode_finish(decoder_t *d) {
  if (d->coding == CODING_NONE || !d->received || d->finished) return 0;
  return REQ_ERR_BAD_ENCODING;
}

/* Frees the decoder's state and makes it a pass-through again. */
void decode_end(decoder_t *d) {
  if (d->z_ready) inflateEnd(&d->z);
  if (d->br != NULL) BrotliDecoderDestroyInstance(d->br);
  d->z_ready = 0;
  d->br = NULL;
  d->coding = CODING_NONE;
  d->received = d->finished = d->pending = 0;
  d->nheld = 0;
}
