/* testserver.c: the HTTP/1.1 server that locust-c's tests and benchmarks aim at.
 *
 * It is a CPython extension, locust_c._testserver, with one function, serve(), which runs a libuv loop in the
 * calling thread with the GIL released until SIGINT or SIGTERM. It has to be fast enough never to be the
 * bottleneck of a benchmark, and robust enough that a broken client (or a deliberately broken request in a
 * test) can never crash it or make it grow without bound.
 *
 * How a connection works, in short:
 *   - Reads land in one 64 KiB buffer shared by the whole server. Complete requests are parsed and answered
 *     straight from it; only the bytes of an incomplete request are copied into the connection's own input
 *     buffer, so an idle connection owns no buffer at all and 12,000 of them cost about 1 KiB each.
 *   - Responses are formatted into one shared scratch buffer (pipelined requests append their responses one
 *     after the other) and sent with a single uv_try_write() at the end of the callback. Only what the kernel
 *     does not take at once is copied to the connection and handed to uv_write().
 *   - Responses must leave in request order, so a request that cannot be answered at once (/delay, a large
 *     /bytes body still being written, /fault/never) pauses the parsing of that connection; later pipelined
 *     requests wait in its input buffer.
 *   - Closing is graceful (shutdown, then wait a little for the client's FIN) so that a response written just
 *     before the close is never destroyed by a reset, except for /fault/reset which resets on purpose.
 *
 * The routes are listed in the docstring of locust_c/testserver.py and dispatched in conn_dispatch().
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <uv.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- limits ---- */

#define TS_MAX_HEADER_BYTES (64 * 1024)          /* request line + headers; beyond: 431 */
#define TS_MAX_HEADERS 256                       /* header fields in one request; beyond: 431 */
#define TS_MAX_BODY_BYTES (16 * 1024 * 1024)     /* request body; beyond: 413 */
#define TS_MAX_CHUNK_LINE 1024                   /* chunk-size line of a chunked request body */
#define TS_MAX_COOKIES 256                       /* cookie pairs reported by /echo and /cookies */
#define TS_MAX_BYTES_ROUTE (64 * 1024 * 1024)    /* largest /bytes/<n> */
#define TS_MAX_CHUNKS_ROUTE 100000               /* largest /chunked/<n> */
#define TS_MAX_DELAY_MS (3600 * 1000)            /* longest /delay/<ms> */
#define TS_MAX_REDIRECTS 1000000                 /* largest /redirect/<n> */
#define TS_READ_BUF_SIZE (64 * 1024)             /* the shared read buffer */
#define TS_CONN_BUF_MIN 4096                     /* first size of a connection's own input buffer */
#define TS_PAUSED_INPUT_MAX (256 * 1024)         /* input kept for a paused connection before reading stops */
#define TS_INPUT_MAX (TS_MAX_HEADER_BYTES + TS_MAX_BODY_BYTES + 64 * 1024)
#define TS_STATIC_BODY_SIZE (1024 * 1024)        /* the buffer of 'x' that large /bytes bodies are written from */
#define TS_INLINE_BODY_MAX (16 * 1024)           /* /bytes bodies up to this size are copied into the response */
#define TS_STATIC_BUFS (TS_MAX_BYTES_ROUTE / TS_STATIC_BODY_SIZE + 2)
#define TS_SCRATCH_KEEP (1024 * 1024)            /* shared buffers larger than this are freed after use */
#define TS_LINGER_MS 2000                        /* how long a closing connection waits for the client's FIN */
#define TS_BACKLOG 4096

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_JSON "application/json"
#define CT_BYTES "application/octet-stream"

/* Large /bytes bodies are written from this buffer, many times over, so they cost no memory per request. */
static char static_body[TS_STATIC_BODY_SIZE];

/* ---- types ---- */

/* A growable byte buffer. Appends never fail loudly: an allocation failure sets `failed`, later appends are
 * ignored, and whoever sends the buffer checks the flag once (the connection is then closed). This keeps the
 * formatting code free of error paths that would never be exercised. */
typedef struct {
  char *base;
  size_t len;
  size_t cap;
  int failed;
} buf_t;

typedef struct {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} header_t;

typedef struct {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} pair_t;

/* A parsed request. Its pointers point into the input buffer and are valid only during dispatch. */
typedef struct {
  const char *method;
  size_t method_len;
  const char *target;
  size_t target_len;
  const char *path;
  size_t path_len;
  const char *query;
  size_t query_len;
  int minor;            /* HTTP/1.<minor> */
  int keep_alive;
  int is_head;
  int expect_continue;
  int chunked;
  int has_length;
  uint64_t content_length;
  size_t nheaders;
  header_t headers[TS_MAX_HEADERS];
  const char *body;
  size_t body_len;
} request_t;

/* What a response needs to know about the request it answers; kept in the connection by /delay. */
typedef struct {
  uint8_t head;         /* HEAD request: headers only */
  uint8_t keep_alive;
  uint8_t minor;
  uint8_t counted;      /* counts in the stats (every route except /__stats) */
} reply_t;

enum {
  PAUSE_NONE,
  PAUSE_DELAY,          /* /delay: the timer will answer */
  PAUSE_STALL,          /* a stall of the whole server (--stall-every): the timer resumes parsing */
  PAUSE_WRITE,          /* a large /bytes body is being written */
  PAUSE_NEVER           /* /fault/never: input is discarded until the client closes */
};

enum { CHUNK_SIZE, CHUNK_DATA, CHUNK_DATA_END, CHUNK_TRAILER };

typedef struct server_s server_t;
typedef struct conn_s conn_t;

struct conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;             /* /delay, then the linger before close; initialised on first use */
  uv_write_t write_req;         /* at most one write is in flight per connection */
  uv_shutdown_t shutdown_req;
  server_t *server;
  conn_t *prev;
  conn_t *next;
  uint64_t id;

  buf_t in;                     /* unconsumed input that could not be handled from the shared read buffer */
  buf_t pending;                /* responses formatted while a write is in flight */
  buf_t wbuf;                   /* the heap bytes of the write in flight */
  uint64_t queued_static;       /* 'x' bytes that follow the queued output (scratch or pending) */
  uint32_t queued_nresp;        /* counted responses in the queued output */
  uint32_t write_nresp;         /* counted responses in the write in flight */
  uint64_t open_requests;       /* requests of this connection parsed but not fully written */

  /* The request being received. Offsets are relative to its first byte. */
  size_t head_len;              /* 0 until the header block is complete */
  size_t head_scan;             /* where to resume looking for the end of the header block */
  uint64_t content_length;
  size_t chunk_in;              /* chunked body: next raw byte */
  size_t chunk_out;             /* chunked body: end of the decoded bytes */
  uint64_t chunk_left;          /* chunked body: bytes left in the current chunk */
  size_t chunk_trailer;         /* chunked body: bytes of trailer fields seen */
  uint8_t chunked;
  uint8_t chunk_state;

  reply_t delayed;              /* the reply owed by a paused /delay */
  uint64_t delay_due_ns;        /* uv_hrtime() at which it is owed */
  uint8_t pause;                /* PAUSE_* */
  uint8_t writing;
  uint8_t close_after;          /* close once all output is written */
  uint8_t shut;                 /* uv_shutdown() issued */
  uint8_t closing;              /* uv_close() issued */
  uint8_t reading;
  uint8_t eof;
  uint8_t timer_inited;
  uint8_t nclose_pending;
  uint8_t resuming;
  uint8_t resume_again;

  /* Stats bookkeeping: a connection whose first request is /__stats is not counted (see stats_uncount). */
  uint8_t counted;
  uint8_t seen_request;
  uint64_t stats_gen;
  uint64_t peak_epoch;
};

struct server_s {
  uv_loop_t loop;
  /* --stall-every/--stall-for: the last stall_for_ns of every stall_every_ns since start_ns, no request is
   * taken up; each waits for the stall's end (0: never). */
  uint64_t stall_every_ns;
  uint64_t stall_for_ns;
  uint64_t start_ns;
  uv_tcp_t listener;
  uv_signal_t sigint;
  uv_signal_t sigterm;
  int stopping;
  conn_t *conns;
  uint64_t next_id;

  char *rbuf;                   /* the shared read buffer */
  buf_t scratch;                /* responses of the connection being handled */
  buf_t tmp;                    /* response bodies being built */
  buf_t aux;                    /* extra response headers, joined header values */
  request_t req;
  pair_t cookies[TS_MAX_COOKIES];

  uint64_t requests;
  uint64_t open_requests;
  uint64_t peak_open_requests;
  uint64_t connections_total;
  uint64_t connections_open;
  uint64_t peak_connections_open;
  uint64_t stats_gen;           /* bumped by /__stats/reset */
  uint64_t peak_epoch;          /* bumped whenever peak_connections_open is raised or reset */
};

static void conn_close(conn_t *c);
static void conn_flush(conn_t *c);
static void conn_write(conn_t *c, buf_t *out);
static void conn_resume(conn_t *c);
static void conn_dispatch(conn_t *c, request_t *r);

/* ---- buffers ---- */

static int buf_reserve(buf_t *b, size_t extra) {
  size_t need;
  size_t cap;
  char *p;

  if (b->failed)
    return UV_ENOMEM;
  if (b->cap - b->len >= extra)
    return 0;
  need = b->len + extra;
  if (need < b->len) {
    b->failed = 1;
    return UV_ENOMEM;
  }
  cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  p = realloc(b->base, cap);
  if (p == NULL) {
    b->failed = 1;
    return UV_ENOMEM;
  }
  b->base = p;
  b->cap = cap;
  return 0;
}

static void buf_free(buf_t *b) {
  free(b->base);
  b->base = NULL;
  b->len = 0;
  b->cap = 0;
  b->failed = 0;
}

/* Drops the memory of an empty buffer that grew past `keep`, so one large response does not pin it. */
static void buf_trim(buf_t *b, size_t keep) {
  if (b->len == 0 && b->cap > keep)
    buf_free(b);
}

static void buf_append(buf_t *b, const void *p, size_t n) {
  if (n == 0 || buf_reserve(b, n) != 0)
    return;
  memcpy(b->base + b->len, p, n);
  b->len += n;
}

#define BUF_LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

