/*
 * Session and Response: the request path of FastCSession in C, and the base of the responses it returns.
 *
 * locust_c.session.FastCSession subclasses Session. Its request(), get() and post() take the common case here:
 * a path relative to the host, and no argument beyond name, data, json, headers, catch_response and context.
 * They join the URL, hand the request to the engine, wait for it on a gevent Waiter and wrap the result; a
 * batched success becomes its Response without running a line of Python. Building the header lines and body of
 * a request with arguments (FastCSession._prepare) and finishing a request that is not a batched success
 * (FastCSession._finish: failures, other status codes, catch_response) stay in Python, and so does every other
 * case (FastCSession._request, which does all of it). This file does what those do, without the interpreter.
 *
 * The session's hot state lives in this object's slots, which Python reads and writes under the same attribute
 * names; FastCResponse's fields likewise.
 */
#include "py_types.h"


typedef struct {
  PyObject_HEAD
  PyObject *client;        /* _client: the engine Client, None until the first request */
  PyObject *handle;        /* _handle: the EngineHandle whose engine runs the client */
  PyObject *base_url;      /* base_url: the host without its trailing slash */
  PyObject *request_name;  /* request_name: the name rename_request() gives */
  PyObject *headers;       /* _headers: the SessionHeaders */
  PyObject *lines;         /* _lines: the header lines of _headers as of _lines_version */
  PyObject *lines_version; /* _lines_version */
  PyObject *names;         /* _names: the lower-case names of _headers, as of _lines_version */
  PyObject *jar;           /* _jar: a pooled user's own cookies, or None */
  PyObject *reporter;      /* _reporter: the RequestReporter */
  double due;              /* _due: when the user's iteration now running was due (arrival_rate), 0 for none */
} SessionObject;

typedef struct {
  PyObject_HEAD
  PyObject *result; /* _result: the engine's Result, None when no response arrived */
  PyObject *method; /* _method */
  PyObject *url;    /* _url: the URL asked for */
  PyObject *lines;  /* _lines: the request's header lines */
  PyObject *body;   /* _body: the request body as request.body shows it */
  PyObject *error;  /* error: what the request failed with, or None */
  long status_code; /* 0 when no response arrived */
} ResponseObject;

/* request()'s keyword arguments, in the order of its positional ones after method and url. */
enum {
  ARG_NAME, ARG_DATA, ARG_CATCH_RESPONSE, ARG_STREAM, ARG_HEADERS, ARG_AUTH, ARG_JSON, ARG_ALLOW_REDIRECTS,
  ARG_CONTEXT, ARG_PARAMS, ARG_COOKIES, ARG_TIMEOUT, ARG_FILES, ARG_VERIFY, ARG_CERT, ARG_COUNT
};
_Static_assert(ARG_COUNT == SESSION_ARG_COUNT, "py_types.h's SESSION_ARG_COUNT");

static const char *const arg_names[SESSION_ARG_COUNT] = {
    "name", "data", "catch_response", "stream", "headers", "auth", "json", "allow_redirects",
    "context", "params", "cookies", "timeout", "files", "verify", "cert",
};

/* The arguments the C path takes itself; any other one sends the request through FastCSession._request. */
#define ARGS_FAST                                                                                                 \
  ((1L << ARG_NAME) | (1L << ARG_DATA) | (1L << ARG_CATCH_RESPONSE) | (1L << ARG_HEADERS) | (1L << ARG_JSON) |   \
   (1L << ARG_CONTEXT))
/* A keyword that is not one of request()'s: _request refuses it as request() does. */
#define ARG_UNKNOWN (1L << 31)

/* The methods the C path knows, upper-case as the engine sends them, with their flags; session.py's Python path
 * reads the same table (METHOD_FLAGS). Any other method has none. */
static const struct {
  const char *name;
  int flags;
} method_table[SESSION_METHOD_COUNT] = {
    {"GET", REQ_GET | REQ_IDEMPOTENT}, {"POST", REQ_POST}, {"PUT", REQ_IDEMPOTENT}, {"DELETE", REQ_IDEMPOTENT},
    {"HEAD", REQ_HEAD | REQ_IDEMPOTENT}, {"PATCH", 0}, {"OPTIONS", REQ_IDEMPOTENT}, {"TRACE", REQ_IDEMPOTENT},
};
#define METHOD_GET 0
#define METHOD_POST 1

/* The request event's keyword arguments, as RequestReporter.meta gives them. */
static const char *const meta_names[9] = {"request_type", "name",    "response_time", "response_length", "response",
                                          "exception",    "context", "start_time",    "url"};
enum { META_TYPE, META_NAME, META_TIME, META_LENGTH, META_RESPONSE, META_EXCEPTION, META_CONTEXT, META_START,
       META_URL };

/* The order of positional arguments after the URL: request()'s (after method), post()'s. */
static const int request_order[] = {ARG_NAME,    ARG_DATA,     ARG_CATCH_RESPONSE, ARG_STREAM,  ARG_HEADERS,
                                    ARG_AUTH,    ARG_JSON,     ARG_ALLOW_REDIRECTS, ARG_CONTEXT, ARG_PARAMS,
                                    ARG_COOKIES, ARG_TIMEOUT,  ARG_FILES,          ARG_VERIFY,  ARG_CERT};
static const int post_order[] = {ARG_DATA, ARG_JSON};

static int session_traverse(SessionObject *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(self->client);
  Py_VISIT(self->handle);
  Py_VISIT(self->base_url);
  Py_VISIT(self->request_name);
  Py_VISIT(self->headers);
  Py_VISIT(self->lines);
  Py_VISIT(self->lines_version);
  Py_VISIT(self->names);
  Py_VISIT(self->jar);
  Py_VISIT(self->reporter);
  return 0;
}

static int session_clear(SessionObject *self) {
  Py_CLEAR(self->client);
  Py_CLEAR(self->handle);
  Py_CLEAR(self->base_url);
  Py_CLEAR(self->request_name);
  Py_CLEAR(self->headers);
  Py_CLEAR(self->lines);
  Py_CLEAR(self->lines_version);
  Py_CLEAR(self->names);
  Py_CLEAR(self->jar);
  Py_CLEAR(self->reporter);
  return 0;
}

