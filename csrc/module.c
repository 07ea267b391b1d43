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
#include <stdlib.h>
#include <string.h>

typedef struct {
  PyTypeObject *engine_type;
  PyTypeObject *client_type;
  PyTypeObject *result_type;
  PyObject *str_switch;
} module_state_t;

typedef struct {
  PyObject_HEAD
  engine_t *engine;
  pid_t pid;
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

static void result_dealloc(ResultObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
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

static PyObject *result_get_effective_url(ResultObject *self, void *closure) {
  if (self->req->effective_url == NULL) Py_RETURN_NONE;
  return PyUnicode_DecodeUTF8(self->req->effective_url, (Py_ssize_t)strlen(self->req->effective_url), "replace");
}

static PyObject *result_get_error(ResultObject *self, void *closure) {
  if (self->req->error == NULL) Py_RETURN_NONE;
  return PyUnicode_DecodeUTF8(self->req->error, (Py_ssize_t)strlen(self->req->error), "replace");
}

static PyGetSetDef result_getset[] = {
    {"content", (getter)result_get_content, NULL, "The response body as bytes (copied on first read).", NULL},
    {"content_length", (getter)result_get_content_length, NULL, "Length of the body, without copying it.", NULL},
    {"head", (getter)result_get_head, NULL, "The raw header block of the last response.", NULL},
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
    {NULL},
};

static PyType_Slot result_slots[] = {
    {Py_tp_doc, "A finished request."},
    {Py_tp_dealloc, result_dealloc},
    {Py_tp_getset, result_getset},
    {Py_tp_members, result_members},
    {0, NULL},
};

static PyType_Spec result_spec = {
    .name = "locust_c._engine.Result",
    .basicsize = sizeof(ResultObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = result_slots,
};

static ResultObject *result_new(module_state_t *st, request_t *req) {
  ResultObject *r = PyObject_New(ResultObject, st->result_type);
  if (r == NULL) return NULL;
  r->req = req;
  r->content = NULL;
  r->head = NULL;
  r->status = req->status;
  r->result = req->result;
  r->os_errno = req->os_errno;
  r->response_time = (double)req->total_us / 1000.0;
  r->redirects = (long)req->redirects;
  return r;
}

/* ---- Engine ------------------------------------------------------------------------------------------ */

static PyObject *engine_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
  EngineObject *self;
  int rc;
  if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
    PyErr_SetString(PyExc_TypeError, "Engine() takes no arguments");
    return NULL;
  }
  self = (EngineObject *)type->tp_alloc(type, 0);
  if (self == NULL) return NULL;
  self->pid = getpid();
  self->engine = calloc(1, sizeof(engine_t));
  if (self->engine == NULL) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  if ((rc = engine_init(self->engine)) != 0) {
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
    next = req->next;
    Py_XDECREF((PyObject *)req->token);
    request_free(req);
  }
}

static int engine_obj_stop(EngineObject *self) {
  if (self->engine == NULL) return 0;
  if (self->pid != getpid()) {
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
  tp->tp_free(self);
  Py_DECREF(tp);
}

static int engine_check(EngineObject *self) {
  if (LC_UNLIKELY(self->engine == NULL)) {
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
 * Runs in the gevent hub (it is the eventfd watcher's callback). An error in one waiter is reported and
 * does not stop the others. Returns how many requests were delivered.
 */
static PyObject *engine_dispatch(EngineObject *self, PyTypeObject *cls, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
  module_state_t *st = PyType_GetModuleState(cls);
  request_t *req, *next;
  long n = 0;
  if (engine_check(self) < 0) return NULL;
  for (req = engine_drain(self->engine); req; req = next) {
    PyObject *token = (PyObject *)req->token, *ret;
    ResultObject *r;
    next = req->next;
    req->next = NULL;
    req->token = NULL;
    n++;
    r = result_new(st, req);
    if (r == NULL) {
      request_free(req);
      PyErr_WriteUnraisable(token);
      Py_DECREF(token);
      continue;
    }
    ret = PyObject_CallMethodOneArg(token, st->str_switch, (PyObject *)r);
    if (ret == NULL)
      PyErr_WriteUnraisable(token);
    else
      Py_DECREF(ret);
    Py_DECREF(r);
    Py_DECREF(token);
  }
  return PyLong_FromLong(n);
}

static PyObject *engine_py_stop(EngineObject *self, PyObject *unused) {
  engine_obj_stop(self);
  Py_RETURN_NONE;
}

static PyObject *engine_py_counters(EngineObject *self, PyObject *unused) {
  engine_counters_t c;
  if (engine_check(self) < 0) return NULL;
  engine_counters(self->engine, &c);
  return Py_BuildValue("{sKsKsKsK}", "submitted", (unsigned long long)c.submitted, "completed",
                       (unsigned long long)c.completed, "in_flight", (unsigned long long)(c.submitted - c.completed),
                       "clients", (unsigned long long)c.clients);
}

static PyObject *engine_get_running(EngineObject *self, void *closure) {
  return PyBool_FromLong(self->engine != NULL);
}

static PyMethodDef engine_methods[] = {
    {"fileno", (PyCFunction)engine_fileno, METH_NOARGS, "The eventfd that is readable while results wait."},
    {"dispatch", (PyCFunction)(void (*)(void))engine_dispatch, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "Resume the waiter of every finished request; return how many there were."},
    {"stop", (PyCFunction)engine_py_stop, METH_NOARGS,
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

static PyObject *client_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"engine",   "connect_timeout", "timeout", "max_redirects", "max_retries",
                           "max_connections", "insecure", "http2", "proxy", "user_agent", NULL};
  PyObject *engine_obj;
  double connect_timeout = 60.0, timeout = 60.0;
  int max_redirects = 30, max_retries = 0, max_connections = 10, insecure = 1, http2 = 0;
  const char *proxy = NULL, *user_agent = NULL;
  module_state_t *st = PyType_GetModuleState(type);
  client_options_t opts;
  ClientObject *self;

  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!|ddiiippzz:Client", kwlist, st->engine_type, &engine_obj,
                                   &connect_timeout, &timeout, &max_redirects, &max_retries, &max_connections,
                                   &insecure, &http2, &proxy, &user_agent))
    return NULL;
  if (connect_timeout <= 0 || timeout <= 0) {
    PyErr_SetString(PyExc_ValueError, "connect_timeout and timeout must be positive numbers of seconds");
    return NULL;
  }
  if (max_redirects < 0 || max_retries < 0 || max_connections < 1) {
    PyErr_SetString(PyExc_ValueError, "max_redirects and max_retries must be >= 0 and max_connections >= 1");
    return NULL;
  }
  if (engine_check((EngineObject *)engine_obj) < 0) return NULL;
  opts = (client_options_t){
      .connect_timeout_ms = (long)(connect_timeout * 1000.0 + 0.5),
      .timeout_ms = (long)(timeout * 1000.0 + 0.5),
      .max_redirects = max_redirects,
      .max_retries = max_retries,
      .max_connections = max_connections,
      .insecure = insecure,
      .http2 = http2,
      .proxy = proxy,
      .user_agent = user_agent,
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
static int client_obj_close(ClientObject *self) {
  cmd_t *cmd;
  int rc;
  if (self->closed || self->client == NULL) return 0;
  self->closed = 1;
  if (self->engine->engine == NULL) return 0; /* stopped: it closed every client already */
  cmd = calloc(1, sizeof(*cmd));
  if (cmd == NULL) return -ENOMEM;
  cmd->kind = CMD_CLOSE_CLIENT;
  cmd->client = self->client;
  client_ref(self->client);
  if ((rc = engine_send(self->engine->engine, cmd)) != 0) {
    client_unref(self->client);
    free(cmd);
    return rc == -ESHUTDOWN ? 0 : rc;
  }
  return 0;
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
      if (ch == ':')
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
 * submit(token, method, url, headers, body, flags) -> request id
 *
 * Copies the request into one allocation (strings, the curl_slist nodes, the body) and queues it. headers
 * is a tuple of str "Name: value" lines or None; body is a bytes-like object or None. The token is
 * resumed with token.switch(result) when the request finishes.
 */
static PyObject *client_submit_py(ClientObject *self, PyObject *const *args, Py_ssize_t nargs) {
  PyObject *token, *method_obj, *url_obj, *headers_obj, *body_obj;
  const char *method, *url;
  Py_ssize_t method_len, url_len, nheaders = 0, i, headers_len = 0;
  Py_buffer body = {0};
  long flags;
  size_t size;
  request_t *req;
  char *p;
  int rc;

  if (nargs != 6) {
    PyErr_Format(PyExc_TypeError, "submit() takes 6 arguments (%zd given)", nargs);
    return NULL;
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

  size = sizeof(request_t) + (size_t)method_len + 1 + (size_t)url_len + 1 +
         (size_t)nheaders * sizeof(struct curl_slist) + (size_t)headers_len + (size_t)body.len + 1;
  req = malloc(size);
  if (req == NULL) {
    if (body.obj) PyBuffer_Release(&body);
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
  req->cmd.kind = CMD_SUBMIT;
  req->cmd.client = self->client;
  req->cmd.req = req;
  if ((rc = engine_send(self->engine->engine, &req->cmd)) != 0) {
    Py_DECREF(token);
    free(req);
    return lc_raise(rc, "cannot submit the request");
  }
  return PyLong_FromUnsignedLongLong(req->id);
}

static PyObject *client_cancel_py(ClientObject *self, PyObject *arg) {
  unsigned long long id = PyLong_AsUnsignedLongLong(arg);
  cmd_t *cmd;
  int rc;
  if (id == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
  if (self->closed || self->engine->engine == NULL) Py_RETURN_NONE;
  cmd = calloc(1, sizeof(*cmd));
  if (cmd == NULL) return PyErr_NoMemory();
  cmd->kind = CMD_CANCEL;
  cmd->client = self->client;
  cmd->id = id;
  if ((rc = engine_send(self->engine->engine, cmd)) != 0) {
    free(cmd);
    if (rc != -ESHUTDOWN) return lc_raise(rc, "cannot cancel the request");
  }
  Py_RETURN_NONE;
}

static PyObject *client_close_py(ClientObject *self, PyObject *unused) {
  int rc = client_obj_close(self);
  if (rc != 0) return lc_raise(rc, "cannot close the client");
  Py_RETURN_NONE;
}

static PyObject *client_get_closed(ClientObject *self, void *closure) { return PyBool_FromLong(self->closed); }

static PyMethodDef client_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))client_submit_py, METH_FASTCALL,
     "submit(token, method, url, headers, body, flags) -> id\n\nQueue a request; token.switch(result) is "
     "called from the hub when it finishes."},
    {"cancel", (PyCFunction)client_cancel_py, METH_O, "Cancel a request by id; its result still comes back."},
    {"close", (PyCFunction)client_close_py, METH_NOARGS, "Close this user's connections and cancel its requests."},
    {NULL},
};

static PyGetSetDef client_getset[] = {
    {"closed", (getter)client_get_closed, NULL, "True once closed.", NULL},
    {NULL},
};

static PyType_Slot client_slots[] = {
    {Py_tp_doc, "Client(engine, connect_timeout=60.0, timeout=60.0, max_redirects=30, max_retries=0, "
                "max_connections=10, insecure=True, http2=False, proxy=None, user_agent=None)\n--\n\n"
                "One simulated user's keep-alive connections and cookie jar."},
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
    hist_record(h, v);
  }
  Py_CLEAR(seq);
  if ((seq = PySequence_Fast(pcts, "percentiles must be a sequence")) == NULL) goto done;
  if ((out = PyList_New(PySequence_Fast_GET_SIZE(seq))) == NULL) goto done;
  for (i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
    double p = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
    if (PyErr_Occurred()) {
      Py_CLEAR(out);
      goto done;
    }
    PyList_SET_ITEM(out, i, PyLong_FromUnsignedLongLong(hist_value_at_percentile(h, p)));
  }
done:
  Py_XDECREF(seq);
  free(h);
  return out;
}

static PyMethodDef module_methods[] = {
    {"hist_percentiles", module_percentiles, METH_VARARGS,
     "hist_percentiles(values_us, percentiles) -> list of values from a 3-digit HDR histogram."},
    {NULL},
};

static int module_exec(PyObject *m) {
  module_state_t *st = PyModule_GetState(m);
  curl_version_info_data *info;

  if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
    PyErr_SetString(PyExc_ImportError, "libcurl failed to initialise");
    return -1;
  }
  st->result_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &result_spec, NULL);
  st->engine_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &engine_spec, NULL);
  st->client_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &client_spec, NULL);
  if (!st->result_type || !st->engine_type || !st->client_type) return -1;
  if (PyModule_AddType(m, st->result_type) < 0 || PyModule_AddType(m, st->engine_type) < 0 ||
      PyModule_AddType(m, st->client_type) < 0)
    return -1;
  if ((st->str_switch = PyUnicode_InternFromString("switch")) == NULL) return -1;

  info = curl_version_info(CURLVERSION_NOW);
  if (PyModule_AddStringConstant(m, "curl_version", info->version) < 0) return -1;
  if (PyModule_AddStringConstant(m, "uv_version", uv_version_string()) < 0) return -1;
  if (PyModule_AddIntConstant(m, "http2_supported", (info->features & CURL_VERSION_HTTP2) != 0) < 0) return -1;
  if (PyModule_AddIntConstant(m, "FOLLOW_REDIRECTS", REQ_FOLLOW_REDIRECTS) < 0 ||
      PyModule_AddIntConstant(m, "HEAD", REQ_HEAD) < 0 || PyModule_AddIntConstant(m, "GET", REQ_GET) < 0 ||
      PyModule_AddIntConstant(m, "POST", REQ_POST) < 0 ||
      PyModule_AddIntConstant(m, "CANCELLED", REQ_ERR_CANCELLED) < 0)
    return -1;
  return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg) {
  module_state_t *st = PyModule_GetState(m);
  Py_VISIT(st->engine_type);
  Py_VISIT(st->client_type);
  Py_VISIT(st->result_type);
  return 0;
}

static int module_clear(PyObject *m) {
  module_state_t *st = PyModule_GetState(m);
  Py_CLEAR(st->engine_type);
  Py_CLEAR(st->client_type);
  Py_CLEAR(st->result_type);
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
