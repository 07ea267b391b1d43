/*
 * locust_c._engine's private header: the CPython types over the engine, one file each (py_module.c, py_engine.c,
 * py_client.c, py_result.c, py_stats.c, py_session.c), and what they share. Only these files include Python.h; C errors become
 * Python exceptions in lc_raise and nowhere else.
 *
 *   Engine()            one engine thread; fileno() for the hub, dispatch() to resume finished requests
 *   Client(engine, ...) one simulated user's connections and cookies; submit/cancel/close
 *   Result              a finished request; its body is copied into Python only when read
 *   Session, Response   the bases of FastCSession and FastCResponse: the request path in C (py_session.c)
 *   Histogram, Endpoint exact latency histograms and the Locust stats deltas of one (method, name)
 */
#ifndef LOCUST_C_PY_TYPES_H
#define LOCUST_C_PY_TYPES_H

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
extern pid_t process_pid;

/* py_session.c: request()'s arguments after method and url, and the methods its C path knows. */
#define SESSION_ARG_COUNT 15
#define SESSION_METHOD_COUNT 8

typedef struct {
  PyTypeObject *engine_type;
  PyTypeObject *client_type;
  PyTypeObject *result_type;
  PyTypeObject *histogram_type;
  PyTypeObject *endpoint_type;
  PyObject *str_switch;
  PyObject *flush; /* callable(list of dirty Endpoints), set by locust_c.stats */
  /* py_session.c: its types, what session.py gives it (set_request_path), its interned names */
  PyTypeObject *session_type;
  PyTypeObject *response_type;
  PyObject *waiter_type;    /* gevent's Waiter */
  PyObject *response_class; /* FastCResponse */
  PyObject *catch_class;    /* ResponseContextManager */
  PyObject *valid_codes;    /* VALID_RESPONSE_CODES: the statuses the engine batches */
  PyObject *json_module;    /* json: a json= body is written by json.dumps, as FastHttpUser writes it */
  PyObject *json_dumps;     /* json's own dumps, */
  PyObject *json_encoder;   /* and its C encoder with dumps' settings (NULL without one), */
  PyObject *json_markers;   /* whose circular-reference markers it keeps here */
  PyObject *zero;
  PyObject *arg_names[SESSION_ARG_COUNT];
  PyObject *method_names[SESSION_METHOD_COUNT];
  PyObject *str_get, *str__request, *str__prepare, *str__finish, *str__session_lines, *str_version, *str_valid,
      *str_watcher, *str_ref, *str_endpoint, *str_batchable, *str_valid_response_codes, *str_lower,
      *str_content_type, *str_accept, *str_expect, *str__context, *str__reporter, *str_request_meta,
      *str_dumps, *str_empty;
  PyObject *meta_keys[9]; /* the request event's keyword names, in RequestReporter.meta's order */
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
  /* The corrected latencies, from when each request's iteration was due to its last byte (arrival_rate's
   * requests only), since the last reset and since the last worker report. */
  HistogramObject *corrected;
  HistogramObject *corrected_unsent;
  int dirty;
  stats_delta_t delta;
} EndpointObject;

typedef struct {
  PyObject_HEAD
  engine_t *engine;
  pid_t pid;
  PyObject *dirty; /* dispatch's list of endpoints with a delta to flush, kept between batches */
  long pending;    /* deliveries due (requests, stream wake-ups): EngineHandle holds the hub's loop while any are */
  /* Requests whose waiter gave up (its user was stopped mid-request): their results may still come back
   * completed, and are then left out of the statistics, as a Locust user's request interrupted so is. */
  uint64_t *abandoned;
  Py_ssize_t n_abandoned, cap_abandoned;
} EngineObject;

typedef struct {
  PyObject_HEAD
  EngineObject *engine;
  client_t *client;
  int closed;
  double due; /* the due time the next submit carries (request_t.due_time), set by the session */
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

PyObject *lc_raise(int rc, const char *what);

/*
 * Functions whose frames stay on the C stack while greenlets switch: the request path's, which wait for their
 * response, and dispatch's, which resumes the waiting greenlets. greenlet moves stacks without telling
 * AddressSanitizer, so the redzones ASan poisons around such a frame's arrays would stay poisoned under whatever
 * greenlet runs there next, and its reports would be false: these frames go uninstrumented in the sanitizer build
 * (make sanitize). An inline helper with arrays of its own (PyObject_CallMethodNoArgs) must not be called from
 * them across a switch either: it is instrumented.
 */
#if defined(__SANITIZE_ADDRESS__)
#define LC_SWITCHED_FRAME __attribute__((no_sanitize_address))
#else
#define LC_SWITCHED_FRAME
#endif

/* FastHttpUser's valid_response_codes (locust_c.session.VALID_RESPONSE_CODES): the successes the engine batches. */
static inline int status_is_success(long status) {
  switch (status) {
  case 200: case 201: case 202: case 203: case 204: case 205: case 206: case 207: case 208: case 226:
  case 301: case 302: case 303: case 304: case 307: case 308:
    return 1;
  default:
    return 0;
  }
}

extern PyType_Spec engine_spec, client_spec, result_spec, histogram_spec, endpoint_spec;

/* py_result.c */
ResultObject *result_alloc(module_state_t *st);
ResultObject *request_deliver(request_t *req, PyObject **token);

/* py_stats.c */
int endpoint_record(EndpointObject *self, request_t *req, int batch);

/* py_engine.c */
int engine_check(EngineObject *self);

/* py_client.c */
int client_obj_send(ClientObject *self, cmd_kind_t kind, uint64_t id);
int client_obj_cancel(ClientObject *self, uint64_t id);
int engine_obj_abandon(EngineObject *self, uint64_t id);
PyObject *client_obj_submit(ClientObject *self, PyObject *const *args, Py_ssize_t nargs);

/* py_session.c */
extern PyMethodDef session_module_methods[];
int session_module_exec(PyObject *m, module_state_t *st);
int session_module_traverse(module_state_t *st, visitproc visit, void *arg);
void session_module_clear(module_state_t *st);

#endif /* LOCUST_C_PY_TYPES_H */