static void buf_append_str(buf_t *b, const char *s) {
  buf_append(b, s, strlen(s));
}

static void buf_append_char(buf_t *b, char ch) {
  if (buf_reserve(b, 1) != 0)
    return;
  b->base[b->len++] = ch;
}

static void buf_append_u64(buf_t *b, uint64_t v) {
  char tmp[24];
  size_t i = sizeof(tmp);

  do {
    tmp[--i] = (char) ('0' + v % 10);
    v /= 10;
  } while (v != 0);
  buf_append(b, tmp + i, sizeof(tmp) - i);
}

static void buf_append_hex(buf_t *b, uint64_t v) {
  static const char digits[] = "0123456789abcdef";
  char tmp[24];
  size_t i = sizeof(tmp);

  do {
    tmp[--i] = digits[v & 15];
    v >>= 4;
  } while (v != 0);
  buf_append(b, tmp + i, sizeof(tmp) - i);
}

/* ---- character classes and small parsers ---- */

/* RFC 9110 tchar: the characters of a token (method, header name). */
static int is_tchar(unsigned char ch) {
  static const char extra[] = "!#$%&'*+-.^_`|~";

  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
    return 1;
  return ch != 0 && memchr(extra, ch, sizeof(extra) - 1) != NULL;
}

static int hex_value(unsigned char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

static char lower(char ch) {
  return (ch >= 'A' && ch <= 'Z') ? (char) (ch + 32) : ch;
}

static int mem_ieq(const char *a, size_t a_len, const char *b, size_t b_len) {
  size_t i;

  if (a_len != b_len)
    return 0;
  for (i = 0; i < a_len; i++)
    if (lower(a[i]) != lower(b[i]))
      return 0;
  return 1;
}

#define IEQ_LIT(p, n, s) mem_ieq((p), (n), (s), sizeof(s) - 1)

/* Parses a non-empty decimal number no larger than `max`. Returns 0 or -1. */
static int parse_u64(const char *p, size_t n, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  size_t i;

  if (n == 0 || n > 20)
    return -1;
  for (i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return -1;
    v = v * 10 + (uint64_t) (p[i] - '0');
    if (v > max)
      return -1;
  }
  *out = v;
  return 0;
}

/* Trims spaces and tabs at both ends. */
static void trim_ows(const char **p, size_t *n) {
  while (*n > 0 && (**p == ' ' || **p == '\t')) {
    (*p)++;
    (*n)--;
  }
  while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
    (*n)--;
}

/* ---- json ---- */

static void json_escape_unit(char *dst, unsigned unit) {
  static const char digits[] = "0123456789abcdef";

  dst[0] = '\\';
  dst[1] = 'u';
  dst[2] = digits[(unit >> 12) & 15];
  dst[3] = digits[(unit >> 8) & 15];
  dst[4] = digits[(unit >> 4) & 15];
  dst[5] = digits[unit & 15];
}

/* Appends bytes as a JSON string. The bytes are decoded as UTF-8 the way Python's decode("utf-8", "replace")
 * does it (each maximal invalid subsequence becomes one U+FFFD), and everything outside printable ASCII is
 * written as a \u escape, so the output is pure ASCII and identical whatever charset the client assumes. */
static void json_string(buf_t *b, const char *src, size_t n) {
  const unsigned char *p = (const unsigned char *) src;
  size_t i = 0;
  size_t o;
  char *dst;

  /* Room for the input as it is plus the quotes; escapes grow it further as they come. */
  if (buf_reserve(b, n + 16) != 0)
    return;
  o = b->len;
  b->base[o++] = '"';
  while (i < n) {
    unsigned ch = p[i];
    unsigned cp;
    unsigned need;
    unsigned lo = 0x80;
    unsigned hi = 0xbf;
    unsigned k;

    /* The longest thing one step writes is a surrogate pair (12 bytes), plus the closing quote. */
    if (b->cap - o < 13) {
      b->len = o;
      if (buf_reserve(b, (n - i) + 64) != 0)
        return;
    }
    dst = b->base + o;
    if (ch < 0x80) {
      i++;
      if (ch >= 0x20 && ch != '"' && ch != '\\') {
        b->base[o++] = (char) ch;
        continue;
      }
      dst[0] = '\\';
      o += 2;
      switch (ch) {
      case '"': dst[1] = '"'; break;
      case '\\': dst[1] = '\\'; break;
      case '\n': dst[1] = 'n'; break;
      case '\r': dst[1] = 'r'; break;
      case '\t': dst[1] = 't'; break;
      case '\b': dst[1] = 'b'; break;
      case '\f': dst[1] = 'f'; break;
      default:
        json_escape_unit(dst, ch);
        o += 4;
      }
      continue;
    }
    if (ch >= 0xc2 && ch <= 0xdf) {
      need = 1;
      cp = ch & 0x1f;
    } else if (ch >= 0xe0 && ch <= 0xef) {
      need = 2;
      cp = ch & 0x0f;
      if (ch == 0xe0)
        lo = 0xa0;          /* no overlong forms */
      else if (ch == 0xed)
        hi = 0x9f;          /* no surrogates */
    } else if (ch >= 0xf0 && ch <= 0xf4) {
      need = 3;
      cp = ch & 0x07;
      if (ch == 0xf0)
        lo = 0x90;          /* no overlong forms */
      else if (ch == 0xf4)
        hi = 0x8f;          /* nothing above U+10FFFF */
    } else {
      json_escape_unit(dst, 0xfffd);
      o += 6;
      i++;
      continue;
    }
    for (k = 1; k <= need; k++) {
      unsigned cont;

      if (i + k >= n)
        break;
      cont = p[i + k];
      if (cont < lo || cont > hi)
        break;
      lo = 0x80;
      hi = 0xbf;
      cp = (cp << 6) | (cont & 0x3f);
    }
    if (k <= need) {
      /* The lead byte and the valid continuation bytes before the bad one form one maximal subpart. */
      json_escape_unit(dst, 0xfffd);
      o += 6;
      i += k;
      continue;
    }
    i += need + 1;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      json_escape_unit(dst, 0xd800 + (cp >> 10));
      json_escape_unit(dst + 6, 0xdc00 + (cp & 0x3ff));
      o += 12;
    } else {
      json_escape_unit(dst, cp);
      o += 6;
    }
  }
  b->base[o++] = '"';
  b->len = o;
}

/* ---- stats ---- */

static void stats_conn_count(server_t *s, conn_t *c) {
  c->counted = 1;
  c->stats_gen = s->stats_gen;
  c->peak_epoch = s->peak_epoch;
  s->connections_total++;
  s->connections_open++;
  if (s->connections_open > s->peak_connections_open) {
    s->peak_connections_open = s->connections_open;
    s->peak_epoch++;
  }
}

/* A connection whose first request is /__stats is the test harness looking, not load: it is taken out of the
 * counts it entered when accepted. If the peak was raised while it was open, every value of the peak since
 * then included it, so the peak is lowered by one (exact as long as such connections come one at a time,
 * which is how TestServer.stats() uses them). */
static void stats_conn_uncount(server_t *s, conn_t *c) {
  c->counted = 0;
  s->connections_open--;
  if (c->stats_gen == s->stats_gen && s->connections_total > 0)
    s->connections_total--;
  if (c->peak_epoch != s->peak_epoch && s->peak_connections_open > s->connections_open)
    s->peak_connections_open--;
}

static void stats_reset(server_t *s) {
  s->requests = 0;
  s->connections_total = 0;
  s->peak_open_requests = s->open_requests;
  s->peak_connections_open = s->connections_open;
  s->stats_gen++;
  s->peak_epoch++;
}

static void stats_json(server_t *s, buf_t *b) {
  b->len = 0;
  BUF_LIT(b, "{\"requests\": ");
  buf_append_u64(b, s->requests);
  BUF_LIT(b, ", \"open_requests\": ");
  buf_append_u64(b, s->open_requests);
  BUF_LIT(b, ", \"peak_open_requests\": ");
  buf_append_u64(b, s->peak_open_requests);
  BUF_LIT(b, ", \"connections_total\": ");
  buf_append_u64(b, s->connections_total);
  BUF_LIT(b, ", \"connections_open\": ");
  buf_append_u64(b, s->connections_open);
  BUF_LIT(b, ", \"peak_connections_open\": ");
  buf_append_u64(b, s->peak_connections_open);
  BUF_LIT(b, "}\n");
}

/* A counted request was parsed: it stays open until its response is fully handed to the kernel. */
static void request_begin(conn_t *c) {
  server_t *s = c->server;

  if (!c->counted)
    stats_conn_count(s, c);
  c->seen_request = 1;
  c->open_requests++;
  s->requests++;
  s->open_requests++;
  if (s->open_requests > s->peak_open_requests)
    s->peak_open_requests = s->open_requests;
}

static void request_complete(conn_t *c, uint64_t n) {
  c->open_requests -= n;
  c->server->open_requests -= n;
}

/* ---- responses ---- */

static const char *status_reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 203: return "Non-Authoritative Information";
  case 204: return "No Content";
  case 205: return "Reset Content";
  case 206: return "Partial Content";
  case 300: return "Multiple Choices";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 407: return "Proxy Authentication Required";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 418: return "I'm a teapot";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Content";
  case 425: return "Too Early";
  case 426: return "Upgrade Required";
  case 428: return "Precondition Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 451: return "Unavailable For Legal Reasons";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  case 507: return "Insufficient Storage";
  case 508: return "Loop Detected";
  case 511: return "Network Authentication Required";
  }
  if (status < 300)
    return "Success";
  if (status < 400)
    return "Redirection";
  if (status < 500)
    return "Client Error";
  return "Server Error";
}

/* Responses are formatted wherever the connection's output currently queues: the shared scratch buffer,
 * or the connection's own pending buffer while a write is in flight (they must go out after it). */
static buf_t *conn_out(conn_t *c) {
  return c->writing ? &c->pending : &c->server->scratch;
}

#define BODY_CHUNKED (-1)
#define BODY_NONE (-2)