static void session_dealloc(SessionObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  session_clear(self);
  tp->tp_free(self);
  Py_DECREF(tp);
}

static inline int is_set(PyObject *o) { return o != NULL && o != Py_None; }

/* Python's truth of an optional argument: 0 when absent or None, -1 on error. */
static inline int is_true(PyObject *o) { return is_set(o) ? PyObject_IsTrue(o) : 0; }

/*
 * Parses the arguments after the URL, `npos` positional ones (in the order `order`) and the keywords, into
 * args[]. Returns the mask of the arguments given, ARG_UNKNOWN set when a keyword is not one of request()'s;
 * -1 with an exception when one is given twice, or too many positional ones.
 */
static long session_parse(module_state_t *st, const char *fname, PyObject *const *pos, Py_ssize_t npos,
                          const int *order, Py_ssize_t norder, PyObject *const *kwvalues, PyObject *kwnames,
                          PyObject **args) {
  long given = 0;
  Py_ssize_t i, nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  if (npos > norder) {
    PyErr_Format(PyExc_TypeError, "%s() got %zd positional arguments after the URL, at most %zd are taken", fname,
                 npos, norder);
    return -1;
  }
  for (i = 0; i < npos; i++) {
    args[order[i]] = pos[i];
    given |= 1L << order[i];
  }
  for (i = 0; i < nkw; i++) {
    PyObject *key = PyTuple_GET_ITEM(kwnames, i);
    int k;
    /* Keyword names are interned: the identity test finds them, the comparison is for the rest. */
    for (k = 0; k < SESSION_ARG_COUNT && st->arg_names[k] != key; k++)
      ;
    if (k == SESSION_ARG_COUNT)
      for (k = 0; k < SESSION_ARG_COUNT && PyUnicode_Compare(st->arg_names[k], key) != 0; k++)
        ;
    if (k == SESSION_ARG_COUNT) {
      given |= ARG_UNKNOWN;
      continue;
    }
    if (given & (1L << k)) {
      PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, arg_names[k]);
      return -1;
    }
    args[k] = kwvalues[i];
    given |= 1L << k;
  }
  return given;
}

/*
 * The rare path: FastCSession._request(method, url, **arguments), with the arguments parsed here given back as
 * keywords, and the keywords that are not request()'s too, for _request to refuse as request() does.
 */
static PyObject *session_slow(module_state_t *st, SessionObject *self, PyObject *method, PyObject *url,
                              PyObject **args, PyObject *const *kwvalues, PyObject *kwnames) {
  PyObject *kwargs = PyDict_New(), *callable = NULL, *pargs = NULL, *out = NULL;
  Py_ssize_t i, nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  if (kwargs == NULL) return NULL;
  for (int k = 0; k < SESSION_ARG_COUNT; k++)
    if (args[k] != NULL && PyDict_SetItem(kwargs, st->arg_names[k], args[k]) < 0) goto done;
  for (i = 0; i < nkw; i++) {
    PyObject *key = PyTuple_GET_ITEM(kwnames, i);
    int known = PyDict_Contains(kwargs, key);
    if (known < 0 || (!known && PyDict_SetItem(kwargs, key, kwvalues[i]) < 0)) goto done;
  }
  if ((callable = PyObject_GetAttr((PyObject *)self, st->str__request)) == NULL) goto done;
  if ((pargs = PyTuple_Pack(2, method, url)) == NULL) goto done;
  out = PyObject_Call(callable, pargs, kwargs);
done:
  Py_XDECREF(pargs);
  Py_XDECREF(callable);
  Py_DECREF(kwargs);
  return out;
}

/* FastCSession._request(*args, **kwnames' values), by vectorcall: the Python path with the arguments as given. */
static PyObject *session_python(module_state_t *st, SessionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
  PyObject *callable = PyObject_GetAttr((PyObject *)self, st->str__request), *out;
  if (callable == NULL) return NULL;
  out = PyObject_Vectorcall(callable, args, nargs, kwnames);
  Py_DECREF(callable);
  return out;
}

/* The index of `method` in method_table, -1 when it is not there (lower-case, or another one). */
static int method_index(module_state_t *st, PyObject *method) {
  int i;
  for (i = 0; i < SESSION_METHOD_COUNT; i++)
    if (st->method_names[i] == method) return i;
  for (i = 0; i < SESSION_METHOD_COUNT; i++)
    if (PyUnicode_Compare(st->method_names[i], method) == 0) return i;
  if (PyErr_Occurred()) PyErr_Clear();
  return -1;
}

/* response_new: a Response of `type` (FastCResponse, or a subclass) without calling its __init__. */
static PyObject *response_make(PyTypeObject *type, PyObject *result, long status, PyObject *method, PyObject *url,
                               PyObject *lines, PyObject *body) {
  ResponseObject *r = (ResponseObject *)type->tp_alloc(type, 0);
  if (r == NULL) return NULL;
  r->result = Py_NewRef(result);
  r->method = Py_NewRef(method);
  r->url = Py_NewRef(url);
  r->lines = Py_NewRef(lines);
  r->body = Py_NewRef(body);
  r->error = Py_NewRef(Py_None);
  r->status_code = status;
  return (PyObject *)r;
}

/* The session's header lines, built again (FastCSession._session_lines) after client.headers changed. */
LC_SWITCHED_FRAME
static PyObject *session_lines(module_state_t *st, SessionObject *self) {
  PyObject *version;
  int same;
  if (self->headers == NULL || self->lines == NULL || self->lines_version == NULL)
    return PyObject_CallMethodNoArgs((PyObject *)self, st->str__session_lines);
  if ((version = PyObject_GetAttr(self->headers, st->str_version)) == NULL) return NULL;
  same = version == self->lines_version ? 1 : PyObject_RichCompareBool(version, self->lines_version, Py_EQ);
  Py_DECREF(version);
  if (same < 0) return NULL;
  return same ? Py_NewRef(self->lines) : PyObject_CallMethodNoArgs((PyObject *)self, st->str__session_lines);
}

