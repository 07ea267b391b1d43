/*
 * The libcurl transport: a pooled easy handle (xfer_t) and the request it carries. Its options, the capture of
 * the response (header block, body, decoding, limits), streamed bodies on libcurl's side, the outcome, retries and
 * timing. Engine thread only.
 */
#include "locust_c.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- response capture -------------------------------------------------------------------------------- */

/* Returning a count other than len stops the transfer (CURLE_WRITE_ERROR); x->fault then says why. */
static size_t xfer_fail_capture(xfer_t *x, int fault) {
  x->fault = fault;
  return 0;
}

/* A Content-Length must be one number, the same in every copy (see http_check_length). */
static int xfer_check_length(xfer_t *x, const char *v, size_t n) { return http_check_length(&x->content_length, v, n); }

/* The status code of a status line ("HTTP/1.1 200 OK", "HTTP/2 200"), 0 when it has none. */
static int xfer_status_of(const char *line, size_t len) {
  const char *space = memchr(line, ' ', len);
  int code = 0;
  if (space == NULL) return 0;
  for (const char *p = space + 1; p < line + len && p < space + 4; p++) {
    if (*p < '0' || *p > '9') return 0;
    code = code * 10 + (*p - '0');
  }
  return code;
}

/*
 * A body is refused at the end of its header block when its Content-Length already says it is over the limit:
 * an identity body (a compressed one may be larger decoded, and that is decode.c's to count) of a final answer
 * that has one, not a HEAD's, a redirect's (libcurl reads past its body when it follows) or a 204's or 304's.
 */
static int xfer_body_refused(xfer_t *x) {
  curl_off_t max = x->client->opts.max_response_bytes;
  int status = x->status;
  if (max <= 0 || x->content_length <= max || x->decoder.coding != CODING_NONE) return 0;
  if ((x->req->flags & REQ_HEAD) || status < 200 || (status >= 300 && status < 400) || status == 204) return 0;
  return 1;
}

/* ---- streamed bodies -------------------------------------------------------------------------------- */

/* The response whose header block just ended is the one the user gets: libcurl will not follow it elsewhere. */
static int xfer_is_final(xfer_t *x) {
  int status = x->status;
  if (status < 200) return 0;
  return !((x->req->flags & REQ_FOLLOW_REDIRECTS) && status >= 300 && status < 400 && status != 304 &&
           x->has_location);
}

/*
 * stream=True: the request is delivered now, at the end of its headers, with the response time until here (as
 * FastHttpUser and HttpUser report a streamed request), and the transfer goes on with its stream only.
 */
static void xfer_stream_begin(xfer_t *x) {
  request_t *req = x->req;
  engine_t *e = x->engine;
  assert(req->stream != NULL && x->stream == NULL);
  req->done_time = wall_clock_now();
  req->status = x->status;
  req->total_us = req->hops_us + (int64_t)((uv_hrtime() - x->start_ns) / 1000);
  req->result = CURLE_OK;
  x->stream = req->stream;
  stream_ref(x->stream); /* the transfer's */
  x->stream->running = 1; /* before Python has the request: engine_complete's queue lock publishes it */
  x->req = NULL;         /* Python owns the request from here on */
  engine_complete(e, req);
}

/*
 * The body of a stream: into its buffer, decoded, until the buffer holds STREAM_HIGH_WATER unread bytes. Then the
 * transfer pauses until the reader has taken enough (client_resume_stream); libcurl hands the same chunk over
 * again then, and what was taken of it already is skipped, as for the decode budget.
 */
