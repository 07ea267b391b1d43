/*
 * locust_c._engine: the CPython face of the engine. Multi-phase init, heap types from specs, module state
 * reached through the defining class. This is the only file that includes Python.h: C errors become
 * Python exceptions here, in lc_raise, and nowhere else.
 *
 *   Engine()            one engine thread; fileno() for the hub, dispatch() to resume finished requests
 *   Client(engine, ...) one simulated user's connections and cookies; submit/cancel/close
 *   Result              a finished request; its body is copied into Python only when read
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "locust_c.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/*
 * The pid of this process, refreshed in a forked child. Each submit checks that its engine belongs to this
 * process (a forked child inherits the parent's objects but not its threads); getpid() is a real system call
 * in glibc, so the check reads this copy instead.
 */
static pid_t process_pid;

static void process_pid_refresh(void) { process_pid = getpid(); }

typedef struct {
  PyTypeObject *engine_type;
  PyTypeObject *client_type;
  PyTypeObject *result_type;
  PyTypeObject *histogram_type;
  PyTypeObject *endpoint_type;
  PyObject *str_switch;
  PyObject *flush; /* callable(list of dirty Endpoints), set by locust_c.stats */
} module_state_t;

typedef struct {
  PyObject_HEAD
  hist_t *hist;
} HistogramObject;

/* One (method, name) row of a Locust stats table: exact histograms and the delta not yet folded into Locust. */
typedef struct {
  PyObject_HEAD
  PyObject *method;
  PyObject *name;
  PyObject *target;          /* whatever the Python side wants to find the Locust entry by */
  HistogramObject *hist;     /* every request since the last reset */
  HistogramObject *unsent;   /* since the last worker report */
  int dirty;
  stats_delta_t delta;
} EndpointObject;

typedef struct {
  PyObject_HEAD
  engine_t *engine;
  pid_t pid;
  PyObject *dirty; /* dispatch's list of endpoints with a delta to flush, kept between batches */
} EngineObject;

typedef struct {
  PyObject_HEAD
  EngineObject *engine;
  client_t *client;
  int closed;
} ClientObject;

typedef struct {
  PyObject_HEAD
  request_t *req;
  PyObject *content; /* cached bytes */
  PyObject *head;    /* cached bytes */
  long status;
  int result;
  int os_errno;
  double response_time; /* ms */
  long redirects;
  int recorded; /* already in Locust's stats through the batch */
  double done_time;
  PyObject *client; /* stream=True: the Client, to send the stream's resume and cancel commands */
  PyObject *waiter; /* stream=True: the greenlet's waiter while it waits for the stream */
} ResultObject;

static uint64_t next_request_id = 1;

/* ---- errors: the one place where C errors become Python exceptions ----------------------------------- */

static PyObject *lc_raise(int rc, const char *what) {
  if (rc == -ENOMEM) return PyErr_NoMemory();
  if (rc == -ESHUTDOWN) {
    PyErr_Format(PyExc_RuntimeError, "%s: the locust-c engine has been stopped", what);
    return NULL;
  }
  errno = -rc;
  PyErr_Format(PyExc_OSError, "%s: %s", what, strerror(-rc));
  return NULL;
}

/* ---- Result ------------------------------------------------------------------------------------------ */

static int client_obj_send(ClientObject *self, cmd_kind_t kind, uint64_t id);

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

static PyType_Spec result_spec = {
    .name = "locust_c._engine.Result",
    .basicsize = sizeof(ResultObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = result_slots,
};

/*
 * A request's Result is made when it is submitted, empty, so that delivering it needs no memory: a batch of
 * finished requests always reaches its waiters, whatever malloc says by then.
 */
static ResultObject *result_alloc(module_state_t *st) {
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
static ResultObject *request_deliver(request_t *req, PyObject **token) {
  ResultObject *r = req->pyresult;
  *token = req->token;
  req->token = req->pyresult = NULL;
  Py_CLEAR(*(PyObject **)&req->endpoint);
  result_fill(r, req);
  if (req->stream != NULL) req->stream->reader = r;
  return r;
}

/* ---- Histogram --------------------------------------------------------------------------------------- */

static HistogramObject *histogram_create(PyTypeObject *type) {
  HistogramObject *self = (HistogramObject *)type->tp_alloc(type, 0);
  if (self == NULL) return NULL;
  if ((self->hist = malloc(sizeof(hist_t))) == NULL) {
    Py_DECREF(self);
    PyErr_NoMemory();
    return NULL;
  }
  hist_init(self->hist);
  return self;
}

static PyObject *histogram_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
  if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
    PyErr_SetString(PyExc_TypeError, "Histogram() takes no arguments");
    return NULL;
  }
  return (PyObject *)histogram_create(type);
}

static void histogram_dealloc(HistogramObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  if (self->hist != NULL) hist_reset(self->hist);
  free(self->hist);
  tp->tp_free(self);
  Py_DECREF(tp);
}

static PyObject *histogram_record(HistogramObject *self, PyObject *arg) {
  unsigned long long v = PyLong_AsUnsignedLongLong(arg);
  if (v == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
  if (hist_record(self->hist, v) != 0) return PyErr_NoMemory();
  Py_RETURN_NONE;
}

static PyObject *histogram_percentile(HistogramObject *self, PyObject *arg) {
  double p = PyFloat_AsDouble(arg);
  if (p == -1.0 && PyErr_Occurred()) return NULL;
  if (!(p >= 0.0 && p <= 100.0)) {
    PyErr_Format(PyExc_ValueError, "percentile must be between 0 and 100, not %R", arg);
    return NULL;
  }
  return PyLong_FromUnsignedLongLong(hist_value_at_percentile(self->hist, p));
}

/* The non-zero counts as a flat list [index, count, index, count, ...], with total/min/max/sum first. */
static PyObject *histogram_sparse(HistogramObject *self, PyObject *unused) {
  hist_t *h = self->hist;
  PyObject *out = PyList_New(0), *v;
  uint64_t count;
  size_t i;
  if (out == NULL) return NULL;
  for (i = hist_next(h, 0, &count); i < HIST_COUNTS; i = hist_next(h, i + 1, &count)) {
    if ((v = PyLong_FromSize_t(i)) == NULL || PyList_Append(out, v) < 0) goto fail;
    Py_DECREF(v);
    if ((v = PyLong_FromUnsignedLongLong(count)) == NULL || PyList_Append(out, v) < 0) goto fail;
    Py_DECREF(v);
  }
  return Py_BuildValue("(KKKKN)", (unsigned long long)h->total, (unsigned long long)(h->total ? h->min_us : 0),
                       (unsigned long long)h->max_us, (unsigned long long)h->sum_us, out);
fail:
  Py_XDECREF(v);
  Py_DECREF(out);
  return NULL;
}

/* Adds what sparse() returned (possibly from another process): merging loses nothing. */
static PyObject *histogram_add_sparse(HistogramObject *self, PyObject *arg) {
  unsigned long long total, min_us, max_us, sum_us;
  PyObject *counts, *seq;
  hist_t *h = self->hist;
  Py_ssize_t i, n;
  if (!PyArg_ParseTuple(arg, "KKKKO:add_sparse", &total, &min_us, &max_us, &sum_us, &counts)) return NULL;
  if ((seq = PySequence_Fast(counts, "counts must be a sequence")) == NULL) return NULL;
  n = PySequence_Fast_GET_SIZE(seq);
  if (n % 2 != 0) goto bad;
  for (i = 0; i < n; i += 2) {
    Py_ssize_t index = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(seq, i));
    unsigned long long c = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i + 1));
    if (PyErr_Occurred()) goto fail;
    if (index < 0 || index >= HIST_COUNTS) goto bad;
    if (hist_add(h, (size_t)index, c) != 0) {
      PyErr_NoMemory();
      goto fail;
    }
  }
  Py_DECREF(seq);
  if (total == 0) Py_RETURN_NONE;
  h->total += total;
  h->sum_us += sum_us;
  if (min_us < h->min_us) h->min_us = min_us;
  if (max_us > h->max_us) h->max_us = max_us;
  Py_RETURN_NONE;
