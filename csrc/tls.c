/*
 * ssl_context_factory: the TLS settings of a Python ssl.SSLContext, carried over to the OpenSSL context libcurl
 * makes for each new connection (CURLOPT_SSL_CTX_FUNCTION).
 *
 * Python's SSLContext wraps an OpenSSL SSL_CTX. The client takes its own reference to that SSL_CTX when it is
 * created (on the Python thread) and, on the engine thread, copies from it what a client connection uses: the
 * client certificate with its chain and key, the store of trusted certificates (with its verification flags and
 * any CA directory, which OpenSSL reads lazily), the protocol versions, the cipher lists and the option bits.
 * Whether to verify at all, and the host name, are libcurl's options, set from the context's verify_mode and
 * check_hostname by the session. This needs Python's ssl module and libcurl to share one OpenSSL library, which
 * locust_c.session checks before it hands a context over.
 *
 * The engine thread reads the Python context's SSL_CTX without the GIL, at each new connection. That is safe while
 * the context is not changed: ssl_context_factory makes a context for the session, which nothing else holds; a
 * factory that hands out a context it keeps changing is not supported.
 */
#include "locust_c.h"

#include <openssl/ssl.h>
#include <string.h>

/* The address of SSL_CTX_new as this module resolved it: the session compares it with the one Python's _ssl uses. */
uintptr_t tls_library_marker(void) { return (uintptr_t)&SSL_CTX_new; }

void *tls_context_ref(void *ssl_ctx) {
  if (ssl_ctx == NULL || SSL_CTX_up_ref(ssl_ctx) != 1) return NULL;
  return ssl_ctx;
}

void tls_context_unref(void *ssl_ctx) { SSL_CTX_free(ssl_ctx); }

/* The context's ciphers of one kind (TLS 1.3 suites, or the others) as an OpenSSL list, into out. */
static int tls_cipher_names(const SSL_CTX *from, int tls13, char *out, size_t cap) {
  STACK_OF(SSL_CIPHER) *ciphers = SSL_CTX_get_ciphers(from);
  size_t len = 0;
  out[0] = '\0';
  for (int i = 0; ciphers && i < sk_SSL_CIPHER_num(ciphers); i++) {
    const SSL_CIPHER *cipher = sk_SSL_CIPHER_value(ciphers, i);
    const char *name = SSL_CIPHER_get_name(cipher);
    size_t n = strlen(name);
    if ((strcmp(SSL_CIPHER_get_version(cipher), "TLSv1.3") == 0) != tls13) continue;
    if (len + n + 2 > cap) return -1;
    if (len > 0) out[len++] = ':';
    memcpy(out + len, name, n + 1);
    len += n;
  }
  return (int)len;
}

/*
 * Copies the settings of the Python context `from` into libcurl's `to`, but the trusted CAs and the client
 * certificate when the request brings its own (verify=, cert=). Returns 0, or -1 with OpenSSL's error.
 */
static int tls_copy(SSL_CTX *to, SSL_CTX *from, int own_ca, int own_cert) {
  X509 *cert = own_cert ? NULL : SSL_CTX_get0_certificate(from);
  EVP_PKEY *key = own_cert ? NULL : SSL_CTX_get0_privatekey(from);
  X509_STORE *store = own_ca ? NULL : SSL_CTX_get_cert_store(from);
  char names[8192];
  int n;

  SSL_CTX_set_options(to, SSL_CTX_get_options(from));
  if (!SSL_CTX_set_min_proto_version(to, SSL_CTX_get_min_proto_version(from)) ||
      !SSL_CTX_set_max_proto_version(to, SSL_CTX_get_max_proto_version(from)))
    return -1;
  if ((n = tls_cipher_names(from, 0, names, sizeof(names))) > 0 && !SSL_CTX_set_cipher_list(to, names)) return -1;
  if ((n = tls_cipher_names(from, 1, names, sizeof(names))) >= 0 && !SSL_CTX_set_ciphersuites(to, names)) return -1;
  if (cert != NULL && key != NULL) {
    STACK_OF(X509) *chain = NULL;
    if (!SSL_CTX_use_certificate(to, cert) || !SSL_CTX_use_PrivateKey(to, key)) return -1;
    if (SSL_CTX_get0_chain_certs(from, &chain) && chain != NULL && !SSL_CTX_set1_chain(to, chain)) return -1;
  }
  /* The same store, shared: it may read a CA directory lazily, and it is safe to use from two threads. */
  if (store != NULL) SSL_CTX_set1_cert_store(to, store); /* takes its own reference */
  return 0;
}

CURLcode tls_ssl_ctx_cb(CURL *easy, void *to, void *userp) {
  xfer_t *x = userp;
  void *from = x->client != NULL ? x->client->opts.ssl_ctx : NULL;
  (void)easy;
  if (from == NULL) return CURLE_OK;
  return tls_copy(to, from, x->req && x->req->ca_file, x->req && x->req->cert) == 0 ? CURLE_OK : CURLE_SSL_CERTPROBLEM;
}
