/*
 * The sockets libcurl uses, watched by the engine's loop: the descriptor table, the watchers, the parking of
 * keep-alive connections between requests, and keeping a set-aside user's connections open without libcurl's
 * state (see sock_t in locust_c.h). Engine thread only.
 */
#include "locust_c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

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

void sock_close_cb(uv_handle_t *handle) { sock_free(handle->data); }

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

/* The multi handle tells the engine which sockets to watch. */
void engine_multi_sockets(engine_t *e) {
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, engine_socket_cb);
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
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

/* The descriptor table and the records' slabs, once the loop has closed every watcher. */
void engine_socks_free(engine_t *e) {
  free(e->socks);
  e->socks = NULL;
  e->nsocks = 0;
  while (e->sock_slabs) {
    sock_slab_t *slab = e->sock_slabs;
    e->sock_slabs = slab->next;
    free(slab);
  }
  e->free_socks = NULL;
}