bad:
  PyErr_SetString(PyExc_ValueError, "not a histogram from Histogram.sparse()");
fail:
  Py_DECREF(seq);
  return NULL;
}

static PyObject *histogram_merge(HistogramObject *self, PyObject *other) {
  if (!PyObject_TypeCheck(other, Py_TYPE(self))) {
    PyErr_SetString(PyExc_TypeError, "merge() takes a Histogram");
    return NULL;
  }
  if (hist_merge(self->hist, ((HistogramObject *)other)->hist) != 0) return PyErr_NoMemory();
  Py_RETURN_NONE;
}

static PyObject *histogram_reset(HistogramObject *self, PyObject *unused) {
  hist_reset(self->hist);
  Py_RETURN_NONE;
}

static PyObject *histogram_get_count(HistogramObject *self, void *c) {
  return PyLong_FromUnsignedLongLong(self->hist->total);
}
static PyObject *histogram_get_min(HistogramObject *self, void *c) {
  return PyLong_FromUnsignedLongLong(self->hist->total ? self->hist->min_us : 0);
}
static PyObject *histogram_get_max(HistogramObject *self, void *c) {
  return PyLong_FromUnsignedLongLong(self->hist->max_us);
}
static PyObject *histogram_get_sum(HistogramObject *self, void *c) {
  return PyLong_FromUnsignedLongLong(self->hist->sum_us);
}

static PyMethodDef histogram_methods[] = {
    {"record", (PyCFunction)histogram_record, METH_O, "Record one value in microseconds."},
    {"percentile", (PyCFunction)histogram_percentile, METH_O, "Value (us) at a percentile from 0 to 100."},
    {"sparse", (PyCFunction)histogram_sparse, METH_NOARGS, "(total, min, max, sum, [index, count, ...])."},
    {"add_sparse", (PyCFunction)histogram_add_sparse, METH_O, "Add a histogram given as sparse() returns it."},
    {"merge", (PyCFunction)histogram_merge, METH_O, "Add another Histogram's counts."},
    {"reset", (PyCFunction)histogram_reset, METH_NOARGS, "Forget every value."},
    {NULL},
};

static PyGetSetDef histogram_getset[] = {
    {"count", (getter)histogram_get_count, NULL, "Values recorded.", NULL},
    {"min", (getter)histogram_get_min, NULL, "Smallest value (us), 0 when empty.", NULL},
    {"max", (getter)histogram_get_max, NULL, "Largest value (us).", NULL},
    {"sum", (getter)histogram_get_sum, NULL, "Sum of the values (us).", NULL},
    {NULL},
};

static PyType_Slot histogram_slots[] = {
    {Py_tp_doc, "Histogram()\n--\n\nA latency histogram with 3 significant digits from 1 us to ~71 minutes."},
    {Py_tp_new, histogram_new},
    {Py_tp_dealloc, histogram_dealloc},
    {Py_tp_methods, histogram_methods},
    {Py_tp_getset, histogram_getset},
    {0, NULL},
};

static PyType_Spec histogram_spec = {
    .name = "locust_c._engine.Histogram",
    .basicsize = sizeof(HistogramObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = histogram_slots,
};

/* ---- Endpoint ---------------------------------------------------------------------------------------- */

static PyObject *endpoint_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"method", "name", "target", NULL};
  module_state_t *st = PyType_GetModuleState(type);
  PyObject *method, *name, *target = Py_None;
  EndpointObject *self;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UU|O:Endpoint", kwlist, &method, &name, &target)) return NULL;
  self = (EndpointObject *)type->tp_alloc(type, 0);
  if (self == NULL) return NULL;
  self->method = Py_NewRef(method);
  self->name = Py_NewRef(name);
  self->target = Py_NewRef(target);
  self->hist = histogram_create(st->histogram_type);
  if (self->hist == NULL) {
    Py_DECREF(self);
    return NULL;
  }
  stats_delta_init(&self->delta);
  return (PyObject *)self;
}

static int endpoint_traverse(EndpointObject *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(self->target);
  return 0;
}

static int endpoint_clear(EndpointObject *self) {
  Py_CLEAR(self->target);
  return 0;
}

static void endpoint_dealloc(EndpointObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  endpoint_clear(self);
  Py_XDECREF(self->method);
  Py_XDECREF(self->name);
  Py_XDECREF(self->hist);
  Py_XDECREF(self->unsent);
  stats_delta_free(&self->delta);
  tp->tp_free(self);
  Py_DECREF(tp);
}

/* Records one finished request: always in the histograms, and in the Locust delta when asked. */
static int endpoint_record(EndpointObject *self, request_t *req, int batch) {
  hist_record(self->hist->hist, (uint64_t)req->total_us);
  if (self->unsent != NULL) hist_record(self->unsent->hist, (uint64_t)req->total_us);
  if (!batch) return 0;
  return stats_delta_record(&self->delta, (double)req->total_us / 1000.0, req->content.len, req->done_time);
}

/*
 * take() -> None or (count, sum_ms, min_ms, max_ms, content_length, last_time, {second: n}, {bucket_ms: n})
 * and starts a new delta.
 */
static PyObject *endpoint_take(EndpointObject *self, PyObject *unused) {
  stats_delta_t *d = &self->delta;
  PyObject *seconds = NULL, *buckets = NULL, *k = NULL, *v = NULL, *out;
  int i;
  self->dirty = 0;
  if (d->count == 0) {
    stats_delta_init(d);
    Py_RETURN_NONE;
  }
  if ((seconds = PyDict_New()) == NULL || (buckets = PyDict_New()) == NULL) goto fail;
  for (i = 0; i < d->nseconds; i++) {
    if (d->seconds[i].count == 0) continue;
    k = PyLong_FromLongLong(d->seconds[i].second);
    v = PyLong_FromUnsignedLong(d->seconds[i].count);
    if (k == NULL || v == NULL || PyDict_SetItem(seconds, k, v) < 0) goto fail;
    Py_CLEAR(k);
    Py_CLEAR(v);
  }
  for (i = 0; i < d->nbuckets; i++) {
    const delta_bucket_t *b = stats_delta_bucket(d, i);
    k = PyLong_FromLongLong(b->key);
    v = PyLong_FromUnsignedLongLong(b->count);
    if (k == NULL || v == NULL || PyDict_SetItem(buckets, k, v) < 0) goto fail;
    Py_CLEAR(k);
    Py_CLEAR(v);
  }
  out = Py_BuildValue("(KdddKdNN)", (unsigned long long)d->count, d->sum_ms, d->min_ms, d->max_ms,
                      (unsigned long long)d->content_length, d->last_time, seconds, buckets);
  stats_delta_init(d);
  return out;
fail:
  Py_XDECREF(k);
  Py_XDECREF(v);
  Py_XDECREF(seconds);
  Py_XDECREF(buckets);
  return NULL;
}

/* A worker's endpoints also keep what they recorded since the last report to the master (see stats.py). */
static PyObject *endpoint_track_unsent(EndpointObject *self, PyObject *unused) {
  if (self->unsent == NULL) {
    module_state_t *st = PyType_GetModuleState(Py_TYPE(self));
    if ((self->unsent = histogram_create(st->histogram_type)) == NULL) return NULL;
  }
  Py_RETURN_NONE;
}

