/*
 * The engine: one native thread running one libuv loop that drives one libcurl multi handle, in the
 * pattern of curl's docs/examples/multi-uv.c. Commands arrive from Python through a mutex-guarded queue
 * and uv_async_send; finished requests leave through a second queue and an eventfd.
 */
#include "locust_c.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void engine_check_done(engine_t *e);
static void engine_resume_cb(uv_idle_t *idle);

/* ---- buffers ----------------------------------------------------------------------------------------- */

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

void request_free(request_t *req) {
  if (req == NULL) return;
  if (LC_UNLIKELY(req->stream != NULL) && stream_orphan(req->stream, req)) return; /* see stream_orphan */
  buf_free(&req->head);
  buf_free(&req->redirects_head);
  buf_free(&req->content);
  free(req->effective_url);
  free(req->error);
  stream_unref(req->stream);
  free(req);
}

/* ---- libcurl <-> libuv glue -------------------------------------------------------------------------- */

/*
 * Socket records come from slabs of their own. They live as long as their connections, and a set-aside
 * user's connection outlives the libcurl state allocated around it: from the general heap, each record
 * would pin a page of freed memory that malloc_trim could otherwise return to the system.
 */
#define SOCK_SLAB 128

typedef struct sock_slab_s {
  struct sock_slab_s *next;
  sock_t socks[SOCK_SLAB];
} sock_slab_t;

static sock_t *sock_alloc(engine_t *e) {
  sock_t *s;
  if (e->free_socks == NULL) {
    sock_slab_t *slab = malloc(sizeof(*slab));
    if (slab == NULL) return NULL;
    slab->next = e->sock_slabs;
    e->sock_slabs = slab;
    for (int i = SOCK_SLAB - 1; i >= 0; i--) {
      slab->socks[i].next_kept = e->free_socks;
      e->free_socks = &slab->socks[i];
    }
  }
  s = e->free_socks;
  e->free_socks = s->next_kept;
  memset(s, 0, sizeof(*s));
  return s;
}

static void sock_free(sock_t *s) {
  engine_t *e = s->engine;
  s->next_kept = e->free_socks;
  e->free_socks = s;
}

static void sock_close_cb(uv_handle_t *handle) { sock_free(handle->data); }

static sock_t *engine_sock(engine_t *e, curl_socket_t fd) {
  return (size_t)fd < e->nsocks ? e->socks[fd] : NULL;
}

static void sock_forget(sock_t *s);

/*
 * libcurl 7.88 to 8.1 close a socket that never became a connection's socket (a connect that timed out or
 * failed, the loser of happy eyeballs, a transfer cancelled or timed out while connecting or in its TLS
 * handshake) with close(), not through CURLOPT_CLOSESOCKETFUNCTION (curl pull request 11439). Its record then
 * names a descriptor that is closed, or already another file's: watching it again would make epoll_ctl fail,
 * and libuv aborts the process on that. So until libcurl has shown that the socket is a connection's (it
 * parked it after a transfer: from then on it closes it through our callback), every use of the record
 * checks that the descriptor still is the socket we opened. Only new connections pay for the check.
 */
static int sock_alive(sock_t *s) {
  struct stat st;
  if (LC_LIKELY(s->active || !s->owned)) return 1;
  return fstat(s->fd, &st) == 0 && S_ISSOCK(st.st_mode) && (uint64_t)st.st_ino == s->ino;
}

/* The record of a descriptor libcurl names, or NULL; a stale one (see sock_alive) is dropped on the way. */
static sock_t *engine_sock_live(engine_t *e, curl_socket_t fd) {
  sock_t *s = engine_sock(e, fd);
  if (LC_UNLIKELY(s != NULL && !sock_alive(s))) {
    sock_forget(s);
    return NULL;
  }
  return s;
}

/* Creates the watcher of a socket and files it under its descriptor. */
static sock_t *engine_sock_add(engine_t *e, curl_socket_t fd, int owned) {
  sock_t *s;
  if ((size_t)fd >= e->nsocks) {
    size_t n = e->nsocks ? e->nsocks : 256;
    while (n <= (size_t)fd) n *= 2;
    sock_t **socks = realloc(e->socks, n * sizeof(*socks));
    if (socks == NULL) return NULL;
    memset(socks + e->nsocks, 0, (n - e->nsocks) * sizeof(*socks));
    e->socks = socks;
    e->nsocks = n;
  }
  if ((s = sock_alloc(e)) == NULL) return NULL;
  s->fd = fd;
  s->owned = owned;
  s->engine = e;
  s->poll.data = s;
  if (uv_poll_init_socket(&e->loop, &s->poll, fd) != 0) {
    sock_free(s);
    return NULL;
  }
  /* A descriptor is only reused once closed, and every close of ours drops its entry: never a stale one. */
  e->socks[fd] = s;
  return s;
}

