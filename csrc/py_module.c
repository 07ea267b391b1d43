/*
 * locust_c._engine: multi-phase init, module state, the module's functions, and lc_raise: the one place
 * where C errors become Python exceptions.
 */
#include "py_types.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/*
 * The pid of this process, refreshed in a forked child. Each submit checks that its engine belongs to this
 * process (a forked child inherits the parent's objects but not its threads); getpid() is a real system call
 * in glibc, so the check reads this copy instead.
 */
pid_t process_pid;

static void process_pid_refresh(void) { process_pid = getpid(); }

/* ---- errors: the one place where C errors become Python exceptions ----------------------------------- */

PyObject *lc_raise(int rc, const char *what) {
  if (rc == -ENOMEM) return PyErr_NoMemory();
  if (rc == -ESHUTDOWN) {
    PyErr_Format(PyExc_RuntimeError, "%s: the locust-c engine has been stopped", what);
    return NULL;
  }
  errno = -rc;
  PyErr_Format(PyExc_OSError, "%s: %s", what, strerror(-rc));
  return NULL;
}


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
  if (session_module_exec(m, st) < 0) return -1;
  if (PyModule_AddFunctions(m, session_module_methods) < 0) return -1;

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
  return session_module_traverse(st, visit, arg);
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
  session_module_clear(st);
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