/* Appends a status line and headers. `length` is the Content-Length, or BODY_CHUNKED or BODY_NONE. */
static void response_head(conn_t *c, buf_t *o, const reply_t *x, int status, const char *ctype,
                          const char *extra, size_t extra_len, int64_t length) {
  char code[4];

  code[0] = (char) ('0' + status / 100);
  code[1] = (char) ('0' + status / 10 % 10);
  code[2] = (char) ('0' + status % 10);
  code[3] = ' ';
  BUF_LIT(o, "HTTP/1.1 ");
  buf_append(o, code, sizeof(code));
  buf_append_str(o, status_reason(status));
  BUF_LIT(o, "\r\n");
  if (ctype != NULL) {
    BUF_LIT(o, "Content-Type: ");
    buf_append_str(o, ctype);
    BUF_LIT(o, "\r\n");
  }
  if (length >= 0) {
    BUF_LIT(o, "Content-Length: ");
    buf_append_u64(o, (uint64_t) length);
    BUF_LIT(o, "\r\n");
  } else if (length == BODY_CHUNKED) {
    BUF_LIT(o, "Transfer-Encoding: chunked\r\n");
  }
  BUF_LIT(o, "X-Connection-Id: ");
  buf_append_u64(o, c->id);
  BUF_LIT(o, "\r\n");
  if (!x->keep_alive)
    BUF_LIT(o, "Connection: close\r\n");
  else if (x->minor == 0)
    BUF_LIT(o, "Connection: keep-alive\r\n");
  buf_append(o, extra, extra_len);
  BUF_LIT(o, "\r\n");
}

/* Book-keeping once a response is fully queued. */
static void reply_done(conn_t *c, const reply_t *x) {
  if (x->counted)
    c->queued_nresp++;
  if (!x->keep_alive)
    c->close_after = 1;
}

static void respond(conn_t *c, const reply_t *x, int status, const char *ctype, const char *extra,
                    size_t extra_len, const char *body, size_t body_len) {
  buf_t *o = conn_out(c);
  /* RFC 9110 forbids a body, and for 204 a Content-Length, in these. */
  int bodyless = status == 204 || status == 304;

  response_head(c, o, x, status, bodyless ? NULL : ctype, extra, extra_len,
                bodyless ? BODY_NONE : (int64_t) body_len);
  if (!bodyless && !x->head)
    buf_append(o, body, body_len);
  reply_done(c, x);
}

static void respond_text(conn_t *c, const reply_t *x, int status, const char *text) {
  respond(c, x, status, CT_TEXT, NULL, 0, text, strlen(text));
}

/* Answers a request that could not be parsed, then closes: after a framing error nothing that follows on the
 * connection can be trusted. */
static void conn_fail(conn_t *c, int status) {
  reply_t x = {.head = 0, .keep_alive = 0, .minor = 1, .counted = 1};
  buf_t *b = &c->server->tmp;

  request_begin(c);
  b->len = 0;
  buf_append_str(b, status_reason(status));
  buf_append_char(b, '\n');
  respond(c, &x, status, CT_TEXT, NULL, 0, b->base, b->len);
}

/* ---- parsing ---- */

/* Looks for the blank line that ends a header block, accepting CRLF or bare LF line ends. Returns the length
 * of the block including the blank line, or 0 if it is not complete; *scan remembers the start of the last
 * incomplete line so that a request arriving byte by byte is not rescanned from its start each time. */
static size_t head_find_end(const char *p, size_t n, size_t *scan) {
  size_t pos = *scan;

  while (pos < n) {
    const char *nl = memchr(p + pos, '\n', n - pos);
    size_t line_len;

    if (nl == NULL)
      break;
    line_len = (size_t) (nl - (p + pos));
    if (pos > 0 && (line_len == 0 || (line_len == 1 && p[pos] == '\r')))
      return (size_t) (nl - p) + 1;
    pos = (size_t) (nl - p) + 1;
  }
  *scan = pos;
  return 0;
}

/* Splits the request target into path and query. An absolute-form target (what a client sends to a proxy)
 * is reduced to its path so that routing still works. */
static void request_split_target(request_t *r) {
  const char *t = r->target;
  size_t n = r->target_len;
  const char *q;

  if (n > 7 && (IEQ_LIT(t, 7, "http://") || (n > 8 && IEQ_LIT(t, 8, "https://")))) {
    const char *slash;
    const char *after = memchr(t, ':', n) + 3;

    slash = memchr(after, '/', n - (size_t) (after - t));
    if (slash == NULL) {
      /* "http://host" or "http://host?query": the path is "/". */
      q = memchr(after, '?', n - (size_t) (after - t));
      r->path = "/";
      r->path_len = 1;
      r->query = q ? q + 1 : t + n;
      r->query_len = q ? (size_t) (t + n - (q + 1)) : 0;
      return;
    }
    n -= (size_t) (slash - t);
    t = slash;
  }
  q = memchr(t, '?', n);
  r->path = t;
  r->path_len = q ? (size_t) (q - t) : n;
  r->query = q ? q + 1 : t + n;
  r->query_len = q ? n - r->path_len - 1 : 0;
}

/* Interprets the header fields that frame the message or steer the connection. */
static int request_frame_header(request_t *r, const header_t *h) {
  const char *v = h->value;
  size_t n = h->value_len;

  if (IEQ_LIT(h->name, h->name_len, "content-length")) {
    uint64_t len;

    /* Strict: a list or a number that does not fit is a smuggling attempt or a broken client. */
    if (parse_u64(v, n, UINT64_MAX / 10, &len) != 0)
      return 400;
    if (r->has_length && len != r->content_length)
      return 400;
    r->has_length = 1;
    r->content_length = len;
  } else if (IEQ_LIT(h->name, h->name_len, "transfer-encoding")) {
    if (r->chunked)
      return 400;
    if (!IEQ_LIT(v, n, "chunked"))
      return 501;
    r->chunked = 1;
  } else if (IEQ_LIT(h->name, h->name_len, "connection")) {
    size_t i = 0;

    while (i < n) {
      const char *tok;
      size_t tok_len;
      const char *comma = memchr(v + i, ',', n - i);
      size_t end = comma ? (size_t) (comma - v) : n;

      tok = v + i;
      tok_len = end - i;
      trim_ows(&tok, &tok_len);
      if (IEQ_LIT(tok, tok_len, "close"))
        r->keep_alive = 0;
      else if (IEQ_LIT(tok, tok_len, "keep-alive") && r->minor == 0)
        r->keep_alive = 1;
      i = end + 1;
    }
  } else if (IEQ_LIT(h->name, h->name_len, "expect")) {
    if (IEQ_LIT(v, n, "100-continue"))
      r->expect_continue = 1;
  }
  return 0;
}

/* Parses a complete header block of `n` bytes (blank line included). Returns 0, or the status to answer
 * with: 400 malformed, 431 too many fields, 501 unknown transfer coding, 505 unknown HTTP version. */
static int request_parse(request_t *r, const char *p, size_t n) {
  const char *end = p + n;
  const char *eol = memchr(p, '\n', n);
  const char *le = eol;
  const char *q = p;
  const char *t;
  r->nheaders = 0;
  r->has_length = 0;
  r->content_length = 0;
  r->chunked = 0;
  r->expect_continue = 0;
  r->body = NULL;
  r->body_len = 0;

  /* request-line = method SP request-target SP HTTP-version */
  if (le > p && le[-1] == '\r')
    le--;
  while (q < le && is_tchar((unsigned char) *q))
    q++;
  if (q == p || q >= le || *q != ' ')
    return 400;
  r->method = p;
  r->method_len = (size_t) (q - p);
  t = ++q;
  while (q < le && (unsigned char) *q > 0x20 && *q != 0x7f)
    q++;
  if (q == t || q >= le || *q != ' ')
    return 400;
  r->target = t;
  r->target_len = (size_t) (q - t);
  q++;
  if (le - q != 8 || memcmp(q, "HTTP/", 5) != 0)
    return 400;
  if (q[5] != '1' || q[6] != '.' || (q[7] != '0' && q[7] != '1'))
    return (q[5] >= '0' && q[5] <= '9' && q[6] == '.' && q[7] >= '0' && q[7] <= '9') ? 505 : 400;
  r->minor = q[7] - '0';
  r->keep_alive = r->minor == 1;

  /* header-field = field-name ":" OWS field-value OWS */
  q = eol + 1;
  while (q < end) {
    const char *name = q;
    const char *colon;
    const char *value;
    size_t value_len;
    header_t *h;
    int rc;

    eol = memchr(q, '\n', (size_t) (end - q));
    le = eol;
    if (le > q && le[-1] == '\r')
      le--;
    if (le == q)
      break;
    while (q < le && is_tchar((unsigned char) *q))
      q++;
    /* No name (this also rejects obsolete line folding) or whitespace before the colon. */
    if (q == name || q >= le || *q != ':')
      return 400;
    colon = q;
    value = colon + 1;
    value_len = (size_t) (le - value);
    trim_ows(&value, &value_len);
    for (q = value; q < value + value_len; q++) {
      unsigned char ch = (unsigned char) *q;

      if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
        return 400;
    }
    if (r->nheaders == TS_MAX_HEADERS)
      return 431;
    h = &r->headers[r->nheaders++];
    h->name = name;
    h->name_len = (size_t) (colon - name);
    h->value = value;
    h->value_len = value_len;
    rc = request_frame_header(r, h);
    if (rc != 0)
      return rc;
    q = eol + 1;
  }

  /* A message with both is ambiguous (RFC 9112 6.3): refuse it rather than guess. */
  if (r->chunked && r->has_length)
    return 400;
  if (r->chunked && r->minor == 0)
    return 400;
  r->is_head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
  request_split_target(r);
  return 0;
}

/* Decodes a chunked body in place, as far as the input goes: the decoded bytes are slid down to follow the
 * header block, so a chunked upload costs its decoded size in memory. Returns 1 when the body is complete,
 * 0 if more input is needed (*n may shrink: the undecoded tail was slid down too), or a negative status. */