static void engine_sock_drop(engine_t *e, sock_t *s) {
  if (e->socks[s->fd] == s) e->socks[s->fd] = NULL;
  uv_close((uv_handle_t *)&s->poll, sock_close_cb);
}

/* Asks the loop for these events, touching epoll only when they change. */
static void sock_watch(sock_t *s, int events);
static void sock_unkeep(sock_t *s);

static void sock_poll_cb(uv_poll_t *poll, int status, int events) {
  sock_t *s = poll->data;
  engine_t *e = s->engine;
  int flags = 0;
  int running;

  __atomic_add_fetch(&e->counters.socket_events, 1, __ATOMIC_RELAXED);
  if (LC_UNLIKELY(s->wanted == 0)) {
    /*
     * A parked keep-alive connection became readable: the server closed it (or broke the protocol). Stop
     * watching it, or a level-triggered loop would spin; libcurl's liveness check before its next use
     * finds it dead and opens a new one. A set-aside connection has nobody else to notice: close it.
     * The event may be stale, though: libcurl can finish a transfer while acting on another socket (its
     * timers run then), after epoll reported this one and before the loop got to it. Then nothing is there.
     */
    char byte;
    if (status == 0 && recv(s->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    s->dead = 1;
    if (s->kept)
      sock_close(s);
    else
      sock_watch(s, 0);
    return;
  }
  if (e->io_wake_ns == 0) e->io_wake_ns = uv_hrtime();

  /*
   * On a socket error (libuv reports EPOLLERR as a status and stops the handle) let libcurl read and write:
   * it then finds the real cause (ECONNRESET, ECONNREFUSED) instead of a generic "select/poll error".
   */
  if (status < 0) {
    flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
    s->watching = 0;
    s->dead = 1;
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  e->in_io = 1;
  curl_multi_socket_action(e->multi, s->fd, flags, &running);
  engine_check_done(e);
  e->in_io = 0;
  /* libuv stopped the handle on the error; if libcurl still wants the socket, watch it again. The socket may
   * be closed by now (s freed at the next iteration, so still readable here): only look if it is filed. */
  if (status < 0 && engine_sock(e, s->fd) == s && s->wanted && sock_alive(s)) sock_watch(s, s->wanted);
}

static void sock_watch(sock_t *s, int events) {
  if (events == s->watching) return;
  s->watching = events;
  if (events)
    uv_poll_start(&s->poll, events, sock_poll_cb);
  else
    uv_poll_stop(&s->poll);
}

/*
 * CURLMOPT_SOCKETFUNCTION: libcurl tells us which sockets to watch for what. Sockets are found by their
 * descriptor in the engine's table, whether or not libcurl still remembers them.
 */
static int engine_socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp) {
  engine_t *e = userp;
  sock_t *s = engine_sock_live(e, fd);
  int events = 0;
  (void)easy;
  (void)socketp;

  switch (action) {
  case CURL_POLL_IN:
  case CURL_POLL_OUT:
  case CURL_POLL_INOUT:
    if (s == NULL && (s = engine_sock_add(e, fd, 0)) == NULL) return -1;
    if (action != CURL_POLL_OUT) events |= UV_READABLE;
    if (action != CURL_POLL_IN) events |= UV_WRITABLE;
    s->wanted = events;
    s->dead = 0; /* in use again (after a pause, data that waited looked like the server closing it) */
    sock_watch(s, events);
    break;
  case CURL_POLL_REMOVE:
    if (s == NULL) break;
    s->wanted = 0;
    if (s->owned) {
      s->active = 1; /* still ours after a transfer (engine_sock_live checked): a connection's socket */
      sock_watch(s, s->watching ? UV_READABLE : 0); /* parked: see sock_poll_cb */
    } else {
      engine_sock_drop(e, s);
    }
    break;
  default:
    break;
  }
  return 0;
}

/* A hash of the URL's authority (host and port, case folded): a kept connection only serves the same one. */
static uint64_t url_authority_hash(const char *url) {
  uint64_t h = 14695981039346656037ULL; /* FNV-1a */
  const char *p = url ? strstr(url, "://") : NULL;
  if (p == NULL) return 0;
  for (p += 3; *p && *p != '/' && *p != '?' && *p != '#'; p++) {
    h ^= (unsigned char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    h *= 1099511628211ULL;
  }
  return h;
}

/*
 * CURLOPT_OPENSOCKETFUNCTION: the connection's socket, watched by the loop until it closes. A user that was
 * set aside gets its own keep-alive connection back when libcurl connects to the same host at the same
 * address again.
 */
static curl_socket_t engine_open_socket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr) {
  xfer_t *x = clientp;
  engine_t *e = x->engine;
  client_t *c = x->client;
  curl_socket_t fd;
  sock_t *s;
  const char *url = NULL;
  uint64_t authority;
  (void)purpose;

  /* The URL being connected to (after a redirect, the new one). */
  curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
  authority = url_authority_hash(url);
  for (s = c->kept; s != NULL; s = s->next_kept) {
    if (s->authority == authority && s->peer_len == addr->addrlen &&
        memcmp(&s->peer, &addr->addr, addr->addrlen) == 0) {
      sock_unkeep(s);
      s->handed_back++;
      x->resume_fd = s->fd; /* engine_sockopt_cb tells libcurl that it is connected */
      return s->fd;
    }
  }
  fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
  if (fd == CURL_SOCKET_BAD) return CURL_SOCKET_BAD;
  if (LC_UNLIKELY((s = engine_sock(e, fd)) != NULL)) sock_forget(s); /* libcurl closed it without a word */
  struct stat st;
  if (fstat(fd, &st) != 0 || (s = engine_sock_add(e, fd, 1)) == NULL) {
    close(fd);
    errno = ENOMEM;
    return CURL_SOCKET_BAD;
  }
  s->ino = (uint64_t)st.st_ino;
  s->client = c;
  s->authority = authority;
  if (addr->addrlen <= sizeof(s->peer)) {
    memcpy(&s->peer, &addr->addr, addr->addrlen);
    s->peer_len = addr->addrlen;
  }
  if (url == NULL || strncasecmp(url, "http:", 5) != 0) { /* TLS state cannot be set aside */
    s->tls = 1;
    c->tls_socks++;
  }
  return fd;
}

static int engine_sockopt_cb(void *clientp, curl_socket_t fd, curlsocktype purpose) {
  xfer_t *x = clientp;
  (void)purpose;
  if (fd != x->resume_fd) return CURL_SOCKOPT_OK;
  x->resume_fd = CURL_SOCKET_BAD;
  x->resumed = 1;
  __atomic_add_fetch(&x->engine->counters.resumed, 1, __ATOMIC_RELAXED);
  return CURL_SOCKOPT_ALREADY_CONNECTED;
}

/*
 * CURLOPT_CLOSESOCKETFUNCTION: the watcher goes before the descriptor, which may be reused at once. While a
 * user is being set aside, its plain HTTP connections that are still healthy stay open, held by the user.
 *
 * libcurl before 8.0 ignores CURL_SOCKOPT_ALREADY_CONNECTED and calls connect() on the socket it is handed
 * (curl issue 10626). Linux lets that pass once, on a socket whose own non-blocking connect() was never
 * followed by another, and answers EISCONN after that. So with those versions a connection is handed back
 * at most once: at the user's next idle period it is closed (as libcurl closes connections idle for two
 * minutes) and its next request opens a new one.
 */
static int engine_close_socket_cb(void *clientp, curl_socket_t fd) {
  engine_t *e = clientp;
  sock_t *s = engine_sock_live(e, fd);
  if (s == NULL) return close(fd);
  s->active = 1;
  if (e->setting_aside != NULL && s->client == e->setting_aside && !s->tls && !s->dead &&
      (e->hand_back_again || s->handed_back == 0)) {
    s->kept = 1;
    s->kept_since = uv_now(&e->loop);
    s->next_kept = s->client->kept;
    s->client->kept = s;
    sock_watch(s, UV_READABLE); /* for the server closing it; a socket libcurl never waited on is not yet */
    return 0;
  }
  sock_close(s);
  return 0;
}

/* Takes a socket out of its client's kept list. */
static void sock_unkeep(sock_t *s) {
  sock_t **link = &s->client->kept;
  while (*link != s) link = &(*link)->next_kept;
  *link = s->next_kept;
  s->next_kept = NULL;
  s->kept = 0;
}

/* Drops a socket's record and watcher (out of its client's kept list first), leaving the descriptor alone. */
static void sock_forget(sock_t *s) {
  if (s->kept) sock_unkeep(s);
  if (s->tls && s->client) s->client->tls_socks--;
  engine_sock_drop(s->engine, s);
}

/* Closes a socket of ours, with its watcher. */
void sock_close(sock_t *s) {
  curl_socket_t fd = s->fd;
  sock_forget(s);
  close(fd);
}

void engine_socket_callbacks(engine_t *e, xfer_t *x) {
  XFER_SET(x, CURLOPT_OPENSOCKETFUNCTION, engine_open_socket_cb);
  XFER_SET(x, CURLOPT_OPENSOCKETDATA, x);
  XFER_SET(x, CURLOPT_SOCKOPTFUNCTION, engine_sockopt_cb);
  XFER_SET(x, CURLOPT_SOCKOPTDATA, x);
  /* Connections outlive the transfer that opened them (the share's own handle closes them): the engine. */
  XFER_SET(x, CURLOPT_CLOSESOCKETFUNCTION, engine_close_socket_cb);
  XFER_SET(x, CURLOPT_CLOSESOCKETDATA, e);
}

/*
 * malloc_trim walks the whole heap and can take milliseconds: on the engine thread it would stop every clock
 * for that long. A short-lived thread of its own does it instead, one at a time in the whole process.
 */
static int engine_trim_running;

static void *engine_trim_main(void *arg) {
  (void)arg;
  malloc_trim(0);
  __atomic_store_n(&engine_trim_running, 0, __ATOMIC_RELEASE);
  return NULL;
}

static void engine_trim_soon(void) {
  pthread_attr_t attr;
  pthread_t thread;
  if (__atomic_exchange_n(&engine_trim_running, 1, __ATOMIC_ACQ_REL)) return;
  if (pthread_attr_init(&attr) == 0) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    if (pthread_create(&thread, &attr, engine_trim_main, NULL) == 0) {
      pthread_attr_destroy(&attr);
      return;
    }
    pthread_attr_destroy(&attr);
  }
  __atomic_store_n(&engine_trim_running, 0, __ATOMIC_RELEASE); /* no thread: the memory stays in malloc's lists */
}

/*
 * Every second (or sooner, for short idle times): set aside the users idle for long enough, and free the
 * pooled easy handles that no transfer needed since the last sweep (the pool's low-water mark): a spawning
 * burst fills the pool, and its handles, scattered through the heap, would keep the pages around them.
 */
static void engine_sweep_cb(uv_timer_t *timer) {
  engine_t *e = timer->data;
  uint64_t now = uv_now(&e->loop);
  client_t *c, *next;
  int n = 0;
  for (c = e->clients; c; c = next) {
    next = c->next;
    if (e->set_aside_after_ms && now - c->idle_since >= e->set_aside_after_ms && client_set_aside(c) == 0)
      n++;
    /* libcurl does not reuse a connection idle for longer than CURLOPT_MAXAGE_CONN; neither do we. */
    for (sock_t *s = c->kept, *snext; s; s = snext) {
      snext = s->next_kept;
      if (now - s->kept_since >= ENGINE_KEPT_MAX_AGE_MS) sock_close(s);
    }
  }
  for (int unused = e->nidle_low; unused > 0 && e->idle; unused--, n++) {
    xfer_t *x = e->idle;
    e->idle = x->next;
    e->nidle--;
    xfer_destroy(x);
  }
  e->nidle_low = e->nidle;
  /* What they held went back to malloc: give whole pages back to the system. */
  n += e->destroyed_since_trim;
  if (n >= 32) {
    e->destroyed_since_trim = 0;
    engine_trim_soon();
  }
}

/*
 * The read watch: a few times per read timeout, fail the transfers that have waited for the server for longer.
 * One timer for all of them costs a transfer nothing but noting when data came (xfer_read_expired), where a timer
 * per transfer would be started and stopped on every request.
 */
static void engine_reads_cb(uv_timer_t *timer) {
  engine_t *e = timer->data;
  uint64_t now = uv_now(&e->loop);
  int watched = 0;
  for (client_t *c = e->clients; c; c = c->next) {
    for (xfer_t *x = c->active, *next; x; x = next) {
      next = x->next; /* finishing x unlinks it; a transfer started in its place goes in front, seen next time */
      watched += x->read_timeout_ms != 0;
      if (xfer_read_expired(x, now)) xfer_finish(x, CURLE_OPERATION_TIMEDOUT);
    }
  }
  if (watched == 0) { /* a stream runs on after its request was delivered: in_flight does not count it */
    uv_timer_stop(&e->reads);
    e->reads_every_ms = 0;
  }
}

/* A transfer with a read timeout starts: make sure the watch runs, often enough for the shortest timeout. */
void engine_watch_reads(engine_t *e, long read_timeout_ms) {
  uint64_t every = (uint64_t)read_timeout_ms / 8;
  if (every < 5) every = 5;
  if (every > 1000) every = 1000;
  if (e->reads_every_ms != 0 && e->reads_every_ms <= every) return; /* a restart would postpone its next run */
  e->reads_every_ms = every;
  uv_timer_start(&e->reads, engine_reads_cb, every, every);
}

static void engine_timeout_cb(uv_timer_t *timer) {
  engine_t *e = timer->data;
  int running;
  curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  engine_check_done(e);
}

/* CURLMOPT_TIMERFUNCTION: libcurl asks for one timer; -1 removes it. */
static int engine_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  engine_t *e = userp;
  if (timeout_ms < 0)
    uv_timer_stop(&e->timeout);
  else
    /* A zero timeout must not call back into libcurl from inside its own callback: let the loop do it. */
    uv_timer_start(&e->timeout, engine_timeout_cb, (uint64_t)timeout_ms, 0);
  return 0;
}