static size_t xfer_stream_write(xfer_t *x, const char *data, size_t len) {
  stream_t *s = x->stream;
  engine_t *e = x->engine;
  size_t skip = x->decode_skip, used = 0, unread, room, budget, before;
  int rc = 0, wake, for_reader = 0;
  assert(skip <= len);
  pthread_mutex_lock(&s->lock);
  before = s->data.len;
  unread = s->data.len - s->start;
  room = unread < STREAM_HIGH_WATER ? STREAM_HIGH_WATER - unread : 0;
  budget = room;
  if (x->decoder.coding != CODING_NONE) {
    size_t left = e->decoded < ENGINE_DECODE_BUDGET ? ENGINE_DECODE_BUDGET - e->decoded : 0;
    if (left < budget) budget = left;
  }
  if (budget > 0) {
    if (x->decoder.coding == CODING_NONE) {
      used = len - skip < room ? len - skip : room;
      rc = buf_append(&s->data, data + skip, used) == 0 ? 0 : REQ_ERR_NO_MEMORY;
    } else {
      rc = decode_write(&x->decoder, data + skip, len - skip, &s->data, 0, budget, &used);
      e->decoded += s->data.len - before;
    }
  }
  for_reader = s->data.len - s->start >= STREAM_HIGH_WATER;
  if (rc == 0 && (skip + used < len || decode_pending(&x->decoder)) && for_reader) s->reader_paused = 1;
  wake = stream_should_wake(s);
  pthread_mutex_unlock(&s->lock);
  if (wake) engine_wake(e, s);
  if (rc != 0) {
    x->decode_skip = 0;
    return xfer_fail_capture(x, rc);
  }
  if (skip + used < len || decode_pending(&x->decoder)) { /* the rest later: when the reader or the loop says */
    x->decode_skip = skip + used;
    if (for_reader) {
      x->reader_paused = 1;
      __atomic_add_fetch(&e->counters.stream_pauses, 1, __ATOMIC_RELAXED);
    } else
      engine_pause(e, x);
    return CURL_WRITEFUNC_PAUSE;
  }
  x->decode_skip = 0;
  return len;
}

/* A stream's transfer ended (result is a CURLcode or REQ_ERR_*): its reader learns it after the last byte. */
void xfer_stream_end(xfer_t *x, int result, const char *message) {
  stream_t *s = x->stream;
  request_t *orphan;
  if (stream_end(s, result, message && message[0] ? message : curl_easy_strerror(result), &orphan))
    engine_wake(x->engine, s);
  x->stream = NULL;
  client_recycle(x->client, x); /* libcurl lets go of the request's memory here */
  request_free(orphan);
  stream_unref(s); /* the transfer's */
}

/* The reader has taken enough of a paused stream's buffer: the transfer goes on. */
void client_resume_stream(client_t *c, uint64_t id) {
  for (xfer_t *x = c->active; x; x = x->next) {
    if (x->stream == NULL || x->stream->id != id) continue;
    if (x->reader_paused) {
      CURLcode rc;
      x->reader_paused = 0;
      x->last_io = uv_now(&c->engine->loop); /* the wait was the reader's, not the server's */
      rc = curl_easy_pause(x->easy, CURLPAUSE_CONT);
      /* As in engine_resume_cb: a chunk that fails as it is handed over again fails the transfer here. */
      if (LC_UNLIKELY(rc != CURLE_OK || x->fault != 0)) xfer_finish(x, rc != CURLE_OK ? rc : CURLE_WRITE_ERROR);
    }
    return;
  }
}

