/*
 * Result: a finished request as Python reads it, and the reader's side of a stream=True body.
 */
#include "py_types.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- Result ------------------------------------------------------------------------------------------ */

static void result_dealloc(ResultObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  stream_t *stream = self->req != NULL ? self->req->stream : NULL;
  if (stream != NULL && self->client != NULL) {
    int done;
    stream->reader = NULL;
    pthread_mutex_lock(&stream->lock);
    done = stream->done;
    pthread_mutex_unlock(&stream->lock);
    /* Nobody will read the rest: the transfer stops and its connection closes, as when a stream is closed. A
     * request that failed before its headers never had a transfer on its stream; a closed client has none. */
    if (!done && self->req->result == CURLE_OK && !((ClientObject *)self->client)->closed)
      client_obj_send((ClientObject *)self->client, CMD_CANCEL, stream->id);
  }
  Py_XDECREF(self->client);
  Py_XDECREF(self->waiter);
  request_free(self->req);
  Py_XDECREF(self->content);
  Py_XDECREF(self->head);
  tp->tp_free(self);
  Py_DECREF(tp);
}

static PyObject *result_get_content(ResultObject *self, void *closure) {
  if (self->content == NULL) {
    buf_t *b = &self->req->content;
    self->content = PyBytes_FromStringAndSize(b->data, (Py_ssize_t)b->len);
    if (self->content == NULL) return NULL;
    buf_free(b); /* the bytes object is the copy from now on */
  }
  return Py_NewRef(self->content);
}

static PyObject *result_get_content_length(ResultObject *self, void *closure) {
  if (self->content != NULL) return PyLong_FromSsize_t(PyBytes_GET_SIZE(self->content));
  return PyLong_FromSize_t(self->req->content.len);
}

static PyObject *result_get_head(ResultObject *self, void *closure) {
  if (self->head == NULL) {
    buf_t *b = &self->req->head;
    self->head = PyBytes_FromStringAndSize(b->data, (Py_ssize_t)b->len);
    if (self->head == NULL) return NULL;
    buf_free(b);
  }
  return Py_NewRef(self->head);
}

static PyObject *result_get_redirects_head(ResultObject *self, void *closure) {
  buf_t *b = &self->req->redirects_head;
  return PyBytes_FromStringAndSize(b->data, (Py_ssize_t)b->len);
}

static PyObject *result_get_effective_url(ResultObject *self, void *closure) {
  if (self->req->effective_url == NULL) Py_RETURN_NONE;
  return PyUnicode_DecodeUTF8(self->req->effective_url, (Py_ssize_t)strlen(self->req->effective_url), "replace");
}

static PyObject *result_get_error(ResultObject *self, void *closure) {
  if (self->req->error == NULL) Py_RETURN_NONE;
  return PyUnicode_DecodeUTF8(self->req->error, (Py_ssize_t)strlen(self->req->error), "replace");
}

/* ---- Result: a streamed body (stream=True) ----------------------------------------------------------- */

static stream_t *result_stream(ResultObject *self) {
  if (self->req == NULL || self->req->stream == NULL || self->client == NULL) {
    PyErr_SetString(PyExc_ValueError, "this request was not made with stream=True");
    return NULL;
  }
  return self->req->stream;
}

/* stream_read(n) -> bytes: up to n bytes of what has arrived (n < 0: all of it), b"" when nothing has. */
static PyObject *result_stream_read(ResultObject *self, PyObject *arg) {
  stream_t *s = result_stream(self);
  Py_ssize_t max = PyLong_AsSsize_t(arg);
  size_t n, want;
  PyObject *out;
  char *into;
  int resume = 0;
  if (s == NULL || (max == -1 && PyErr_Occurred())) return NULL;
  n = stream_available(s); /* only the reader takes: no fewer are there when it takes them */
  want = max < 0 || (size_t)max > n ? n : (size_t)max;
  if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)want)) == NULL) return NULL;
  into = PyBytes_AS_STRING(out);
  n = stream_take(s, into, want, &resume);
  assert(n == want);
  if (resume && client_obj_send((ClientObject *)self->client, CMD_RESUME, s->id) != 0) {
    pthread_mutex_lock(&s->lock);
    s->reader_paused = 1; /* the engine still has it paused: the next read asks again */
    pthread_mutex_unlock(&s->lock);
  }
  return out;
}

/*
 * stream_wait(waiter) -> 0 when there is something to read; else waiter.switch() comes with data or the end, and
 * it is 1 when a new wake-up will come for it, 2 when the one an interrupted wait left on its way serves it.
 */
static PyObject *result_stream_wait(ResultObject *self, PyObject *waiter) {
  stream_t *s = result_stream(self);
  int armed;
  if (s == NULL) return NULL;
  if ((armed = stream_arm(s)) == 0) return PyLong_FromLong(0);
  Py_XSETREF(self->waiter, Py_NewRef(waiter));
  return PyLong_FromLong(armed);
}

/* stream_unwait() -> bool: the waiter stops waiting; True when its wake-up is on its way all the same. */
static PyObject *result_stream_unwait(ResultObject *self, PyObject *unused) {
  stream_t *s = result_stream(self);
  if (s == NULL) return NULL;
  Py_CLEAR(self->waiter);
  return PyBool_FromLong(stream_disarm(s));
}