static int chunked_decode(conn_t *c, char *q, size_t *n) {
  for (;;) {
    char *in = q + c->chunk_in;
    size_t avail = *n - c->chunk_in;

    switch (c->chunk_state) {
    case CHUNK_SIZE: {
      char *nl = memchr(in, '\n', avail);
      size_t line;
      size_t i;
      uint64_t size = 0;

      if (nl == NULL) {
        if (avail > TS_MAX_CHUNK_LINE)
          return -400;
        goto need_more;
      }
      line = (size_t) (nl - in);
      if (line > TS_MAX_CHUNK_LINE)
        return -400;
      if (line > 0 && in[line - 1] == '\r')
        line--;
      for (i = 0; i < line && hex_value((unsigned char) in[i]) >= 0; i++) {
        size = size * 16 + (uint64_t) hex_value((unsigned char) in[i]);
        if (size > TS_MAX_BODY_BYTES)
          return -413;
      }
      if (i == 0)
        return -400;
      /* Only a chunk extension, which is ignored, may follow the size. */
      while (i < line && (in[i] == ' ' || in[i] == '\t'))
        i++;
      if (i < line && in[i] != ';')
        return -400;
      for (; i < line; i++) {
        unsigned char ch = (unsigned char) in[i];

        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
          return -400;
      }
      c->chunk_in += (size_t) (nl - in) + 1;
      if (size == 0) {
        c->chunk_state = CHUNK_TRAILER;
        break;
      }
      if ((c->chunk_out - c->head_len) + size > TS_MAX_BODY_BYTES)
        return -413;
      c->chunk_left = size;
      c->chunk_state = CHUNK_DATA;
      break;
    }
    case CHUNK_DATA: {
      size_t take = avail < c->chunk_left ? avail : (size_t) c->chunk_left;

      if (take > 0) {
        if (c->chunk_out != c->chunk_in)
          memmove(q + c->chunk_out, in, take);
        c->chunk_out += take;
        c->chunk_in += take;
        c->chunk_left -= take;
      }
      if (c->chunk_left > 0)
        goto need_more;
      c->chunk_state = CHUNK_DATA_END;
      break;
    }
    case CHUNK_DATA_END:
      if (avail == 0)
        goto need_more;
      if (in[0] == '\n') {
        c->chunk_in += 1;
      } else if (in[0] == '\r') {
        if (avail < 2)
          goto need_more;
        if (in[1] != '\n')
          return -400;
        c->chunk_in += 2;
      } else {
        return -400;
      }
      c->chunk_state = CHUNK_SIZE;
      break;
    case CHUNK_TRAILER: {
      char *nl = memchr(in, '\n', avail);
      size_t line;

      if (nl == NULL) {
        if (c->chunk_trailer + avail > TS_MAX_HEADER_BYTES)
          return -431;
        goto need_more;
      }
      line = (size_t) (nl - in);
      c->chunk_in += line + 1;
      if (line == 0 || (line == 1 && in[0] == '\r'))
        return 1;
      /* Trailer fields are accepted and ignored, within the header size limit. */
      c->chunk_trailer += line + 1;
      if (c->chunk_trailer > TS_MAX_HEADER_BYTES)
        return -431;
      break;
    }
    default:
      return -400;
    }
  }

need_more:
  if (c->chunk_in > c->chunk_out) {
    memmove(q + c->chunk_out, q + c->chunk_in, *n - c->chunk_in);
    *n -= c->chunk_in - c->chunk_out;
    c->chunk_in = c->chunk_out;
  }
  return 0;
}

static void conn_request_reset(conn_t *c) {
  c->head_len = 0;
  c->head_scan = 0;
  c->content_length = 0;
  c->chunked = 0;
  c->chunk_state = CHUNK_SIZE;
  c->chunk_in = 0;
  c->chunk_out = 0;
  c->chunk_left = 0;
  c->chunk_trailer = 0;
}

static void conn_stall_cb(uv_timer_t *timer);

/* When a stall is on at now, the uv_hrtime() at which it ends; else 0. A server starts healthy: the first
 * stall is the end of the first period. */
static uint64_t server_stall_end(const server_t *s, uint64_t now) {
  uint64_t phase;

  if (s->stall_every_ns == 0 || now < s->start_ns)
    return 0;
  phase = (now - s->start_ns) % s->stall_every_ns;
  return phase >= s->stall_every_ns - s->stall_for_ns ? now + (s->stall_every_ns - phase) : 0;
}

/* Holds a connection's next request until the stall ends: its bytes stay in the input, parsed on resume. */
static int conn_stall(conn_t *c) {
  uint64_t end = server_stall_end(c->server, uv_hrtime());

  if (end == 0)
    return 0;
  if (!c->timer_inited) {
    uv_timer_init(&c->server->loop, &c->timer);
    c->timer.data = c;
    c->timer_inited = 1;
  }
  c->pause = PAUSE_STALL;
  c->delay_due_ns = end;
  uv_timer_start(&c->timer, conn_stall_cb, (end - uv_hrtime()) / 1000000u, 0);
  return 1;
}

/* Handles the complete requests at the start of p[0..*len) and returns how many bytes they took. Parsing stops
 * early when the connection pauses or is to be closed; the caller keeps what is left. */
static size_t conn_process(conn_t *c, char *p, size_t *len) {
  server_t *s = c->server;
  size_t off = 0;

  while (off < *len && c->pause == PAUSE_NONE && !c->close_after && !c->closing) {
    char *q = p + off;
    size_t n = *len - off;
    int parsed_now = 0;
    size_t raw;
    size_t body_len;

    if (c->head_len == 0) {
      size_t head;
      int rc;

      /* RFC 9112 2.2: empty lines before a request line are ignored (some clients send a CRLF after a body). */
      if (c->head_scan == 0 && (q[0] == '\r' || q[0] == '\n')) {
        off++;
        continue;
      }
      if (c->head_scan == 0 && s->stall_every_ns != 0 && conn_stall(c))
        break;
      head = head_find_end(q, n < TS_MAX_HEADER_BYTES ? n : TS_MAX_HEADER_BYTES, &c->head_scan);
      if (head == 0) {
        if (n >= TS_MAX_HEADER_BYTES)
          conn_fail(c, 431);
        break;
      }
      rc = request_parse(&s->req, q, head);
      if (rc != 0) {
        conn_fail(c, rc);
        break;
      }
      if (s->req.has_length && s->req.content_length > TS_MAX_BODY_BYTES) {
        conn_fail(c, 413);
        break;
      }
      c->head_len = head;
      c->content_length = s->req.content_length;
      c->chunked = (uint8_t) s->req.chunked;
      c->chunk_state = CHUNK_SIZE;
      c->chunk_in = head;
      c->chunk_out = head;
      parsed_now = 1;
    }

    if (c->chunked) {
      size_t before = n;
      int rc = chunked_decode(c, q, &n);

      *len -= before - n;
      if (rc < 0) {
        conn_fail(c, -rc);
        break;
      }
      if (rc == 0) {
        if (parsed_now && s->req.expect_continue && s->req.minor == 1)
          BUF_LIT(conn_out(c), "HTTP/1.1 100 Continue\r\n\r\n");
        break;
      }
      raw = c->chunk_in;
      body_len = c->chunk_out - c->head_len;
    } else {
      if (n - c->head_len < c->content_length) {
        /* The client waits for this before it sends a large body (libcurl does for bodies over 1 MiB). */
        if (parsed_now && s->req.expect_continue && s->req.minor == 1)
          BUF_LIT(conn_out(c), "HTTP/1.1 100 Continue\r\n\r\n");
        break;
      }
      raw = c->head_len + (size_t) c->content_length;
      body_len = (size_t) c->content_length;
    }

    /* The head was parsed in an earlier read, and s->req may have served other connections since. It parsed
     * then, so it parses again. */
    if (!parsed_now)
      request_parse(&s->req, q, c->head_len);
    s->req.body = q + c->head_len;
    s->req.body_len = body_len;
    conn_request_reset(c);
    off += raw;
    conn_dispatch(c, &s->req);
  }
  return off;
}

/* ---- routes ---- */

static int path_is(const request_t *r, const char *s) {
  size_t n = strlen(s);

  return r->path_len == n && memcmp(r->path, s, n) == 0;
}

/* If the path starts with `prefix`, points *rest at what follows and returns 1. */
static int path_after(const request_t *r, const char *prefix, const char **rest, size_t *rest_len) {
  size_t n = strlen(prefix);

  if (r->path_len < n || memcmp(r->path, prefix, n) != 0)
    return 0;
  *rest = r->path + n;
  *rest_len = r->path_len - n;
  return 1;
}

static const header_t *request_header(const request_t *r, const char *name) {
  size_t n = strlen(name);
  size_t i;

  for (i = 0; i < r->nheaders; i++)
    if (mem_ieq(r->headers[i].name, r->headers[i].name_len, name, n))
      return &r->headers[i];
  return NULL;
}

/* Collects the cookie pairs of every Cookie header; the first of two pairs with the same name wins. */
static size_t request_cookies(const request_t *r, pair_t *out, size_t max) {
  size_t count = 0;
  size_t i;

  for (i = 0; i < r->nheaders; i++) {
    const header_t *h = &r->headers[i];
    size_t pos = 0;

    if (!IEQ_LIT(h->name, h->name_len, "cookie"))
      continue;
    while (pos < h->value_len && count < max) {
      const char *item = h->value + pos;
      const char *semi = memchr(item, ';', h->value_len - pos);
      size_t item_len = semi ? (size_t) (semi - item) : h->value_len - pos;
      const char *eq;
      const char *name;
      size_t name_len;
      const char *value;
      size_t value_len;
      size_t k;
      int dup = 0;

      pos += item_len + 1;
      eq = memchr(item, '=', item_len);
      if (eq == NULL)
        continue;
      name = item;
      name_len = (size_t) (eq - item);
      value = eq + 1;
      value_len = item_len - name_len - 1;
      trim_ows(&name, &name_len);
      trim_ows(&value, &value_len);
      if (name_len == 0)
        continue;
      for (k = 0; k < count && !dup; k++)
        dup = out[k].name_len == name_len && memcmp(out[k].name, name, name_len) == 0;
      if (dup)
        continue;
      out[count].name = name;
      out[count].name_len = name_len;
      out[count].value = value;
      out[count].value_len = value_len;
      count++;
    }
  }
  return count;
}

static void pairs_json(buf_t *b, const pair_t *pairs, size_t count) {
  size_t i;

  buf_append_char(b, '{');
  for (i = 0; i < count; i++) {
    if (i > 0)
      BUF_LIT(b, ", ");
    json_string(b, pairs[i].name, pairs[i].name_len);
    BUF_LIT(b, ": ");
    json_string(b, pairs[i].value, pairs[i].value_len);
  }
  buf_append_char(b, '}');
}