/* Hands every transfer libcurl has finished to its xfer. */
static void engine_check_done(engine_t *e) {
  CURLMsg *msg;
  int pending;
  while ((msg = curl_multi_info_read(e->multi, &pending)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    xfer_t *x = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    xfer_finish(x, msg->data.result);
  }
}

/* ---- completions ------------------------------------------------------------------------------------- */

/*
 * Queues a finished request for Python. Completions are gathered per loop phase (one epoll_wait usually
 * finishes many transfers) and handed over with one lock and at most one eventfd write: Python drains the
 * whole queue on each wake-up, so one signal per batch is enough. A prepare handle publishes what the timer
 * phase finished (it runs before the loop blocks in epoll_wait), a check handle what the I/O phase finished.
 */
void engine_complete(engine_t *e, request_t *req) {
  req->next = NULL;
  e->in_flight--;
  __atomic_add_fetch(&e->counters.completed, 1, __ATOMIC_RELEASE);
  if (e->batch_tail)
    e->batch_tail->next = req;
  else
    e->batch_head = req;
  e->batch_tail = req;
}

/* Queues a wake-up for a stream's reader (stream_should_wake said so), with the completions of this phase. */
void engine_wake(engine_t *e, stream_t *s) {
  stream_ref(s); /* the wake-up's: the reader may let go of the stream before it arrives */
  s->next_wake = NULL;
  if (e->wake_tail)
    e->wake_tail->next_wake = s;
  else
    e->wake_head = s;
  e->wake_tail = s;
}

static void engine_publish(engine_t *e) {
  int was_empty;
  if (e->batch_head == NULL && e->wake_head == NULL) return;
  pthread_mutex_lock(&e->lock);
  was_empty = e->done_head == NULL && e->woken_head == NULL;
  if (e->batch_head != NULL) {
    if (e->done_tail)
      e->done_tail->next = e->batch_head;
    else
      e->done_head = e->batch_head;
    e->done_tail = e->batch_tail;
  }
  if (e->wake_head != NULL) {
    if (e->woken_tail)
      e->woken_tail->next_wake = e->wake_head;
    else
      e->woken_head = e->wake_head;
    e->woken_tail = e->wake_tail;
  }
  pthread_mutex_unlock(&e->lock);
  e->batch_head = e->batch_tail = NULL;
  e->wake_head = e->wake_tail = NULL;
  if (was_empty) {
    uint64_t one = 1;
    ssize_t n;
    do n = write(e->event_fd, &one, sizeof(one));
    while (n < 0 && errno == EINTR);
  }
}

static void engine_flush_timers_cb(uv_prepare_t *prepare) {
  engine_t *e = prepare->data;
  engine_publish(e);
  e->io_wake_ns = 0; /* the loop is about to wait for I/O */
}

/* ---- the decode budget (see ENGINE_DECODE_BUDGET) ---------------------------------------------------- */

/*
 * Files a transfer that paused itself, last in line: transfers take turns. The idle handle keeps the loop from
 * blocking while any is paused, and renews the budget once per iteration; with none paused the budget is the
 * decoding allowed before the first pause.
 */
void engine_pause(engine_t *e, xfer_t *x) {
  if (x->paused) return;
  x->paused = 1;
  __atomic_add_fetch(&e->counters.decode_pauses, 1, __ATOMIC_RELAXED);
  x->next_paused = NULL;
  if (e->paused_tail)
    e->paused_tail->next_paused = x;
  else
    e->paused = x;
  e->paused_tail = x;
  if (!uv_is_active((uv_handle_t *)&e->resume)) uv_idle_start(&e->resume, engine_resume_cb);
}

/* Takes a transfer out of the paused list (it was cancelled, or is being resumed). */
void engine_unpause(engine_t *e, xfer_t *x) {
  xfer_t **link = &e->paused, *prev = NULL;
  while (*link != NULL && *link != x) {
    prev = *link;
    link = &(*link)->next_paused;
  }
  if (*link == x) {
    *link = x->next_paused;
    if (e->paused_tail == x) e->paused_tail = prev;
  }
  x->next_paused = NULL;
  x->paused = 0;
}

/*
 * Once per loop iteration while transfers are paused: renew the budget and resume them in turn. libcurl hands
 * the paused chunk over again from inside curl_easy_pause, so a transfer may pause again at once, in a new
 * list. When the chunk fails as it is handed over (the body went over its limit, or is corrupt), libcurl 7.88
 * returns the error from curl_easy_pause without failing the transfer or watching its socket again: the
 * transfer would wait for its timeout. It is finished here instead, with its fault.
 */
static void engine_resume_cb(uv_idle_t *idle) {
  engine_t *e = idle->data;
  xfer_t *x = e->paused, *next;
  e->paused = e->paused_tail = NULL;
  e->decoded = 0;
  for (; x != NULL; x = next) {
    CURLcode rc;
    next = x->next_paused;
    x->next_paused = NULL;
    x->paused = 0;
    rc = curl_easy_pause(x->easy, CURLPAUSE_CONT);
    if (LC_UNLIKELY(rc != CURLE_OK || x->fault != 0)) xfer_finish(x, rc != CURLE_OK ? rc : CURLE_WRITE_ERROR);
  }
  if (e->paused == NULL) uv_idle_stop(&e->resume);
  engine_check_done(e);
}

static void engine_flush_io_cb(uv_check_t *check) { engine_publish(check->data); }

request_t *engine_drain(engine_t *e) {
  uint64_t value;
  request_t *head;
  ssize_t n;
  /* Reset the eventfd before taking the queue, so that a completion queued after the take signals again. */
  do n = read(e->event_fd, &value, sizeof(value));
  while (n < 0 && errno == EINTR);
  pthread_mutex_lock(&e->lock);
  head = e->done_head;
  e->done_head = e->done_tail = NULL;
  pthread_mutex_unlock(&e->lock);
  return head;
}

/* The stream readers to wake, taken after engine_drain (which reset the eventfd for both). */
stream_t *engine_drain_wakes(engine_t *e) {
  stream_t *head;
  pthread_mutex_lock(&e->lock);
  head = e->woken_head;
  e->woken_head = e->woken_tail = NULL;
  pthread_mutex_unlock(&e->lock);
  return head;
}

/* ---- commands ---------------------------------------------------------------------------------------- */

int engine_send(engine_t *e, cmd_t *cmd) {
  cmd->next = NULL;
  pthread_mutex_lock(&e->lock);
  if (LC_UNLIKELY(e->stopping)) {
    pthread_mutex_unlock(&e->lock);
    return -ESHUTDOWN;
  }
  if (e->cmd_tail)
    e->cmd_tail->next = cmd;
  else
    e->cmd_head = cmd;
  e->cmd_tail = cmd;
  if (cmd->kind == CMD_STOP) e->stopping = 1;
  pthread_mutex_unlock(&e->lock);
  uv_async_send(&e->wakeup);
  return 0;
}

static void engine_close_walk_cb(uv_handle_t *handle, void *arg) {
  if (!uv_is_closing(handle)) uv_close(handle, handle->type == UV_POLL ? sock_close_cb : NULL);
}

static void engine_shutdown(engine_t *e) {
  while (e->clients) client_close(e->clients);
  if (e->util) {
    curl_easy_cleanup(e->util);
    e->util = NULL;
  }
  engine_publish(e);
  while (e->idle) {
    xfer_t *x = e->idle;
    e->idle = x->next;
    xfer_destroy(x);
  }
  e->nidle = 0;
  curl_multi_cleanup(e->multi);
  e->multi = NULL;
  /* Whatever handles are left (our async and timer, any poll still open) close now; the loop then ends. */
  uv_walk(&e->loop, engine_close_walk_cb, NULL);
}

static void engine_wakeup_cb(uv_async_t *async) {
  engine_t *e = async->data;
  cmd_t *cmd, *next;
  int stop = 0;

  pthread_mutex_lock(&e->lock);
  cmd = e->cmd_head;
  e->cmd_head = e->cmd_tail = NULL;
  pthread_mutex_unlock(&e->lock);

  for (; cmd != NULL; cmd = next) {
    next = cmd->next;
    switch (cmd->kind) {
    case CMD_SUBMIT:
      e->in_flight++;
      __atomic_add_fetch(&e->counters.submitted, 1, __ATOMIC_RELEASE);
      client_submit(cmd->client, cmd->req);
      break;
    case CMD_CANCEL:
      client_cancel(cmd->client, cmd->id);
      break;
    case CMD_RESUME:
      client_resume_stream(cmd->client, cmd->id);
      break;
    case CMD_SET_ASIDE: /* the user is about to wait at least the idle time: no need to wait for the sweep */
      if (e->set_aside_after_ms && cmd->client->registered) client_set_aside(cmd->client);
      break;
    case CMD_CLOSE_CLIENT:
      client_close(cmd->client);
      break;
    case CMD_STOP:
      stop = 1;
      break;
    }
    /* A submit command lives inside its request, the stop command in the engine; the others were allocated, and
     * hold a reference to their client: it may have been closed and released by Python since they were sent. */
    if (cmd->kind != CMD_SUBMIT && cmd->kind != CMD_STOP) {
      client_unref(cmd->client);
      free(cmd);
    }
  }
  if (stop) engine_shutdown(e);
}

/* ---- life cycle -------------------------------------------------------------------------------------- */

int engine_init(engine_t *e, uint64_t set_aside_after_ms) {
  int rc;
  memset(e, 0, sizeof(*e));
  e->set_aside_after_ms = set_aside_after_ms;
  e->hand_back_again = curl_version_info(CURLVERSION_NOW)->version_num >= 0x080000;
  e->priority_boost = 10;
  /* LOCUST_C_CURL_VERBOSE=1 prints libcurl's own trace of every transfer on stderr, for debugging. Read here,
   * on the Python thread, not by the engine thread while Python may be changing the environment. */
  e->curl_verbose = getenv("LOCUST_C_CURL_VERBOSE") != NULL;
  e->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (e->event_fd < 0) return -errno;
  if ((rc = pthread_mutex_init(&e->lock, NULL)) != 0) goto fail_fd;
  if ((rc = uv_loop_init(&e->loop)) != 0) goto fail_lock;
  if ((rc = uv_async_init(&e->loop, &e->wakeup, engine_wakeup_cb)) != 0) goto fail_loop;
  e->wakeup.data = e;
  uv_timer_init(&e->loop, &e->timeout);
  e->timeout.data = e;
  uv_timer_init(&e->loop, &e->sweep);
  e->sweep.data = e;
  {
    uint64_t every = set_aside_after_ms > 0 && set_aside_after_ms < 1000 ? set_aside_after_ms : 1000;
    uv_timer_start(&e->sweep, engine_sweep_cb, every, every);
  }
  uv_unref((uv_handle_t *)&e->sweep);
  uv_timer_init(&e->loop, &e->reads);
  e->reads.data = e;
  uv_unref((uv_handle_t *)&e->reads);
  /* Neither may keep the loop alive on its own. */
  uv_prepare_init(&e->loop, &e->flush_timers);
  e->flush_timers.data = e;
  uv_prepare_start(&e->flush_timers, engine_flush_timers_cb);
  uv_unref((uv_handle_t *)&e->flush_timers);
  uv_idle_init(&e->loop, &e->resume);
  e->resume.data = e;
  uv_check_init(&e->loop, &e->flush_io);
  e->flush_io.data = e;
  uv_check_start(&e->flush_io, engine_flush_io_cb);
  uv_unref((uv_handle_t *)&e->flush_io);

  e->multi = curl_multi_init();
  if (e->multi == NULL) {
    rc = -ENOMEM;
    goto fail_loop;
  }
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, engine_socket_cb);
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, engine_timer_cb);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
  return 0;