static size_t xfer_header_cb(char *data, size_t size, size_t n, void *userp) {
  xfer_t *x = userp;
  buf_t *head;
  size_t len = size * n;
  int rc = 0, deliver = 0;
  if (LC_UNLIKELY(x->fault != 0)) return 0;
  x->last_io = uv_now(&x->engine->loop);
  x->last_cb_ns = uv_hrtime();
  if (LC_UNLIKELY(x->req == NULL)) return len; /* a stream's trailer: its request was delivered */
  head = &x->req->head;
  /*
   * A status line starts a new response (after a redirect or a 100 Continue): keep only the last one. In the
   * middle of a header block it is a malformed header line, kept as it is.
   */
  if (len > 5 && memcmp(data, "HTTP/", 5) == 0 && (x->head_done || head->len == 0)) {
    /* A redirect that libcurl follows: its header block is kept for response.history. */
    if (x->head_done && x->status >= 300 && x->status < 400 && head->len > 0) {
      buf_t *hops = &x->req->redirects_head;
      if (LC_UNLIKELY(hops->len + head->len > ENGINE_MAX_HEAD_BYTES)) return xfer_fail_capture(x, REQ_ERR_HEAD_TOO_LARGE);
      if (LC_UNLIKELY(buf_append(hops, head->data, head->len) != 0)) return xfer_fail_capture(x, REQ_ERR_NO_MEMORY);
    }
    head->len = 0;
    x->head_done = 0;
    x->has_location = 0;
    x->content_length = -1;
    x->status = xfer_status_of(data, len);
    decode_end(&x->decoder);
  } else if (x->head_done) {
    return len; /* a trailer, after a chunked or HTTP/2 body: its fields do not describe the body */
  } else if ((len == 2 && data[0] == '\r' && data[1] == '\n') || (len == 1 && data[0] == '\n')) {
    x->head_done = 1; /* the empty line: what follows is the body (or the next response, after a 1xx) */
    if (LC_UNLIKELY(x->req->flags & REQ_STREAM))
      deliver = xfer_is_final(x); /* a stream's reader reads as the body comes: no limit on its size */
    else if (xfer_body_refused(x))
      rc = REQ_ERR_BODY_TOO_LARGE;
  } else if ((data[0] | 0x20) == 's' && len > 11 && strncasecmp(data, "set-cookie:", 11) == 0) {
    request_set_cookie(x->client, x->req, &x->url, data + 11, len - 11);
  } else if ((data[0] | 0x20) == 'l' && len > 9 && strncasecmp(data, "location:", 9) == 0) {
    for (size_t i = 9; i < len; i++) /* libcurl follows a Location with a value, not an empty one */
      if (data[i] != ' ' && data[i] != '\t' && data[i] != '\r' && data[i] != '\n') x->has_location = 1;
  } else if ((data[0] | 0x20) == 'c' && len > 15) {
    if (strncasecmp(data, "content-length:", 15) == 0 && xfer_check_length(x, data + 15, len - 15) != 0)
      rc = REQ_ERR_BAD_LENGTH;
    else if (len > 17 && strncasecmp(data, "content-encoding:", 17) == 0)
      /* A second coding line would be a second coding: one is understood (decode_begin), two are refused. */
      rc = x->decoder.coding != CODING_NONE ? REQ_ERR_BAD_ENCODING : decode_begin(&x->decoder, data + 17, len - 17);
  }
  if (LC_UNLIKELY(rc != 0)) return xfer_fail_capture(x, rc);
  if (LC_UNLIKELY(head->len + len > ENGINE_MAX_HEAD_BYTES)) return xfer_fail_capture(x, REQ_ERR_HEAD_TOO_LARGE);
  if (LC_UNLIKELY(buf_append(head, data, len) != 0)) return xfer_fail_capture(x, REQ_ERR_NO_MEMORY);
  if (LC_UNLIKELY(deliver)) xfer_stream_begin(x);
  return len;
}

/*
 * The body, decoded (decode.c). max_response_bytes bounds it after decompression too, so that an endless body or
 * a compression bomb costs at most that much memory (and that much decompression on this thread) before it fails.
 */
