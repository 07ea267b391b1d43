/* The engine's growable byte buffer (buf_t): header blocks, bodies, stream buffers. */
#include "locust_c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for extra more bytes, doubling the capacity. */
int buf_reserve(buf_t *b, size_t extra) {
  if (LC_UNLIKELY(b->len + extra > b->cap)) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) return -ENOMEM;
    b->data = p;
    b->cap = cap;
  }
  return 0;
}

int buf_append(buf_t *b, const char *data, size_t len) {
  if (LC_UNLIKELY(buf_reserve(b, len) != 0)) return -ENOMEM;
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return 0;
}

void buf_free(buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