static void route_echo(conn_t *c, const request_t *r, const reply_t *x) {
  server_t *s = c->server;
  buf_t *b = &s->tmp;
  size_t i;
  size_t j;
  int first = 1;

  b->len = 0;
  BUF_LIT(b, "{\"method\": ");
  json_string(b, r->method, r->method_len);
  BUF_LIT(b, ", \"path\": ");
  json_string(b, r->path, r->path_len);
  BUF_LIT(b, ", \"query\": ");
  json_string(b, r->query, r->query_len);
  BUF_LIT(b, ", \"headers\": {");
  for (i = 0; i < r->nheaders; i++) {
    const header_t *h = &r->headers[i];
    int seen = 0;
    int repeated = 0;

    for (j = 0; j < i && !seen; j++)
      seen = mem_ieq(r->headers[j].name, r->headers[j].name_len, h->name, h->name_len);
    if (seen)
      continue;
    if (!first)
      BUF_LIT(b, ", ");
    first = 0;
    /* Names are tokens: nothing in them needs escaping. */
    buf_append_char(b, '"');
    if (buf_reserve(b, h->name_len) == 0) {
      for (j = 0; j < h->name_len; j++)
        b->base[b->len++] = lower(h->name[j]);
    }
    BUF_LIT(b, "\": ");
    s->aux.len = 0;
    buf_append(&s->aux, h->value, h->value_len);
    for (j = i + 1; j < r->nheaders; j++) {
      if (mem_ieq(r->headers[j].name, r->headers[j].name_len, h->name, h->name_len)) {
        BUF_LIT(&s->aux, ", ");
        buf_append(&s->aux, r->headers[j].value, r->headers[j].value_len);
        repeated = 1;
      }
    }
    if (repeated)
      json_string(b, s->aux.base, s->aux.len);
    else
      json_string(b, h->value, h->value_len);
  }
  BUF_LIT(b, "}, \"cookies\": ");
  pairs_json(b, s->cookies, request_cookies(r, s->cookies, TS_MAX_COOKIES));
  BUF_LIT(b, ", \"body\": ");
  json_string(b, r->body, r->body_len);
  BUF_LIT(b, ", \"body_length\": ");
  buf_append_u64(b, r->body_len);
  BUF_LIT(b, ", \"connection_id\": ");
  buf_append_u64(b, c->id);
  BUF_LIT(b, "}\n");
  if (b->failed || s->aux.failed) {
    b->failed = 0;
    s->aux.failed = 0;
    respond_text(c, x, 500, "out of memory\n");
    return;
  }
  respond(c, x, 200, CT_JSON, NULL, 0, b->base, b->len);
}

static void route_bytes(conn_t *c, const reply_t *x, uint64_t n) {
  buf_t *o = conn_out(c);

  response_head(c, o, x, 200, CT_BYTES, NULL, 0, (int64_t) n);
  if (!x->head) {
    if (n <= TS_INLINE_BODY_MAX) {
      if (buf_reserve(o, (size_t) n) == 0) {
        memset(o->base + o->len, 'x', (size_t) n);
        o->len += (size_t) n;
      }
    } else {
      /* Sent from static_body by conn_write(); parsing waits so that nothing is queued behind it. */
      c->queued_static = n;
      c->pause = PAUSE_WRITE;
    }
  }
  reply_done(c, x);
}

static void route_chunked(conn_t *c, const reply_t *x, uint64_t n) {
  buf_t *b = &c->server->tmp;
  buf_t *o;
  uint64_t i;

  if (x->minor == 0) {
    /* HTTP/1.0 has no chunked coding: the same bytes go with a Content-Length. */
    b->len = 0;
    for (i = 0; i < n; i++) {
      BUF_LIT(b, "chunk");
      buf_append_u64(b, i);
      buf_append_char(b, '\n');
    }
    respond(c, x, 200, CT_TEXT, NULL, 0, b->base, b->len);
    return;
  }
  o = conn_out(c);
  response_head(c, o, x, 200, CT_TEXT, NULL, 0, BODY_CHUNKED);
  if (!x->head) {
    for (i = 0; i < n; i++) {
      b->len = 0;
      BUF_LIT(b, "chunk");
      buf_append_u64(b, i);
      buf_append_char(b, '\n');
      buf_append_hex(o, b->len);
      BUF_LIT(o, "\r\n");
      buf_append(o, b->base, b->len);
      BUF_LIT(o, "\r\n");
    }
    BUF_LIT(o, "0\r\n\r\n");
  }
  reply_done(c, x);
}

static void route_redirect(conn_t *c, const reply_t *x, uint64_t n, int absolute) {
  server_t *s = c->server;
  buf_t *h = &s->aux;

  if (n == 0) {
    respond_text(c, x, 200, "redirected");
    return;
  }
  h->len = 0;
  BUF_LIT(h, "Location: ");
  if (absolute) {
    struct sockaddr_storage ss;
    int ss_len = sizeof(ss);
    char ip[64];

    /* The address the client reached, so the Location works whatever interface the server listens on. */
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *) &ss, &ss_len) != 0) {
      respond_text(c, x, 500, "getsockname failed\n");
      return;
    }
    BUF_LIT(h, "http://");
    if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) &ss;

      uv_ip6_name(a6, ip, sizeof(ip));
      buf_append_char(h, '[');
      buf_append_str(h, ip);
      buf_append_char(h, ']');
      buf_append_char(h, ':');
      buf_append_u64(h, ntohs(a6->sin6_port));
    } else {
      struct sockaddr_in *a4 = (struct sockaddr_in *) &ss;

      uv_ip4_name(a4, ip, sizeof(ip));
      buf_append_str(h, ip);
      buf_append_char(h, ':');
      buf_append_u64(h, ntohs(a4->sin_port));
    }
    BUF_LIT(h, "/absolute-redirect/");
  } else {
    BUF_LIT(h, "/redirect/");
  }
  buf_append_u64(h, n - 1);
  BUF_LIT(h, "\r\n");
  respond(c, x, 302, CT_TEXT, h->base, h->len, "redirect", 8);
}

/* /cookies/set?a=1&b=2: one Set-Cookie per pair. Names and values are sent as they came, undecoded: the
 * request line cannot carry CR, LF or spaces, so they cannot break the response's framing. */
static void route_cookies_set(conn_t *c, const request_t *r, const reply_t *x) {
  server_t *s = c->server;
  buf_t *h = &s->aux;
  size_t count = 0;
  size_t pos = 0;
  size_t i;

  while (pos < r->query_len && count < TS_MAX_COOKIES) {
    const char *item = r->query + pos;
    const char *amp = memchr(item, '&', r->query_len - pos);
    size_t item_len = amp ? (size_t) (amp - item) : r->query_len - pos;
    const char *eq = memchr(item, '=', item_len);
    size_t name_len = eq ? (size_t) (eq - item) : item_len;

    pos += item_len + 1;
    if (name_len == 0)
      continue;
    for (i = 0; i < name_len && is_tchar((unsigned char) item[i]); i++)
      ;
    if (i < name_len || (eq && memchr(eq + 1, ';', item_len - name_len - 1) != NULL))
      continue;
    s->cookies[count].name = item;
    s->cookies[count].name_len = name_len;
    s->cookies[count].value = eq ? eq + 1 : item + item_len;
    s->cookies[count].value_len = eq ? item_len - name_len - 1 : 0;
    count++;
  }
  h->len = 0;
  for (i = 0; i < count; i++) {
    BUF_LIT(h, "Set-Cookie: ");
    buf_append(h, s->cookies[i].name, s->cookies[i].name_len);
    buf_append_char(h, '=');
    buf_append(h, s->cookies[i].value, s->cookies[i].value_len);
    BUF_LIT(h, "; Path=/\r\n");
  }
  s->tmp.len = 0;
  pairs_json(&s->tmp, s->cookies, count);
  buf_append_char(&s->tmp, '\n');
  respond(c, x, 200, CT_JSON, h->base, h->len, s->tmp.base, s->tmp.len);
}

static void route_cookies(conn_t *c, const request_t *r, const reply_t *x) {
  server_t *s = c->server;

  s->tmp.len = 0;
  pairs_json(&s->tmp, s->cookies, request_cookies(r, s->cookies, TS_MAX_COOKIES));
  buf_append_char(&s->tmp, '\n');
  respond(c, x, 200, CT_JSON, NULL, 0, s->tmp.base, s->tmp.len);
}

static void base64_encode(buf_t *b, const char *src, size_t n) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *p = (const unsigned char *) src;
  size_t i;

  for (i = 0; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];
    char out[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63], alphabet[v & 63]};

    buf_append(b, out, 4);
  }
  if (i < n) {
    uint32_t v = (uint32_t) p[i] << 16 | (i + 1 < n ? (uint32_t) p[i + 1] << 8 : 0);
    char out[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], i + 1 < n ? alphabet[(v >> 6) & 63] : '=', '='};

    buf_append(b, out, 4);
  }
}

static void route_basic_auth(conn_t *c, const request_t *r, const reply_t *x, const char *rest, size_t rest_len) {
  server_t *s = c->server;
  const char *slash = memchr(rest, '/', rest_len);
  const header_t *auth = request_header(r, "authorization");
  int ok = 0;

  if (slash == NULL) {
    respond_text(c, x, 404, "not found\n");
    return;
  }
  /* The expected credentials are base64("user:pass"). */
  s->tmp.len = 0;
  buf_append(&s->tmp, rest, rest_len);
  if (!s->tmp.failed)
    s->tmp.base[slash - rest] = ':';
  s->aux.len = 0;
  base64_encode(&s->aux, s->tmp.base, s->tmp.len);
  if (auth != NULL && auth->value_len > 6 && IEQ_LIT(auth->value, 6, "basic ")) {
    const char *token = auth->value + 6;
    size_t token_len = auth->value_len - 6;

    trim_ows(&token, &token_len);
    ok = !s->aux.failed && token_len == s->aux.len && memcmp(token, s->aux.base, token_len) == 0;
  }
  s->tmp.len = 0;
  if (ok) {
    BUF_LIT(&s->tmp, "{\"authenticated\": true, \"user\": ");
    json_string(&s->tmp, rest, (size_t) (slash - rest));
    BUF_LIT(&s->tmp, "}\n");
    respond(c, x, 200, CT_JSON, NULL, 0, s->tmp.base, s->tmp.len);
  } else {
    static const char challenge[] = "WWW-Authenticate: Basic realm=\"test\"\r\n";

    BUF_LIT(&s->tmp, "{\"authenticated\": false}\n");
    respond(c, x, 401, CT_JSON, challenge, sizeof(challenge) - 1, s->tmp.base, s->tmp.len);
  }
}

