/*
 * One simulated user (client_t): the transport each of its requests takes (native.c for plain http://, curl.c
 * for the rest), its libcurl share (connection cache) when it has libcurl transfers, the requests waiting for a
 * connection, cancelling and closing, setting an idle user aside, and its cookie jar as Python edits it.
 * Everything here runs on the engine thread, except client_create and the reference counting, which the Python
 * side calls.
 */
#include "locust_c.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- clients ----------------------------------------------------------------------------------------- */

/* The option strings a client keeps, in the order client_create copies them. */
#define CLIENT_NSTRINGS 6

client_t *client_create(engine_t *e, const client_options_t *opts) {
  client_t *c = calloc(1, sizeof(*c));
  const char **fields[CLIENT_NSTRINGS];
  size_t size = 0;
  char *p;
  int i;
  if (c == NULL) return NULL;
  c->engine = e;
  c->opts = *opts;
  if (c->opts.max_connections < 1) c->opts.max_connections = 1;
  fields[0] = &c->opts.proxy;
  fields[1] = &c->opts.user_agent;
  fields[2] = &c->opts.ca_file;
  fields[3] = &c->opts.cert;
  fields[4] = &c->opts.key;
  fields[5] = &c->opts.ciphers;
  for (i = 0; i < CLIENT_NSTRINGS; i++)
    if (*fields[i] != NULL) size += strlen(*fields[i]) + 1;
  if (size > 0 && (c->strings = malloc(size)) == NULL) {
    free(c);
    return NULL;
  }
  for (i = 0, p = c->strings; i < CLIENT_NSTRINGS; i++) {
    size_t n;
    if (*fields[i] == NULL) continue;
    n = strlen(*fields[i]) + 1;
    memcpy(p, *fields[i], n);
    *fields[i] = p;
    p += n;
  }
  if (opts->ssl_ctx != NULL && (c->opts.ssl_ctx = tls_context_ref(opts->ssl_ctx)) == NULL) {
    free(c->strings);
    free(c);
    return NULL;
  }
  c->refs = 1;
  {
    static uint64_t next_serial = 1;
    c->serial = __atomic_fetch_add(&next_serial, 1, __ATOMIC_RELAXED);
  }
  return c;
}

void client_ref(client_t *c) { __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED); }

void client_unref(client_t *c) {
  if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  if (c->opts.ssl_ctx != NULL) tls_context_unref(c->opts.ssl_ctx);
  free(c->strings);
  free(c);
}

/*
 * The user's share handle holds its own connection cache, so that two users never reuse each other's keep-alive
 * connections, while all of them run in the one multi handle. No lock functions are set: only this thread ever
 * uses the share. It is opened for the first libcurl transfer, and again after the user was set aside (its
 * connections come back in engine_open_socket_cb). Cookies are not libcurl's: they are in the user's jar.
 */
static int client_share_open(client_t *c) {
  c->share = curl_share_init();
  if (c->share == NULL) return -ENOMEM;
  curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  /* TLS sessions too, when the user has an https host: a pooled easy handle must not let a new user resume
   * another user's session, so the cache is the user's own (or, see xfer_configure, there is none). */
  if (c->opts.tls_sessions) curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  return 0;
}

/* The first request of a client makes it known to the engine. */
static int client_register(client_t *c) {
  engine_t *e = c->engine;
  c->next = e->clients;
  if (e->clients) e->clients->prev = c;
  e->clients = c;
  c->registered = 1;
  client_ref(c);
  __atomic_add_fetch(&e->counters.clients, 1, __ATOMIC_RELAXED); /* read by engine_counters on another thread */
  return 0;
}

/*
 * Sets an idle user aside. In libcurl 7.88 a share with a connection cache costs about 9 KiB and each cached
 * connection about 5 KiB more, so ten thousand users that wait between requests would hold 140 MiB in state
 * they do not use. An idle user keeps only what the server can see: its TCP connections (their descriptors,
 * watched for the server closing them); its cookies are in its jar. The share goes. The next request opens a
 * new share, and libcurl, connecting to the same address, is handed the same socket as already connected:
 * the server sees one keep-alive connection, as before. Users with TLS or HTTP/2 connections, or a proxy,
 * keep everything (their connection state cannot be rebuilt from a socket). Returns 0 when set aside.
 */