static PyMethodDef endpoint_methods[] = {
    {"track_unsent", (PyCFunction)endpoint_track_unsent, METH_NOARGS,
     "Keep an 'unsent' histogram too, of what was recorded since the last worker report."},
    {"take", (PyCFunction)endpoint_take, METH_NOARGS,
     "take() -> None or (count, sum_ms, min_ms, max_ms, content_length, last_time, {second: n}, {bucket: n})"},
    {NULL},
};

static PyMemberDef endpoint_members[] = {
    {"method", T_OBJECT, offsetof(EndpointObject, method), READONLY, "HTTP method."},
    {"name", T_OBJECT, offsetof(EndpointObject, name), READONLY, "Name in Locust's statistics."},
    {"target", T_OBJECT, offsetof(EndpointObject, target), 0, "The Python side's handle on the Locust entry."},
    {"hist", T_OBJECT, offsetof(EndpointObject, hist), READONLY, "Histogram of every request since the reset."},
    {"unsent", T_OBJECT, offsetof(EndpointObject, unsent), READONLY,
     "Histogram since the last worker report, or None (see track_unsent())."},
    {"dirty", T_INT, offsetof(EndpointObject, dirty), READONLY, "True while a delta waits for take()."},
    {NULL},
};

static PyType_Slot endpoint_slots[] = {
    {Py_tp_doc, "Endpoint(method, name, target=None)\n--\n\nExact latency histograms of one stats row, and the "
                "batch of successes not yet folded into Locust's statistics."},
    {Py_tp_new, endpoint_new},
    {Py_tp_dealloc, endpoint_dealloc},
    {Py_tp_traverse, endpoint_traverse},
    {Py_tp_clear, endpoint_clear},
    {Py_tp_methods, endpoint_methods},
    {Py_tp_members, endpoint_members},
    {0, NULL},
};

static PyType_Spec endpoint_spec = {
    .name = "locust_c._engine.Endpoint",
    .basicsize = sizeof(EndpointObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = endpoint_slots,
};

/* ---- Engine ------------------------------------------------------------------------------------------ */

static PyObject *engine_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"idle_seconds", NULL};
  double idle_seconds = ENGINE_SET_ASIDE_AFTER_MS / 1000.0;
  EngineObject *self;
  int rc;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$d:Engine", kwlist, &idle_seconds)) return NULL;
  if (!(idle_seconds >= 0 && idle_seconds <= 86400)) {
    PyErr_SetString(PyExc_ValueError, "idle_seconds must be from 0 (never set users aside) to 86400");
    return NULL;
  }
  self = (EngineObject *)type->tp_alloc(type, 0);
  if (self == NULL) return NULL;
  self->pid = process_pid;
  if ((self->dirty = PyList_New(0)) == NULL) {
    Py_DECREF(self);
    return NULL;
  }
  self->engine = calloc(1, sizeof(engine_t));
  if (self->engine == NULL) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  if ((rc = engine_init(self->engine, idle_seconds > 0 ? (uint64_t)(idle_seconds * 1000) + 1 : 0)) != 0) {
    free(self->engine);
    self->engine = NULL;
    Py_DECREF(self);
    return lc_raise(rc, "cannot create the engine");
  }
  if ((rc = engine_start(self->engine)) != 0) {
    engine_destroy(self->engine);
    free(self->engine);
    self->engine = NULL;
    Py_DECREF(self);
    return lc_raise(rc, "cannot start the engine thread");
  }
  return (PyObject *)self;
}

/* Drops the tokens of requests nobody will resume (the engine stopped under them). */
static void engine_discard_done(engine_t *e) {
  request_t *req = engine_drain(e), *next;
  for (; req; req = next) {
    PyObject *token;
    next = req->next;
    Py_DECREF(request_deliver(req, &token)); /* frees the request */
    Py_DECREF(token);
  }
}

static int engine_obj_stop(EngineObject *self) {
  if (self->engine == NULL) return 0;
  if (self->pid != process_pid) {
    /* A forked child: the thread is not ours and the memory may be in any state. Leave it alone. */
    self->engine = NULL;
    return 0;
  }
  Py_BEGIN_ALLOW_THREADS
  engine_stop(self->engine);
  Py_END_ALLOW_THREADS
  engine_discard_done(self->engine);
  engine_destroy(self->engine);
  free(self->engine);
  self->engine = NULL;
  return 0;
}

static void engine_dealloc(EngineObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  engine_obj_stop(self);
  Py_XDECREF(self->dirty);
  tp->tp_free(self);
  Py_DECREF(tp);
}

static int engine_check(EngineObject *self) {
  if (LC_UNLIKELY(self->engine == NULL || self->pid != process_pid)) { /* stopped, or the parent's (after fork) */
    PyErr_SetString(PyExc_RuntimeError, "the locust-c engine has been stopped");
    return -1;
  }
  return 0;
}

static PyObject *engine_fileno(EngineObject *self, PyObject *unused) {
  if (engine_check(self) < 0) return NULL;
  return PyLong_FromLong(self->engine->event_fd);
}

/* FastHttpUser's valid_response_codes (locust_c.session.VALID_RESPONSE_CODES): only these are batched. */
static int status_is_success(long status) {
  switch (status) {
  case 200: case 201: case 202: case 203: case 204: case 205: case 206: case 207: case 208: case 226:
  case 301: case 302: case 303: case 304: case 307: case 308:
    return 1;
  default:
    return 0;
  }
}

/*
 * Resumes every waiter whose request has finished: token.switch(result) for each, in completion order.
 * Runs in the gevent hub (it is the eventfd watcher's callback). Before any waiter runs, the batch's
 * statistics are recorded and the successes folded into Locust's (through the flush callback), so every
 * request is in Locust's stats by the time its client call returns. An error in one waiter is reported and
 * does not stop the others. Returns how many requests were delivered.
 *
 * Nothing here needs memory to reach a waiter: the Results were made at submit. A success that cannot join the
 * batch (no memory for the list of endpoints to flush) goes unbatched, reported by its waiter as a failure is.
 */
/*
 * Wakes the readers of streams that have data or have ended. A reader that let go of its stream, or stopped
 * waiting, is not there to wake; its wake-up still counts as delivered (see EngineHandle.pending).
 */
static size_t stream_dispatch(stream_t *s) {
  size_t n = 0;
  for (stream_t *next; s != NULL; s = next, n++) {
    ResultObject *r;
    next = s->next_wake;
    pthread_mutex_lock(&s->lock);
    s->wake_queued = 0;
    s->waiting = 0; /* this wake-up serves whoever waits now */
    pthread_mutex_unlock(&s->lock);
    r = s->reader;
    if (r != NULL && r->waiter != NULL) {
      PyObject *waiter = r->waiter, *ret;
      r->waiter = NULL;
      ret = PyObject_CallMethod(waiter, "switch", "O", Py_None);
      if (ret == NULL)
        PyErr_WriteUnraisable(waiter);
      else
        Py_DECREF(ret);
      Py_DECREF(waiter);
    }
    stream_unref(s); /* the wake-up's */
  }
  return n;
}

