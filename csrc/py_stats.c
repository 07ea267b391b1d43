/*
 * Histogram and Endpoint: exact latency histograms and the per-(method, name) deltas folded into Locust.
 */
#include "py_types.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

/* record(value_us[, count]): count (default 1) values of value_us. */
static PyObject *histogram_record(HistogramObject *self, PyObject *const *args, Py_ssize_t nargs) {
  unsigned long long v, count = 1;
  hist_t *h = self->hist;
  if (nargs < 1 || nargs > 2) {
    PyErr_Format(PyExc_TypeError, "record() takes 1 or 2 arguments (%zd given)", nargs);
    return NULL;
  }
  v = PyLong_AsUnsignedLongLong(args[0]);
  if (v == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
  if (nargs == 2) {
    count = PyLong_AsUnsignedLongLong(args[1]);
    if (count == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
  }
  if (count == 1) {
    if (hist_record(h, v) != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
  }
  if (count == 0) Py_RETURN_NONE;
  {
    uint64_t sum, total, added;
    if (__builtin_mul_overflow((uint64_t)v, (uint64_t)count, &added) || __builtin_add_overflow(h->sum_us, added, &sum) ||
        __builtin_add_overflow(h->total, (uint64_t)count, &total)) {
      PyErr_SetString(PyExc_OverflowError, "record(): the histogram's sum or count would overflow");
      return NULL;
    }
    if (hist_add(h, hist_index_of(v), count) != 0) return PyErr_NoMemory();
    h->total = total;
    h->sum_us = sum;
  }
  if (v < h->min_us) h->min_us = v;
  if (v > h->max_us) h->max_us = v;
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

static PyObject *histogram_subtract(HistogramObject *self, PyObject *other) {
  if (!PyObject_TypeCheck(other, Py_TYPE(self))) {
    PyErr_SetString(PyExc_TypeError, "subtract() takes a Histogram");
    return NULL;
  }
  if (hist_subtract(self->hist, ((HistogramObject *)other)->hist) != 0) {
    PyErr_SetString(PyExc_ValueError, "subtract(): the histogram holds values that this one does not");
    return NULL;
  }
  Py_RETURN_NONE;
}

static PyObject *histogram_copy(HistogramObject *self, PyObject *unused) {
  HistogramObject *copy = histogram_create(Py_TYPE(self));
  if (copy == NULL) return NULL;
  if (hist_merge(copy->hist, self->hist) != 0) {
    Py_DECREF(copy);
    return PyErr_NoMemory();
  }
  return (PyObject *)copy;
}

/* cumulative(bounds): the count of values at most each bound (us); bounds must ascend. */
static PyObject *histogram_cumulative(HistogramObject *self, PyObject *arg) {
  PyObject *seq = PySequence_Fast(arg, "cumulative() takes a sequence of bounds in microseconds"), *out = NULL;
  uint64_t *bounds = NULL, *counts;
  Py_ssize_t i, n;
  if (seq == NULL) return NULL;
  n = PySequence_Fast_GET_SIZE(seq);
  if ((bounds = PyMem_Calloc((size_t)n * 2 + 1, sizeof(uint64_t))) == NULL) {
    PyErr_NoMemory();
    goto done;
  }
  counts = bounds + n;
  for (i = 0; i < n; i++) {
    bounds[i] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
    if (PyErr_Occurred()) goto done;
    if (i > 0 && bounds[i] < bounds[i - 1]) {
      PyErr_SetString(PyExc_ValueError, "cumulative(): the bounds must ascend");
      goto done;
    }
  }
  hist_cumulative(self->hist, bounds, (size_t)n, counts);
  if ((out = PyList_New(n)) == NULL) goto done;
  for (i = 0; i < n; i++) {
    PyObject *v = PyLong_FromUnsignedLongLong(counts[i]);
    if (v == NULL) {
      Py_CLEAR(out);
      goto done;
    }
    PyList_SET_ITEM(out, i, v);
  }
done:
  PyMem_Free(bounds);
  Py_DECREF(seq);
  return out;
}

static PyObject *histogram_stddev(HistogramObject *self, PyObject *unused) {
  return PyFloat_FromDouble(hist_stddev(self->hist));
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
    {"record", (PyCFunction)(void (*)(void))histogram_record, METH_FASTCALL,
     "record(value_us, count=1): record count values in microseconds."},
    {"percentile", (PyCFunction)histogram_percentile, METH_O, "Value (us) at a percentile from 0 to 100."},
    {"sparse", (PyCFunction)histogram_sparse, METH_NOARGS, "(total, min, max, sum, [index, count, ...])."},
    {"add_sparse", (PyCFunction)histogram_add_sparse, METH_O, "Add a histogram given as sparse() returns it."},
    {"merge", (PyCFunction)histogram_merge, METH_O, "Add another Histogram's counts."},
    {"subtract", (PyCFunction)histogram_subtract, METH_O, "Take out the values of a Histogram this one contains."},
    {"copy", (PyCFunction)histogram_copy, METH_NOARGS, "A new Histogram with the same values."},
    {"cumulative", (PyCFunction)histogram_cumulative, METH_O, "Counts of values at most each ascending bound (us)."},
    {"stddev", (PyCFunction)histogram_stddev, METH_NOARGS, "Standard deviation of the values (us)."},
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

PyType_Spec histogram_spec = {
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
  self->corrected = self->hist ? histogram_create(st->histogram_type) : NULL;
  if (self->corrected == NULL) {
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
  Py_XDECREF(self->corrected);
  Py_XDECREF(self->corrected_unsent);
  stats_delta_free(&self->delta);
  tp->tp_free(self);
  Py_DECREF(tp);
}

/*
 * Records one finished request: always in the histograms, and in the Locust delta when asked. A request of an
 * iteration that was due at a given time also records the latency from that time to its last byte, as wrk2
 * measures it; never less than its own response time, which a wall clock stepped back would otherwise give.
 */
int endpoint_record(EndpointObject *self, request_t *req, int batch) {
  hist_record(self->hist->hist, (uint64_t)req->total_us);
  if (self->unsent != NULL) hist_record(self->unsent->hist, (uint64_t)req->total_us);
  if (LC_UNLIKELY(req->due_time > 0)) {
    double since_due_us = (req->done_time - req->due_time) * 1e6;
    uint64_t corrected = since_due_us > (double)req->total_us ? (uint64_t)(since_due_us + 0.5)
                                                              : (uint64_t)req->total_us;
    hist_record(self->corrected->hist, corrected);
    if (self->corrected_unsent != NULL) hist_record(self->corrected_unsent->hist, corrected);
  }
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
  module_state_t *st = PyType_GetModuleState(Py_TYPE(self));
  if (self->unsent == NULL && (self->unsent = histogram_create(st->histogram_type)) == NULL) return NULL;
  if (self->corrected_unsent == NULL &&
      (self->corrected_unsent = histogram_create(st->histogram_type)) == NULL)
    return NULL;
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
    {"corrected", T_OBJECT, offsetof(EndpointObject, corrected), READONLY,
     "Histogram of the corrected latencies since the reset: from when each request's iteration was due "
     "(Client.due) to its last byte; only requests that carried a due time."},
    {"corrected_unsent", T_OBJECT, offsetof(EndpointObject, corrected_unsent), READONLY,
     "The corrected latencies since the last worker report, or None (see track_unsent())."},
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

PyType_Spec endpoint_spec = {
    .name = "locust_c._engine.Endpoint",
    .basicsize = sizeof(EndpointObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = endpoint_slots,
};
