/*
 * The engine thread: one native thread running one libuv loop that drives one libcurl multi handle, in the
 * pattern of curl's docs/examples/multi-uv.c. Commands arrive from Python through a mutex-guarded queue and
 * uv_async_send; finished requests (and stream wake-ups) leave through a second queue and an eventfd. The loop's
 * timers live here too: libcurl's, the sweep that sets idle users aside, the read watch and the decode budget.
 * Its sockets are in sockets.c.
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

static void engine_resume_cb(uv_idle_t *idle);

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
    if (c->conns != NULL) watched += native_check_reads(c, now);
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
void engine_check_done(engine_t *e) {
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
  engine_resume_soon(e);
}

/* Something paused for the decode budget: the idle handle resumes it at the next iteration. */
void engine_resume_soon(engine_t *e) {
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
  if (e->paused_conns != NULL) native_resume(e);
  if (e->paused == NULL && e->paused_conns == NULL) uv_idle_stop(&e->resume);
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
  engine_multi_sockets(e);
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
  engine_socks_free(e);
  free(e->native_buf);
  buf_free(&e->native_out);
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
  out->native = __atomic_load_n(&e->counters.native, __ATOMIC_RELAXED);
  out->native_connects = __atomic_load_n(&e->counters.native_connects, __ATOMIC_RELAXED);
  out->native_open = __atomic_load_n(&e->counters.native_open, __ATOMIC_RELAXED);
  out->in_flight = out->submitted - out->completed;
}