/*
 * Appends the header line of (name, value) to `lines` as session.py's _header_lines writes it: bytes as latin-1,
 * None left out, anything else as str(), formatted as an f-string formats it; an empty value as "Name;", which
 * sends it empty.
 */
static int header_line_append(module_state_t *st, PyObject *lines, PyObject *name, PyObject *value) {
  PyObject *text, *shown, *line;
  int rc, empty;
  if (value == Py_None) return 0;
  if (PyBytes_Check(value))
    text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL);
  else if (PyUnicode_Check(value))
    text = Py_NewRef(value);
  else
    text = PyObject_Str(value);
  if (text == NULL) return -1;
  if (PyUnicode_CheckExact(text)) {
    shown = Py_NewRef(text);
    empty = PyUnicode_GET_LENGTH(text) == 0;
  } else { /* a str subclass: its own __format__ and truth, as in f"{name}: {value}" if value */
    int truth = PyObject_IsTrue(text);
    shown = truth < 0 ? NULL : PyObject_Format(text, st->str_empty);
    empty = truth == 0;
  }
  Py_DECREF(text);
  if (shown == NULL) return -1;
  line = empty ? PyUnicode_FromFormat("%U;", name) : PyUnicode_FromFormat("%U: %U", name, shown);
  Py_DECREF(shown);
  if (line == NULL) return -1;
  rc = PyList_Append(lines, line);
  Py_DECREF(line);
  return rc;
}

static int append_str(PyObject *lines, const char *s) {
  PyObject *line = PyUnicode_FromString(s);
  int rc = line ? PyList_Append(lines, line) : -1;
  Py_XDECREF(line);
  return rc;
}

/* Which of the headers that _prepare decides on are among a request's (or the session's) names. */
enum { HAS_CONTENT_TYPE = 1, HAS_ACCEPT = 2, HAS_EXPECT = 4 };

static int header_flag(module_state_t *st, PyObject *lowered) {
  if (PyUnicode_Compare(lowered, st->str_content_type) == 0) return HAS_CONTENT_TYPE;
  if (PyUnicode_Compare(lowered, st->str_accept) == 0) return HAS_ACCEPT;
  if (PyUnicode_Compare(lowered, st->str_expect) == 0) return HAS_EXPECT;
  return 0;
}

/*
 * FastCSession._prepare for a request with headers= (a dict of str names) and/or json=, no data: the session's
 * lines, the request's after them, the JSON body as json.dumps writes it, in _prepare's order of steps (and so of
 * errors): the names, the body, the values. Returns 1 with (lines, body, shown) set; 0 when the request is one
 * for _prepare itself (a header that replaces a session header, headers that are not a plain dict or have a name
 * that is not a str), decided before any of the user's code runs; -1 with an exception.
 */
LC_SWITCHED_FRAME
static int session_prepare(module_state_t *st, SessionObject *self, PyObject *headers, PyObject *json,
                           PyObject **lines_out, PyObject **body_out, PyObject **shown_out) {
  PyObject *base = NULL, *names = NULL, *items = NULL, *lines = NULL, *shown = NULL, *body = NULL, *dumps = NULL;
  Py_ssize_t i, n = 0;
  int present = 0, rc = -1;

  if (headers != NULL && !PyDict_CheckExact(headers)) return 0;
  if ((base = session_lines(st, self)) == NULL) return -1;
  names = Py_XNewRef(self->names); /* the user's code below may change the session */
  if (names == NULL || !PyAnySet_CheckExact(names) || !PyTuple_CheckExact(base)) {
    rc = 0;
    goto done;
  }
  /* The session's own Content-Type, Accept, Expect. */
  for (i = 0; i < 3; i++) {
    PyObject *name = i == 0 ? st->str_content_type : i == 1 ? st->str_accept : st->str_expect;
    int found = PySet_Contains(names, name);
    if (found < 0) goto done;
    if (found) present |= 1 << i;
  }
  /* The names: (name, value) pairs of our own, which a value's __str__ cannot pull away. */
  if (headers != NULL) {
    if ((items = PyDict_Items(headers)) == NULL) goto done;
    n = PyList_GET_SIZE(items);
  }
  for (i = 0; i < n; i++) {
    PyObject *key = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0), *lowered;
    int clash;
    if (!PyUnicode_CheckExact(key)) {
      rc = 0; /* _prepare says what is wrong with it */
      goto done;
    }
    if ((lowered = PyObject_CallMethodNoArgs(key, st->str_lower)) == NULL) goto done;
    clash = PySet_Contains(names, lowered);
    present |= header_flag(st, lowered);
    Py_DECREF(lowered);
    if (clash != 0) { /* replaces a session header: _prepare builds the session's lines again without it */
      rc = clash < 0 ? -1 : 0;
      goto done;
    }
  }
  /* The body: json.dumps as the json module has it now (a locustfile may have replaced it). json's own is called
   * as its C encoder, made once (session.py's _JSON_ENCODER), without json's three Python frames; whatever the
   * encoder fails on goes to json.dumps itself, which gives the result or the error json gives. */
  if (json != NULL) {
    if ((dumps = PyObject_GetAttr(st->json_module, st->str_dumps)) == NULL) goto done;
    if (dumps == st->json_dumps && st->json_encoder != NULL) {
      PyObject *call[2] = {json, st->zero}, *chunks = PyObject_Vectorcall(st->json_encoder, call, 2, NULL);
      if (chunks != NULL) {
        shown = PyUnicode_Join(st->str_empty, chunks);
        Py_DECREF(chunks);
      }
      if (shown == NULL) { /* an encoding that failed may leave its containers in the markers */
        PyErr_Clear();
        PyDict_Clear(st->json_markers);
      }
    }
    if (shown == NULL && (shown = PyObject_CallOneArg(dumps, json)) == NULL) goto done;
    if (!PyUnicode_Check(shown)) {
      PyErr_SetString(PyExc_TypeError, "json.dumps() did not return str");
      goto done;
    }
    if ((body = PyUnicode_AsUTF8String(shown)) == NULL) goto done;
  }
  /* The values. */
  if ((lines = PySequence_List(base)) == NULL) goto done;
  for (i = 0; i < n; i++) {
    PyObject *item = PyList_GET_ITEM(items, i);
    if (header_line_append(st, lines, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1)) < 0) goto done;
  }
  if (json != NULL) {
    if (!(present & HAS_CONTENT_TYPE) && append_str(lines, "Content-Type: application/json") < 0) goto done;
    if (!(present & HAS_ACCEPT) && append_str(lines, "Accept: application/json") < 0) goto done;
    /* libcurl would add "Expect: 100-continue" to a large body: it was not asked for. */
    if (!(present & HAS_EXPECT) && append_str(lines, "Expect:") < 0) goto done;
  }
  if ((*lines_out = PyList_AsTuple(lines)) == NULL) goto done;
  *body_out = body ? body : Py_NewRef(Py_None);
  *shown_out = shown ? shown : Py_NewRef(Py_None);
  body = shown = NULL;
  rc = 1;
