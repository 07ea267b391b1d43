/*
 * What happens to a request between its transport's hops, the same for libcurl and the native transport: the
 * user's cookies going out with it and coming back from each response, and the redirects it follows. The engine
 * follows redirects itself so that a cookie set by a redirect (a login's 302) goes with the next hop, whichever
 * transport carries it. Engine thread only, except request_free.
 */
#include "locust_c.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void request_free(request_t *req) {
  if (req == NULL) return;
  if (LC_UNLIKELY(req->stream != NULL) && stream_orphan(req->stream, req)) return; /* see stream_orphan */
  buf_free(&req->head);
  buf_free(&req->redirects_head);
  buf_free(&req->content);
  free(req->effective_url);
  free(req->error);
  if (req->hop_jar) {
    jar_clear(req->hop_jar);
    free(req->hop_jar);
  }
  stream_unref(req->stream);
  free(req);
}

/*
 * The value of the first header called name (lower-case, with its colon) in a header block that has one, trimmed;
 * NULL when there is none. An empty one is passed over, as libcurl passes over an empty Location.
 */
const char *head_find(const buf_t *head, const char *name, size_t *value_len) {
  size_t n = strlen(name);
  const char *p = head->data, *end = head->data + head->len;
  while (p != NULL && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p)), *line_end = nl ? nl : end;
    if ((size_t)(line_end - p) > n && strncasecmp(p, name, n) == 0) {
      const char *v = p + n;
      while (v < line_end && (*v == ' ' || *v == '\t')) v++;
      while (line_end > v && (line_end[-1] == '\r' || line_end[-1] == ' ' || line_end[-1] == '\t')) line_end--;
      if (line_end > v) {
        *value_len = (size_t)(line_end - v);
        return v;
      }
    }
    p = nl ? nl + 1 : NULL;
  }
  return NULL;
}

/*
 * The engine's words for a fault it finds itself, the same on both transports (Locust groups failures by their
 * text): the message into out, and the REQ_ERR_* code the request ends with.
 */
int request_fault(fault_t fault, const client_t *c, char *out, size_t n) {
  switch (fault) {
  case FAULT_BODY_TOO_LARGE:
    snprintf(out, n, "response body larger than max_response_bytes (%lld bytes)", (long long)c->opts.max_response_bytes);
    return REQ_ERR_BODY_TOO_LARGE;
  case FAULT_HEAD_TOO_LARGE:
    snprintf(out, n, "response headers larger than %d KB", ENGINE_MAX_HEAD_BYTES / 1024);
    return REQ_ERR_HEAD_TOO_LARGE;
  case FAULT_LINE_TOO_LONG:
    snprintf(out, n, "a response header line longer than %d KB (a status line, header or redirect target)",
             CURL_MAX_HTTP_HEADER / 1024);
    return REQ_ERR_HEAD_TOO_LARGE;
  case FAULT_BAD_LENGTH:
    snprintf(out, n, "invalid Content-Length: not one number, or two that differ");
    return REQ_ERR_BAD_LENGTH;
  case FAULT_BAD_ENCODING:
    snprintf(out, n, "cannot decode the response body: corrupt, or in a Content-Encoding other than gzip, deflate "
             "or br");
    return REQ_ERR_BAD_ENCODING;
  case FAULT_ENCODING_CUT:
    snprintf(out, n, "cannot decode the response body: its compressed stream stops short");
    return REQ_ERR_BAD_ENCODING;
  case FAULT_HEAD_CUT:
    snprintf(out, n, "server closed the connection before the end of the response headers");
    return REQ_ERR_HEAD_CUT;
  default:
    snprintf(out, n, "out of memory keeping the response");
    return REQ_ERR_NO_MEMORY;
  }
}

/*
 * The Cookie header value of the request's next hop, appended to out: the jar's cookies for its URL, those its
 * earlier hops set (a client without a jar), then its own cookies= ones. Returns -1 when out of memory.
 */
int request_cookies(client_t *c, request_t *req, const url_t *u, buf_t *out) {
  size_t start = out->len;
  int64_t now = (int64_t)time(NULL);
  if (c->opts.cookies && c->jar.head != NULL && jar_header(&c->jar, u, now, out, start) != 0) return -1;
  if (req->hop_jar != NULL && jar_header(req->hop_jar, u, now, out, start) != 0) return -1;
  if (req->cookie != NULL) {
    if (out->len > start && buf_append(out, "; ", 2) != 0) return -1;
    if (buf_append(out, req->cookie, strlen(req->cookie)) != 0) return -1;
  }
  return 0;
}

/*
 * A Set-Cookie header's value, from a response to u. A cookie the jar refuses is dropped, as a browser drops it. A
 * client without a jar (a client_pool's, whose users keep theirs in Python) keeps the cookies of this request's
 * hops with the request, so that a redirect's cookie goes with the next hop; Python reads them from the headers.
 */
void request_set_cookie(client_t *c, request_t *req, const url_t *u, const char *value, size_t n) {
  jar_t *jar = &c->jar;
  if (!c->opts.cookies) {
    if (!(req->flags & REQ_FOLLOW_REDIRECTS)) return; /* no next hop */
    if (req->hop_jar == NULL && (req->hop_jar = calloc(1, sizeof(*req->hop_jar))) == NULL) return;
    jar = req->hop_jar;
  }
  jar_set_cookie(jar, value, n, u, (int64_t)time(NULL));
}