static PyObject *engine_dispatch(EngineObject *self, PyTypeObject *cls, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
  module_state_t *st = PyType_GetModuleState(cls);
  request_t *req, *next, *head;
  stream_t *wakes;
  PyObject *dirty = self->dirty;
  size_t n = 0;

  if (engine_check(self) < 0) return NULL;
  head = engine_drain(self->engine);
  /* Taken now: a waiter resumed below may stop the engine. */
  wakes = engine_drain_wakes(self->engine);
  if (head == NULL) return PyLong_FromSize_t(stream_dispatch(wakes));

  /* Pass 1: statistics. */
  for (req = head; req; req = req->next) {
    EndpointObject *ep = req->endpoint;
    ResultObject *r = req->pyresult;
    int batch;
    n++;
    if (ep == NULL || req->result == REQ_ERR_CANCELLED) continue;
    batch = (req->flags & REQ_BATCH_STATS) && req->result == CURLE_OK && status_is_success(req->status);
    if (batch && !ep->dirty) {
      if (PyList_Append(dirty, (PyObject *)ep) == 0)
        ep->dirty = 1;
      else {
        PyErr_Clear();
        batch = 0;
      }
    }
    if (endpoint_record(ep, req, batch) == 0 && batch) r->recorded = 1;
  }

  /* Fold the batch into Locust's statistics. */
  if (PyList_GET_SIZE(dirty) > 0) {
    PyObject *ret = st->flush ? PyObject_CallOneArg(st->flush, dirty) : NULL;
    if (ret == NULL) {
      if (!PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "locust-c: no statistics flush callback is set");
      PyErr_WriteUnraisable(st->flush ? st->flush : Py_None);
    }
    Py_XDECREF(ret);
    /* An endpoint the callback did not take() (it raised) is offered again with the next batch. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(dirty); i++) ((EndpointObject *)PyList_GET_ITEM(dirty, i))->dirty = 0;
    if (PyList_SetSlice(dirty, 0, PyList_GET_SIZE(dirty), NULL) < 0) PyErr_WriteUnraisable(dirty);
  }

  /* Pass 2: resume the waiters. A Result owns its request from here on: read the link first. */
  for (req = head; req; req = next) {
    PyObject *token, *ret;
    ResultObject *r;
    next = req->next;
    req->next = NULL;
    r = request_deliver(req, &token);
    ret = PyObject_CallMethodOneArg(token, st->str_switch, (PyObject *)r);
    if (ret == NULL)
      PyErr_WriteUnraisable(token);
    else
      Py_DECREF(ret);
    Py_DECREF(r);
    Py_DECREF(token);
  }
  n += stream_dispatch(wakes);
  return PyLong_FromSize_t(n);
}

/* stop() -> [(token, Result), ...]: the requests the stop cancelled, for the caller to resume from the hub. */
static PyObject *engine_py_stop(EngineObject *self, PyTypeObject *cls, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
  engine_t *e = self->engine;
  request_t *req, *next;
  PyObject *out;
  if (e == NULL || self->pid != process_pid) {
    engine_obj_stop(self);
    return PyList_New(0);
  }
  self->engine = NULL; /* before the GIL is released: a second stop() or a close() sees a stopped engine */
  Py_BEGIN_ALLOW_THREADS
  engine_stop(e);
  Py_END_ALLOW_THREADS
  out = PyList_New(0);
  for (req = engine_drain(e); req; req = next) {
    PyObject *token, *pair = NULL;
    ResultObject *r;
    next = req->next;
    req->next = NULL;
    r = request_deliver(req, &token);
    if (out != NULL && ((pair = PyTuple_Pack(2, token, (PyObject *)r)) == NULL || PyList_Append(out, pair) < 0))
      Py_CLEAR(out);
    Py_XDECREF(pair);
    Py_DECREF(r);
    Py_DECREF(token);
  }
  /* Readers of streams the stop ended: their waiters are resumed from the hub too, with None. */
  for (stream_t *st = engine_drain_wakes(e), *next; st != NULL; st = next) {
    ResultObject *r = st->reader;
    PyObject *pair = NULL;
    next = st->next_wake;
    if (r != NULL && r->waiter != NULL) {
      if (out != NULL && ((pair = PyTuple_Pack(2, r->waiter, Py_None)) == NULL || PyList_Append(out, pair) < 0))
        Py_CLEAR(out);
      Py_XDECREF(pair);
      Py_CLEAR(r->waiter);
    }
    stream_unref(st);
  }
  engine_destroy(e);
  free(e);
  return out;
}

static PyObject *engine_py_counters(EngineObject *self, PyObject *unused) {
  engine_counters_t c;
  if (engine_check(self) < 0) return NULL;
  engine_counters(self->engine, &c);
  return Py_BuildValue("{sKsKsKsKsKsKsKsKsK}", "submitted", (unsigned long long)c.submitted, "completed",
                       (unsigned long long)c.completed, "in_flight", (unsigned long long)(c.submitted - c.completed),
                       "clients", (unsigned long long)c.clients, "socket_events", (unsigned long long)c.socket_events,
                       "set_aside", (unsigned long long)c.set_aside, "resumed", (unsigned long long)c.resumed,
                       "decode_pauses", (unsigned long long)c.decode_pauses, "stream_pauses",
                       (unsigned long long)c.stream_pauses);
}

static PyObject *engine_get_running(EngineObject *self, void *closure) {
  return PyBool_FromLong(self->engine != NULL);
}

static PyMethodDef engine_methods[] = {
    {"fileno", (PyCFunction)engine_fileno, METH_NOARGS, "The eventfd that is readable while results wait."},
    {"dispatch", (PyCFunction)(void (*)(void))engine_dispatch, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "Resume the waiter of every finished request; return how many there were."},
    {"stop", (PyCFunction)(void (*)(void))engine_py_stop, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "Stop the engine thread, cancelling requests in flight, and free it."},
    {"counters", (PyCFunction)engine_py_counters, METH_NOARGS, "Engine counters (a snapshot)."},
    {NULL},
};

static PyGetSetDef engine_getset[] = {
    {"running", (getter)engine_get_running, NULL, "False once stopped.", NULL},
    {NULL},
};

static PyType_Slot engine_slots[] = {
    {Py_tp_doc, "Engine()\n--\n\nOne native thread running a libuv loop that drives a libcurl multi handle."},
    {Py_tp_new, engine_new},
    {Py_tp_dealloc, engine_dealloc},
    {Py_tp_methods, engine_methods},
    {Py_tp_getset, engine_getset},
    {0, NULL},
};

static PyType_Spec engine_spec = {
    .name = "locust_c._engine.Engine",
    .basicsize = sizeof(EngineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = engine_slots,
};

/* ---- Client ------------------------------------------------------------------------------------------ */

/*
 * The OpenSSL SSL_CTX inside a Python ssl.SSLContext. CPython's PySSLContext (Modules/_ssl.c) has begun with it,
 * right after the object header, in every version since 3.0; the type is checked before the cast.
 */
typedef struct {
  PyObject_HEAD
  void *ctx;
} py_ssl_context_t;

static void *ssl_context_of(PyObject *obj) {
  PyObject *module = PyImport_ImportModule("_ssl"), *type;
  int is;
  if (module == NULL) return NULL;
  type = PyObject_GetAttrString(module, "_SSLContext");
  Py_DECREF(module);
  if (type == NULL) return NULL;
  is = PyObject_IsInstance(obj, type);
  Py_DECREF(type);
  if (is < 0) return NULL;
  if (!is) {
    PyErr_Format(PyExc_TypeError, "ssl_context must be an ssl.SSLContext, not %.100s", Py_TYPE(obj)->tp_name);
    return NULL;
  }
  if (((py_ssl_context_t *)obj)->ctx == NULL) PyErr_SetString(PyExc_ValueError, "this SSLContext has no context");
  return ((py_ssl_context_t *)obj)->ctx;
}

static int timeout_in_range(double seconds) {
  return seconds >= CLIENT_MIN_TIMEOUT && seconds <= CLIENT_MAX_TIMEOUT; /* NaN is in no range */
}

static PyObject *client_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"engine", "connect_timeout", "read_timeout", "timeout", "max_redirects", "max_retries",
                           "max_connections", "insecure", "http2", "proxy", "user_agent", "ca_file", "tls_sessions",
                           "max_response_bytes", "cert", "key", "ciphers", "tls_min", "tls_max", "verify_host",
                           "ssl_context", "cookies", NULL};
  PyObject *engine_obj, *ssl_context = Py_None;
  void *ssl_ctx = NULL;
  double connect_timeout = 60.0, read_timeout = 60.0, timeout = 0.0;
  int max_redirects = 30, max_retries = 0, max_connections = 10, insecure = 1, http2 = 0, tls_sessions = 1;
  int verify_host = 1, cookies = 1;
  long tls_min = 0, tls_max = 0;
  long long max_response_bytes = 64LL << 20;
  const char *proxy = NULL, *user_agent = NULL, *ca_file = NULL, *cert = NULL, *key = NULL, *ciphers = NULL;
  module_state_t *st = PyType_GetModuleState(type);
  client_options_t opts;
  ClientObject *self;

  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!|dddiiippzzzpLzzzllpOp:Client", kwlist, st->engine_type,
                                   &engine_obj, &connect_timeout, &read_timeout, &timeout, &max_redirects,
                                   &max_retries, &max_connections, &insecure, &http2, &proxy, &user_agent, &ca_file,
                                   &tls_sessions, &max_response_bytes, &cert, &key, &ciphers, &tls_min, &tls_max,
                                   &verify_host, &ssl_context, &cookies))
    return NULL;
  if (ssl_context != Py_None && (ssl_ctx = ssl_context_of(ssl_context)) == NULL) return NULL;
  /* The same ranges as locust_c.session's checks (which name the user's attributes); 0 is no limit for the
   * whole request and for reads, never for the connect. */
  if (!timeout_in_range(connect_timeout) || !(read_timeout == 0 || timeout_in_range(read_timeout)) ||
      !(timeout == 0 || timeout_in_range(timeout))) {
    PyErr_Format(PyExc_ValueError, "connect_timeout, read_timeout and timeout must be from %g to %g seconds",
                 CLIENT_MIN_TIMEOUT, CLIENT_MAX_TIMEOUT);
    return NULL;
  }
  if (max_redirects < 0 || max_redirects > CLIENT_MAX_REDIRECTS || max_retries < 0 ||
      max_retries > CLIENT_MAX_RETRIES || max_connections < 1 || max_connections > CLIENT_MAX_CONNECTIONS ||
      max_response_bytes < 0) {
    PyErr_Format(PyExc_ValueError, "max_redirects must be from 0 to %d, max_retries from 0 to %d, "
                 "max_connections from 1 to %d and max_response_bytes >= 0", CLIENT_MAX_REDIRECTS,
                 CLIENT_MAX_RETRIES, CLIENT_MAX_CONNECTIONS);
    return NULL;
  }
  if (tls_min < 0 || tls_min > CURL_SSLVERSION_TLSv1_3 || (tls_max != 0 && (tls_max < CURL_SSLVERSION_MAX_TLSv1_0 ||
                                                                              tls_max > CURL_SSLVERSION_MAX_TLSv1_3))) {
    PyErr_SetString(PyExc_ValueError, "tls_min and tls_max must be libcurl's CURL_SSLVERSION_ values");
    return NULL;
  }
  if (engine_check((EngineObject *)engine_obj) < 0) return NULL;
  opts = (client_options_t){
      .connect_timeout_ms = (long)(connect_timeout * 1000.0 + 0.5),
      .read_timeout_ms = (long)(read_timeout * 1000.0 + 0.5),
      .timeout_ms = (long)(timeout * 1000.0 + 0.5),
      .max_redirects = max_redirects,
      .max_retries = max_retries,
      .max_connections = max_connections,
      .max_response_bytes = (curl_off_t)max_response_bytes,
      .insecure = insecure,
      .http2 = http2,
      .tls_sessions = tls_sessions,
      .proxy = proxy,
      .user_agent = user_agent,
      .ca_file = ca_file,
      .cert = cert,
      .key = key,
      .ciphers = ciphers,
      .tls_min = tls_min,
      .tls_max = tls_max,
      .verify_host = verify_host,
      .ssl_ctx = ssl_ctx,
      .cookies = cookies,
  };
  self = (ClientObject *)type->tp_alloc(type, 0);
  if (self == NULL) return NULL;
  self->client = client_create(((EngineObject *)engine_obj)->engine, &opts);
  if (self->client == NULL) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  self->engine = (EngineObject *)Py_NewRef(engine_obj);
  return (PyObject *)self;
}