fail_loop:
  uv_walk(&e->loop, engine_close_walk_cb, NULL);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  uv_loop_close(&e->loop);
fail_lock:
  pthread_mutex_destroy(&e->lock);
fail_fd:
  close(e->event_fd);
  return rc > 0 ? -rc : rc;
}

static void *engine_thread_main(void *arg) {
  engine_t *e = arg;
  /*
   * The engine thread times every request. When the generator's CPU is saturated it must not queue behind
   * the Python thread, or its clock would count that wait as server latency: ask for a higher priority than
   * the rest of the process. Only privileged processes get it (EPERM otherwise, which is fine).
   */
  if (e->priority_boost) setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), -e->priority_boost);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  engine_publish(e);
  return NULL;
}

int engine_start(engine_t *e) {
  int rc = pthread_create(&e->thread, NULL, engine_thread_main, e);
  if (rc != 0) return -rc;
  e->started = 1;
  return 0;
}

/* Stops the loop (cancelling whatever is in flight) and joins the thread. Call without the GIL. */
int engine_stop(engine_t *e) {
  if (!e->started) return 0;
  e->stop_cmd.kind = CMD_STOP; /* no allocation: a stop cannot fail half-way */
  engine_send(e, &e->stop_cmd); /* -ESHUTDOWN: already stopping, just wait */
  pthread_join(e->thread, NULL);
  e->started = 0;
  return 0;
}

