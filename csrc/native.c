/*
 * The native transport: HTTP/1.1 over plain TCP on libuv streams, for the requests that need nothing more
 * (http://, no proxy, no HTTP/2, no stream=True). libcurl costs about 17 us of CPU per keep-alive request here; a
 * request on this transport is one write and, usually, one read, parsed by h1.c straight into the buffers that go
 * to Python. Each user's connections (conn_t) are its own, up to its concurrency, kept alive between requests and
 * read while idle so that a server closing one is seen at once. A connection costs about a kilobyte, libcurl's
 * ~14 KiB: users of this transport need no setting aside.
 *
 * Everything observable is libcurl's: the request bytes (Host, Accept: *\/\*, the user's lines as libcurl reads
 * them, Content-Length), the outcome codes and messages of each fault (exceptions.py maps both transports' alike),
 * the retries, the timeouts and the timing. Engine thread only.
 */
#include "locust_c.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef enum { CONN_RESOLVING, CONN_CONNECTING, CONN_READY, CONN_CLOSED } conn_state_t;

/*
 * A connection holds what an idle one needs and little else, because an idle user keeps one: the TCP handle, the
 * parser, and the hop's URL parts. The connect and write requests, a compressed body's decoder and the request
 * bytes that did not go out at once are allocated while they are needed; the connect timeout is the read watch's.
 */
struct conn_s {
  uv_tcp_t tcp;        /* data: this connection */
  client_t *client;
  conn_t *next;        /* the client's connections */
  request_t *req;      /* the request it carries, NULL while idle */
  uv_getaddrinfo_t *resolve;      /* the name lookup in flight, or NULL */
  struct addrinfo *addrs, *addr;  /* the name's addresses, and the one being tried */
  h1_parser_t parser;
  decoder_t *decoder;  /* made for the first response with a Content-Encoding, kept for the next */
  url_t url;           /* the hop's URL: cookies' origin, the authority to reuse the connection for */
  char *authority;     /* "host:port" it connects to, lower-case */
  uint64_t start_ns;   /* the hop started */
  uint64_t connect_since; /* loop time the connect (or name lookup) began, while there is one */
  uint64_t last_io;    /* loop time the server last sent something, or the request went out */
  long read_timeout_ms;
  conn_state_t state;
  int reopening;       /* the socket of an address that failed is closing, to connect to the next one */
  int responses;       /* responses it carried: a reused connection may have died idle */
  int received;        /* a byte of this response arrived */
  int sent;            /* the whole request went out */
  int writing;         /* a uv_write of the request is still under way */
  int follow;          /* the response is a redirect the engine follows: its body is skipped */
  int has_location;
  long connect_ms;     /* this connect's timeout, 0 for none */
  /* The decode budget (ENGINE_DECODE_BUDGET): a paused connection stops reading until the next loop iteration. */
  int paused;
  size_t decode_skip;  /* bytes of the body segment fed again on resuming that were decoded already */
  buf_t pending;       /* the read's bytes from the paused segment on */
  conn_t *next_paused;
};

static void conn_send(conn_t *conn);
static void conn_connect(conn_t *conn);
static void conn_reopen_cb(uv_handle_t *handle);
static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);

/* ---- choosing the transport ------------------------------------------------------------------------- */

/* The native transport speaks plain HTTP/1.1, directly to the server; anything else is libcurl's. */
int native_eligible(client_t *c, request_t *req, url_t *u) {
  const char *url = req->effective_url ? req->effective_url : req->url;
  if (!c->opts.native || c->opts.proxy || c->opts.http2 || (req->flags & REQ_STREAM)) return 0;
  if (LC_UNLIKELY(req->body != NULL)) { /* a body the user asked to send chunked: libcurl encodes it so */
    for (struct curl_slist *l = req->headers; l; l = l->next)
      if ((l->data[0] | 0x20) == 't' && strncasecmp(l->data, "transfer-encoding:", 18) == 0 && l->data[18] != '\0')
        return 0;
  }
  return url_split(url, u) == 0 && !u->https;
}

/* ---- life cycle of a connection ---------------------------------------------------------------------- */

static void conn_handle_closed_cb(uv_handle_t *handle) {
  conn_t *conn = handle->data;
  buf_free(&conn->pending);
  if (conn->decoder) {
    decode_end(conn->decoder);
    free(conn->decoder);
  }
  if (conn->addrs) uv_freeaddrinfo(conn->addrs);
  free(conn->authority);
  free(conn);
}