/* Sends the close command; the engine frees the connections. Returns 0 or a negative error. */
/*
 * Queues a command about this client for the engine thread. An engine that is stopped (or the parent's, after a
 * fork) takes none, and needs none: nothing of the client is left running there.
 */
static int client_obj_send(ClientObject *self, cmd_kind_t kind, uint64_t id) {
  cmd_t *cmd;
  int rc;
  if (self->engine->engine == NULL || self->engine->pid != process_pid) return 0;
  cmd = calloc(1, sizeof(*cmd));
  if (cmd == NULL) return -ENOMEM;
  cmd->kind = kind;
  cmd->client = self->client;
  cmd->id = id;
  client_ref(self->client); /* the command's reference, dropped by the engine once it has run the command */
  if ((rc = engine_send(self->engine->engine, cmd)) != 0) {
    client_unref(self->client);
    free(cmd);
    return rc == -ESHUTDOWN ? 0 : rc;
  }
  return 0;
}

static int client_obj_close(ClientObject *self) {
  if (self->closed || self->client == NULL) return 0;
  self->closed = 1;
  return client_obj_send(self, CMD_CLOSE_CLIENT, 0);
}

static void client_dealloc(ClientObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  if (self->client) {
    client_obj_close(self);
    /* A stopped engine left its registration to us only if it never knew the client; unref is right either way. */
    client_unref(self->client);
  }
  Py_XDECREF(self->engine);
  tp->tp_free(self);
  Py_DECREF(tp);
}

static int client_check(ClientObject *self) {
  if (LC_UNLIKELY(self->closed)) {
    PyErr_SetString(PyExc_RuntimeError, "this client has been closed");
    return -1;
  }
  return engine_check(self->engine);
}