done:
  Py_XDECREF(base);
  Py_XDECREF(names);
  Py_XDECREF(items);
  Py_XDECREF(lines);
  Py_XDECREF(shown);
  Py_XDECREF(body);
  Py_XDECREF(dumps);
  return rc;
}

/* EngineHandle.expect(): one more delivery is due, and the hub's watcher holds the loop while any is. */
static int handle_expect(module_state_t *st, SessionObject *self, EngineObject *engine) {
  if (engine->pending++ == 0) {
    PyObject *watcher = PyObject_GetAttr(self->handle, st->str_watcher);
    int rc = watcher ? PyObject_SetAttr(watcher, st->str_ref, Py_True) : -1;
    Py_XDECREF(watcher);
    return rc;
  }
  return 0;
}

/*
 * FastCSession._finish for a catch_response request that succeeded (a status of FastHttpUser's set, the
 * class keeping that set): the ResponseContextManager over its response, with the request event's arguments
 * (RequestReporter.meta) for the with block to report.
 */
LC_SWITCHED_FRAME
static PyObject *session_catch(module_state_t *st, SessionObject *self, ResultObject *result, PyObject *method,
                               PyObject *stats_name, PyObject *full_url, PyObject *lines, PyObject *shown,
                               double start_time, PyObject *context) {
  PyObject *inner = NULL, *meta = NULL, *ctx = NULL, *rcm = NULL, *values[9] = {NULL};
  size_t length = result->content ? (size_t)PyBytes_GET_SIZE(result->content) : result->req->content.len;
  int i;
  if ((inner = response_make((PyTypeObject *)st->response_class, (PyObject *)result, result->status, method,
                             full_url, lines, shown)) == NULL)
    return NULL;
  {
    PyObject *call[2] = {self->reporter, context ? context : Py_None};
    if ((ctx = PyObject_VectorcallMethod(st->str__context, call, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)) == NULL)
      goto done;
  }
  values[META_TYPE] = Py_NewRef(method);
  values[META_NAME] = Py_NewRef(stats_name);
  values[META_TIME] = PyFloat_FromDouble(result->response_time);
  values[META_LENGTH] = PyLong_FromSize_t(length);
  values[META_RESPONSE] = Py_NewRef(inner);
  values[META_EXCEPTION] = Py_NewRef(Py_None);
  values[META_CONTEXT] = Py_NewRef(ctx);
  values[META_START] = PyFloat_FromDouble(start_time);
  values[META_URL] = Py_NewRef(full_url);
  if ((meta = PyDict_New()) == NULL) goto done;
  for (i = 0; i < 9; i++)
    if (values[i] == NULL || PyDict_SetItem(meta, st->meta_keys[i], values[i]) < 0) goto done;
  if ((rcm = response_make((PyTypeObject *)st->catch_class, (PyObject *)result, result->status, method, full_url,
                           lines, shown)) == NULL)
    goto done;
  if (PyObject_SetAttr(rcm, st->str__reporter, self->reporter) < 0 ||
      PyObject_SetAttr(rcm, st->str_request_meta, meta) < 0)
    Py_CLEAR(rcm);
done:
  for (i = 0; i < 9; i++) Py_XDECREF(values[i]);
  Py_XDECREF(meta);
  Py_XDECREF(ctx);
  Py_DECREF(inner);
  return rcm;
}

/*
 * One request the common way. args[] holds the arguments given (NULL for the others); the caller has checked
 * that only ARGS_FAST are among them, that the session has a running client and no jar of its own, and that
 * url is a path of the host.
 */