/* Closes the connection; its request, if any, must have been taken off it. */
static void conn_close(conn_t *conn) {
  client_t *c = conn->client;
  conn_t **link;
  assert(conn->req == NULL && conn->state != CONN_CLOSED);
  for (link = &c->conns; *link; link = &(*link)->next) {
    if (*link == conn) {
      *link = conn->next;
      c->nconns--;
      break;
    }
  }
  conn->state = CONN_CLOSED;
  __atomic_sub_fetch(&c->engine->counters.native_open, 1, __ATOMIC_RELAXED);
  if (conn->resolve) { /* its callback frees it, seeing nobody waits */
    conn->resolve->data = NULL;
    uv_cancel((uv_req_t *)conn->resolve);
    conn->resolve = NULL;
  }
  if (!conn->reopening) uv_close((uv_handle_t *)&conn->tcp, conn_handle_closed_cb); /* else conn_reopen_cb does */
}

static conn_t *conn_create(client_t *c, const url_t *u) {
  engine_t *e = c->engine;
  conn_t *conn = calloc(1, sizeof(*conn));
  size_t i, n = u->host_len;
  if (conn == NULL) return NULL;
  if ((conn->authority = malloc(n + 8)) == NULL || uv_tcp_init(&e->loop, &conn->tcp) != 0) {
    free(conn->authority);
    free(conn);
    return NULL;
  }
  conn->tcp.data = conn;
  conn->client = c;
  for (i = 0; i < n; i++) conn->authority[i] = (char)((u->host[i] >= 'A' && u->host[i] <= 'Z') ? u->host[i] | 0x20 : u->host[i]);
  snprintf(conn->authority + n, 8, ":%d", u->port);
  conn->next = c->conns;
  c->conns = conn;
  c->nconns++;
  __atomic_add_fetch(&e->counters.native_connects, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&e->counters.native_open, 1, __ATOMIC_RELAXED);
  return conn;
}

static int conn_for(const conn_t *conn, const url_t *u) {
  size_t n = strlen(conn->authority);
  char port[8];
  int pn = snprintf(port, sizeof(port), ":%d", u->port);
  return n == u->host_len + (size_t)pn && strncasecmp(conn->authority, u->host, u->host_len) == 0 &&
         memcmp(conn->authority + u->host_len, port, (size_t)pn) == 0;
}

/* ---- outcomes ---------------------------------------------------------------------------------------- */

/* Takes a paused connection out of the engine's list (its request ended, or it resumes). */
static void conn_unpause(conn_t *conn) {
  engine_t *e = conn->client->engine;
  conn_t **link = &e->paused_conns, *prev = NULL;
  while (*link != NULL && *link != conn) {
    prev = *link;
    link = &(*link)->next_paused;
  }
  if (*link == conn) {
    *link = conn->next_paused;
    if (e->paused_conns_tail == conn) e->paused_conns_tail = prev;
  }
  conn->next_paused = NULL;
  conn->paused = 0;
}

/* The request leaves its connection, which closes unless it is to carry the next one. */
static request_t *conn_take(conn_t *conn, int keep) {
  client_t *c = conn->client;
  request_t *req = conn->req;
  if (LC_UNLIKELY(conn->paused)) conn_unpause(conn);
  conn->pending.len = 0;
  conn->decode_skip = 0;
  conn->req = NULL;
  c->nactive--;
  if (c->nactive == 0) c->idle_since = uv_now(&c->engine->loop);
  if (conn->decoder) decode_end(conn->decoder);
  if (!keep) conn_close(conn);
  return req;
}

/*
 * Whether a request that failed on this connection goes again, as libcurl would send it again: once on a fresh
 * connection when a reused one died before a byte of the answer (the server closed it while idle), and under
 * max_retries when nothing of an answer arrived (a method that is not idempotent only when it was never sent).
 */
static int conn_should_retry(conn_t *conn, int code) {
  request_t *req = conn->req;
  if (conn->received) return 0;
  if (conn->responses > 0 && !req->reconnected &&
      (code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR || code == CURLE_GOT_NOTHING)) {
    req->reconnected = 1;
    return 1;
  }
  if (req->retries_left <= 0) return 0;
  if (code == CURLE_COULDNT_CONNECT || ((req->flags & REQ_IDEMPOTENT) && (code == CURLE_SEND_ERROR ||
                                                                          code == CURLE_RECV_ERROR ||
                                                                          code == CURLE_GOT_NOTHING))) {
    req->retries_left--;
    return 1;
  }
  return 0;
}

static void native_done(client_t *c, request_t *req) {
  req->done_time = wall_clock_now();
  engine_complete(c->engine, req);
  client_run_next(c);
}

/* The request fails on this connection (code and message as libcurl words them), which closes. */
static void conn_fail(conn_t *conn, int code, int os_errno, const char *message) {
  client_t *c = conn->client;
  request_t *req = conn->req;
  url_t u = conn->url;
  uint64_t start_ns = conn->start_ns;
  int retry = conn_should_retry(conn, code);
  conn_take(conn, 0);
  if (retry) {
    req->head.len = req->content.len = 0;
    if (req->reconnected == 1) { /* the server dropped an idle connection: it may have dropped its siblings too */
      req->reconnected = 2;
      for (conn_t *other = c->conns, *next; other; other = next) {
        next = other->next;
        if (other->req == NULL && other->state == CONN_READY && conn_for(other, &u)) conn_close(other);
      }
    }
    native_start(c, req, &u);
    return;
  }
  req->result = code;
  req->os_errno = os_errno;
  req->status = 0;
  free(req->error);
  req->error = strdup(message);
  req->total_us = req->hops_us + (int64_t)((uv_hrtime() - start_ns) / 1000);
  native_done(c, req);
}

