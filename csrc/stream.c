/*
 * A streamed response body (stream=True): the buffer between the engine thread, which writes what arrives, and
 * the Python reader, which takes it as it wants.
 *
 * The buffer holds at most about STREAM_HIGH_WATER unread bytes: past that the engine pauses the transfer in
 * libcurl (the server then waits on TCP's window), and the reader, taking the buffer below STREAM_LOW_WATER,
 * asks the engine to resume it. A reader with nothing to take waits; the engine wakes it, through the same queue
 * and eventfd as finished requests, when data or the end arrives. Everything shared is under the stream's lock;
 * the engine never waits for the reader and the reader never waits for the engine while it holds the lock.
 */
#include "locust_c.h"

#include <stdlib.h>
#include <string.h>

stream_t *stream_create(uint64_t id) {
  stream_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  if (pthread_mutex_init(&s->lock, NULL) != 0) {
    free(s);
    return NULL;
  }
  s->refs = 1;
  s->id = id;
  return s;
}

void stream_ref(stream_t *s) { __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED); }

/*
 * Python lets go of a stream's request. While the transfer runs, libcurl may still read the request's memory (its
 * header list and body are in the same allocation): the engine frees it when the transfer ends. Returns 1 when
 * the engine has taken it over, 0 when the caller frees it.
 */
int stream_orphan(stream_t *s, request_t *req) {
  int taken;
  pthread_mutex_lock(&s->lock);
  taken = s->running;
  if (taken) s->orphan = req;
  pthread_mutex_unlock(&s->lock);
  return taken;
}

void stream_unref(stream_t *s) {
  if (s == NULL || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  buf_free(&s->data);
  free(s->error);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/*
 * Reader: copies up to max unread bytes (all of them when max is SIZE_MAX) into out, which the caller has made
 * large enough for stream_available's count. Returns how many, and sets *resume when the engine paused the
 * transfer and the buffer is now low enough for it to go on: the caller then sends CMD_RESUME.
 */
size_t stream_take(stream_t *s, char *out, size_t max, int *resume) {
  size_t n;
  pthread_mutex_lock(&s->lock);
  n = s->data.len - s->start;
  if (n > max) n = max;
  if (n > 0) memcpy(out, s->data.data + s->start, n); /* (before anything arrived there is no buffer) */
  s->start += n;
  if (s->start == s->data.len) {
    s->start = s->data.len = 0;
  } else if (s->start > s->data.cap / 2) { /* keep the buffer from creeping forward through memory */
    memmove(s->data.data, s->data.data + s->start, s->data.len - s->start);
    s->data.len -= s->start;
    s->start = 0;
  }
  *resume = s->reader_paused && s->data.len - s->start < STREAM_LOW_WATER;
  if (*resume) s->reader_paused = 0;
  pthread_mutex_unlock(&s->lock);
  return n;
}

size_t stream_available(stream_t *s) {
  size_t n;
  pthread_mutex_lock(&s->lock);
  n = s->data.len - s->start;
  pthread_mutex_unlock(&s->lock);
  return n;
}

/*
 * Reader: 0 when it need not wait; 1 when it must (nothing to take, not ended) and the engine will wake it; 2 when
 * it must and a wake-up is already on its way (one an interrupted wait left), which will serve this wait.
 */
int stream_arm(stream_t *s) {
  int wait;
  pthread_mutex_lock(&s->lock);
  wait = s->data.len == s->start && !s->done;
  s->waiting = wait;
  if (wait && s->wake_queued) wait = 2;
  pthread_mutex_unlock(&s->lock);
  return wait;
}

/* Reader: it stops waiting (it was interrupted). Returns 1 when a wake-up is on its way all the same. */
int stream_disarm(stream_t *s) {
  int queued;
  pthread_mutex_lock(&s->lock);
  s->waiting = 0;
  queued = s->wake_queued;
  pthread_mutex_unlock(&s->lock);
  return queued;
}

/* Engine, with the lock held: the reader waits and now has something: it is to be woken (see engine_wake). */
int stream_should_wake(stream_t *s) {
  /* One wake-up at a time: one on its way serves a reader that waits again before it arrives. */
  if (!s->waiting || s->wake_queued || (s->data.len == s->start && !s->done)) return 0;
  s->waiting = 0;
  s->wake_queued = 1;
  return 1;
}

/*
 * Engine: the stream's transfer ended with result (a CURLcode or REQ_ERR_*, error its message). *orphan is the
 * request Python let go of meanwhile, for the caller to free once libcurl has let go of it too. Returns 1 when
 * the reader is to be woken (engine_wake).
 */
int stream_end(stream_t *s, int result, const char *error, request_t **orphan) {
  int wake;
  pthread_mutex_lock(&s->lock);
  s->running = 0;
  *orphan = s->orphan;
  s->orphan = NULL;
  s->done = 1;
  s->result = result;
  if (result != 0) s->error = strdup(error);
  wake = stream_should_wake(s);
  pthread_mutex_unlock(&s->lock);
  return wake;
}

/*
 * Engine: a stream whose request ended before it was delivered (nobody reads it yet): body becomes its whole
 * content, taken over (body is left empty), and the stream has ended with result.
 */
void stream_end_with_body(stream_t *s, buf_t *body, int result) {
  pthread_mutex_lock(&s->lock);
  buf_free(&s->data);
  s->data = *body;
  memset(body, 0, sizeof(*body));
  s->start = 0;
  s->done = 1;
  s->result = result;
  pthread_mutex_unlock(&s->lock);
}