/* RFC 9110 token characters, for methods and header names. */
static int is_tchar(unsigned char ch) {
  if (ch >= 'a' && ch <= 'z') return 1;
  if (ch >= 'A' && ch <= 'Z') return 1;
  if (ch >= '0' && ch <= '9') return 1;
  return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int validate_method(PyObject *method_obj, const char *m, Py_ssize_t len) {
  Py_ssize_t i;
  if (len == 0) goto bad;
  for (i = 0; i < len; i++)
    if (!is_tchar((unsigned char)m[i])) goto bad;
  return 0;
bad:
  PyErr_Format(PyExc_ValueError, "invalid HTTP method %R: a method is a non-empty token without spaces",
               method_obj);
  return -1;
}

/*
 * The host and port of a URL (what follows the scheme): an IPv6 literal must close its bracket, a port must be
 * a number from 1 to 65535. libcurl would otherwise fail such a URL as a network error, once per request.
 */
static int validate_authority(PyObject *url_obj, const char *a, Py_ssize_t len) {
  Py_ssize_t end = 0, host = 0, i;
  const char *port = NULL;
  while (end < len && a[end] != '/' && a[end] != '?' && a[end] != '#') end++;
  for (i = 0; i < end; i++)
    if (a[i] == '@') host = i + 1; /* user:password@ */
  if (host < end && a[host] == '[') {
    const char *close = memchr(a + host, ']', (size_t)(end - host));
    if (close == NULL) {
      PyErr_Format(PyExc_ValueError, "malformed URL %R: an IPv6 address without its closing ']'", url_obj);
      return -1;
    }
    if (close + 1 < a + end && close[1] != ':') {
      PyErr_Format(PyExc_ValueError, "malformed URL %R: unexpected text after the IPv6 address", url_obj);
      return -1;
    }
    if (close + 1 < a + end) port = close + 2;
  } else {
    const char *colon = memchr(a + host, ':', (size_t)(end - host));
    if (colon != NULL) port = colon + 1;
  }
  if (port != NULL && port < a + end) {
    long value = 0;
    const char *p;
    for (p = port; p < a + end; p++) {
      if (*p < '0' || *p > '9' || value > 65535) break;
      value = value * 10 + (*p - '0');
    }
    if (p < a + end || value < 1 || value > 65535) {
      PyErr_Format(PyExc_ValueError, "malformed URL %R: the port must be a number from 1 to 65535", url_obj);
      return -1;
    }
  }
  return 0;
}

/* Quick structural check; libcurl reports anything subtler as a failed request. */
static int validate_url(PyObject *url_obj, const char *u, Py_ssize_t len) {
  Py_ssize_t i, rest;
  if (len >= 7 && strncasecmp(u, "http://", 7) == 0)
    rest = 7;
  else if (len >= 8 && strncasecmp(u, "https://", 8) == 0)
    rest = 8;
  else {
    const char *colon = memchr(u, ':', (size_t)len);
    if (colon && colon != u && memchr(u, '/', (size_t)len) > (void *)colon)
      PyErr_Format(PyExc_ValueError, "unsupported URL scheme in %R: only http:// and https:// are supported", url_obj);
    else
      PyErr_Format(PyExc_ValueError, "malformed URL %R: expected an absolute http:// or https:// URL", url_obj);
    return -1;
  }
  if (rest == len || u[rest] == '/' || u[rest] == '?' || u[rest] == '#' || u[rest] == ':') {
    PyErr_Format(PyExc_ValueError, "malformed URL %R: no host", url_obj);
    return -1;
  }
  if (validate_authority(url_obj, u + rest, len - rest) < 0) return -1;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)u[i];
    if (ch <= 0x20 || ch == 0x7f) {
      PyErr_Format(PyExc_ValueError, "malformed URL %R: it contains whitespace or a control character", url_obj);
      return -1;
    }
  }
  return 0;
}

static int validate_header(PyObject *line_obj, const char *h, Py_ssize_t len) {
  Py_ssize_t i, colon = -1;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)h[i];
    if (ch == '\r' || ch == '\n' || ch == '\0') {
      PyErr_Format(PyExc_ValueError, "invalid header %R: header names and values must not contain CR, LF or NUL",
                   line_obj);
      return -1;
    }
    if (colon < 0) {
      if (ch == ':' || (ch == ';' && i == len - 1)) /* "Name;" is libcurl's way to send a header empty */
        colon = i;
      else if (!is_tchar(ch))
        break;
    }
  }
  if (colon <= 0) {
    PyErr_Format(PyExc_ValueError, "invalid header %R: expected 'Name: value' with a token for a name", line_obj);
    return -1;
  }
  return 0;
}

/*
 * submit(token, method, url, headers, body, flags, endpoint) -> request id
 *
 * Copies the request into one allocation (strings, the curl_slist nodes, the body) and queues it. headers
 * is a tuple of str "Name: value" lines or None; body is a bytes-like object or None. The token is
 * resumed with token.switch(result) when the request finishes.
 */