/* Whether a hop of the request may send cookies: the user's jar, the request's own, or those of its hops. */
int request_has_cookies(const client_t *c, const request_t *req) {
  return c->jar.head != NULL || req->cookie != NULL || req->hop_jar != NULL;
}

/* Header lines that describe the body: a redirect that drops the body drops them too. */
static int request_body_header(const char *line) {
  return strncasecmp(line, "content-type", 12) == 0 || strncasecmp(line, "content-length", 14) == 0 ||
         strncasecmp(line, "transfer-encoding", 17) == 0;
}

static void request_drop_headers(request_t *req, int body, int auth) {
  struct curl_slist **link = &req->headers;
  while (*link) { /* the nodes are in the request's allocation: unlinked, not freed */
    const char *line = (*link)->data;
    if ((body && request_body_header(line)) || (auth && strncasecmp(line, "authorization", 13) == 0))
      *link = (*link)->next;
    else
      link = &(*link)->next;
  }
}

/* The same origin as far as credentials go: requests keeps Authorization for the same host, and for http to https
 * on the default ports. */
static int request_same_origin(const char *from, const char *to) {
  url_t a, b;
  if (url_split(from, &a) != 0 || url_split(to, &b) != 0) return 0;
  if (a.host_len != b.host_len || strncasecmp(a.host, b.host, a.host_len) != 0) return 0;
  if (a.https == b.https) return a.port == b.port;
  return !a.https && a.port == 80 && b.port == 443;
}

static int request_fail(request_t *req, int code, const char *message) {
  req->result = code;
  free(req->error);
  req->error = strdup(message);
  return -1;
}

/*
 * The response that just ended in full is a redirect to follow: the request becomes its next hop, as requests
 * and browsers make it (a 303, and a 302 or 301 of a POST, become a GET without the body; a 307 or 308 is sent again
 * as it was), with the header block kept for response.history. Returns 1 when the request is to be started again,
 * 0 when the response is the final one, -1 when the redirect fails the request (result and error set).
 */
int request_follow(request_t *req, long max_redirects, int64_t hop_us) {
  const char *location, *base = req->effective_url ? req->effective_url : req->url;
  size_t location_len;
  long status = req->status;
  char *next = NULL, *scheme = NULL, *text;
  CURLU *u;
  CURLUcode uc;
  if (!(req->flags & REQ_FOLLOW_REDIRECTS) || status < 300 || status > 399 || status == 304) return 0;
  location = head_find(&req->head, "location:", &location_len);
  if (location == NULL || location_len == 0) return 0;
  if (req->redirects >= max_redirects) {
    char message[64];
    snprintf(message, sizeof(message), "Maximum (%ld) redirects followed", max_redirects);
    return request_fail(req, CURLE_TOO_MANY_REDIRECTS, message);
  }
  if ((text = strndup(location, location_len)) == NULL || (u = curl_url()) == NULL) {
    free(text);
    return request_fail(req, CURLE_OUT_OF_MEMORY, "out of memory following a redirect");
  }
  /* libcurl's own URL parser resolves the Location against the URL it answers, as libcurl does when it follows. */
  uc = curl_url_set(u, CURLUPART_URL, base, 0);
  if (uc == CURLUE_OK) uc = curl_url_set(u, CURLUPART_URL, text, CURLU_URLENCODE | CURLU_ALLOW_SPACE);
  if (uc == CURLUE_OK) uc = curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
  if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_URL, &next, 0);
  curl_url_cleanup(u);
  free(text);
  if (uc == CURLUE_OK && !url_is_clean(next, strlen(next))) uc = CURLUE_MALFORMED_INPUT; /* see url_is_clean */
  if (uc != CURLUE_OK || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
    int unsupported = uc == CURLUE_OK;
    char message[160];
    snprintf(message, sizeof(message), unsupported ? "Protocol \"%.40s\" not supported or disabled in libcurl"
                                                   : "Location is not a URL: %.40s", unsupported ? scheme : "");
    curl_free(scheme);
    curl_free(next);
    return request_fail(req, unsupported ? CURLE_UNSUPPORTED_PROTOCOL : CURLE_URL_MALFORMAT, message);
  }
  curl_free(scheme);
  if (req->redirects_head.len + req->head.len > ENGINE_MAX_HEAD_BYTES) {
    curl_free(next);
    return request_fail(req, REQ_ERR_HEAD_TOO_LARGE, "response headers of the redirects larger than 300 KB");
  }
  if (buf_append(&req->redirects_head, req->head.data, req->head.len) != 0 ||
      (text = strdup(next)) == NULL) {
    curl_free(next);
    return request_fail(req, REQ_ERR_NO_MEMORY, "out of memory following a redirect");
  }
  curl_free(next);
  if (!request_same_origin(base, text)) request_drop_headers(req, 0, 1);
  free(req->effective_url);
  req->effective_url = text;
  if (status != 307 && status != 308) {
    if (status == 303 ? !(req->flags & REQ_HEAD) : (status == 302 ? !(req->flags & REQ_HEAD) : (req->flags & REQ_POST))) {
      req->method = "GET";
      req->flags = (req->flags & ~(REQ_POST | REQ_HEAD)) | REQ_GET | REQ_IDEMPOTENT;
    }
    req->body = NULL;
    req->body_len = 0;
    request_drop_headers(req, 1, 0);
  }
  req->redirects++;
  req->hops_us += hop_us;
  req->status = 0;
  req->head.len = req->content.len = 0;
  return 1;
}