/* stream_end() -> None while the transfer runs, then (result, error message or None). */
static PyObject *result_stream_end(ResultObject *self, PyObject *unused) {
  stream_t *s = result_stream(self);
  int done, result;
  PyObject *error;
  if (s == NULL) return NULL;
  pthread_mutex_lock(&s->lock);
  done = s->done;
  result = s->result;
  pthread_mutex_unlock(&s->lock);
  if (!done) Py_RETURN_NONE;
  /* error is written before done and never after: read without the lock once done was seen under it. */
  error = s->error ? PyUnicode_DecodeUTF8(s->error, (Py_ssize_t)strlen(s->error), "replace") : Py_NewRef(Py_None);
  if (error == NULL) return NULL;
  return Py_BuildValue("(iN)", result, error);
}

static PyMethodDef result_methods[] = {
    {"stream_read", (PyCFunction)result_stream_read, METH_O, "stream_read(n) -> up to n bytes that have arrived."},
    {"stream_wait", (PyCFunction)result_stream_wait, METH_O,
     "stream_wait(waiter) -> 0, or 1/2 when the reader must wait: waiter.switch() comes with data or the end "
     "(2: by the wake-up an interrupted wait left)."},
    {"stream_unwait", (PyCFunction)result_stream_unwait, METH_NOARGS,
     "stream_unwait() -> True when a wake-up is on its way although the reader no longer waits."},
    {"stream_end", (PyCFunction)result_stream_end, METH_NOARGS,
     "stream_end() -> None while the body arrives, then (result, error)."},
    {NULL},
};

static PyGetSetDef result_getset[] = {
    {"content", (getter)result_get_content, NULL, "The response body as bytes (copied on first read).", NULL},
    {"content_length", (getter)result_get_content_length, NULL, "Length of the body, without copying it.", NULL},
    {"head", (getter)result_get_head, NULL, "The raw header block of the last response.", NULL},
    {"redirects_head", (getter)result_get_redirects_head, NULL,
     "The raw header blocks of the redirects followed before the last response, one after the other.", NULL},
    {"effective_url", (getter)result_get_effective_url, NULL, "The final URL after redirects, or None.", NULL},
    {"error", (getter)result_get_error, NULL, "libcurl's message for a failed transfer, or None.", NULL},
    {NULL},
};

static PyMemberDef result_members[] = {
    {"status", T_LONG, offsetof(ResultObject, status), READONLY, "HTTP status code, 0 when none came."},
    {"result", T_INT, offsetof(ResultObject, result), READONLY, "CURLcode of the transfer; -1 when cancelled."},
    {"os_errno", T_INT, offsetof(ResultObject, os_errno), READONLY, "errno of a failed connect or read."},
    {"response_time", T_DOUBLE, offsetof(ResultObject, response_time), READONLY,
     "Milliseconds from the start of the transfer to its last byte."},
    {"redirects", T_LONG, offsetof(ResultObject, redirects), READONLY, "Redirects followed."},
    {"recorded", T_INT, offsetof(ResultObject, recorded), READONLY,
     "True when the engine already folded this request into Locust's statistics."},
    {"done_time", T_DOUBLE, offsetof(ResultObject, done_time), READONLY,
     "Wall-clock time (epoch seconds) of the last byte."},
    {NULL},
};

static PyType_Slot result_slots[] = {
    {Py_tp_doc, "A finished request."},
    {Py_tp_dealloc, result_dealloc},
    {Py_tp_getset, result_getset},
    {Py_tp_members, result_members},
    {Py_tp_methods, result_methods},
    {0, NULL},
};

PyType_Spec result_spec = {
    .name = "locust_c._engine.Result",
    .basicsize = sizeof(ResultObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = result_slots,
};

/*
 * A request's Result is made when it is submitted, empty, so that delivering it needs no memory: a batch of
 * finished requests always reaches its waiters, whatever malloc says by then.
 */
ResultObject *result_alloc(module_state_t *st) {
  ResultObject *r = PyObject_New(ResultObject, st->result_type);
  if (r == NULL) return NULL;
  r->req = NULL;
  r->content = NULL;
  r->head = NULL;
  r->client = NULL;
  r->waiter = NULL;
  r->recorded = 0; /* set by dispatch before the Result is filled */
  return r;
}

/* The Result takes the finished request over. */
static void result_fill(ResultObject *r, request_t *req) {
  r->req = req;
  r->status = req->status;
  r->result = req->result;
  r->os_errno = req->os_errno;
  r->response_time = (double)req->total_us / 1000.0;
  r->redirects = (long)req->redirects;
  r->done_time = req->done_time;
}

/* Takes a finished request's token and Result out of it, the Result filled. */
ResultObject *request_deliver(request_t *req, PyObject **token) {
  ResultObject *r = req->pyresult;
  *token = req->token;
  req->token = req->pyresult = NULL;
  Py_CLEAR(*(PyObject **)&req->endpoint);
  result_fill(r, req);
  if (req->stream != NULL) req->stream->reader = r;
  return r;
}
