/*
 * The HTTP/1.1 response parser of the native transport (RFC 9112), written for it: incremental over whatever
 * reads deliver, with every limit the engine keeps (the header block's size, 1xx floods, chunk-size lines,
 * trailers) and no allocation but the header block, which goes into the request's own buffer as the engine
 * hands it to Python. It knows framing only; what the header fields mean to the request (coding, cookies,
 * redirects) is the transport's, told through a callback per field. tests/fuzz/fuzz_h1.c runs it under libFuzzer.
 */
#include "locust_c.h"

#include <string.h>
#include <strings.h>

#define H1_MAX_CHUNK_LINE 4096 /* a chunk-size line, extensions included */
#define H1_MAX_LINE CURL_MAX_HTTP_HEADER /* one line of a header block: libcurl's limit, so both fail alike */

void h1_begin(h1_parser_t *p, int no_body) {
  memset(p, 0, sizeof(*p));
  p->state = H1_HEAD;
  p->content_length = -1;
  p->request_no_body = no_body != 0;
}

/*
 * A Content-Length must be one decimal number (RFC 9110 8.6), the same in every copy of the header. libcurl
 * 7.88 reads the digits it finds first ("1e3" is 1, "5, 6" is 5) and leaves the rest of the body on the
 * connection, where it would be taken for the next response. Returns 0 when the value is acceptable.
 */
int http_check_length(int64_t *length, const char *v, size_t n) {
  int64_t value = 0;
  size_t i = 0, digits = 0;
  while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
  while (i < n && (v[i] == ' ' || v[i] == '\t')) i++;
  for (; i < n; i++, digits++) {
    if (v[i] < '0' || v[i] > '9' || value > (INT64_MAX - 9) / 10) return -1;
    value = value * 10 + (v[i] - '0');
  }
  if (digits == 0 || (*length >= 0 && *length != value)) return -1;
  *length = value;
  return 0;
}

/* Whether a comma-separated header value has token (lower-case) among its elements; last: only as the last. */
static int h1_has_token(const char *v, size_t n, const char *token, int last) {
  size_t t = strlen(token), i = 0;
  int found = 0;
  while (i < n) {
    size_t start, end;
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    start = i;
    while (i < n && v[i] != ',') i++;
    end = i;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
    if (end == start) continue;
    found = end - start == t && strncasecmp(v + start, token, t) == 0;
    if (found && !last) return 1;
  }
  return found;
}