/* /headers/<name>/<value>: the value is percent-decoded so that tests can send spaces or any other byte. */
static void route_headers(conn_t *c, const reply_t *x, const char *rest, size_t rest_len) {
  server_t *s = c->server;
  buf_t *h = &s->aux;
  const char *slash = memchr(rest, '/', rest_len);
  size_t name_len;
  size_t i;

  if (slash == NULL) {
    respond_text(c, x, 404, "not found\n");
    return;
  }
  name_len = (size_t) (slash - rest);
  for (i = 0; i < name_len && is_tchar((unsigned char) rest[i]); i++)
    ;
  /* Framing headers would corrupt the response itself. */
  if (name_len == 0 || i < name_len || IEQ_LIT(rest, name_len, "content-length") ||
      IEQ_LIT(rest, name_len, "transfer-encoding") || IEQ_LIT(rest, name_len, "connection")) {
    respond_text(c, x, 400, "bad header name\n");
    return;
  }
  h->len = 0;
  buf_append(h, rest, name_len);
  BUF_LIT(h, ": ");
  for (i = name_len + 1; i < rest_len; i++) {
    unsigned char ch = (unsigned char) rest[i];

    if (ch == '%' && i + 2 < rest_len && hex_value((unsigned char) rest[i + 1]) >= 0 && hex_value((unsigned char) rest[i + 2]) >= 0) {
      ch = (unsigned char) (hex_value((unsigned char) rest[i + 1]) * 16 + hex_value((unsigned char) rest[i + 2]));
      i += 2;
    }
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
      respond_text(c, x, 400, "bad header value\n");
      return;
    }
    buf_append_char(h, (char) ch);
  }
  BUF_LIT(h, "\r\n");
  respond(c, x, 200, CT_TEXT, h->base, h->len, "ok", 2);
}

static void route_status(conn_t *c, const reply_t *x, const char *rest, size_t rest_len) {
  uint64_t code;
  buf_t *b = &c->server->tmp;

  if (parse_u64(rest, rest_len, 599, &code) != 0 || code < 200) {
    respond_text(c, x, 400, "status must be 200..599\n");
    return;
  }
  b->len = 0;
  buf_append_str(b, status_reason((int) code));
  buf_append_char(b, '\n');
  respond(c, x, (int) code, CT_TEXT, NULL, 0, b->base, b->len);
}

static void conn_delay_cb(uv_timer_t *timer);

static void route_delay(conn_t *c, const reply_t *x, const char *rest, size_t rest_len) {
  uint64_t ms;

  if (parse_u64(rest, rest_len, TS_MAX_DELAY_MS, &ms) != 0) {
    respond_text(c, x, 400, "bad delay\n");
    return;
  }
  if (!c->timer_inited) {
    uv_timer_init(&c->server->loop, &c->timer);
    c->timer.data = c;
    c->timer_inited = 1;
  }
  c->delayed = *x;
  c->pause = PAUSE_DELAY;
  /* libuv's timers count from the loop's time, in whole milliseconds and taken when this iteration began: they
   * can fire up to a millisecond early. The answer is owed at a time of its own, which the callback checks. */
  c->delay_due_ns = uv_hrtime() + ms * 1000000u;
  uv_timer_start(&c->timer, conn_delay_cb, ms, 0);
}

static void route_fault(conn_t *c, const reply_t *x, const char *what, size_t what_len) {
  buf_t *o = conn_out(c);

  if (IEQ_LIT(what, what_len, "reset")) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    uv_os_fd_t fd;

    /* A zero linger makes close() send RST instead of FIN. */
    if (uv_fileno((uv_handle_t *) &c->tcp, &fd) == 0)
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    conn_close(c);
  } else if (IEQ_LIT(what, what_len, "close-mid-body")) {
    reply_t closing = *x;

    closing.keep_alive = 0;
    response_head(c, o, &closing, 200, CT_BYTES, NULL, 0, 1000);
    BUF_LIT(o, "xxxxxxxxxx");
    reply_done(c, &closing);
  } else if (IEQ_LIT(what, what_len, "never")) {
    c->pause = PAUSE_NEVER;
  } else if (IEQ_LIT(what, what_len, "garbage")) {
    BUF_LIT(o, "GARBAGE NOT HTTP\r\n\r\n");
    if (x->counted)
      c->queued_nresp++;
    c->close_after = 1;
  } else if (IEQ_LIT(what, what_len, "empty")) {
    if (x->counted)
      c->queued_nresp++;
    c->close_after = 1;
  } else {
    respond_text(c, x, 404, "not found\n");
  }
}

static void conn_dispatch(conn_t *c, request_t *r) {
  server_t *s = c->server;
  reply_t x = {.head = (uint8_t) r->is_head, .keep_alive = (uint8_t) r->keep_alive, .minor = (uint8_t) r->minor,
               .counted = 1};
  const char *rest;
  size_t rest_len;
  uint64_t n;

  if (path_is(r, "/")) {
    request_begin(c);
    respond(c, &x, 200, CT_TEXT, NULL, 0, "ok", 2);
    return;
  }
  if (path_is(r, "/__stats") || path_is(r, "/__stats/reset")) {
    x.counted = 0;
    if (!c->seen_request && c->counted)
      stats_conn_uncount(s, c);
    c->seen_request = 1;
    if (r->path_len > 8)
      stats_reset(s);
    stats_json(s, &s->tmp);
    respond(c, &x, 200, CT_JSON, NULL, 0, s->tmp.base, s->tmp.len);
    return;
  }
  request_begin(c);
  if (path_after(r, "/delay/", &rest, &rest_len)) {
    route_delay(c, &x, rest, rest_len);
  } else if (path_is(r, "/echo") || path_after(r, "/echo/", &rest, &rest_len)) {
    route_echo(c, r, &x);
  } else if (path_after(r, "/bytes/", &rest, &rest_len)) {
    if (parse_u64(rest, rest_len, TS_MAX_BYTES_ROUTE, &n) != 0)
      respond_text(c, &x, 400, "bad size (0..67108864)\n");
    else
      route_bytes(c, &x, n);
  } else if (path_after(r, "/status/", &rest, &rest_len)) {
    route_status(c, &x, rest, rest_len);
  } else if (path_is(r, "/json")) {
    static const char json[] = "{\"ok\": true, \"items\": [1, 2, 3]}\n";

    respond(c, &x, 200, CT_JSON, NULL, 0, json, sizeof(json) - 1);
  } else if (path_after(r, "/redirect/", &rest, &rest_len)) {
    if (parse_u64(rest, rest_len, TS_MAX_REDIRECTS, &n) != 0)
      respond_text(c, &x, 400, "bad redirect count\n");
    else
      route_redirect(c, &x, n, 0);
  } else if (path_after(r, "/absolute-redirect/", &rest, &rest_len)) {
    if (parse_u64(rest, rest_len, TS_MAX_REDIRECTS, &n) != 0)
      respond_text(c, &x, 400, "bad redirect count\n");
    else
      route_redirect(c, &x, n, 1);
  } else if (path_is(r, "/cookies/set")) {
    route_cookies_set(c, r, &x);
  } else if (path_is(r, "/cookies")) {
    route_cookies(c, r, &x);
  } else if (path_after(r, "/basic-auth/", &rest, &rest_len)) {
    route_basic_auth(c, r, &x, rest, rest_len);
  } else if (path_after(r, "/chunked/", &rest, &rest_len)) {
    if (parse_u64(rest, rest_len, TS_MAX_CHUNKS_ROUTE, &n) != 0)
      respond_text(c, &x, 400, "bad chunk count\n");
    else
      route_chunked(c, &x, n);
  } else if (path_after(r, "/headers/", &rest, &rest_len)) {
    route_headers(c, &x, rest, rest_len);
  } else if (path_after(r, "/fault/", &rest, &rest_len)) {
    route_fault(c, &x, rest, rest_len);
  } else {
    respond_text(c, &x, 404, "not found\n");
  }
  buf_trim(&s->tmp, TS_SCRATCH_KEEP);
  buf_trim(&s->aux, TS_SCRATCH_KEEP);
}

/* ---- connection output ---- */

/* Called when everything queued so far has been handed to the kernel and no write is in flight. */
static void conn_after_write(conn_t *c);
static void conn_write_cb(uv_write_t *req, int status);

/* Sends `out` (followed by c->queued_static bytes of static_body): first with uv_try_write(), which on a
 * loopback socket almost always takes everything at once, then with uv_write() for what is left. */
