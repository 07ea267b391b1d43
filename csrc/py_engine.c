/*
 * Engine: one engine thread as Python holds it; dispatch() resumes the greenlets whose requests finished.
 */
#include "py_types.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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
  PyMem_Free(self->abandoned);
  tp->tp_free(self);
  Py_DECREF(tp);
}

/* Notes a request whose waiter gave up. Without memory the note is skipped: the request may then be counted. */
int engine_obj_abandon(EngineObject *self, uint64_t id) {
  if (self->n_abandoned == self->cap_abandoned) {
    Py_ssize_t cap = self->cap_abandoned ? self->cap_abandoned * 2 : 16;
    uint64_t *grown = PyMem_Realloc(self->abandoned, (size_t)cap * sizeof(uint64_t));
    if (grown == NULL) return -ENOMEM;
    self->abandoned = grown;
    self->cap_abandoned = cap;
  }
  self->abandoned[self->n_abandoned++] = id;
  return 0;
}

/* Whether the request was abandoned; forgets it (its one result is being dispatched). */
static int engine_obj_forget(EngineObject *self, uint64_t id) {
  for (Py_ssize_t i = 0; i < self->n_abandoned; i++) {
    if (self->abandoned[i] == id) {
      self->abandoned[i] = self->abandoned[--self->n_abandoned];
      return 1;
    }
  }
  return 0;
}

int engine_check(EngineObject *self) {
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
LC_SWITCHED_FRAME
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

LC_SWITCHED_FRAME
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
    if (LC_UNLIKELY(self->n_abandoned > 0) && engine_obj_forget(self, req->id)) continue;
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
    {
      /* token.switch(r), written out: the inline PyObject_CallMethodOneArg is instrumented (LC_SWITCHED_FRAME). */
      PyObject *call[2] = {token, (PyObject *)r};
      ret = PyObject_VectorcallMethod(st->str_switch, call, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
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
  return Py_BuildValue("{sKsKsKsKsKsKsKsKsKsKsKsK}", "submitted", (unsigned long long)c.submitted, "completed",
                       (unsigned long long)c.completed, "in_flight", (unsigned long long)(c.submitted - c.completed),
                       "clients", (unsigned long long)c.clients, "socket_events", (unsigned long long)c.socket_events,
                       "set_aside", (unsigned long long)c.set_aside, "resumed", (unsigned long long)c.resumed,
                       "decode_pauses", (unsigned long long)c.decode_pauses, "stream_pauses",
                       (unsigned long long)c.stream_pauses, "native", (unsigned long long)c.native,
                       "native_connects", (unsigned long long)c.native_connects, "native_open",
                       (unsigned long long)c.native_open);
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

static PyMemberDef engine_members[] = {
    {"pending", T_LONG, offsetof(EngineObject, pending), 0,
     "Deliveries due: requests in flight and stream wake-ups (EngineHandle counts them, as does the C request path)."},
    {NULL},
};

static PyType_Slot engine_slots[] = {
    {Py_tp_doc, "Engine()\n--\n\nOne native thread running a libuv loop that drives a libcurl multi handle."},
    {Py_tp_new, engine_new},
    {Py_tp_dealloc, engine_dealloc},
    {Py_tp_methods, engine_methods},
    {Py_tp_getset, engine_getset},
    {Py_tp_members, engine_members},
    {0, NULL},
};

PyType_Spec engine_spec = {
    .name = "locust_c._engine.Engine",
    .basicsize = sizeof(EngineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = engine_slots,
};