/* Frees everything once the thread is gone; requests still queued for Python are freed unread. */
void engine_destroy(engine_t *e) {
  request_t *req, *next;
  cmd_t *cmd, *cnext;
  for (req = e->done_head; req; req = next) {
    next = req->next;
    request_free(req);
  }
  for (cmd = e->cmd_head; cmd; cmd = cnext) {
    cnext = cmd->next;
    if (cmd->kind == CMD_SUBMIT) {
      request_free(cmd->req);
      continue;
    }
    if (cmd->kind != CMD_STOP) {
      client_unref(cmd->client); /* every command about a client holds a reference to it */
      free(cmd);
    }
  }
  for (stream_t *st = e->woken_head, *snext; st; st = snext) { /* wake-ups nobody took */
    snext = st->next_wake;
    stream_unref(st);
  }
  e->woken_head = e->woken_tail = NULL;
  e->done_head = e->done_tail = NULL;
  e->cmd_head = e->cmd_tail = NULL;
  if (e->multi) {
    engine_shutdown(e);
    uv_run(&e->loop, UV_RUN_DEFAULT);
  }
  uv_loop_close(&e->loop);
  free(e->socks);
  e->socks = NULL;
  e->nsocks = 0;
  while (e->sock_slabs) {
    sock_slab_t *slab = e->sock_slabs;
    e->sock_slabs = slab->next;
    free(slab);
  }
  e->free_socks = NULL;
  pthread_mutex_destroy(&e->lock);
  close(e->event_fd);
}

void engine_counters(engine_t *e, engine_counters_t *out) {
  /* Read without the engine thread's cooperation: a moment old is fine, but completed is read first so
   * that submitted - completed never goes below zero. */
  out->completed = __atomic_load_n(&e->counters.completed, __ATOMIC_ACQUIRE);
  out->submitted = __atomic_load_n(&e->counters.submitted, __ATOMIC_ACQUIRE);
  out->clients = __atomic_load_n(&e->counters.clients, __ATOMIC_RELAXED);
  out->socket_events = __atomic_load_n(&e->counters.socket_events, __ATOMIC_RELAXED);
  out->set_aside = __atomic_load_n(&e->counters.set_aside, __ATOMIC_RELAXED);
  out->resumed = __atomic_load_n(&e->counters.resumed, __ATOMIC_RELAXED);
  out->decode_pauses = __atomic_load_n(&e->counters.decode_pauses, __ATOMIC_RELAXED);
  out->stream_pauses = __atomic_load_n(&e->counters.stream_pauses, __ATOMIC_RELAXED);
  out->in_flight = out->submitted - out->completed;
}