static void conn_fail_errno(conn_t *conn, int code, const char *what, int uv_err) {
  char message[160];
  snprintf(message, sizeof(message), "%s: %s", what, strerror(-uv_err));
  conn_fail(conn, code, code == CURLE_COULDNT_CONNECT ? -uv_err : 0, message);
}

/* The response ended in full. */
static void conn_complete(conn_t *conn, int keep) {
  client_t *c = conn->client;
  engine_t *e = c->engine;
  request_t *req = conn->req;
  /* In a read, the last bytes were there when the loop woke (not when the reads before this one were parsed). */
  uint64_t end_ns = e->in_io && e->io_wake_ns > conn->start_ns ? e->io_wake_ns : uv_hrtime();
  int64_t hop_us = (int64_t)((end_ns - conn->start_ns) / 1000);
  int follow = conn->follow;
  if (LC_UNLIKELY(!follow && conn->decoder && decode_finish(conn->decoder) != 0)) {
    char message[160];
    conn_fail(conn, request_fault(FAULT_ENCODING_CUT, c, message, sizeof(message)), 0, message);
    return;
  }
  req->status = conn->parser.status;
  req->result = CURLE_OK;
  conn->responses++;
  conn_take(conn, keep && conn->parser.keep_alive && !conn->writing); /* see conn_send */
  if (LC_UNLIKELY(follow)) {
    int rc = request_follow(req, c->opts.max_redirects, hop_us);
    if (rc > 0) {
      client_start(c, req);
      return;
    }
    if (rc < 0) req->status = 0;
  }
  req->total_us = req->hops_us + hop_us;
  native_done(c, req);
}

/* A fault of the parser (or of a callback) as libcurl reports the same fault. */
static void conn_fail_parse(conn_t *conn, int rc) {
  char message[160];
  fault_t fault;
  switch (rc) {
  case H1_ERR_STATUS:
    conn_fail(conn, CURLE_WEIRD_SERVER_REPLY, 0, "Invalid status line");
    return;
  case H1_ERR_CHUNK:
    conn_fail(conn, CURLE_RECV_ERROR, 0, "Illegal or missing hexadecimal sequence in chunked-encoding");
    return;
  case H1_ERR_NOTHING:
    conn_fail(conn, CURLE_GOT_NOTHING, 0, "Empty reply from server");
    return;
  case H1_ERR_BODY_CUT:
    conn_fail(conn, CURLE_PARTIAL_FILE, 0, "transfer closed with outstanding read data remaining");
    return;
  case H1_ERR_LENGTH:
  case REQ_ERR_BAD_LENGTH:
    fault = FAULT_BAD_LENGTH;
    break;
  case H1_ERR_LINE_TOO_LONG:
    fault = FAULT_LINE_TOO_LONG;
    break;
  case H1_ERR_HEAD_TOO_LARGE:
    fault = FAULT_HEAD_TOO_LARGE;
    break;
  case REQ_ERR_BODY_TOO_LARGE:
    fault = FAULT_BODY_TOO_LARGE;
    break;
  case REQ_ERR_BAD_ENCODING:
    fault = FAULT_BAD_ENCODING;
    break;
  case H1_ERR_HEAD_CUT:
    fault = FAULT_HEAD_CUT;
    break;
  default:
    fault = FAULT_NO_MEMORY;
  }
  conn_fail(conn, request_fault(fault, conn->client, message, sizeof(message)), 0, message);
}

/* ---- the response ------------------------------------------------------------------------------------ */

static int conn_on_field(void *ud, const h1_parser_t *p, const char *name, size_t name_len, const char *v, size_t n) {
  conn_t *conn = ud;
  if (p->status < 200) return 0; /* a 1xx's fields describe nothing that follows */
  if (name_len == 10 && strncasecmp(name, "set-cookie", 10) == 0) {
    request_set_cookie(conn->client, conn->req, &conn->url, v, n);
  } else if (name_len == 8 && strncasecmp(name, "location", 8) == 0) {
    conn->has_location |= n > 0; /* request_follow takes the first with a value, as this says one exists */
  } else if (name_len == 16 && strncasecmp(name, "content-encoding", 16) == 0) {
    /* A second coding line would be a second coding: one is understood (decode_begin), two are refused. */
    if (conn->decoder == NULL && (conn->decoder = calloc(1, sizeof(*conn->decoder))) == NULL) return REQ_ERR_NO_MEMORY;
    if (conn->decoder->coding != CODING_NONE) return REQ_ERR_BAD_ENCODING;
    return decode_begin(conn->decoder, v, n);
  }
  return 0;
}