static PyObject *client_submit_py(ClientObject *self, PyObject *const *args, Py_ssize_t nargs) {
  PyObject *token, *method_obj, *url_obj, *headers_obj, *body_obj, *endpoint_obj;
  ResultObject *result;
  const char *method, *url;
  Py_ssize_t method_len, url_len, nheaders = 0, i, headers_len = 0;
  Py_buffer body = {0};
  long flags;
  size_t size;
  request_t *req;
  char *p;
  int rc;

  /* The 8th, for the requests that have them (session.py's _extras): the cookie header value, the connect and read
   * timeouts (0 for the client's), the certificate check (1, 0, -1 for the client's), the CA bundle, the client
   * certificate and its key (None for the client's). The session has checked the values; they are checked again. */
  const char *strings[4] = {NULL, NULL, NULL, NULL}; /* cookie, ca_file, cert, key */
  Py_ssize_t lengths[4] = {0, 0, 0, 0};
  double connect_timeout = 0, read_timeout = 0;
  int verify = -1;
  if (nargs != 7 && nargs != 8) {
    PyErr_Format(PyExc_TypeError, "submit() takes 7 or 8 arguments (%zd given)", nargs);
    return NULL;
  }
  if (nargs == 8 && args[7] != Py_None) {
    PyObject *objs[4];
    if (!PyArg_ParseTuple(args[7], "OddiOOO:submit extras", &objs[0], &connect_timeout, &read_timeout, &verify,
                          &objs[1], &objs[2], &objs[3]))
      return NULL;
    if (!(connect_timeout == 0 || timeout_in_range(connect_timeout)) ||
        !(read_timeout == 0 || timeout_in_range(read_timeout)) || verify < -1 || verify > 1) {
      PyErr_SetString(PyExc_ValueError, "a request's timeouts must be from 0.001 to 86400 seconds");
      return NULL;
    }
    for (i = 0; i < 4; i++) {
      if (objs[i] == Py_None) continue;
      if (!PyUnicode_Check(objs[i])) {
        PyErr_Format(PyExc_TypeError, "submit extras: %s must be str or None", i ? "a file name" : "the cookie value");
        return NULL;
      }
      if ((strings[i] = PyUnicode_AsUTF8AndSize(objs[i], &lengths[i])) == NULL) return NULL;
      if (memchr(strings[i], '\r', (size_t)lengths[i]) || memchr(strings[i], '\n', (size_t)lengths[i]) ||
          strlen(strings[i]) != (size_t)lengths[i]) {
        PyErr_SetString(PyExc_ValueError, i ? "file names must not contain CR, LF or NUL"
                                            : "cookies must not contain CR, LF or NUL");
        return NULL;
      }
    }
  }
  endpoint_obj = args[6];
  if (endpoint_obj != Py_None) {
    module_state_t *st = PyType_GetModuleState(Py_TYPE(self));
    if (!PyObject_TypeCheck(endpoint_obj, st->endpoint_type)) {
      PyErr_SetString(PyExc_TypeError, "endpoint must be an Endpoint or None");
      return NULL;
    }
  }
  if (client_check(self) < 0) return NULL;
  token = args[0];
  method_obj = args[1];
  url_obj = args[2];
  headers_obj = args[3];
  body_obj = args[4];
  flags = PyLong_AsLong(args[5]);
  if (flags == -1 && PyErr_Occurred()) return NULL;
  if (!PyUnicode_Check(method_obj) || !PyUnicode_Check(url_obj)) {
    PyErr_SetString(PyExc_TypeError, "method and url must be str");
    return NULL;
  }
  if ((method = PyUnicode_AsUTF8AndSize(method_obj, &method_len)) == NULL) return NULL;
  if ((url = PyUnicode_AsUTF8AndSize(url_obj, &url_len)) == NULL) return NULL;
  if (validate_method(method_obj, method, method_len) < 0 || validate_url(url_obj, url, url_len) < 0) return NULL;

  if (headers_obj != Py_None) {
    if (!PyTuple_Check(headers_obj)) {
      PyErr_SetString(PyExc_TypeError, "headers must be a tuple of str");
      return NULL;
    }
    nheaders = PyTuple_GET_SIZE(headers_obj);
    for (i = 0; i < nheaders; i++) {
      PyObject *line = PyTuple_GET_ITEM(headers_obj, i);
      Py_ssize_t len;
      const char *h;
      if (!PyUnicode_Check(line)) {
        PyErr_Format(PyExc_TypeError, "header lines must be str, not %.100s", Py_TYPE(line)->tp_name);
        return NULL;
      }
      if ((h = PyUnicode_AsUTF8AndSize(line, &len)) == NULL) return NULL;
      if (validate_header(line, h, len) < 0) return NULL;
      headers_len += len + 1;
    }
  }
  if (body_obj != Py_None && PyObject_GetBuffer(body_obj, &body, PyBUF_SIMPLE) < 0) return NULL;
  if ((result = result_alloc(PyType_GetModuleState(Py_TYPE(self)))) == NULL) {
    if (body.obj) PyBuffer_Release(&body);
    return NULL;
  }

  size = sizeof(request_t) + (size_t)method_len + 1 + (size_t)url_len + 1 +
         (strings[0] ? (size_t)lengths[0] + 1 : 0) + (strings[1] ? (size_t)lengths[1] + 1 : 0) +
         (strings[2] ? (size_t)lengths[2] + 1 : 0) + (strings[3] ? (size_t)lengths[3] + 1 : 0) +
         (size_t)nheaders * sizeof(struct curl_slist) + (size_t)headers_len + (size_t)body.len + 1;
  req = malloc(size);
  if (req == NULL) {
    if (body.obj) PyBuffer_Release(&body);
    Py_DECREF(result);
    return PyErr_NoMemory();
  }
  memset(req, 0, sizeof(*req));
  p = (char *)(req + 1);
  /* The slist nodes first: they hold pointers and want the struct's alignment. */
  if (nheaders > 0) {
    struct curl_slist *nodes = (struct curl_slist *)p;
    p += (size_t)nheaders * sizeof(struct curl_slist);
    for (i = 0; i < nheaders; i++) {
      Py_ssize_t len;
      const char *h = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(headers_obj, i), &len);
      memcpy(p, h, (size_t)len + 1);
      nodes[i].data = p;
      nodes[i].next = i + 1 < nheaders ? &nodes[i + 1] : NULL;
      p += len + 1;
    }
    req->headers = nodes;
  }
  memcpy(p, method, (size_t)method_len + 1);
  req->method = p;
  p += method_len + 1;
  memcpy(p, url, (size_t)url_len + 1);
  req->url = p;
  p += url_len + 1;
  {
    const char **into[4] = {&req->cookie, &req->ca_file, &req->cert, &req->key};
    for (i = 0; i < 4; i++) {
      if (strings[i] == NULL) continue;
      memcpy(p, strings[i], (size_t)lengths[i] + 1);
      *into[i] = p;
      p += lengths[i] + 1;
    }
  }
  req->connect_timeout_ms = (long)(connect_timeout * 1000.0 + 0.5);
  req->read_timeout_ms = (long)(read_timeout * 1000.0 + 0.5);
  req->verify = verify;
  if (body.obj) {
    memcpy(p, body.buf, (size_t)body.len);
    p[body.len] = '\0';
    req->body = p;
    req->body_len = (size_t)body.len;
    PyBuffer_Release(&body);
  }
  req->flags = (int)flags;
  req->retries_left = self->client->opts.max_retries;
  req->client = self->client;
  req->id = next_request_id++;
  req->token = Py_NewRef(token);
  req->endpoint = endpoint_obj == Py_None ? NULL : Py_NewRef(endpoint_obj);
  req->pyresult = result;
  if (LC_UNLIKELY(flags & REQ_STREAM)) {
    if ((req->stream = stream_create(req->id)) == NULL) {
      Py_DECREF(token);
      Py_XDECREF((PyObject *)req->endpoint);
      Py_DECREF(result);
      free(req);
      return PyErr_NoMemory();
    }
    result->client = Py_NewRef(self);
  }
  req->cmd.kind = CMD_SUBMIT;
  req->cmd.client = self->client;
  req->cmd.req = req;
  if ((rc = engine_send(self->engine->engine, &req->cmd)) != 0) {
    Py_DECREF(token);
    Py_XDECREF((PyObject *)req->endpoint);
    Py_DECREF(result);
    stream_unref(req->stream);
    free(req);
    return lc_raise(rc, "cannot submit the request");
  }
  return PyLong_FromUnsignedLongLong(req->id);
}

static PyObject *client_cancel_py(ClientObject *self, PyObject *arg) {
  unsigned long long id = PyLong_AsUnsignedLongLong(arg);
  int rc;
  if (id == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
  if (!self->closed && (rc = client_obj_send(self, CMD_CANCEL, id)) != 0) return lc_raise(rc, "cannot cancel the request");
  Py_RETURN_NONE;
}

static PyObject *client_close_py(ClientObject *self, PyObject *unused) {
  int rc = client_obj_close(self);
  if (rc != 0) return lc_raise(rc, "cannot close the client");
  Py_RETURN_NONE;
}

static PyObject *client_get_closed(ClientObject *self, void *closure) { return PyBool_FromLong(self->closed); }

static PyObject *client_set_aside_py(ClientObject *self, PyObject *unused) {
  int rc;
  if (!self->closed && (rc = client_obj_send(self, CMD_SET_ASIDE, 0)) != 0) return lc_raise(rc, "cannot set the user aside");
  Py_RETURN_NONE;
}

static PyMethodDef client_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))client_submit_py, METH_FASTCALL,
     "submit(token, method, url, headers, body, flags, endpoint[, (cookie, connect_timeout, timeout)]) -> id\n\n"
     "Queue a request; token.switch(result) is called from the hub when it finishes; endpoint (or None) records "
     "its statistics; the optional tuple adds cookies to the jar's and overrides the client's timeouts (0: not)."},
    {"cancel", (PyCFunction)client_cancel_py, METH_O, "Cancel a request by id; its result still comes back."},
    {"set_aside", (PyCFunction)client_set_aside_py, METH_NOARGS,
     "Set this user aside now if it is idle (the engine would after its idle time)."},
    {"close", (PyCFunction)client_close_py, METH_NOARGS, "Close this user's connections and cancel its requests."},
    {NULL},
};

static PyGetSetDef client_getset[] = {
    {"closed", (getter)client_get_closed, NULL, "True once closed.", NULL},
    {NULL},
};

static PyType_Slot client_slots[] = {
    {Py_tp_doc, "Client(engine, connect_timeout=60.0, read_timeout=60.0, timeout=0.0, max_redirects=30, "
                "max_retries=0, max_connections=10, insecure=True, http2=False, proxy=None, user_agent=None, "
                "ca_file=None, tls_sessions=True, max_response_bytes=67108864, cert=None, key=None, ciphers=None, "
                "tls_min=0, tls_max=0, verify_host=True, ssl_context=None, cookies=True)\n--\n\n"
                "One simulated user's keep-alive connections and cookie jar. read_timeout bounds each wait for the "
                "server, timeout the whole request; 0 is no limit."},
    {Py_tp_new, client_new},
    {Py_tp_dealloc, client_dealloc},
    {Py_tp_methods, client_methods},
    {Py_tp_getset, client_getset},
    {0, NULL},
};

