/*
 * The parts of an absolute http(s) URL that the engine needs itself: the scheme, the host and port to connect
 * to and to match cookies against, and the request target. The URL was joined by Python; anything this does not
 * understand (user info, an unknown scheme) makes it return -1, and the request then goes to libcurl, whose
 * parser has the last word.
 */
#include "locust_c.h"

#include <string.h>
#include <strings.h>

/*
 * A URL without whitespace or a control character, which the native transport would put on the request line as
 * they are (CR LF would start a header). Every URL the engine sends passes it: a request's, at submit
 * (py_client.c), and a redirect's, in request_follow.
 */
int url_is_clean(const char *url, size_t len) {
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f) return 0;
  return 1;
}

int url_split(const char *url, url_t *u) {
  const char *p, *authority, *end, *colon = NULL;
  memset(u, 0, sizeof(*u));
  if (strncasecmp(url, "http://", 7) == 0) {
    authority = url + 7;
    u->port = 80;
  } else if (strncasecmp(url, "https://", 8) == 0) {
    authority = url + 8;
    u->https = 1;
    u->port = 443;
  } else {
    return -1;
  }
  end = authority + strcspn(authority, "/?#");
  if (memchr(authority, '@', (size_t)(end - authority)) != NULL) return -1; /* user info: libcurl's to handle */
  if (authority[0] == '[') { /* an IPv6 literal */
    const char *close = memchr(authority, ']', (size_t)(end - authority));
    if (close == NULL || close == authority + 1) return -1;
    u->host = authority + 1;
    u->host_len = (size_t)(close - authority - 1);
    u->ipv6 = 1;
    if (close + 1 < end) {
      if (close[1] != ':') return -1;
      colon = close + 1;
    }
  } else {
    colon = memchr(authority, ':', (size_t)(end - authority));
    u->host = authority;
    u->host_len = (size_t)((colon ? colon : end) - authority);
  }
  if (u->host_len == 0 || u->host_len > 255) return -1;
  if (colon != NULL && colon + 1 < end) {
    int port = 0;
    for (p = colon + 1; p < end; p++) {
      if (*p < '0' || *p > '9' || port > 65535) return -1;
      port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535) return -1;
    u->port = port;
  }
  u->authority = authority;
  u->authority_len = (size_t)(end - authority);
  /* The target: from the path on, without a fragment, which never goes to the server. */
  u->target = end;
  u->target_len = strcspn(end, "#");
  u->path_len = strcspn(end, "?#");
  return 0;
}

/* A host that is an address, not a name: cookies then match it exactly, never a parent domain. */
int url_host_is_ip(const url_t *u) {
  size_t i;
  if (u->ipv6) return 1;
  for (i = 0; i < u->host_len; i++)
    if ((u->host[i] < '0' || u->host[i] > '9') && u->host[i] != '.') return 0;
  return 1;
}