static int conn_on_head(void *ud, const h1_parser_t *p) {
  conn_t *conn = ud;
  request_t *req = conn->req;
  int64_t max = conn->client->opts.max_response_bytes;
  int status = p->status;
  conn->follow = (req->flags & REQ_FOLLOW_REDIRECTS) && status >= 300 && status < 400 && status != 304 &&
                 conn->has_location;
  /* A body whose Content-Length is over the limit already is refused now (see xfer_body_refused). */
  if (max > 0 && p->content_length > max && (!conn->decoder || conn->decoder->coding == CODING_NONE) &&
      !(req->flags & REQ_HEAD) &&
      status != 204 && !(status >= 300 && status < 400))
    return REQ_ERR_BODY_TOO_LARGE;
  return 0;
}

/*
 * The body, decoded into the request's content, bounded by max_response_bytes after decoding. A compressed body
 * is decoded within the engine's budget for this loop iteration; past it the connection pauses (H1_PAUSE), and
 * the parser is fed the same bytes again when it resumes, what was decoded of them already being skipped.
 */
static int conn_on_body(void *ud, const char *data, size_t len) {
  conn_t *conn = ud;
  engine_t *e = conn->client->engine;
  size_t max = (size_t)conn->client->opts.max_response_bytes, skip = conn->decode_skip, used = 0, before;
  buf_t *content = &conn->req->content;
  int rc;
  if (LC_UNLIKELY(conn->follow)) return 0; /* a redirect's body: nobody reads it */
  if (LC_LIKELY(conn->decoder == NULL || conn->decoder->coding == CODING_NONE)) {
    if (max > 0 && content->len + len > max) return REQ_ERR_BODY_TOO_LARGE;
    return buf_append(content, data, len) == 0 ? 0 : REQ_ERR_NO_MEMORY;
  }
  assert(skip <= len);
  if (e->decoded >= ENGINE_DECODE_BUDGET) return H1_PAUSE;
  before = content->len;
  rc = decode_write(conn->decoder, data + skip, len - skip, content, max, ENGINE_DECODE_BUDGET - e->decoded, &used);
  e->decoded += content->len - before;
  if (rc != 0) {
    conn->decode_skip = 0;
    return rc;
  }
  if (skip + used < len || decode_pending(conn->decoder)) {
    conn->decode_skip = skip + used;
    return H1_PAUSE;
  }
  conn->decode_skip = 0;
  return 0;
}

static const h1_callbacks_t conn_callbacks = {conn_on_field, conn_on_head, conn_on_body};

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  conn_t *conn = handle->data;
  engine_t *e = conn->client->engine;
  (void)suggested;
  if (LC_UNLIKELY(e->native_buf == NULL)) e->native_buf = malloc(NATIVE_READ_BUFFER);
  buf->base = e->native_buf;
  buf->len = e->native_buf ? NATIVE_READ_BUFFER : 0; /* 0: libuv reports UV_ENOBUFS */
}

/* Files the connection last in the engine's line of paused ones (transfers take turns, see engine_pause). */
static void conn_pause(conn_t *conn) {
  engine_t *e = conn->client->engine;
  conn->paused = 1;
  conn->next_paused = NULL;
  if (e->paused_conns_tail)
    e->paused_conns_tail->next_paused = conn;
  else
    e->paused_conns = conn;
  e->paused_conns_tail = conn;
  __atomic_add_fetch(&e->counters.decode_pauses, 1, __ATOMIC_RELAXED);
  uv_read_stop((uv_stream_t *)&conn->tcp);
  engine_resume_soon(e);
}

/* Parses bytes of the response: from a read, or kept from one when the connection paused (data is then pending's). */
static void conn_feed(conn_t *conn, const char *data, size_t len) {
  request_t *req = conn->req;
  size_t used = 0;
  int rc = h1_execute(&conn->parser, &req->head, data, len, &used, &conn_callbacks, conn);
  int resumed = conn->pending.len > 0 && data == conn->pending.data;
  if (LC_UNLIKELY(resumed) && rc != H1_PAUSE) { /* what was kept is parsed: the connection reads again */
    conn->pending.len = 0;
    uv_read_start((uv_stream_t *)&conn->tcp, conn_alloc_cb, conn_read_cb);
  }
  if (LC_LIKELY(rc == H1_COMPLETE)) {
    /* Bytes past the response belong to no request: the connection is not used again (libcurl's "excess"). */
    conn_complete(conn, used == len);
  } else if (rc == H1_PAUSE) {
    if (resumed) {
      memmove(conn->pending.data, data + used, len - used);
      conn->pending.len = len - used;
    } else if (buf_append(&conn->pending, data + used, len - used) != 0) {
      conn_fail(conn, REQ_ERR_NO_MEMORY, 0, "out of memory keeping the response");
      return;
    }
    conn_pause(conn);
  } else if (rc != H1_MORE) {
    conn_fail_parse(conn, rc);
  }
}

