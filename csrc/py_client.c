/*
 * Client: one simulated user as Python holds it; submit() checks a request and hands it to the engine.
 */
#include "py_types.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static uint64_t next_request_id = 1;

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
                           "ssl_context", "cookies", "native", NULL};
  PyObject *engine_obj, *ssl_context = Py_None;
  void *ssl_ctx = NULL;
  double connect_timeout = 60.0, read_timeout = 60.0, timeout = 0.0;
  int max_redirects = 30, max_retries = 0, max_connections = 10, insecure = 1, http2 = 0, tls_sessions = 1;
  int verify_host = 1, cookies = 1, native = 1;
  long tls_min = 0, tls_max = 0;
  long long max_response_bytes = 64LL << 20;
  const char *proxy = NULL, *user_agent = NULL, *ca_file = NULL, *cert = NULL, *key = NULL, *ciphers = NULL;
  module_state_t *st = PyType_GetModuleState(type);
  client_options_t opts;
  ClientObject *self;

  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!|dddiiippzzzpLzzzllpOpp:Client", kwlist, st->engine_type,
                                   &engine_obj, &connect_timeout, &read_timeout, &timeout, &max_redirects,
                                   &max_retries, &max_connections, &insecure, &http2, &proxy, &user_agent, &ca_file,
                                   &tls_sessions, &max_response_bytes, &cert, &key, &ciphers, &tls_min, &tls_max,
                                   &verify_host, &ssl_context, &cookies, &native))
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
      .native = native,
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
int client_obj_send(ClientObject *self, cmd_kind_t kind, uint64_t id) {
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

/* Cancels a request whose waiter gave up: the engine frees its connection, and should its result come back
 * completed all the same, dispatch leaves it out of the statistics. */
int client_obj_cancel(ClientObject *self, uint64_t id) {
  if (self->closed) return 0;
  engine_obj_abandon(self->engine, id);
  return client_obj_send(self, CMD_CANCEL, id);
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
  Py_ssize_t rest;
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
  if (!url_is_clean(u, (size_t)len)) {
    PyErr_Format(PyExc_ValueError, "malformed URL %R: it contains whitespace or a control character", url_obj);
    return -1;
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
PyObject *client_obj_submit(ClientObject *self, PyObject *const *args, Py_ssize_t nargs) {
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
  req->due_time = self->due;
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
  if ((rc = client_obj_cancel(self, id)) != 0) return lc_raise(rc, "cannot cancel the request");
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
    {"submit", (PyCFunction)(void (*)(void))client_obj_submit, METH_FASTCALL,
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

static PyMemberDef client_members[] = {
    {"due", T_DOUBLE, offsetof(ClientObject, due), 0,
     "When the iteration now running was due (UNIX seconds), 0 for none: the requests submitted carry it, and "
     "their endpoints record the latency from it (Endpoint.corrected)."},
    {NULL},
};

static PyType_Slot client_slots[] = {
    {Py_tp_doc, "Client(engine, connect_timeout=60.0, read_timeout=60.0, timeout=0.0, max_redirects=30, "
                "max_retries=0, max_connections=10, insecure=True, http2=False, proxy=None, user_agent=None, "
                "ca_file=None, tls_sessions=True, max_response_bytes=67108864, cert=None, key=None, ciphers=None, "
                "tls_min=0, tls_max=0, verify_host=True, ssl_context=None, cookies=True, native=True)\n--\n\n"
                "One simulated user's keep-alive connections and cookie jar. read_timeout bounds each wait for the "
                "server, timeout the whole request; 0 is no limit."},
    {Py_tp_new, client_new},
    {Py_tp_dealloc, client_dealloc},
    {Py_tp_methods, client_methods},
    {Py_tp_getset, client_getset},
    {Py_tp_members, client_members},
    {0, NULL},
};

PyType_Spec client_spec = {
    .name = "locust_c._engine.Client",
    .basicsize = sizeof(ClientObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = client_slots,
};