int client_set_aside(client_t *c) {
  engine_t *e = c->engine;
  CURLSHcode rc;
  if (c->share == NULL || c->nactive > 0 || c->waiting_head != NULL) return -EBUSY; /* aside, or not idle */
  if (c->opts.http2 || c->opts.proxy || c->opts.tls_sessions || c->tls_socks > 0) return -EINVAL;
  /* Closing the share closes its connections: engine_close_socket_cb keeps this user's healthy ones. */
  e->setting_aside = c;
  rc = curl_share_cleanup(c->share);
  e->setting_aside = NULL;
  if (rc != CURLSHE_OK) return -EBUSY; /* still in use (cannot happen: pooled handles leave it): kept as it is */
  c->share = NULL;
  __atomic_add_fetch(&e->counters.set_aside, 1, __ATOMIC_RELAXED);
  return 0;
}

static void client_fail(client_t *c, request_t *req, int code, const char *message) {
  req->result = code;
  req->error = message ? strdup(message) : NULL;
  engine_complete(c->engine, req);
}

void client_start(client_t *c, request_t *req) {
  engine_t *e = c->engine;
  xfer_t *x = e->idle;
  url_t u;
  int rc;
  if (req->started_ms == 0) req->started_ms = uv_now(&e->loop);
  if (LC_LIKELY(native_eligible(c, req, &u))) {
    native_start(c, req, &u);
    return;
  }
  if (LC_UNLIKELY(c->share == NULL) && client_share_open(c) != 0) { /* its first, or it was set aside */
    client_fail(c, req, CURLE_OUT_OF_MEMORY, "out of memory creating a client");
    return;
  }
  if (x != NULL) {
    e->idle = x->next;
    if (--e->nidle < e->nidle_low) e->nidle_low = e->nidle;
  } else if ((x = xfer_create(e)) == NULL) {
    client_fail(c, req, CURLE_OUT_OF_MEMORY, "out of memory creating a transfer");
    return;
  }
  x->client = c;
  x->prev = NULL;
  x->next = c->active;
  if (c->active) c->active->prev = x;
  c->active = x;
  c->nactive++;
  if ((rc = xfer_start(x, req)) != 0) xfer_finish(x, (CURLcode)rc);
}

/*
 * client.cookies from Python: a request that is not sent. Each line of its body changes the user's jar
 * (jar_load_line: "ALL" empties it, a Netscape cookie-file line sets a cookie), and its content is then the whole
 * jar, one Netscape line per cookie, so that Python sees what the server set.
 */
static void client_cookies(client_t *c, request_t *req) {
  const char *p = req->body, *end = req->body ? req->body + req->body_len : NULL;
  int64_t now = (int64_t)time(NULL);
  if (!c->opts.cookies) { /* a shared pool's users keep their jars in Python */
    client_fail(c, req, CURLE_BAD_FUNCTION_ARGUMENT, "this client keeps no cookie jar");
    return;
  }
  while (p != NULL && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    if (n > 0) jar_load_line(&c->jar, p, n, now); /* a line the jar refuses is not kept, as libcurl did */
    p += n + 1;
  }
  if (jar_dump(&c->jar, now, &req->content) != 0) {
    client_fail(c, req, CURLE_OUT_OF_MEMORY, "out of memory reading the cookie jar");
    return;
  }
  req->result = CURLE_OK;
  engine_complete(c->engine, req);
}

void client_submit(client_t *c, request_t *req) {
  if (LC_UNLIKELY(!c->registered) && client_register(c) != 0) {
    client_fail(c, req, CURLE_OUT_OF_MEMORY, "out of memory creating a client");
    return;
  }
  if (LC_UNLIKELY(req->flags & REQ_COOKIES)) {
    client_cookies(c, req);
    return;
  }
  if (c->nactive < c->opts.max_connections) {
    client_start(c, req);
    return;
  }
  req->next = NULL;
  if (c->waiting_tail)
    c->waiting_tail->next = req;
  else
    c->waiting_head = req;
  c->waiting_tail = req;
}