/* Once per loop iteration while connections are paused by the decode budget: each goes on, in turn. */
void native_resume(engine_t *e) {
  conn_t *conn = e->paused_conns, *next;
  e->paused_conns = e->paused_conns_tail = NULL;
  for (; conn != NULL; conn = next) {
    next = conn->next_paused;
    conn->next_paused = NULL;
    conn->paused = 0;
    conn->last_io = uv_now(&e->loop); /* the wait was the engine's, not the server's */
    conn_feed(conn, conn->pending.data, conn->pending.len);
  }
}

/*
 * libuv reports the end of a stream when epoll says the peer hung up after a read that did not fill its buffer,
 * without reading again: a reset that came right after the last bytes reads as an orderly close. The socket's
 * pending error tells them apart, so that a reset is a reset, as libcurl (which reads again) reports it.
 */
static ssize_t conn_eof_error(conn_t *conn) {
  uv_os_fd_t fd;
  int err = 0;
  socklen_t len = sizeof(err);
  if (uv_fileno((uv_handle_t *)&conn->tcp, &fd) == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err)
    return -err;
  return UV_EOF;
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *conn = stream->data;
  engine_t *e = conn->client->engine;
  request_t *req = conn->req;
  int rc;
  if (nread == 0) return;
  if (LC_UNLIKELY(req == NULL)) {
    /* Idle: the server closed the connection, or sent what no request asked for. Either way it is done. */
    conn_close(conn);
    return;
  }
  if (e->io_wake_ns == 0) e->io_wake_ns = uv_hrtime();
  if (nread < 0) {
    if (nread == UV_EOF) nread = conn_eof_error(conn);
    if (nread == UV_EOF) {
      rc = h1_finish(&conn->parser, req->head.len);
      if (rc == H1_COMPLETE) {
        e->in_io = 1; /* a body that ran to the close: it ended when the loop woke to the close */
        conn_complete(conn, 0);
        e->in_io = 0;
      } else {
        conn_fail_parse(conn, rc);
      }
    } else if (nread == UV_ENOBUFS) {
      conn_fail(conn, REQ_ERR_NO_MEMORY, 0, "out of memory reading the response");
    } else {
      conn_fail_errno(conn, CURLE_RECV_ERROR, "Recv failure", (int)nread);
    }
    return;
  }
  conn->received = 1;
  conn->last_io = uv_now(&e->loop);
  e->in_io = 1;
  conn_feed(conn, buf->base, (size_t)nread);
  e->in_io = 0;
}

/* ---- connecting -------------------------------------------------------------------------------------- */

/* The socket of a failed address has closed: a new one tries the next address, unless the connection closed. */
static void conn_reopen_cb(uv_handle_t *handle) {
  conn_t *conn = handle->data;
  conn->reopening = 0;
  if (conn->state == CONN_CLOSED) {
    conn_handle_closed_cb(handle);
    return;
  }
  uv_tcp_init(&conn->client->engine->loop, &conn->tcp);
  conn->tcp.data = conn;
  conn_connect(conn);
}

/*
 * A connect to conn->addr failed (err, a libuv error), at once or later: the name's next address, or the request
 * fails. A connection that is opening always carries its request: it leaves only by closing it (conn_take).
 */
static void conn_connect_failed(conn_t *conn, int err) {
  char message[160];
  assert(conn->req != NULL);
  if (err != UV_ENOMEM && conn->addr != NULL && conn->addr->ai_next != NULL) {
    conn->addr = conn->addr->ai_next;
    /* A failed socket is not connected again: a new one, once the old one has closed (conn_reopen_cb). */
    conn->reopening = 1;
    uv_close((uv_handle_t *)&conn->tcp, conn_reopen_cb);
    return;
  }
  snprintf(message, sizeof(message), "Failed to connect to %.100s: %s", conn->authority, strerror(-err));
  conn_fail(conn, CURLE_COULDNT_CONNECT, -err, message);
}

static void conn_connected_cb(uv_connect_t *connect, int status) {
  conn_t *conn = connect->handle->data;
  free(connect);
  if (conn->state == CONN_CLOSED) return; /* closed while connecting (timed out, cancelled) */
  if (status < 0) {
    conn_connect_failed(conn, status);
    return;
  }
  conn->connect_since = 0;
  conn->state = CONN_READY;
  uv_tcp_nodelay(&conn->tcp, 1);
  uv_read_start((uv_stream_t *)&conn->tcp, conn_alloc_cb, conn_read_cb);
  conn_send(conn);
}