static size_t xfer_write_cb(char *data, size_t size, size_t n, void *userp) {
  xfer_t *x = userp;
  engine_t *e = x->engine;
  size_t len = size * n, skip = x->decode_skip, used, before;
  size_t max = (size_t)x->client->opts.max_response_bytes;
  int rc;
  x->last_io = uv_now(&e->loop);
  x->last_cb_ns = uv_hrtime();
  if (LC_UNLIKELY(x->stream != NULL)) return x->fault == 0 ? xfer_stream_write(x, data, len) : 0;
  if (LC_UNLIKELY(x->has_location) && !xfer_is_final(x)) return len; /* a redirect's body: nobody reads it */
  if (LC_LIKELY(x->decoder.coding == CODING_NONE)) {
    rc = decode_write(&x->decoder, data, len, &x->req->content, max, SIZE_MAX, &used);
    return LC_LIKELY(rc == 0) ? len : xfer_fail_capture(x, rc);
  }
  /*
   * A compressed body is decoded within the engine's budget for this loop iteration. Past it the transfer pauses:
   * libcurl keeps the chunk and hands it over again when the transfer resumes, so what was decoded of it already
   * is skipped then.
   */
  if (LC_UNLIKELY(x->fault != 0)) return 0;
  assert(skip <= len);
  before = x->req->content.len;
  if (e->decoded >= ENGINE_DECODE_BUDGET) goto pause;
  rc = decode_write(&x->decoder, data + skip, len - skip, &x->req->content, max, ENGINE_DECODE_BUDGET - e->decoded,
                    &used);
  e->decoded += x->req->content.len - before;
  if (rc != 0) {
    x->decode_skip = 0;
    return xfer_fail_capture(x, rc);
  }
  if (skip + used < len || decode_pending(&x->decoder)) { /* out of budget: the rest at the next iteration */
    x->decode_skip = skip + used;
    goto pause;
  }
  x->decode_skip = 0;
  return len;
pause:
  engine_pause(e, x);
  return CURL_WRITEFUNC_PAUSE;
}

/* ---- transfers --------------------------------------------------------------------------------------- */

void xfer_setopt_result(xfer_t *x, CURLcode rc, const char *option) {
  if (LC_UNLIKELY(rc != CURLE_OK) && x->rejected == NULL) {
    x->rejected = option;
    x->rejected_code = rc;
  }
}

/*
 * libcurl is about to send the request on a connection, new or reused: from here each wait for the server counts
 * against the read timeout, as a socket timeout does for FastHttpUser (the connect has its own timeout).
 */
static int xfer_prereq_cb(void *userp, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                          int conn_local_port) {
  xfer_t *x = userp;
  (void)conn_primary_ip, (void)conn_local_ip, (void)conn_primary_port, (void)conn_local_port;
  x->connected = 1;
  x->last_io = uv_now(&x->engine->loop);
  return CURL_PREREQFUNC_OK;
}

/*
 * The read timeout: true when the transfer has waited for the server for longer than it allows. The engine's
 * read watch (engine_watch_reads) asks every transfer a few times per timeout, so one timer serves them all and a
 * transfer pays only for noting when data arrived.
 */
int xfer_read_expired(xfer_t *x, uint64_t now) {
  if (x->read_timeout_ms == 0 || !x->connected || x->paused || x->reader_paused) return 0; /* waits on us */
  if (now - x->last_io < (uint64_t)x->read_timeout_ms) return 0;
  snprintf(x->errbuf, sizeof(x->errbuf), "read timed out: no data from the server for %ld ms", x->read_timeout_ms);
  return 1;
}