LC_SWITCHED_FRAME
static PyObject *session_send(module_state_t *st, SessionObject *self, int m, PyObject *url, PyObject **args) {
  /* Held for the wait: the user's code may close the session or rename its requests meanwhile. */
  ClientObject *client = (ClientObject *)Py_NewRef(self->client);
  PyObject *method = st->method_names[m], *lines = NULL, *body = Py_None, *shown = Py_None, *prepared = NULL;
  PyObject *full_url = NULL, *stats_name = NULL, *endpoint = NULL, *waiter = NULL, *id = NULL, *result = NULL;
  PyObject *out = NULL, *submit[7], *flags_obj = NULL, *body_ref = NULL, *shown_ref = NULL;
  long flags = method_table[m].flags | REQ_FOLLOW_REDIRECTS;
  int catch_response, has_headers, default_codes;
  double start_time;

  if ((catch_response = is_true(args[ARG_CATCH_RESPONSE])) < 0 || (has_headers = is_true(args[ARG_HEADERS])) < 0)
    goto done;
  if (has_headers || is_set(args[ARG_JSON]) || is_set(args[ARG_DATA])) {
    int done_here = is_set(args[ARG_DATA]) ? 0
                    : session_prepare(st, self, has_headers ? args[ARG_HEADERS] : NULL,
                                      is_set(args[ARG_JSON]) ? args[ARG_JSON] : NULL, &lines, &body_ref, &shown_ref);
    if (done_here < 0) goto done;
    if (!done_here) {
      /* _prepare(headers, auth, data, json) -> (lines, body, shown): every other case. */
      PyObject *call[5] = {(PyObject *)self, has_headers ? args[ARG_HEADERS] : Py_None, Py_None,
                           is_set(args[ARG_DATA]) ? args[ARG_DATA] : Py_None,
                           is_set(args[ARG_JSON]) ? args[ARG_JSON] : Py_None};
      prepared = PyObject_VectorcallMethod(st->str__prepare, call, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
      if (prepared == NULL) goto done;
      if (!PyTuple_Check(prepared) || PyTuple_GET_SIZE(prepared) != 3) {
        PyErr_SetString(PyExc_TypeError, "_prepare() must return (lines, body, shown)");
        goto done;
      }
      lines = Py_NewRef(PyTuple_GET_ITEM(prepared, 0));
      body_ref = Py_NewRef(PyTuple_GET_ITEM(prepared, 1));
      shown_ref = Py_NewRef(PyTuple_GET_ITEM(prepared, 2));
    }
    body = body_ref;
    shown = shown_ref;
  } else if ((lines = session_lines(st, self)) == NULL) {
    goto done;
  }
  if ((full_url = PyUnicode_Concat(self->base_url, url)) == NULL) goto done;

  /* name, or rename_request()'s, or the URL as given: the row of Locust's table. */
  {
    int named = is_true(args[ARG_NAME]), renamed = named == 0 ? is_true(self->request_name) : 0;
    if (named < 0 || renamed < 0) goto done;
    stats_name = Py_NewRef(named ? args[ARG_NAME] : renamed ? self->request_name : url);
  }

  {
    PyObject *call[3] = {self->reporter, method, stats_name};
    endpoint = PyObject_VectorcallMethod(st->str_endpoint, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (endpoint == NULL) goto done;
  }
  {
    /* The class keeps FastHttpUser's statuses: the engine's test of a success is the class's. */
    PyObject *codes = PyObject_GetAttr((PyObject *)self, st->str_valid_response_codes);
    if (codes == NULL) goto done;
    default_codes = codes == st->valid_codes;
    Py_DECREF(codes);
  }
  if (endpoint != Py_None && !catch_response && default_codes) {
    /* Batched when Locust's own stats are the only listener. */
    PyObject *batchable = PyObject_CallMethodNoArgs(self->reporter, st->str_batchable);
    int yes = batchable ? PyObject_IsTrue(batchable) : -1;
    Py_XDECREF(batchable);
    if (yes < 0) goto done;
    if (yes) flags |= REQ_BATCH_STATS;
  }
  if ((flags_obj = PyLong_FromLong(flags)) == NULL) goto done;
  start_time = wall_clock_now();
  if ((waiter = PyObject_CallNoArgs(st->waiter_type)) == NULL) goto done;
  submit[0] = waiter;
  submit[1] = method;
  submit[2] = full_url;
  submit[3] = lines;
  submit[4] = body;
  submit[5] = flags_obj;
  submit[6] = endpoint;
  client->due = self->due;
  if ((id = client_obj_submit(client, submit, 7)) == NULL) goto done;
  if (handle_expect(st, self, client->engine) < 0) goto done;

  /* waiter.get(), called here: PyObject_CallMethodNoArgs is an inline function, which the sanitizer build would
   * instrument, and its frame would wait with this one (see SWITCHED_FRAME). */
  if ((result = PyObject_VectorcallMethod(st->str_get, submit, 1, NULL)) == NULL) {
    /* The user was stopped mid-request (GreenletExit) or the task was interrupted: free the connection. */
    PyObject *type, *value, *traceback;
    unsigned long long rid;
    PyErr_Fetch(&type, &value, &traceback);
    rid = PyLong_AsUnsignedLongLong(id);
    if (!PyErr_Occurred()) client_obj_cancel(client, rid);
    PyErr_Clear();
    PyErr_Restore(type, value, traceback);
    goto done;
  }
  if (!catch_response && Py_TYPE(result) == st->result_type && ((ResultObject *)result)->recorded) {
    /* A batched success: in Locust's stats already, with nothing left to decide. */
    out = response_make((PyTypeObject *)st->response_class, result, ((ResultObject *)result)->status, method,
                        full_url, lines, shown);
  } else if (catch_response && default_codes && Py_TYPE(result) == st->result_type &&
             ((ResultObject *)result)->result == 0 && status_is_success(((ResultObject *)result)->status)) {
    out = session_catch(st, self, (ResultObject *)result, method, stats_name, full_url, lines, shown, start_time,
                        args[ARG_CONTEXT]);
  } else {
    PyObject *start = PyFloat_FromDouble(start_time);
    if (start != NULL) {
      PyObject *call[11] = {(PyObject *)self, method, stats_name, full_url, lines, shown, result, start,
                            catch_response ? Py_True : Py_False, Py_False,
                            args[ARG_CONTEXT] ? args[ARG_CONTEXT] : Py_None};
      out = PyObject_VectorcallMethod(st->str__finish, call, 11 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
      Py_DECREF(start);
    }
  }
done:
  Py_DECREF(client);
  Py_XDECREF(stats_name);
  Py_XDECREF(result);
  Py_XDECREF(id);
  Py_XDECREF(waiter);
  Py_XDECREF(flags_obj);
  Py_XDECREF(endpoint);
  Py_XDECREF(full_url);
  Py_XDECREF(lines);
  Py_XDECREF(body_ref);
  Py_XDECREF(shown_ref);
  Py_XDECREF(prepared);
  return out;
}

/*
 * True when this request can take session_send: only ARGS_FAST given, a path of the host without a space (which
 * _request quotes), a running client of the user's own.
 */
static int session_can_send(module_state_t *st, SessionObject *self, PyObject *url, long given) {
  Py_ssize_t len;
  PyObject *valid;
  int ok;
  if (given & ~ARGS_FAST) return 0;
  if (!PyUnicode_CheckExact(url) || (len = PyUnicode_GET_LENGTH(url)) == 0 || PyUnicode_READ_CHAR(url, 0) != '/')
    return 0;
  if (PyUnicode_FindChar(url, ' ', 0, len, 1) != -1) return 0;
  if (st->waiter_type == NULL || st->response_class == NULL || st->catch_class == NULL || st->json_module == NULL)
    return 0; /* session.py has not called set_request_path */
  if (self->client == NULL || Py_TYPE(self->client) != st->client_type || ((ClientObject *)self->client)->closed)
    return 0;
  if (is_set(self->jar) || self->base_url == NULL || !PyUnicode_CheckExact(self->base_url) || self->handle == NULL ||
      self->reporter == NULL)
    return 0;
  if (PyUnicode_FindChar(self->base_url, ' ', 0, PyUnicode_GET_LENGTH(self->base_url), 1) != -1) return 0;
  /* A stopped engine, or one a forked child inherited: _request connects to a new one. */
  if ((valid = PyObject_GetAttr(self->handle, st->str_valid)) == NULL) return -1;
  ok = valid == Py_True;
  Py_DECREF(valid);
  return ok;
}

LC_SWITCHED_FRAME
static PyObject *session_dispatch(module_state_t *st, SessionObject *self, const char *fname, PyObject *method,
                                  PyObject *url, PyObject *const *pos, Py_ssize_t npos, const int *order,
                                  Py_ssize_t norder, PyObject *const *kwvalues, PyObject *kwnames) {
  PyObject *args[SESSION_ARG_COUNT] = {NULL};
  long given = session_parse(st, fname, pos, npos, order, norder, kwvalues, kwnames, args);
  int m, fast;
  if (given < 0) return NULL;
  m = PyUnicode_CheckExact(method) ? method_index(st, method) : -1;
  fast = m < 0 ? 0 : session_can_send(st, self, url, given);
  if (fast < 0) return NULL;
  if (fast) return session_send(st, self, m, url, args);
  return session_slow(st, self, method, url, args, kwvalues, kwnames);
}

LC_SWITCHED_FRAME
static PyObject *session_request(SessionObject *self, PyTypeObject *cls, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
  module_state_t *st = PyType_GetModuleState(cls);
  Py_ssize_t npos = PyVectorcall_NARGS(nargs);
  if (npos < 2) /* request(method=..., url=...) by keyword, or too few: the Python path says what is wrong. */
    return session_python(st, self, args, npos, kwnames);
  return session_dispatch(st, self, "request", args[0], args[1], args + 2, npos - 2, request_order,
                          (Py_ssize_t)(sizeof(request_order) / sizeof(request_order[0])), args + npos, kwnames);
}

LC_SWITCHED_FRAME
static PyObject *session_verb(SessionObject *self, PyTypeObject *cls, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames, int m, const char *fname, const int *order, Py_ssize_t norder) {
  module_state_t *st = PyType_GetModuleState(cls);
  Py_ssize_t npos = PyVectorcall_NARGS(nargs);
  if (npos < 1) {
    /* get(url=...) by keyword, or no URL at all: _request(method, **kwargs) takes it, or says what is missing. */
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject **stack = PyMem_Malloc((size_t)(1 + nkw) * sizeof(PyObject *)), *out;
    if (stack == NULL) return PyErr_NoMemory();
    stack[0] = st->method_names[m];
    for (Py_ssize_t i = 0; i < nkw; i++) stack[1 + i] = args[i];
    out = session_python(st, self, stack, 1, kwnames);
    PyMem_Free(stack);
    return out;
  }
  return session_dispatch(st, self, fname, st->method_names[m], args[0], args + 1, npos - 1, order, norder,
                          args + npos, kwnames);
}

LC_SWITCHED_FRAME
static PyObject *session_get(SessionObject *self, PyTypeObject *cls, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames) {
  return session_verb(self, cls, args, nargs, kwnames, METHOD_GET, "get", NULL, 0);
}

LC_SWITCHED_FRAME
static PyObject *session_post(SessionObject *self, PyTypeObject *cls, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
  return session_verb(self, cls, args, nargs, kwnames, METHOD_POST, "post", post_order, 2);
}

static PyMethodDef session_methods[] = {
    {"request", (PyCFunction)(void (*)(void))session_request, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "request($self, method, url, name=None, data=None, catch_response=False, stream=False, headers=None, "
     "auth=None, json=None, allow_redirects=True, context=None, params=None, cookies=None, timeout=None, "
     "files=None, verify=None, cert=None)\n--\n\n"
     "Send an HTTP request and record it in Locust's statistics.\n\n"
     "Returns a FastCResponse, or with catch_response=True a ResponseContextManager to use in a with block. Bad "
     "arguments raise here and send nothing; network faults and HTTP errors are recorded as failures and returned "
     "in response.error."},
    {"get", (PyCFunction)(void (*)(void))session_get, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "get($self, url, **kwargs)\n--\n\nSend a GET request (the arguments are request()'s)."},
    {"post", (PyCFunction)(void (*)(void))session_post, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "post($self, url, data=None, json=None, **kwargs)\n--\n\nSend a POST request (the arguments are request()'s)."},
    {NULL},
};

static PyMemberDef session_members[] = {
    {"_client", T_OBJECT, offsetof(SessionObject, client), 0, NULL},
    {"_handle", T_OBJECT, offsetof(SessionObject, handle), 0, NULL},
    {"base_url", T_OBJECT, offsetof(SessionObject, base_url), 0, "The host every relative URL is joined to."},
    {"request_name", T_OBJECT, offsetof(SessionObject, request_name), 0,
     "The name rename_request() groups requests under, or None."},
    {"_headers", T_OBJECT, offsetof(SessionObject, headers), 0, NULL},
    {"_lines", T_OBJECT, offsetof(SessionObject, lines), 0, NULL},
    {"_lines_version", T_OBJECT, offsetof(SessionObject, lines_version), 0, NULL},
    {"_names", T_OBJECT, offsetof(SessionObject, names), 0, NULL},
    {"_jar", T_OBJECT, offsetof(SessionObject, jar), 0, NULL},
    {"_reporter", T_OBJECT, offsetof(SessionObject, reporter), 0, NULL},
    {"_due", T_DOUBLE, offsetof(SessionObject, due), 0, NULL},
    {NULL},
};

static PyType_Slot session_slots[] = {
    {Py_tp_doc, "The request path of FastCSession, and its hot state."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, session_dealloc},
    {Py_tp_traverse, session_traverse},
    {Py_tp_clear, session_clear},
    {Py_tp_methods, session_methods},
    {Py_tp_members, session_members},
    {0, NULL},
};

static PyType_Spec session_spec = {
    .name = "locust_c._engine.Session",
    .basicsize = sizeof(SessionObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = session_slots,
};

/* ---- Response ---------------------------------------------------------------------------------------- */

static int response_traverse(ResponseObject *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(self->result);
  Py_VISIT(self->method);
  Py_VISIT(self->url);
  Py_VISIT(self->lines);
  Py_VISIT(self->body);
  Py_VISIT(self->error);
  return 0;
}

static int response_clear(ResponseObject *self) {
  Py_CLEAR(self->result);
  Py_CLEAR(self->method);
  Py_CLEAR(self->url);
  Py_CLEAR(self->lines);
  Py_CLEAR(self->body);
  Py_CLEAR(self->error);
  return 0;
}

static void response_dealloc(ResponseObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  response_clear(self);
  tp->tp_free(self);
  Py_DECREF(tp);
}

/* Response(result, method, url, lines, body, error): status_code is the result's status, 0 without one. */
static int response_init(ResponseObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"result", "method", "url", "lines", "body", "error", NULL};
  PyObject *result, *method, *url, *lines, *body, *error;
  long status = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOO:Response", kwlist, &result, &method, &url, &lines, &body,
                                   &error))
    return -1;
  if (result != Py_None) {
    PyObject *s = PyObject_GetAttrString(result, "status");
    if (s == NULL) return -1;
    status = PyLong_AsLong(s);
    Py_DECREF(s);
    if (status == -1 && PyErr_Occurred()) return -1;
  }
  Py_XSETREF(self->result, Py_NewRef(result));
  Py_XSETREF(self->method, Py_NewRef(method));
  Py_XSETREF(self->url, Py_NewRef(url));
  Py_XSETREF(self->lines, Py_NewRef(lines));
  Py_XSETREF(self->body, Py_NewRef(body));
  Py_XSETREF(self->error, Py_NewRef(error));
  self->status_code = status;
  return 0;
}

/* _take(other): this response becomes a copy of another one's fields (ResponseContextManager wraps one so). */
static PyObject *response_take(ResponseObject *self, PyTypeObject *cls, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
  module_state_t *st = PyType_GetModuleState(cls);
  ResponseObject *o;
  if (nargs != 1 || kwnames != NULL || !PyObject_TypeCheck(args[0], st->response_type)) {
    PyErr_SetString(PyExc_TypeError, "_take() takes one Response");
    return NULL;
  }
  o = (ResponseObject *)args[0];
  Py_XSETREF(self->result, Py_XNewRef(o->result));
  Py_XSETREF(self->method, Py_XNewRef(o->method));
  Py_XSETREF(self->url, Py_XNewRef(o->url));
  Py_XSETREF(self->lines, Py_XNewRef(o->lines));
  Py_XSETREF(self->body, Py_XNewRef(o->body));
  Py_XSETREF(self->error, Py_XNewRef(o->error));
  self->status_code = o->status_code;
  Py_RETURN_NONE;
}

static PyMethodDef response_methods[] = {
    {"_take", (PyCFunction)(void (*)(void))response_take, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "_take($self, other, /)\n--\n\nBecome a copy of another response's fields."},
    {NULL},
};

static PyMemberDef response_members[] = {
    {"_result", T_OBJECT, offsetof(ResponseObject, result), 0, NULL},
    {"_method", T_OBJECT, offsetof(ResponseObject, method), 0, NULL},
    {"_url", T_OBJECT, offsetof(ResponseObject, url), 0, NULL},
    {"_lines", T_OBJECT, offsetof(ResponseObject, lines), 0, NULL},
    {"_body", T_OBJECT, offsetof(ResponseObject, body), 0, NULL},
    {"error", T_OBJECT, offsetof(ResponseObject, error), 0, "What the request failed with, or None."},
    {"status_code", T_LONG, offsetof(ResponseObject, status_code), 0, "The HTTP status; 0 when no response came."},
    {NULL},
};

static PyType_Slot response_slots[] = {
    {Py_tp_doc, "Response(result, method, url, lines, body, error)\n--\n\nThe fields of a FastCResponse."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, response_init},
    {Py_tp_dealloc, response_dealloc},
    {Py_tp_traverse, response_traverse},
    {Py_tp_clear, response_clear},
    {Py_tp_methods, response_methods},
    {Py_tp_members, response_members},
    {0, NULL},
};

static PyType_Spec response_spec = {
    .name = "locust_c._engine.Response",
    .basicsize = sizeof(ResponseObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = response_slots,
};

/* ---- module ------------------------------------------------------------------------------------------ */

/*
 * set_request_path(waiter_type, response_class, catch_class, valid_codes, json_module, json_dumps, json_encoder,
 * json_markers): what session.py gives the C path.
 */
static PyObject *module_set_request_path(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
  module_state_t *st = PyModule_GetState(module);
  if (nargs != 8 || !PyType_Check(args[1]) || !PyType_IsSubtype((PyTypeObject *)args[1], st->response_type) ||
      !PyType_Check(args[2]) || !PyType_IsSubtype((PyTypeObject *)args[2], st->response_type) ||
      !PyDict_CheckExact(args[7])) {
    PyErr_SetString(PyExc_TypeError, "set_request_path(waiter_type, response_class, catch_class, valid_codes, "
                                     "json_module, json_dumps, json_encoder, json_markers): both classes must "
                                     "subclass Response, the markers be a dict");
    return NULL;
  }
  Py_XSETREF(st->json_dumps, Py_NewRef(args[5]));
  Py_XSETREF(st->json_encoder, args[6] == Py_None ? NULL : Py_NewRef(args[6]));
  Py_XSETREF(st->json_markers, Py_NewRef(args[7]));
  Py_XSETREF(st->waiter_type, Py_NewRef(args[0]));
  Py_XSETREF(st->response_class, Py_NewRef(args[1]));
  Py_XSETREF(st->catch_class, Py_NewRef(args[2]));
  Py_XSETREF(st->valid_codes, Py_NewRef(args[3]));
  Py_XSETREF(st->json_module, Py_NewRef(args[4]));
  Py_RETURN_NONE;
}

PyMethodDef session_module_methods[] = {
    {"set_request_path", (PyCFunction)(void (*)(void))module_set_request_path, METH_FASTCALL,
     "set_request_path(waiter_type, response_class, catch_class, valid_codes, json_module, json_dumps, "
     "json_encoder, json_markers) -- the Waiter the C request path waits on, the classes of its responses "
     "(FastCResponse, ResponseContextManager), the status set it batches (VALID_RESPONSE_CODES), the json module "
     "whose dumps() writes json= bodies, json's own dumps, and json's C encoder for it (or None) with its markers."},
    {NULL},
};

/* The names the request path looks up, interned once: where each goes in the module state. */
static const struct {
  size_t offset;
  const char *text;
} state_strings[] = {
#define STATE_STRING(field, text) {offsetof(module_state_t, field), text}
    STATE_STRING(str_get, "get"),
    STATE_STRING(str__request, "_request"),
    STATE_STRING(str__prepare, "_prepare"),
    STATE_STRING(str__finish, "_finish"),
    STATE_STRING(str__session_lines, "_session_lines"),
    STATE_STRING(str_version, "version"),
    STATE_STRING(str_valid, "valid"),
    STATE_STRING(str_watcher, "watcher"),
    STATE_STRING(str_ref, "ref"),
    STATE_STRING(str_endpoint, "endpoint"),
    STATE_STRING(str_batchable, "batchable"),
    STATE_STRING(str_valid_response_codes, "valid_response_codes"),
    STATE_STRING(str_lower, "lower"),
    STATE_STRING(str_content_type, "content-type"),
    STATE_STRING(str_accept, "accept"),
    STATE_STRING(str_expect, "expect"),
    STATE_STRING(str__context, "_context"),
    STATE_STRING(str__reporter, "_reporter"),
    STATE_STRING(str_request_meta, "request_meta"),
    STATE_STRING(str_dumps, "dumps"),
    STATE_STRING(str_empty, ""),
#undef STATE_STRING
};

static PyObject **state_string(module_state_t *st, size_t i) {
  return (PyObject **)((char *)st + state_strings[i].offset);
}

int session_module_exec(PyObject *m, module_state_t *st) {
  size_t i;
  for (i = 0; i < sizeof(state_strings) / sizeof(state_strings[0]); i++)
    if ((*state_string(st, i) = PyUnicode_InternFromString(state_strings[i].text)) == NULL) return -1;
  for (i = 0; i < SESSION_ARG_COUNT; i++)
    if ((st->arg_names[i] = PyUnicode_InternFromString(arg_names[i])) == NULL) return -1;
  for (i = 0; i < SESSION_METHOD_COUNT; i++)
    if ((st->method_names[i] = PyUnicode_InternFromString(method_table[i].name)) == NULL) return -1;
  for (i = 0; i < 9; i++)
    if ((st->meta_keys[i] = PyUnicode_InternFromString(meta_names[i])) == NULL) return -1;
  if ((st->zero = PyLong_FromLong(0)) == NULL) return -1;
  {
    /* METHOD_FLAGS: the same table for session.py's Python path. */
    PyObject *flags = PyDict_New();
    if (flags == NULL) return -1;
    for (i = 0; i < SESSION_METHOD_COUNT; i++) {
      PyObject *v = PyLong_FromLong(method_table[i].flags);
      if (v == NULL || PyDict_SetItem(flags, st->method_names[i], v) < 0) {
        Py_XDECREF(v);
        Py_DECREF(flags);
        return -1;
      }
      Py_DECREF(v);
    }
    if (PyModule_AddObject(m, "METHOD_FLAGS", flags) < 0) {
      Py_DECREF(flags);
      return -1;
    }
  }
  st->session_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &session_spec, NULL);
  st->response_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &response_spec, NULL);
  if (st->session_type == NULL || st->response_type == NULL) return -1;
  if (PyModule_AddType(m, st->session_type) < 0 || PyModule_AddType(m, st->response_type) < 0) return -1;
  return 0;
}