/* Connects to conn->addr. */
static void conn_connect(conn_t *conn) {
  uv_connect_t *connect = malloc(sizeof(*connect)); /* freed by its callback, which libuv always calls */
  int rc = connect == NULL ? UV_ENOMEM : uv_tcp_connect(connect, &conn->tcp, conn->addr->ai_addr, conn_connected_cb);
  conn->state = CONN_CONNECTING;
  if (rc != 0) { /* refused at once: no route, no address, no descriptor */
    free(connect);
    conn_connect_failed(conn, rc);
  }
}

static void conn_resolved_cb(uv_getaddrinfo_t *resolve, int status, struct addrinfo *res) {
  conn_t *conn = resolve->data;
  free(resolve);
  if (conn == NULL) { /* the connection closed while its name was looked up */
    if (res) uv_freeaddrinfo(res);
    return;
  }
  conn->resolve = NULL;
  if (status < 0 || res == NULL) {
    char message[320];
    if (res) uv_freeaddrinfo(res);
    snprintf(message, sizeof(message), "Could not resolve host: %.*s", (int)conn->url.host_len, conn->url.host);
    conn_fail(conn, CURLE_COULDNT_RESOLVE_HOST, 0, message);
    return;
  }
  conn->addrs = conn->addr = res;
  conn_connect(conn);
}

/*
 * Opens the connection for its first request: an address literal at once, a name through libuv's resolver (the
 * thread pool, as libcurl's threaded resolver). The connect timeout covers both (native_check_reads).
 */
static int conn_open(conn_t *conn, const url_t *u, long connect_timeout_ms) {
  engine_t *e = conn->client->engine;
  struct addrinfo hints;
  char host[256], port[8];
  memcpy(host, u->host, u->host_len);
  host[u->host_len] = '\0';
  snprintf(port, sizeof(port), "%d", u->port);
  conn->connect_ms = connect_timeout_ms;
  conn->connect_since = uv_now(&e->loop);
  if (connect_timeout_ms > 0) engine_watch_reads(e, connect_timeout_ms); /* the watch times connects out too */
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  {
    /* A literal needs no lookup; getaddrinfo with AI_NUMERICHOST turns it into an address without the pool. */
    struct addrinfo *res = NULL;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) == 0 && res != NULL) {
      conn->addrs = conn->addr = res;
      conn_connect(conn);
      return 0;
    }
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
  }
  conn->state = CONN_RESOLVING;
  conn->resolve = malloc(sizeof(*conn->resolve));
  if (conn->resolve == NULL) return -ENOMEM;
  conn->resolve->data = conn;
  if (uv_getaddrinfo(&e->loop, conn->resolve, conn_resolved_cb, host, port, &hints) != 0) {
    free(conn->resolve);
    conn->resolve = NULL;
    return -EINVAL;
  }
  return 0;
}

/* ---- the request ------------------------------------------------------------------------------------- */

#define NATIVE_APPEND(b, lit) buf_append((b), (lit), sizeof(lit) - 1)

/* A header line of the user's that names a header the transport would send itself. */
static int line_names(const char *line, const char *name, size_t n) {
  return strncasecmp(line, name, n) == 0 && (line[n] == ':' || line[n] == ';');
}

/*
 * The request's header block, as libcurl writes it: the request line, Host, Accept: *\/\* and the user's Cookie,
 * then the user's lines, then the body's Content-Length. A line "Name:" with no value only stops the transport
 * sending its own Name; "Name;" sends Name with an empty value (CURLOPT_HTTPHEADER's rules).
 */