static void conn_write(conn_t *c, buf_t *out) {
  uv_buf_t bufs[TS_STATIC_BUFS + 1];
  unsigned nbufs = 0;
  size_t head = out->len;
  uint64_t tail = c->queued_static;
  uint32_t nresp = c->queued_nresp;
  uint64_t left;
  size_t wrote;
  int rc;

  c->queued_static = 0;
  c->queued_nresp = 0;
  if (out->failed) {
    out->len = 0;
    out->failed = 0;
    conn_close(c);
    return;
  }
  if (head == 0 && tail == 0) {
    request_complete(c, nresp);
    conn_after_write(c);
    return;
  }
  if (head > 0)
    bufs[nbufs++] = uv_buf_init(out->base, (unsigned) head);
  for (left = tail; left > 0; left -= bufs[nbufs - 1].len) {
    size_t piece = left < TS_STATIC_BODY_SIZE ? (size_t) left : TS_STATIC_BODY_SIZE;

    bufs[nbufs++] = uv_buf_init(static_body, (unsigned) piece);
  }
  rc = uv_try_write((uv_stream_t *) &c->tcp, bufs, nbufs);
  if (rc == UV_EAGAIN || rc == UV_ENOSYS)
    rc = 0;
  if (rc < 0) {
    out->len = 0;
    conn_close(c);
    return;
  }
  wrote = (size_t) rc;
  if (wrote == head + tail) {
    out->len = 0;
    request_complete(c, nresp);
    conn_after_write(c);
    return;
  }

  /* The kernel's buffer is full: what is left goes through uv_write(), which needs the bytes to stay put, so
   * the formatted part is copied out of `out` (the scratch buffer is reused by the next callback). */
  nbufs = 0;
  c->wbuf.len = 0;
  if (wrote < head) {
    buf_append(&c->wbuf, out->base + wrote, head - wrote);
    if (c->wbuf.failed) {
      out->len = 0;
      conn_close(c);
      return;
    }
    bufs[nbufs++] = uv_buf_init(c->wbuf.base, (unsigned) c->wbuf.len);
    left = tail;
  } else {
    left = tail - (wrote - head);
  }
  out->len = 0;
  while (left > 0) {
    size_t piece = left < TS_STATIC_BODY_SIZE ? (size_t) left : TS_STATIC_BODY_SIZE;

    bufs[nbufs++] = uv_buf_init(static_body, (unsigned) piece);
    left -= piece;
  }
  c->write_req.data = c;
  c->write_nresp = nresp;
  rc = uv_write(&c->write_req, (uv_stream_t *) &c->tcp, bufs, nbufs, conn_write_cb);
  if (rc != 0) {
    conn_close(c);
    return;
  }
  c->writing = 1;
}

/* Sends whatever the current callback queued for this connection. */
static void conn_flush(conn_t *c) {
  server_t *s = c->server;

  if (c->closing) {
    if (!c->writing)
      s->scratch.len = 0;
    return;
  }
  if (c->writing)
    return;     /* conn_write_cb() sends the pending output when the write in flight is done. */
  conn_write(c, &s->scratch);
  buf_trim(&s->scratch, TS_SCRATCH_KEEP);
}

static void conn_write_cb(uv_write_t *req, int status) {
  conn_t *c = req->data;

  c->writing = 0;
  c->wbuf.len = 0;
  if (status < 0 || c->closing) {
    conn_close(c);
    return;
  }
  request_complete(c, c->write_nresp);
  c->write_nresp = 0;
  if (c->pending.len > 0 || c->queued_static > 0 || c->pending.failed) {
    conn_write(c, &c->pending);
    return;
  }
  buf_free(&c->wbuf);
  buf_free(&c->pending);
  conn_after_write(c);
}

/* ---- connection lifecycle ---- */

static void conn_close_cb(uv_handle_t *handle) {
  conn_t *c = handle->data;
  server_t *s = c->server;

  if (--c->nclose_pending > 0)
    return;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  buf_free(&c->in);
  buf_free(&c->pending);
  buf_free(&c->wbuf);
  free(c);
}

static void conn_close(conn_t *c) {
  server_t *s = c->server;

  if (c->closing)
    return;
  c->closing = 1;
  if (c->counted)
    s->connections_open--;
  request_complete(c, c->open_requests);
  /* Whatever this connection queued in the scratch buffer will never be sent. */
  if (!c->writing) {
    s->scratch.len = 0;
    s->scratch.failed = 0;
  }
  c->queued_nresp = 0;
  c->queued_static = 0;
  c->nclose_pending = (uint8_t) (1 + c->timer_inited);
  uv_close((uv_handle_t *) &c->tcp, conn_close_cb);
  if (c->timer_inited)
    uv_close((uv_handle_t *) &c->timer, conn_close_cb);
}

static void conn_linger_cb(uv_timer_t *timer) {
  conn_close(timer->data);
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;

  if (status < 0 || c->closing || c->eof) {
    conn_close(c);
    return;
  }
  /* The FIN is out. Closing now could turn into a reset if the client still sends something, and a reset
   * can destroy the response in the client's receive buffer, so wait for its FIN (or give up after a while). */
  if (!c->timer_inited) {
    uv_timer_init(&c->server->loop, &c->timer);
    c->timer.data = c;
    c->timer_inited = 1;
  }
  uv_timer_start(&c->timer, conn_linger_cb, TS_LINGER_MS, 0);
}

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(conn_t *c) {
  if (c->reading || c->eof || c->closing)
    return;
  if (uv_read_start((uv_stream_t *) &c->tcp, conn_alloc_cb, conn_read_cb) == 0)
    c->reading = 1;
}

static void conn_read_stop(conn_t *c) {
  if (!c->reading)
    return;
  uv_read_stop((uv_stream_t *) &c->tcp);
  c->reading = 0;
}

static void conn_shutdown(conn_t *c) {
  if (c->shut || c->closing)
    return;
  c->shut = 1;
  buf_free(&c->in);
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *) &c->tcp, conn_shutdown_cb) != 0) {
    conn_close(c);
    return;
  }
  /* Keep reading (and discarding) to see the client's FIN. */
  conn_read_start(c);
}

static void conn_after_write(conn_t *c) {
  if (c->closing)
    return;
  if (c->close_after) {
    conn_shutdown(c);
    return;
  }
  if (c->pause == PAUSE_WRITE) {
    c->pause = PAUSE_NONE;
    conn_resume(c);
  }
}

/* Drops the first `used` bytes of the connection's input buffer. */
static void conn_consume(conn_t *c, size_t used) {
  if (used > 0) {
    c->in.len -= used;
    if (c->in.len > 0)
      memmove(c->in.base, c->in.base + used, c->in.len);
  }
  if (c->in.len == 0)
    buf_free(&c->in);
}

/* Copies input the connection cannot handle yet out of the shared read buffer. */
static void conn_stash(conn_t *c, const char *p, size_t n) {
  if (n == 0)
    return;
  if (c->in.cap == 0 && buf_reserve(&c->in, n > TS_CONN_BUF_MIN ? n : TS_CONN_BUF_MIN) != 0) {
    conn_close(c);
    return;
  }
  buf_append(&c->in, p, n);
  if (c->in.failed)
    conn_close(c);
}

/* Handles buffered input after a pause ends, then sends the result. Re-entry (a write completing at once
 * inside conn_flush() ends the next pause) is turned into another turn of the loop rather than recursion. */
static void conn_resume(conn_t *c) {
  if (c->resuming) {
    c->resume_again = 1;
    return;
  }
  c->resuming = 1;
  do {
    c->resume_again = 0;
    if (c->in.len > 0 && c->pause == PAUSE_NONE && !c->close_after && !c->closing) {
      size_t len = c->in.len;
      size_t used = conn_process(c, c->in.base, &len);

      c->in.len = len;
      if (!c->closing)
        conn_consume(c, used);
    }
    conn_flush(c);
  } while (c->resume_again && !c->closing);
  c->resuming = 0;
  if (!c->closing && c->pause != PAUSE_DELAY && c->in.len < TS_PAUSED_INPUT_MAX)
    conn_read_start(c);
}

/* Whether the timer of a connection paused for `pause` (a /delay or a stall) has come due, ending the pause. The
 * loop's clock has millisecond steps: a wake-up that comes early waits the rest, a millisecond at most. */
static int conn_pause_due(conn_t *c, int pause, uv_timer_cb cb) {
  if (c->closing || c->pause != pause)
    return 0;
  if (uv_hrtime() < c->delay_due_ns) {
    uv_timer_start(&c->timer, cb, 1, 0);
    return 0;
  }
  c->pause = PAUSE_NONE;
  return 1;
}

static void conn_delay_cb(uv_timer_t *timer) {
  conn_t *c = timer->data;

  if (!conn_pause_due(c, PAUSE_DELAY, conn_delay_cb))
    return;
  respond(c, &c->delayed, 200, CT_TEXT, NULL, 0, "ok", 2);
  conn_resume(c);
}

static void conn_stall_cb(uv_timer_t *timer) {
  conn_t *c = timer->data;

  if (!conn_pause_due(c, PAUSE_STALL, conn_stall_cb))
    return;
  conn_resume(c);
  if (!c->closing && !c->reading && c->pause == PAUSE_NONE && c->in.len < TS_PAUSED_INPUT_MAX)
    conn_read_start(c);
}