int session_module_traverse(module_state_t *st, visitproc visit, void *arg) {
  Py_VISIT(st->session_type);
  Py_VISIT(st->response_type);
  Py_VISIT(st->waiter_type);
  Py_VISIT(st->response_class);
  Py_VISIT(st->catch_class);
  Py_VISIT(st->valid_codes);
  Py_VISIT(st->json_module);
  Py_VISIT(st->json_dumps);
  Py_VISIT(st->json_encoder);
  Py_VISIT(st->json_markers);
  return 0;
}

void session_module_clear(module_state_t *st) {
  for (size_t i = 0; i < sizeof(state_strings) / sizeof(state_strings[0]); i++) Py_CLEAR(*state_string(st, i));
  for (int i = 0; i < SESSION_ARG_COUNT; i++) Py_CLEAR(st->arg_names[i]);
  for (int i = 0; i < SESSION_METHOD_COUNT; i++) Py_CLEAR(st->method_names[i]);
  for (int i = 0; i < 9; i++) Py_CLEAR(st->meta_keys[i]);
  Py_CLEAR(st->session_type);
  Py_CLEAR(st->response_type);
  Py_CLEAR(st->waiter_type);
  Py_CLEAR(st->response_class);
  Py_CLEAR(st->catch_class);
  Py_CLEAR(st->valid_codes);
  Py_CLEAR(st->json_module);
  Py_CLEAR(st->json_dumps);
  Py_CLEAR(st->json_encoder);
  Py_CLEAR(st->json_markers);
  Py_CLEAR(st->zero);
}