static int conn_build(conn_t *conn, request_t *req, buf_t *o) {
  const url_t *u = &conn->url;
  int host = 0, accept = 0, agent = 0, length = 0, rc = 0;
  int with_length = req->body != NULL || (req->flags & REQ_POST);
  char num[32];
  o->len = 0;
  for (struct curl_slist *l = req->headers; l; l = l->next) {
    const char *d = l->data;
    switch (d[0] | 0x20) {
    case 'h':
      host |= line_names(d, "host", 4);
      break;
    case 'a':
      accept |= line_names(d, "accept", 6);
      break;
    case 'c':
      length |= line_names(d, "content-length", 14);
      break;
    case 'u':
      agent |= line_names(d, "user-agent", 10);
      break;
    }
  }
  rc |= buf_append(o, req->method, strlen(req->method));
  rc |= NATIVE_APPEND(o, " ");
  if (u->target_len > 0 && u->target[0] == '/')
    rc |= buf_append(o, u->target, u->target_len);
  else { /* "http://host?q": the path is "/" */
    rc |= NATIVE_APPEND(o, "/");
    rc |= buf_append(o, u->target, u->target_len);
  }
  rc |= NATIVE_APPEND(o, " HTTP/1.1\r\n");
  if (!host) {
    rc |= NATIVE_APPEND(o, "Host: ");
    rc |= buf_append(o, u->authority, u->authority_len);
    rc |= NATIVE_APPEND(o, "\r\n");
  }
  if (conn->client->opts.user_agent && !agent) {
    rc |= NATIVE_APPEND(o, "User-Agent: ");
    rc |= buf_append(o, conn->client->opts.user_agent, strlen(conn->client->opts.user_agent));
    rc |= NATIVE_APPEND(o, "\r\n");
  }
  if (!accept) rc |= NATIVE_APPEND(o, "Accept: */*\r\n");
  if (LC_UNLIKELY(request_has_cookies(conn->client, req))) { /* written in place: no line when none match */
    size_t line = o->len;
    rc |= NATIVE_APPEND(o, "Cookie: ");
    size_t value = o->len;
    if (request_cookies(conn->client, req, u, o) != 0) rc = -1;
    if (o->len == value)
      o->len = line;
    else
      rc |= NATIVE_APPEND(o, "\r\n");
  }
  for (struct curl_slist *l = req->headers; l; l = l->next) {
    const char *d = l->data, *colon = strchr(d, ':'), *semi;
    size_t n = strlen(d);
    if (colon != NULL) {
      const char *v = colon + 1;
      while (*v == ' ' || *v == '\t') v++;
      if (*v == '\0') continue; /* "Name:": only stops our own Name */
      if (with_length && length && line_names(d, "content-length", 14)) continue; /* ours counts the body */
      rc |= buf_append(o, d, n);
      rc |= NATIVE_APPEND(o, "\r\n");
    } else if ((semi = strchr(d, ';')) != NULL && semi[1] == '\0') { /* "Name;": Name, empty */
      rc |= buf_append(o, d, n - 1);
      rc |= NATIVE_APPEND(o, ":\r\n");
    }
  }
  if (with_length) {
    rc |= NATIVE_APPEND(o, "Content-Length: ");
    rc |= buf_append(o, num, (size_t)snprintf(num, sizeof(num), "%zu", req->body_len));
    rc |= NATIVE_APPEND(o, "\r\n");
  }
  rc |= NATIVE_APPEND(o, "\r\n");
  return rc ? -ENOMEM : 0;
}

/* A write the socket did not take at once: the header bytes it still has to send are copied in here. */
typedef struct {
  uv_write_t write;
  char head[];
} conn_write_t;

static void conn_written_cb(uv_write_t *write, int status) {
  conn_t *conn = write->handle->data;
  free(write);
  if (conn->state == CONN_CLOSED || conn->req == NULL) return;
  conn->writing = 0;
  if (status < 0) {
    conn_fail_errno(conn, CURLE_SEND_ERROR, "Send failure", status);
    return;
  }
  conn->sent = 1;
  conn->last_io = uv_now(&conn->client->engine->loop);
}

/*
 * Writes the request: its header block, built in the engine's scratch buffer, and its body, in one uv_try_write
 * when the socket takes it all (the usual case); what it does not take goes through uv_write, the header bytes
 * copied (the scratch buffer is the next request's) and the body read from the request, which stays until the
 * write is done: a request that ends before (an early answer, a cancel) closes the connection (conn_complete).
 */
static void conn_send(conn_t *conn) {
  engine_t *e = conn->client->engine;
  request_t *req = conn->req;
  buf_t *o = &e->native_out;
  conn_write_t *w;
  uv_buf_t bufs[2];
  unsigned nbufs = 1;
  size_t total, head_left;
  int n;
  if (conn_build(conn, req, o) != 0) {
    conn_fail(conn, REQ_ERR_NO_MEMORY, 0, "out of memory writing the request");
    return;
  }
  bufs[0] = uv_buf_init(o->data, (unsigned)o->len);
  if (req->body_len > 0) bufs[nbufs++] = uv_buf_init((char *)req->body, (unsigned)req->body_len);
  total = o->len + req->body_len;
  conn->last_io = uv_now(&e->loop);
  n = uv_try_write((uv_stream_t *)&conn->tcp, bufs, nbufs);
  if (LC_LIKELY(n >= 0 && (size_t)n == total)) {
    conn->sent = 1;
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    conn_fail_errno(conn, CURLE_SEND_ERROR, "Send failure", n);
    return;
  }
  if (n < 0) n = 0;
  head_left = (size_t)n < o->len ? o->len - (size_t)n : 0;
  if ((w = malloc(sizeof(*w) + head_left)) == NULL) {
    conn_fail(conn, REQ_ERR_NO_MEMORY, 0, "out of memory writing the request");
    return;
  }
  nbufs = 0;
  if (head_left > 0) {
    memcpy(w->head, o->data + n, head_left);
    bufs[nbufs++] = uv_buf_init(w->head, (unsigned)head_left);
  }
  if (req->body_len > 0) {
    size_t skip = head_left > 0 ? 0 : (size_t)n - o->len;
    bufs[nbufs++] = uv_buf_init((char *)req->body + skip, (unsigned)(req->body_len - skip));
  }
  conn->writing = 1;
  if ((n = uv_write(&w->write, (uv_stream_t *)&conn->tcp, bufs, nbufs, conn_written_cb)) != 0) {
    free(w);
    conn->writing = 0;
    conn_fail_errno(conn, CURLE_SEND_ERROR, "Send failure", n);
  }
}