void client_run_next(client_t *c) {
  while (c->waiting_head && c->nactive < c->opts.max_connections) {
    request_t *req = c->waiting_head;
    c->waiting_head = req->next;
    if (c->waiting_head == NULL) c->waiting_tail = NULL;
    client_start(c, req);
  }
}

static void client_unlink_active(client_t *c, xfer_t *x) {
  if (x->prev)
    x->prev->next = x->next;
  else
    c->active = x->next;
  if (x->next) x->next->prev = x->prev;
  x->prev = x->next = NULL;
  c->nactive--;
}

/*
 * Returns the handle to the engine's pool. It leaves the user's share first: the connection went back to the
 * share's cache when the transfer ended, and a pooled handle must not keep a closed user's share busy.
 */
void client_recycle(client_t *c, xfer_t *x) {
  engine_t *e = c->engine;
  client_unlink_active(c, x);
  if (c->nactive == 0) c->idle_since = uv_now(&e->loop);
  if (LC_UNLIKELY(x->paused)) engine_unpause(e, x); /* cancelled while paused: it leaves the list */
  assert(x->stream == NULL);
  x->reader_paused = 0;
  x->req = NULL;
  x->client = NULL;
  curl_easy_setopt(x->easy, CURLOPT_SHARE, NULL);
  if (e->nidle < ENGINE_IDLE_HANDLES) {
    x->next = e->idle;
    e->idle = x;
    e->nidle++;
    return;
  }
  xfer_destroy(x);
  /* After a burst the handles beyond the pool are freed; the sweep has malloc give their pages back. */
  e->destroyed_since_trim++;
}

void client_cancel(client_t *c, uint64_t id) {
  request_t *req, *prev = NULL;
  xfer_t *x;
  if (c->conns != NULL && native_cancel(c, id)) return;
  for (x = c->active; x; x = x->next) {
    if (x->stream != NULL && x->stream->id == id) { /* a stream its reader let go of */
      curl_multi_remove_handle(c->engine->multi, x->easy);
      xfer_stream_end(x, REQ_ERR_CANCELLED, "request cancelled");
      client_run_next(c);
      return;
    }
    if (x->req && x->req->id == id) {
      curl_multi_remove_handle(c->engine->multi, x->easy);
      req = x->req;
      client_recycle(c, x);
      client_fail(c, req, REQ_ERR_CANCELLED, "request cancelled");
      client_run_next(c);
      return;
    }
  }
  for (req = c->waiting_head; req; prev = req, req = req->next) {
    if (req->id == id) {
      if (prev)
        prev->next = req->next;
      else
        c->waiting_head = req->next;
      if (c->waiting_tail == req) c->waiting_tail = prev;
      client_fail(c, req, REQ_ERR_CANCELLED, "request cancelled");
      return;
    }
  }
  /* Not found: it finished before the cancel arrived and is already on its way to Python. */
}

/*
 * Closes the user's connections and cancels what it still has in flight. Safe to call twice; the engine's
 * reference is dropped here, the Python object's and the close command's elsewhere.
 */
void client_close(client_t *c) {
  engine_t *e = c->engine;
  request_t *req;
  if (!c->registered) return;
  c->registered = 0;
  native_close_all(c);
  while (c->active) {
    xfer_t *x = c->active;
    req = x->req;
    curl_multi_remove_handle(e->multi, x->easy);
    if (req == NULL) {
      xfer_stream_end(x, REQ_ERR_CANCELLED, "request cancelled: user stopped");
      continue;
    }
    client_recycle(c, x);
    client_fail(c, req, REQ_ERR_CANCELLED, "request cancelled: user stopped");
  }
  while ((req = c->waiting_head) != NULL) {
    c->waiting_head = req->next;
    client_fail(c, req, REQ_ERR_CANCELLED, "request cancelled: user stopped");
  }
  c->waiting_tail = NULL;
  /* With no easy handle attached any more, the share can close the user's keep-alive connections. */
  if (c->share) curl_share_cleanup(c->share);
  c->share = NULL;
  while (c->kept) sock_close(c->kept);
  jar_clear(&c->jar);
  if (c->prev)
    c->prev->next = c->next;
  else
    e->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  __atomic_sub_fetch(&e->counters.clients, 1, __ATOMIC_RELAXED);
  client_unref(c);
}