/* ---- connection input ---- */

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  conn_t *c = handle->data;
  size_t limit = c->pause != PAUSE_NONE ? TS_PAUSED_INPUT_MAX : TS_INPUT_MAX;
  size_t want;

  /* The common case: nothing left over, so the read goes to the shared buffer. */
  if (c->in.len == 0) {
    buf->base = c->server->rbuf;
    buf->len = TS_READ_BUF_SIZE;
    return;
  }
  if (c->in.len >= limit) {
    /* read_cb gets UV_ENOBUFS. */
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  want = TS_CONN_BUF_MIN;
  if (c->head_len > 0 && !c->chunked && c->head_len + c->content_length > c->in.len)
    want = c->head_len + (size_t) c->content_length - c->in.len;   /* the rest of a known body at once */
  else if (c->in.cap >= TS_CONN_BUF_MIN)
    want = c->in.cap;    /* double */
  if (want > limit - c->in.len)
    want = limit - c->in.len;
  if (c->in.cap - c->in.len < TS_CONN_BUF_MIN && buf_reserve(&c->in, want) != 0) {
    c->in.failed = 0;
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  buf->base = c->in.base + c->in.len;
  buf->len = c->in.cap - c->in.len;
  if (buf->len > limit - c->in.len)
    buf->len = limit - c->in.len;
}

static void conn_read_end(conn_t *c, ssize_t err) {
  if (err == UV_ENOBUFS) {
    if (c->pause != PAUSE_NONE) {
      /* Paused with a full input buffer: stop reading until the pause ends (backpressure). */
      conn_read_stop(c);
      return;
    }
    c->in.len = 0;
    conn_fail(c, 413);
    conn_flush(c);
    return;
  }
  c->reading = 0;
  if (err != UV_EOF || c->shut) {
    conn_close(c);
    return;
  }
  c->eof = 1;
  /* The client half-closed: answer what it already asked for, unless nobody can be waiting for it. */
  if (c->writing && c->pause != PAUSE_DELAY && c->pause != PAUSE_NEVER) {
    c->close_after = 1;
    buf_free(&c->in);
    return;
  }
  conn_close(c);
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  server_t *s = c->server;
  int shared = buf->base == s->rbuf;
  size_t len;
  size_t used;

  if (nread == 0)
    return;
  if (nread < 0) {
    conn_read_end(c, nread);
    return;
  }
  if (c->closing)
    return;
  if (!shared)
    c->in.len += (size_t) nread;
  /* Past a final response, or waiting forever: the input is read only to see the client's FIN. */
  if (c->close_after || c->shut || c->pause == PAUSE_NEVER) {
    buf_free(&c->in);
    return;
  }
  if (c->pause != PAUSE_NONE) {
    if (shared)
      conn_stash(c, buf->base, (size_t) nread);
    if (!c->closing && c->in.len >= TS_PAUSED_INPUT_MAX)
      conn_read_stop(c);
    return;
  }
  if (shared) {
    len = (size_t) nread;
    used = conn_process(c, buf->base, &len);
    if (used < len && !c->closing && !c->close_after && c->pause != PAUSE_NEVER)
      conn_stash(c, buf->base + used, len - used);
  } else {
    len = c->in.len;
    used = conn_process(c, c->in.base, &len);
    c->in.len = len;
    if (c->closing || c->close_after || c->pause == PAUSE_NEVER)
      buf_free(&c->in);
    else
      conn_consume(c, used);
  }
  conn_flush(c);
  if (!c->closing && c->pause != PAUSE_NONE && c->in.len >= TS_PAUSED_INPUT_MAX)
    conn_read_stop(c);
}

/* ---- server ---- */

static void conn_free_cb(uv_handle_t *handle) {
  free(handle->data);
}

static void server_connection_cb(uv_stream_t *listener, int status) {
  server_t *s = listener->data;
  conn_t *c;

  if (status < 0 || s->stopping)
    return;
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return;
  c->server = s;
  uv_tcp_init(&s->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(listener, (uv_stream_t *) &c->tcp) != 0) {
    /* Not linked into the list yet, so not through conn_close(). */
    uv_close((uv_handle_t *) &c->tcp, conn_free_cb);
    return;
  }
  /* Responses are written whole, so Nagle's algorithm could only delay them. */
  uv_tcp_nodelay(&c->tcp, 1);
  c->id = ++s->next_id;
  c->next = s->conns;
  if (s->conns != NULL)
    s->conns->prev = c;
  s->conns = c;
  stats_conn_count(s, c);
  conn_read_start(c);
}

static void server_stop(server_t *s) {
  conn_t *c;

  if (s->stopping)
    return;
  s->stopping = 1;
  uv_close((uv_handle_t *) &s->listener, NULL);
  uv_close((uv_handle_t *) &s->sigint, NULL);
  uv_close((uv_handle_t *) &s->sigterm, NULL);
  for (c = s->conns; c != NULL; c = c->next)
    conn_close(c);
}

static void server_signal_cb(uv_signal_t *handle, int signum) {
  server_stop(handle->data);
}

static int server_resolve(const char *host, int port, struct sockaddr_storage *addr) {
  struct addrinfo hints;
  struct addrinfo *res;
  int rc;

  if (uv_ip4_addr(host, port, (struct sockaddr_in *) addr) == 0)
    return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *) addr) == 0)
    return 0;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0)
    return UV_EAI_NONAME;
  memcpy(addr, res->ai_addr, res->ai_addrlen);
  if (addr->ss_family == AF_INET6)
    ((struct sockaddr_in6 *) addr)->sin6_port = htons((uint16_t) port);
  else
    ((struct sockaddr_in *) addr)->sin_port = htons((uint16_t) port);
  freeaddrinfo(res);
  return 0;
}

/* Binds and listens; on success *port holds the bound port. libuv sets SO_REUSEADDR itself when binding, so a
 * restarted server can take a port that still has connections in TIME_WAIT. */
static int server_listen(server_t *s, const char *host, int *port) {
  struct sockaddr_storage addr;
  int len = sizeof(addr);
  int rc;

  rc = server_resolve(host, *port, &addr);
  if (rc != 0)
    return rc;
  rc = uv_tcp_init(&s->loop, &s->listener);
  if (rc != 0)
    return rc;
  s->listener.data = s;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *) &addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *) &s->listener, TS_BACKLOG, server_connection_cb);
  if (rc == 0)
    rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *) &addr, &len);
  if (rc != 0)
    return rc;
  *port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &addr)->sin6_port
                                           : ((struct sockaddr_in *) &addr)->sin_port);
  return 0;
}

static int server_announce(int fd, int port) {
  char line[16];
  int n = snprintf(line, sizeof(line), "%d\n", port);
  int off = 0;

  while (off < n) {
    ssize_t w = write(fd, line + off, (size_t) (n - off));

    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    off += (int) w;
  }
  return 0;
}

static void server_close_walk_cb(uv_handle_t *handle, void *arg) {
  if (!uv_is_closing(handle))
    uv_close(handle, NULL);
}

/* Closes whatever is still open (only after an error part-way through setup) and runs the loop until the
 * close callbacks have run, so that uv_loop_close() succeeds and nothing leaks. */
static void server_free(server_t *s) {
  uv_walk(&s->loop, server_close_walk_cb, NULL);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
  free(s->rbuf);
  buf_free(&s->scratch);
  buf_free(&s->tmp);
  buf_free(&s->aux);
  free(s);
}

/* ---- python module ---- */

static void static_body_init(void) {
  static int done;

  if (!done) {
    memset(static_body, 'x', sizeof(static_body));
    done = 1;
  }
}

static PyObject *error_from_uv(int err) {
  if (err == UV_EAI_NONAME)
    return PyErr_Format(PyExc_OSError, "cannot resolve host: %s", uv_strerror(err));
  errno = -err;
  return PyErr_SetFromErrno(PyExc_OSError);
}

PyDoc_STRVAR(serve_doc,
             "serve(host, port, ready_fd=-1)\n--\n\n"
             "Run the HTTP/1.1 test server until SIGINT or SIGTERM.\n\n"
             "Binds host:port (port 0 picks a free port). If ready_fd >= 0, the bound port is written to that file\n"
             "descriptor as a decimal number and a newline once the server accepts connections. The libuv loop\n"
             "runs in the calling thread with the GIL released; on SIGINT or SIGTERM every connection is closed\n"
             "and the function returns None.");

static PyObject *testserver_serve(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *keywords[] = {"host", "port", "ready_fd", "stall_every_ms", "stall_for_ms", NULL};
  const char *host;
  int port;
  int ready_fd = -1;
  unsigned long long stall_every_ms = 0, stall_for_ms = 0;
  server_t *s;
  struct sigaction old_int;
  struct sigaction old_term;
  struct sigaction old_pipe;
  struct sigaction ignore;
  int rc;

  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "si|iKK:serve", keywords, &host, &port, &ready_fd, &stall_every_ms,
                                   &stall_for_ms))
    return NULL;
  if (stall_for_ms > stall_every_ms || stall_every_ms > TS_MAX_DELAY_MS || (stall_every_ms && !stall_for_ms)) {
    PyErr_SetString(PyExc_ValueError, "a stall lasts more than 0 ms and at most its period (up to an hour)");
    return NULL;
  }
  if (port < 0 || port > 65535) {
    PyErr_SetString(PyExc_ValueError, "port must be in 0..65535");
    return NULL;
  }
  static_body_init();
  s = calloc(1, sizeof(*s));
  if (s == NULL)
    return PyErr_NoMemory();
  s->rbuf = malloc(TS_READ_BUF_SIZE);
  if (s->rbuf == NULL) {
    free(s);
    return PyErr_NoMemory();
  }
  rc = uv_loop_init(&s->loop);
  if (rc != 0) {
    free(s->rbuf);
    free(s);
    return error_from_uv(rc);
  }

  s->stall_every_ns = stall_every_ms * 1000000u;
  s->stall_for_ns = stall_for_ms * 1000000u;
  s->start_ns = uv_hrtime();
  rc = server_listen(s, host, &port);
  if (rc == 0 && ready_fd >= 0)
    rc = server_announce(ready_fd, port);
  if (rc != 0) {
    server_free(s);
    return error_from_uv(rc);
  }

  /* libuv resets a signal to SIG_DFL when its last watcher stops, which would leave Python without its
   * SIGINT handler after we return: save the dispositions and put them back. SIGPIPE is ignored while we run
   * (Python normally does that already) so that writing to a connection the peer reset is an error, not death. */
  sigaction(SIGINT, NULL, &old_int);
  sigaction(SIGTERM, NULL, &old_term);
  memset(&ignore, 0, sizeof(ignore));
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &old_pipe);
  uv_signal_init(&s->loop, &s->sigint);
  uv_signal_init(&s->loop, &s->sigterm);
  s->sigint.data = s;
  s->sigterm.data = s;
  uv_signal_start(&s->sigint, server_signal_cb, SIGINT);
  uv_signal_start(&s->sigterm, server_signal_cb, SIGTERM);

  Py_BEGIN_ALLOW_THREADS
  uv_run(&s->loop, UV_RUN_DEFAULT);
  server_free(s);
  Py_END_ALLOW_THREADS

  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  sigaction(SIGPIPE, &old_pipe, NULL);
  Py_RETURN_NONE;
}

static PyMethodDef testserver_methods[] = {
  {"serve", (PyCFunction) (void (*)(void)) testserver_serve, METH_VARARGS | METH_KEYWORDS, serve_doc},
  {NULL, NULL, 0, NULL},
};

static int testserver_exec(PyObject *module) {
  static_body_init();
  return 0;
}

static PyModuleDef_Slot testserver_slots[] = {
  {Py_mod_exec, testserver_exec},
#ifdef Py_mod_gil
  {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
  {0, NULL},
};

static struct PyModuleDef testserver_module = {
  PyModuleDef_HEAD_INIT,
  .m_name = "locust_c._testserver",
  .m_doc = "The HTTP/1.1 test server of locust-c (libuv), for tests and benchmarks.",
  .m_size = 0,
  .m_methods = testserver_methods,
  .m_slots = testserver_slots,
};

PyMODINIT_FUNC PyInit__testserver(void) {
  return PyModuleDef_Init(&testserver_module);
}