/*
 * Starts a hop of the request on one of the user's connections to its authority: an idle one, or a new one (an
 * idle connection elsewhere closes first when the user is at its concurrency).
 */
void native_start(client_t *c, request_t *req, const url_t *u) {
  engine_t *e = c->engine;
  conn_t *conn, *spare = NULL, *found = NULL;
  for (conn = c->conns; conn; conn = conn->next) {
    if (conn->req != NULL || conn->state != CONN_READY) continue;
    if (conn_for(conn, u)) {
      found = conn;
      break;
    }
    spare = conn;
  }
  c->nactive++;
  __atomic_add_fetch(&e->counters.native, 1, __ATOMIC_RELAXED);
  if (found == NULL) {
    if (spare != NULL && c->nconns >= c->opts.max_connections) conn_close(spare);
    if ((found = conn_create(c, u)) == NULL) {
      c->nactive--;
      req->result = REQ_ERR_NO_MEMORY;
      req->error = strdup("out of memory opening a connection");
      native_done(c, req);
      return;
    }
  }
  /* The hop's state first: opening the connection may fail it at once (conn_fail), which reads it. */
  conn = found;
  conn->req = req;
  conn->url = *u;
  conn->start_ns = uv_hrtime();
  conn->received = conn->sent = conn->follow = conn->has_location = 0;
  h1_begin(&conn->parser, req->flags & REQ_HEAD);
  conn->read_timeout_ms = req->read_timeout_ms ? req->read_timeout_ms : c->opts.read_timeout_ms;
  if (conn->read_timeout_ms) engine_watch_reads(e, conn->read_timeout_ms);
  if (c->opts.timeout_ms) engine_watch_reads(e, c->opts.timeout_ms);
  if (conn->state == CONN_READY) {
    conn_send(conn);
  } else if (conn->state == CONN_RESOLVING && conn->resolve == NULL && conn->addrs == NULL) { /* a new one */
    long connect_ms = req->connect_timeout_ms ? req->connect_timeout_ms : c->opts.connect_timeout_ms;
    if (conn_open(conn, u, connect_ms) != 0) conn_fail(conn, CURLE_OUT_OF_MEMORY, 0, "cannot start resolving the host name");
  }
}

/* ---- the read watch, cancelling, closing --------------------------------------------------------------- */

/*
 * Fails the requests that waited for the server past their read timeout, or ran past request_timeout. Returns how
 * many requests it watches, so that the watch stops when there are none.
 */
int native_check_reads(client_t *c, uint64_t now) {
  conn_t *conn, *next;
  int watched = 0;
  for (conn = c->conns; conn; conn = next) {
    char message[128];
    next = conn->next; /* a failing request's connection closes */
    if (conn->req == NULL) continue;
    watched++;
    if (conn->connect_since && conn->connect_ms && now - conn->connect_since >= (uint64_t)conn->connect_ms) {
      snprintf(message, sizeof(message), "Connection timed out after %ld milliseconds", conn->connect_ms);
      conn_fail(conn, CURLE_OPERATION_TIMEDOUT, 0, message);
    } else if (c->opts.timeout_ms && now - conn->req->started_ms >= (uint64_t)c->opts.timeout_ms) {
      snprintf(message, sizeof(message), "Operation timed out after %ld milliseconds", c->opts.timeout_ms);
      conn_fail(conn, CURLE_OPERATION_TIMEDOUT, 0, message);
    } else if (conn->read_timeout_ms && conn->state == CONN_READY && !conn->paused &&
               now - conn->last_io >= (uint64_t)conn->read_timeout_ms) { /* a pause is our wait, not the server's */
      snprintf(message, sizeof(message), "read timed out: no data from the server for %ld ms", conn->read_timeout_ms);
      conn_fail(conn, CURLE_OPERATION_TIMEDOUT, 0, message);
    }
  }
  return watched;
}

/* Cancels the request if one of the user's connections carries it; its connection closes. Returns 1 if found. */
int native_cancel(client_t *c, uint64_t id) {
  for (conn_t *conn = c->conns; conn; conn = conn->next) {
    if (conn->req != NULL && conn->req->id == id) {
      request_t *req = conn_take(conn, 0);
      req->result = REQ_ERR_CANCELLED;
      req->error = strdup("request cancelled");
      native_done(c, req);
      return 1;
    }
  }
  return 0;
}

/* The user stopped: its requests in flight are cancelled and its connections close. */
void native_close_all(client_t *c) {
  while (c->conns) {
    conn_t *conn = c->conns;
    if (conn->req != NULL) {
      request_t *req = conn_take(conn, 0);
      req->result = REQ_ERR_CANCELLED;
      req->error = strdup("request cancelled: user stopped");
      engine_complete(c->engine, req);
    } else {
      conn_close(conn);
    }
  }
}