static PyType_Spec client_spec = {
    .name = "locust_c._engine.Client",
    .basicsize = sizeof(ClientObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = client_slots,
};

/* ---- module ------------------------------------------------------------------------------------------ */

static PyObject *module_percentiles(PyObject *module, PyObject *args) {
  /* Histogram arithmetic exposed for tests: percentiles of a list of microsecond values. */
  PyObject *values, *pcts, *out = NULL, *seq = NULL;
  hist_t *h;
  Py_ssize_t i;
  if (!PyArg_ParseTuple(args, "OO:hist_percentiles", &values, &pcts)) return NULL;
  if ((h = malloc(sizeof(*h))) == NULL) return PyErr_NoMemory();
  hist_init(h);
  if ((seq = PySequence_Fast(values, "values must be a sequence")) == NULL) goto done;
  for (i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
    unsigned long long v = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
    if (PyErr_Occurred()) goto done;
    if (hist_record(h, v) != 0) {
      PyErr_NoMemory();
      goto done;
    }
  }
  Py_CLEAR(seq);
  if ((seq = PySequence_Fast(pcts, "percentiles must be a sequence")) == NULL) goto done;
  if ((out = PyList_New(PySequence_Fast_GET_SIZE(seq))) == NULL) goto done;
  for (i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
    double p = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
    if (PyErr_Occurred() || !(p >= 0.0 && p <= 100.0)) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "percentiles must be between 0 and 100");
      Py_CLEAR(out);
      goto done;
    }
    PyList_SET_ITEM(out, i, PyLong_FromUnsignedLongLong(hist_value_at_percentile(h, p)));
  }
done:
  Py_XDECREF(seq);
  hist_reset(h);
  free(h);
  return out;
}

static PyObject *module_set_flush(PyObject *module, PyObject *callback) {
  module_state_t *st = PyModule_GetState(module);
  if (callback != Py_None && !PyCallable_Check(callback)) {
    PyErr_SetString(PyExc_TypeError, "set_flush() takes a callable or None");
    return NULL;
  }
  Py_XSETREF(st->flush, callback == Py_None ? NULL : Py_NewRef(callback));
  Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_flush", module_set_flush, METH_O,
     "set_flush(callable) -- called with the list of Endpoints whose deltas wait, once per dispatched batch."},
    {"hist_percentiles", module_percentiles, METH_VARARGS,
     "hist_percentiles(values_us, percentiles) -> list of values from a 3-digit HDR histogram."},
    {NULL},
};

static int module_exec(PyObject *m) {
  module_state_t *st = PyModule_GetState(m);
  curl_version_info_data *info;

  if (process_pid == 0) {
    process_pid_refresh();
    if (pthread_atfork(NULL, NULL, process_pid_refresh) != 0) {
      PyErr_SetString(PyExc_ImportError, "cannot register the fork handler");
      return -1;
    }
  }
  if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
    PyErr_SetString(PyExc_ImportError, "libcurl failed to initialise");
    return -1;
  }
  st->result_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &result_spec, NULL);
  st->engine_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &engine_spec, NULL);
  st->client_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &client_spec, NULL);
  st->histogram_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &histogram_spec, NULL);
  st->endpoint_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &endpoint_spec, NULL);
  if (!st->result_type || !st->engine_type || !st->client_type || !st->histogram_type || !st->endpoint_type)
    return -1;
  if (PyModule_AddType(m, st->result_type) < 0 || PyModule_AddType(m, st->engine_type) < 0 ||
      PyModule_AddType(m, st->client_type) < 0 || PyModule_AddType(m, st->histogram_type) < 0 ||
      PyModule_AddType(m, st->endpoint_type) < 0)
    return -1;
  if ((st->str_switch = PyUnicode_InternFromString("switch")) == NULL) return -1;

  info = curl_version_info(CURLVERSION_NOW);
  if (PyModule_AddStringConstant(m, "curl_version", info->version) < 0) return -1;
  if (PyModule_AddStringConstant(m, "uv_version", uv_version_string()) < 0) return -1;
  if (PyModule_AddIntConstant(m, "http2_supported", (info->features & CURL_VERSION_HTTP2) != 0) < 0) return -1;
  {
    PyObject *marker = PyLong_FromUnsignedLongLong((unsigned long long)tls_library_marker());
    if (marker == NULL || PyModule_AddObject(m, "openssl_marker", marker) < 0) {
      Py_XDECREF(marker);
      return -1;
    }
  }
  if (PyModule_AddIntConstant(m, "FOLLOW_REDIRECTS", REQ_FOLLOW_REDIRECTS) < 0 ||
      PyModule_AddIntConstant(m, "HEAD", REQ_HEAD) < 0 || PyModule_AddIntConstant(m, "GET", REQ_GET) < 0 ||
      PyModule_AddIntConstant(m, "POST", REQ_POST) < 0 ||
      PyModule_AddIntConstant(m, "BATCH_STATS", REQ_BATCH_STATS) < 0 ||
      PyModule_AddIntConstant(m, "HIST_COUNTS", HIST_COUNTS) < 0 ||
      PyModule_AddIntConstant(m, "IDEMPOTENT", REQ_IDEMPOTENT) < 0 ||
      PyModule_AddIntConstant(m, "STREAM", REQ_STREAM) < 0 ||
      PyModule_AddIntConstant(m, "COOKIES", REQ_COOKIES) < 0 ||
      PyModule_AddIntConstant(m, "CANCELLED", REQ_ERR_CANCELLED) < 0 ||
      PyModule_AddIntConstant(m, "HEAD_CUT", REQ_ERR_HEAD_CUT) < 0 ||
      PyModule_AddIntConstant(m, "BODY_TOO_LARGE", REQ_ERR_BODY_TOO_LARGE) < 0 ||
      PyModule_AddIntConstant(m, "HEAD_TOO_LARGE", REQ_ERR_HEAD_TOO_LARGE) < 0 ||
      PyModule_AddIntConstant(m, "NO_MEMORY", REQ_ERR_NO_MEMORY) < 0 ||
      PyModule_AddIntConstant(m, "BAD_LENGTH", REQ_ERR_BAD_LENGTH) < 0 ||
      PyModule_AddIntConstant(m, "BAD_ENCODING", REQ_ERR_BAD_ENCODING) < 0 ||
      PyModule_AddIntConstant(m, "MIN_TIMEOUT_MS", (long)(CLIENT_MIN_TIMEOUT * 1000)) < 0 ||
      PyModule_AddIntConstant(m, "MAX_TIMEOUT_MS", (long)(CLIENT_MAX_TIMEOUT * 1000)) < 0 ||
      PyModule_AddIntConstant(m, "MAX_REDIRECTS", CLIENT_MAX_REDIRECTS) < 0 ||
      PyModule_AddIntConstant(m, "MAX_RETRIES", CLIENT_MAX_RETRIES) < 0 ||
      PyModule_AddIntConstant(m, "MAX_CONNECTIONS", CLIENT_MAX_CONNECTIONS) < 0)
    return -1;
  return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg) {
  module_state_t *st = PyModule_GetState(m);
  Py_VISIT(st->engine_type);
  Py_VISIT(st->client_type);
  Py_VISIT(st->result_type);
  Py_VISIT(st->histogram_type);
  Py_VISIT(st->endpoint_type);
  Py_VISIT(st->flush);
  return 0;
}

static int module_clear(PyObject *m) {
  module_state_t *st = PyModule_GetState(m);
  Py_CLEAR(st->engine_type);
  Py_CLEAR(st->client_type);
  Py_CLEAR(st->result_type);
  Py_CLEAR(st->histogram_type);
  Py_CLEAR(st->endpoint_type);
  Py_CLEAR(st->flush);
  Py_CLEAR(st->str_switch);
  return 0;
}

static void module_free(void *m) { module_clear((PyObject *)m); }

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef engine_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "locust_c._engine",
    .m_doc = "The locust-c C engine: libcurl multi driven by a libuv loop in a native thread.",
    .m_size = sizeof(module_state_t),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__engine(void) { return PyModuleDef_Init(&engine_module); }