/* Options that are the same for every transfer of every client. */
xfer_t *xfer_create(engine_t *e) {
  xfer_t *x = calloc(1, sizeof(*x));
  if (x == NULL) return NULL;
  x->easy = curl_easy_init();
  if (x->easy == NULL) {
    free(x);
    return NULL;
  }
  x->engine = e;
  x->resume_fd = CURL_SOCKET_BAD;
  XFER_SET(x, CURLOPT_PRIVATE, x);
  engine_socket_callbacks(e, x);
  /* libcurl's cookie engine stays off and it follows no redirect: both are the engine's (request.c). */
  XFER_SET(x, CURLOPT_FOLLOWLOCATION, 0L);
  XFER_SET(x, CURLOPT_NOSIGNAL, 1L);
  XFER_SET(x, CURLOPT_TCP_NODELAY, 1L);
  XFER_SET(x, CURLOPT_ERRORBUFFER, x->errbuf);
  XFER_SET(x, CURLOPT_WRITEFUNCTION, xfer_write_cb);
  XFER_SET(x, CURLOPT_WRITEDATA, x);
  XFER_SET(x, CURLOPT_HEADERFUNCTION, xfer_header_cb);
  XFER_SET(x, CURLOPT_HEADERDATA, x);
  XFER_SET(x, CURLOPT_PREREQFUNCTION, xfer_prereq_cb);
  XFER_SET(x, CURLOPT_PREREQDATA, x);
  /* A proxy's answer to CONNECT is not the response: without this libcurl hands its headers over as one. */
  XFER_SET(x, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  XFER_SET(x, CURLOPT_PROTOCOLS_STR, "http,https");
  XFER_SET(x, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  /* The engine decodes bodies itself (decode.c); the session sends Accept-Encoding as one of its headers. */
  XFER_SET(x, CURLOPT_HTTP_CONTENT_DECODING, 0L);
  if (e->curl_verbose) XFER_SET(x, CURLOPT_VERBOSE, 1L);
  curl_easy_getinfo(x->easy, CURLINFO_CAINFO, (char **)&x->default_ca);
  if (x->rejected != NULL) { /* a libcurl without one of these cannot run any request */
    xfer_destroy(x);
    return NULL;
  }
  return x;
}

/* The client's own options; skipped when the handle last ran for the same client. */
static void xfer_configure(xfer_t *x, client_t *c) {
  const client_options_t *o = &c->opts;
  if (x->client_serial == c->serial) return;
  x->client_serial = c->serial;
  XFER_SET(x, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
  XFER_SET(x, CURLOPT_TIMEOUT_MS, o->timeout_ms);
  XFER_SET(x, CURLOPT_SSL_VERIFYPEER, o->insecure ? 0L : 1L);
  XFER_SET(x, CURLOPT_SSL_VERIFYHOST, o->insecure || !o->verify_host ? 0L : 2L);
  XFER_SET(x, CURLOPT_PROXY, o->proxy ? o->proxy : ""); /* "": no proxy, whatever http_proxy says */
  XFER_SET(x, CURLOPT_USERAGENT, o->user_agent);
  XFER_SET(x, CURLOPT_CAINFO, o->ca_file ? o->ca_file : x->default_ca);
  XFER_SET(x, CURLOPT_SSLCERT, o->cert);
  XFER_SET(x, CURLOPT_SSLKEY, o->key);
  XFER_SET(x, CURLOPT_SSL_CIPHER_LIST, o->ciphers);
  XFER_SET(x, CURLOPT_SSLVERSION, o->tls_min | o->tls_max);
  XFER_SET(x, CURLOPT_SSL_CTX_FUNCTION, o->ssl_ctx ? tls_ssl_ctx_cb : NULL);
  XFER_SET(x, CURLOPT_SSL_CTX_DATA, x);
  XFER_SET(x, CURLOPT_SSL_SESSIONID_CACHE, o->tls_sessions ? 1L : 0L);
  /* Without http2, HTTP/1.1 as FastHttpUser speaks: libcurl would otherwise offer h2 over TLS. With it, wait
   * for a connection to multiplex on rather than open another. */
  XFER_SET(x, CURLOPT_PIPEWAIT, o->http2 ? 1L : 0L);
  if (!o->http2) XFER_SET(x, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
}

void xfer_destroy(xfer_t *x) {
  decode_end(&x->decoder);
  buf_free(&x->cookies);
  curl_easy_cleanup(x->easy);
  free(x);
}

int xfer_start(xfer_t *x, request_t *req) {
  engine_t *e = x->client->engine;
  const char *url = req->effective_url ? req->effective_url : req->url;
  x->req = req;
  x->errbuf[0] = '\0';
  x->resume_fd = CURL_SOCKET_BAD;
  x->resumed = 0;
  x->head_done = 0;
  x->content_length = -1;
  x->last_cb_ns = 0;
  x->fault = 0;
  x->decode_skip = 0;
  decode_end(&x->decoder);
  xfer_configure(x, x->client);
  XFER_SET(x, CURLOPT_SHARE, x->client->share);
  x->connected = 0;
  x->reader_paused = 0;
  if (LC_UNLIKELY(req->flags & REQ_STREAM)) x->start_ns = uv_hrtime();
  if (url_split(url, &x->url) != 0) memset(&x->url, 0, sizeof(x->url)); /* no cookies: libcurl will refuse it */
  x->read_timeout_ms = req->read_timeout_ms ? req->read_timeout_ms : x->client->opts.read_timeout_ms;
  if (x->read_timeout_ms) engine_watch_reads(e, x->read_timeout_ms);
  if (LC_UNLIKELY(req->redirects > 0 && x->client->opts.timeout_ms)) {
    /* request_timeout bounds the whole request: a later hop has what the earlier ones left of it. */
    uint64_t spent = uv_now(&e->loop) - req->started_ms;
    long left = spent < (uint64_t)x->client->opts.timeout_ms ? x->client->opts.timeout_ms - (long)spent : 1;
    XFER_SET(x, CURLOPT_TIMEOUT_MS, left);
    x->client_serial = 0;
  }
  if (LC_UNLIKELY(req->connect_timeout_ms)) {
    XFER_SET(x, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    x->client_serial = 0; /* the next transfer on this handle sets the client's own again */
  }
  if (LC_UNLIKELY(req->verify >= 0 || req->ca_file || req->cert)) { /* verify=, cert= of requests */
    if (req->verify >= 0) {
      XFER_SET(x, CURLOPT_SSL_VERIFYPEER, (long)req->verify);
      XFER_SET(x, CURLOPT_SSL_VERIFYHOST, req->verify ? 2L : 0L);
    }
    if (req->ca_file) XFER_SET(x, CURLOPT_CAINFO, req->ca_file);
    if (req->cert) {
      XFER_SET(x, CURLOPT_SSLCERT, req->cert);
      XFER_SET(x, CURLOPT_SSLKEY, req->key);
    }
    x->client_serial = 0;
  }
  /* The user's cookies for this URL, from its jar (request.c), and the request's own. */
  if (LC_UNLIKELY(request_has_cookies(x->client, req) || x->cookie_set)) {
    x->cookies.len = 0;
    if (request_cookies(x->client, req, &x->url, &x->cookies) != 0 || buf_append(&x->cookies, "", 1) != 0) {
      snprintf(x->errbuf, sizeof(x->errbuf), "out of memory building the Cookie header");
      return CURLE_OUT_OF_MEMORY;
    }
    x->cookie_set = x->cookies.len > 1;
    XFER_SET(x, CURLOPT_COOKIE, x->cookie_set ? x->cookies.data : NULL);
  }

  XFER_SET(x, CURLOPT_URL, url);
  if (LC_UNLIKELY((req->flags & REQ_POST) && req->body == NULL)) {
    /* A POST without a body is sent with Content-Length: 0 and, as requests and FastHttpUser send it, no form
     * Content-Type, which libcurl would add for its empty POSTFIELDS. */
    x->no_type.data = (char *)"Content-Type:";
    x->no_type.next = req->headers;
    XFER_SET(x, CURLOPT_HTTPHEADER, &x->no_type);
  } else {
    XFER_SET(x, CURLOPT_HTTPHEADER, req->headers);
  }
  if (x->client->opts.http2)
    XFER_SET(x, CURLOPT_HTTP_VERSION,
             strncmp(url, "https:", 6) == 0 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);

  /*
   * The method. HTTPGET resets whatever the previous request on this handle set; a body makes libcurl
   * send a POST, which CUSTOMREQUEST renames. POST itself is left unnamed so that libcurl switches it to
   * GET after a 301/302/303 as browsers and FastHttpUser do.
   */
  XFER_SET(x, CURLOPT_HTTPGET, 1L);
  if (req->flags & REQ_HEAD) {
    XFER_SET(x, CURLOPT_NOBODY, 1L);
    XFER_SET(x, CURLOPT_CUSTOMREQUEST, NULL);
  } else {
    if (req->body != NULL || (req->flags & REQ_POST)) {
      /* A POST without a body still is a POST, with Content-Length: 0. */
      XFER_SET(x, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
      XFER_SET(x, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    }
    int named = (req->flags & REQ_POST) || ((req->flags & REQ_GET) && req->body == NULL);
    XFER_SET(x, CURLOPT_CUSTOMREQUEST, named ? NULL : req->method);
  }
  if (LC_UNLIKELY(x->rejected != NULL)) {
    /* Say which, and set the handle up afresh next time: some of this client's options may not be on it. */
    snprintf(x->errbuf, sizeof(x->errbuf), "libcurl rejected %s: %s", x->rejected,
             curl_easy_strerror(x->rejected_code));
    x->rejected = NULL;
    x->client_serial = 0;
    return CURLE_BAD_FUNCTION_ARGUMENT;
  }

  CURLMcode mc = curl_multi_add_handle(e->multi, x->easy);
  return mc == CURLM_OK ? 0 : CURLE_FAILED_INIT;
}

/* Not a byte of this hop's response arrived: sending it again cannot repeat what the server did. */
static int xfer_got_nothing(xfer_t *x) {
  long header_size = 0;
  curl_off_t body = 0;
  curl_easy_getinfo(x->easy, CURLINFO_HEADER_SIZE, &header_size);
  curl_easy_getinfo(x->easy, CURLINFO_SIZE_DOWNLOAD_T, &body);
  return header_size == 0 && body == 0 && x->req->head.len == 0;
}

/*
 * max_retries sends a request again only when nothing of an answer arrived, and a method that is not
 * idempotent (POST, PATCH) only when it was certainly not sent: its connection never opened. A request that
 * reached the server may have been applied, and applying a POST twice is not the server's fault.
 */
static int xfer_should_retry(xfer_t *x, CURLcode code) {
  request_t *req = x->req;
  if (req->retries_left <= 0) return 0;
  if (code == CURLE_COULDNT_CONNECT) return 1;
  if (!(req->flags & REQ_IDEMPOTENT)) return 0;
  return (code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR || code == CURLE_GOT_NOTHING) && xfer_got_nothing(x);
}

/* The outcome, with the faults libcurl does not see for itself; a message for each of ours. */
static int xfer_outcome(xfer_t *x, CURLcode code) {
  request_t *req = x->req;
  if (LC_UNLIKELY(x->fault != 0)) {
    fault_t f = x->fault == REQ_ERR_BODY_TOO_LARGE   ? FAULT_BODY_TOO_LARGE
                : x->fault == REQ_ERR_HEAD_TOO_LARGE ? FAULT_HEAD_TOO_LARGE
                : x->fault == REQ_ERR_BAD_LENGTH     ? FAULT_BAD_LENGTH
                : x->fault == REQ_ERR_BAD_ENCODING   ? FAULT_BAD_ENCODING
                                                     : FAULT_NO_MEMORY;
    return request_fault(f, x->client, x->errbuf, sizeof(x->errbuf));
  }
  if (code == CURLE_OK) {
    /* libcurl 7.88 takes a connection closed inside the header block for the end of a body-less response. */
    if (LC_UNLIKELY(!x->head_done)) return request_fault(FAULT_HEAD_CUT, x->client, x->errbuf, sizeof(x->errbuf));
    if (LC_UNLIKELY(decode_finish(&x->decoder) != 0))
      return request_fault(FAULT_ENCODING_CUT, x->client, x->errbuf, sizeof(x->errbuf));
    return CURLE_OK;
  }
  /* libcurl keeps one header line in a buffer of CURL_MAX_HTTP_HEADER and fails with "out of memory" past it. */
  if (code == CURLE_OUT_OF_MEMORY && !x->head_done && req != NULL && req->head.len > 0)
    return request_fault(FAULT_LINE_TOO_LONG, x->client, x->errbuf, sizeof(x->errbuf));
  return code;
}

/* Called when libcurl is done with the handle, whatever the outcome. */
void xfer_finish(xfer_t *x, CURLcode code) {
  client_t *c = x->client;
  request_t *req = x->req;
  CURL *h = x->easy;
  long os_errno = 0;
  curl_off_t total = 0;

  curl_multi_remove_handle(c->engine->multi, h);
  if (LC_UNLIKELY(req == NULL)) { /* a stream, delivered at its headers: its reader learns how it ended */
    int result = xfer_outcome(x, code);
    xfer_stream_end(x, result, x->errbuf[0] ? x->errbuf : NULL);
    client_run_next(c);
    return;
  }
  /*
   * A set-aside connection the server closed just as it was handed back fails like a reused one: send it
   * again on a new connection, as libcurl does for its own reused connections.
   */
  if (LC_UNLIKELY(code != CURLE_OK) && x->resumed &&
      (code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR || code == CURLE_GOT_NOTHING) && xfer_got_nothing(x)) {
    req->head.len = req->content.len = 0;
    if (xfer_start(x, req) == 0) return;
  }
  if (LC_UNLIKELY(code != CURLE_OK) && xfer_should_retry(x, code)) {
    req->retries_left--;
    req->head.len = req->content.len = 0;
    if (xfer_start(x, req) == 0) return;
  }

  req->done_time = wall_clock_now();
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &req->status);
  curl_easy_getinfo(h, CURLINFO_TOTAL_TIME_T, &total);
  /*
   * libcurl stops the clock when it has processed the last byte. When several responses arrived together,
   * the later ones waited for the engine to process the earlier ones; that wait is the generator's, not the
   * server's. The data was ready when this loop iteration woke up: stop the clock there.
   */
  if (c->engine->in_io && c->engine->io_wake_ns && x->last_cb_ns > c->engine->io_wake_ns) {
    /* From the wake-up to libcurl's handing over the last bytes: not from the wake-up to now, which would take the
     * time libcurl spent after its clock stopped off the server's too. */
    uint64_t lag_us = (x->last_cb_ns - c->engine->io_wake_ns) / 1000;
    if ((curl_off_t)lag_us < total) total -= (curl_off_t)lag_us;
  }
  req->result = xfer_outcome(x, code);
  /* A redirect the engine follows: the next hop starts on whichever transport its URL needs. */
  if (LC_UNLIKELY(req->result == CURLE_OK && req->status >= 300 && req->status < 400) &&
      request_follow(req, c->opts.max_redirects, (int64_t)total) > 0) {
    client_recycle(c, x);
    client_start(c, req);
    return;
  }
  req->total_us = req->hops_us + total;
  if (LC_UNLIKELY(req->result != CURLE_OK)) {
    /*
     * A handle keeps the errno of the last failed socket call across transfers, so it names this fault only
     * when libcurl failed to connect, where it sets it: for the others the message says what the call was.
     */
    if (code == CURLE_COULDNT_CONNECT) {
      curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
      req->os_errno = (int)os_errno;
    }
    if (req->error == NULL) req->error = strdup(x->errbuf[0] ? x->errbuf : curl_easy_strerror(code));
  }
  /* A stream request that ended without being delivered at its headers (it failed, or libcurl did not follow a
   * redirect it looked like it would): its body, if any, is its stream's whole content. */
  if (LC_UNLIKELY(req->stream != NULL)) stream_end_with_body(req->stream, &req->content, req->result);
  client_recycle(c, x);
  engine_complete(c->engine, req);
  client_run_next(c);
}