/* The status line and the fields of a complete header block (without its empty line). */
static int h1_parse_head(h1_parser_t *p, const char *head, size_t len, const h1_callbacks_t *cb, void *ud) {
  const char *end = head + len, *line = head, *nl;
  int status = 0, te_seen = 0, rc;
  nl = memchr(line, '\n', len);
  if (nl == NULL) nl = end;
  /* "HTTP/1.x SSS reason": a digit for the minor version, three for the status, then a space or the end. */
  if (nl - line < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' || line[8] != ' ')
    return H1_ERR_STATUS;
  for (int i = 9; i < 12; i++) {
    if (line[i] < '0' || line[i] > '9') return H1_ERR_STATUS;
    status = status * 10 + (line[i] - '0');
  }
  if (line + 12 < nl && line[12] != ' ' && line[12] != '\r') return H1_ERR_STATUS;
  if (status < 100) return H1_ERR_STATUS;
  p->status = status;
  p->http10 = line[7] == '0';
  p->keep_alive = !p->http10;
  p->close = 0; /* a 1xx's Connection header says nothing of the answer that follows */
  p->content_length = -1;
  p->chunked = 0;
  for (line = nl + 1; line < end; line = nl + 1) {
    const char *colon, *v, *ve;
    size_t name_len;
    nl = memchr(line, '\n', (size_t)(end - line));
    if (nl == NULL) nl = end;
    ve = nl;
    if (ve > line && ve[-1] == '\r') ve--;
    if (ve == line) continue;
    if (line[0] == ' ' || line[0] == '\t') continue; /* an obsolete folded line: its value is not ours to know */
    colon = memchr(line, ':', (size_t)(ve - line));
    if (colon == NULL) continue; /* not a field: ignored, as libcurl ignores it */
    name_len = (size_t)(colon - line);
    v = colon + 1;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    switch (name_len) {
    case 14:
      if (strncasecmp(line, "content-length", 14) == 0 && http_check_length(&p->content_length, v, (size_t)(ve - v)))
        return H1_ERR_LENGTH;
      break;
    case 17:
      if (strncasecmp(line, "transfer-encoding", 17) == 0) {
        te_seen = 1;
        p->chunked = h1_has_token(v, (size_t)(ve - v), "chunked", 1);
      }
      break;
    case 10:
      if (strncasecmp(line, "connection", 10) == 0) {
        if (h1_has_token(v, (size_t)(ve - v), "close", 0)) p->close = 1;
        else if (h1_has_token(v, (size_t)(ve - v), "keep-alive", 0)) p->keep_alive = 1;
      }
      break;
    }
    if (cb->on_field && (rc = cb->on_field(ud, p, line, name_len, v, (size_t)(ve - v))) != 0) return rc;
  }
  if (p->close) p->keep_alive = 0;
  /* Transfer-Encoding overrides Content-Length, and the connection closes after such a message (RFC 9112 6.3):
   * what the two disagree about must not be read as the next response. */
  if (te_seen && p->content_length >= 0) {
    p->content_length = -1;
    p->keep_alive = 0;
  }
  return 0;
}

/*
 * One byte of a chunk-size line: hexadecimal digits, then optional whitespace and extensions up to the LF, which
 * are skipped. Read byte by byte into the size, so a connection holds no line buffer. Returns 1 at the LF.
 */
static int h1_chunk_byte(h1_parser_t *p, char ch) {
  int d = -1;
  if (++p->line_len > H1_MAX_CHUNK_LINE) return H1_ERR_CHUNK;
  if (ch == '\n') {
    if (p->digits == 0) return H1_ERR_CHUNK;
    return 1;
  }
  if (p->in_ext) return 0;
  if (ch >= '0' && ch <= '9') d = ch - '0';
  else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') d = (ch | 0x20) - 'a' + 10;
  if (d >= 0) {
    if (p->remaining >> 59) return H1_ERR_CHUNK; /* a size no body has: refused before it overflows */
    p->remaining = p->remaining * 16 + (uint64_t)d;
    p->digits++;
    return 0;
  }
  if (p->digits == 0 || (ch != ' ' && ch != '\t' && ch != ';' && ch != '\r')) return H1_ERR_CHUNK;
  p->in_ext = 1;
  return 0;
}

/*
 * Feeds len bytes. head collects the header block of the response (a 1xx's is dropped when the next begins).
 * Returns H1_MORE when the message needs more bytes, H1_COMPLETE when it ended (*used says how many bytes it
 * took: what follows belongs to no response), or an H1_ERR_* code.
 */
int h1_execute(h1_parser_t *p, buf_t *head, const char *data, size_t len, size_t *used, const h1_callbacks_t *cb,
               void *ud) {
  size_t pos = 0;
  int rc;
  while (pos < len || p->state == H1_DONE) {
    switch (p->state) {
    case H1_HEAD: {
      /* The block ends at its first empty line: CRLF CRLF, or LF LF as libcurl also takes it. */
      size_t take = len - pos, from = p->scan > 3 ? p->scan - 3 : 0, end = 0, i;
      if (head->len + take > ENGINE_MAX_HEAD_BYTES - p->skipped) take = ENGINE_MAX_HEAD_BYTES - p->skipped - head->len;
      if (buf_append(head, data + pos, take) != 0) return H1_ERR_MEMORY;
      for (i = from; i < head->len; i++) {
        if (head->data[i] != '\n') continue;
        if (i >= p->line_start && i - p->line_start > H1_MAX_LINE) return H1_ERR_LINE_TOO_LONG;
        p->line_start = i + 1;
        if (i >= 1 && head->data[i - 1] == '\n') { end = i + 1; break; }
        if (i >= 2 && head->data[i - 1] == '\r' && head->data[i - 2] == '\n') { end = i + 1; break; }
      }
      if (end == 0) {
        p->scan = head->len;
        pos += take;
        if (head->len - p->line_start > H1_MAX_LINE) return H1_ERR_LINE_TOO_LONG;
        if (head->len + p->skipped >= ENGINE_MAX_HEAD_BYTES) return H1_ERR_HEAD_TOO_LARGE;
        break;
      }
      pos += take - (head->len - end); /* the bytes after the block are the body's: given back */
      head->len = end;
      p->scan = p->line_start = 0;
      if ((rc = h1_parse_head(p, head->data, end, cb, ud)) != 0) return rc;
      if (p->status < 200) {
        if (p->status == 101) return H1_ERR_STATUS; /* no upgrade was asked for */
        p->skipped += end; /* a 1xx (100 Continue): the real answer follows; a flood of them is bounded */
        head->len = 0;
        break;
      }
      if (cb->on_head && (rc = cb->on_head(ud, p)) != 0) return rc;
      if (p->request_no_body || p->status == 204 || p->status == 304) {
        p->state = H1_DONE;
      } else if (p->chunked) {
        p->state = H1_CHUNK_SIZE;
      } else if (p->content_length >= 0) {
        p->remaining = (uint64_t)p->content_length;
        p->state = p->remaining ? H1_BODY_LENGTH : H1_DONE;
      } else {
        p->state = H1_BODY_EOF; /* no framing: the body ends when the server closes */
        p->keep_alive = 0;
      }
      break;
    }
    case H1_BODY_LENGTH:
    case H1_CHUNK_DATA: {
      size_t n = len - pos;
      if ((uint64_t)n > p->remaining) n = (size_t)p->remaining;
      if (cb->on_body && (rc = cb->on_body(ud, data + pos, n)) != 0) {
        *used = pos; /* H1_PAUSE: the same bytes are fed again to resume */
        return rc;
      }
      pos += n;
      p->remaining -= n;
      if (p->remaining == 0) p->state = p->state == H1_BODY_LENGTH ? H1_DONE : H1_CHUNK_END;
      break;
    }
    case H1_BODY_EOF:
      if (cb->on_body && (rc = cb->on_body(ud, data + pos, len - pos)) != 0) {
        *used = pos;
        return rc;
      }
      pos = len;
      break;
    case H1_CHUNK_END: /* the CRLF after a chunk's data */
      if (data[pos] == '\r' && !p->cr) {
        p->cr = 1;
        pos++;
        break;
      }
      if (data[pos] != '\n') return H1_ERR_CHUNK;
      p->cr = 0;
      pos++;
      p->state = H1_CHUNK_SIZE;
      break;
    case H1_CHUNK_SIZE:
      rc = h1_chunk_byte(p, data[pos++]);
      if (rc < 0) return rc;
      if (rc == 1) {
        p->line_len = p->digits = p->in_ext = 0;
        p->state = p->remaining ? H1_CHUNK_DATA : H1_TRAILER;
      }
      break;
    case H1_TRAILER: { /* trailer fields, until the empty line: counted against the header limit, not kept */
      const char *nl = memchr(data + pos, '\n', len - pos);
      size_t n = (size_t)((nl ? nl : data + len) - (data + pos));
      p->trailer_bytes += n + (nl != NULL);
      if (p->trailer_bytes > ENGINE_MAX_HEAD_BYTES) return H1_ERR_HEAD_TOO_LARGE;
      for (size_t i = 0; i < n; i++)
        if (data[pos + i] != '\r') p->line_len = 1; /* the line has content */
      pos += n;
      if (nl == NULL) break;
      pos++;
      if (p->line_len == 0) p->state = H1_DONE;
      p->line_len = 0;
      break;
    }
    case H1_DONE:
      *used = pos;
      return H1_COMPLETE;
    }
  }
  *used = pos;
  return H1_MORE;
}

/* The server closed the connection: the end of a body that runs to it, a cut anywhere else. */
int h1_finish(h1_parser_t *p, size_t head_len) {
  switch (p->state) {
  case H1_BODY_EOF:
  case H1_DONE:
    return H1_COMPLETE;
  case H1_HEAD:
    return head_len == 0 && p->skipped == 0 ? H1_ERR_NOTHING : H1_ERR_HEAD_CUT;
  default:
    return H1_ERR_BODY_CUT;
  }
}
