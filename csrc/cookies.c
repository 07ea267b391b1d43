/*
 * A user's cookie jar (RFC 6265 with the 6265bis limits), kept by the engine for both transports: the Set-Cookie
 * headers of every response go in (jar_set_cookie), the Cookie header of every request comes out (jar_header),
 * and Python reads and edits it as Netscape cookie-file lines (jar_load_line, jar_dump), the format its
 * client.cookies has always spoken. What is matched: the domain (host-only, or the domain and its subdomains),
 * the path, the expiry (Expires and Max-Age) and Secure. Public suffixes are not known here: a server can set a
 * cookie for a parent domain of its own host, as libcurl without libpsl lets it. Engine thread only.
 */
#include "locust_c.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct cookie_s {
  cookie_t *next;
  char *name, *value, *domain, *path; /* in the same allocation; domain is lower-case, without a leading dot */
  int64_t expires;                    /* seconds since the epoch, 0 for a session cookie */
  uint64_t order;                     /* creation: older cookies come first in a Cookie header */
  unsigned host_only : 1, secure : 1, http_only : 1;
};

void jar_clear(jar_t *j) {
  cookie_t *c, *next;
  for (c = j->head; c; c = next) {
    next = c->next;
    free(c);
  }
  j->head = NULL;
  j->count = 0;
}

static int jar_expired(const cookie_t *c, int64_t now) { return c->expires != 0 && c->expires <= now; }

/* Unlinks and frees the cookie that *link points to. */
static void jar_remove(jar_t *j, cookie_t **link) {
  cookie_t *c = *link;
  *link = c->next;
  free(c);
  j->count--;
}

/* Makes room for one more cookie: the expired ones go, then the oldest. */
static void jar_make_room(jar_t *j, int64_t now) {
  cookie_t **link = &j->head, **oldest = NULL;
  while (*link) {
    if (jar_expired(*link, now)) {
      jar_remove(j, link);
      continue;
    }
    if (oldest == NULL || (*link)->order < (*oldest)->order) oldest = link;
    link = &(*link)->next;
  }
  if (j->count >= JAR_MAX_COOKIES && oldest != NULL) jar_remove(j, oldest);
}

static int span_has(const char *s, size_t n, const char *set) {
  for (size_t i = 0; i < n; i++)
    if (strchr(set, s[i]) != NULL || (unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 1;
  return 0;
}

/*
 * Stores a cookie, replacing the one with the same name, domain and path. An expired one only removes. The
 * strings are copied; a name or value with a control character (or a tab, which the Netscape lines cannot carry)
 * is refused, as is one over JAR_MAX_COOKIE_BYTES. Returns 0, or -1 when refused or out of memory.
 */
static int jar_store(jar_t *j, const char *name, size_t name_len, const char *value, size_t value_len,
                     const char *domain, size_t domain_len, const char *path, size_t path_len, int64_t expires,
                     int host_only, int secure, int http_only, int64_t now) {
  cookie_t **link, *c;
  uint64_t order = 0;
  char *p;
  if (name_len == 0 || name_len + value_len > JAR_MAX_COOKIE_BYTES || domain_len == 0 || domain_len > 255 ||
      path_len == 0 || path_len > 1024 || path[0] != '/')
    return -1;
  if (span_has(name, name_len, "\t=;") || span_has(value, value_len, "\t;") || span_has(domain, domain_len, "\t") ||
      span_has(path, path_len, "\t;"))
    return -1;
  for (link = &j->head; *link; link = &(*link)->next) {
    c = *link;
    if (strlen(c->name) == name_len && memcmp(c->name, name, name_len) == 0 && strlen(c->domain) == domain_len &&
        strncasecmp(c->domain, domain, domain_len) == 0 && strlen(c->path) == path_len &&
        memcmp(c->path, path, path_len) == 0) {
      order = c->order; /* a replaced cookie keeps its place (RFC 6265 5.3, step 11.3) */
      jar_remove(j, link);
      break;
    }
  }
  if (expires != 0 && expires <= now) return 0;
  if (j->count >= JAR_MAX_COOKIES) jar_make_room(j, now);
  c = malloc(sizeof(*c) + name_len + value_len + domain_len + path_len + 4);
  if (c == NULL) return -1;
  p = (char *)(c + 1);
  c->name = p;
  memcpy(p, name, name_len);
  p[name_len] = '\0';
  p += name_len + 1;
  c->value = p;
  memcpy(p, value, value_len);
  p[value_len] = '\0';
  p += value_len + 1;
  c->domain = p;
  for (size_t i = 0; i < domain_len; i++) p[i] = (char)((domain[i] >= 'A' && domain[i] <= 'Z') ? domain[i] | 0x20 : domain[i]);
  p[domain_len] = '\0';
  p += domain_len + 1;
  c->path = p;
  memcpy(p, path, path_len);
  p[path_len] = '\0';
  c->expires = expires;
  c->order = order ? order : ++j->serial;
  c->host_only = host_only != 0;
  c->secure = secure != 0;
  c->http_only = http_only != 0;
  c->next = j->head;
  j->head = c;
  j->count++;
  return 0;
}

static int domain_match(const char *host, size_t host_len, int host_is_ip, const char *domain, size_t domain_len) {
  if (host_len == domain_len) return strncasecmp(host, domain, host_len) == 0;
  if (host_is_ip || host_len < domain_len + 1) return 0;
  return host[host_len - domain_len - 1] == '.' && strncasecmp(host + host_len - domain_len, domain, domain_len) == 0;
}

static int path_match(const char *req_path, size_t req_len, const char *path) {
  size_t n = strlen(path);
  if (req_len < n || memcmp(req_path, path, n) != 0) return 0;
  return req_len == n || path[n - 1] == '/' || req_path[n] == '/';
}

static void trim(const char **s, size_t *n) {
  while (*n > 0 && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
  while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\r' || (*s)[*n - 1] == '\n'))
    (*n)--;
}

/* An attribute value as a NUL-terminated string for curl_getdate, or "" when it does not fit. */
static const char *attr_cstr(char *out, size_t size, const char *v, size_t n) {
  if (n >= size) n = 0;
  memcpy(out, v, n);
  out[n] = '\0';
  return out;
}

int jar_set_cookie(jar_t *j, const char *v, size_t n, const url_t *origin, int64_t now) {
  const char *end = v + n, *semi = memchr(v, ';', n), *eq, *name, *value, *domain = origin->host, *path = NULL;
  size_t name_len, value_len, domain_len = origin->host_len, path_len = 0;
  int64_t expires = 0, max_age_expires = 0;
  int have_max_age = 0, host_only = 1, secure = 0, http_only = 0;
  char tmp[256];
  if (semi == NULL) semi = end;
  eq = memchr(v, '=', (size_t)(semi - v));
  if (eq == NULL) return -1; /* no name=value pair: ignored (RFC 6265 5.2, step 2) */
  name = v;
  name_len = (size_t)(eq - v);
  value = eq + 1;
  value_len = (size_t)(semi - value);
  trim(&name, &name_len);
  trim(&value, &value_len);
  for (const char *a = semi; a < end;) {
    const char *next = memchr(a + 1, ';', (size_t)(end - a - 1)), *aeq, *an, *av;
    size_t an_len, av_len;
    if (next == NULL) next = end;
    an = a + 1;
    aeq = memchr(an, '=', (size_t)(next - an));
    an_len = (size_t)((aeq ? aeq : next) - an);
    av = aeq ? aeq + 1 : next;
    av_len = (size_t)(next - av);
    trim(&an, &an_len);
    trim(&av, &av_len);
    a = next;
    if (av_len > 1024) continue; /* an attribute this long is ignored (6265bis 5.6, step 4) */
    if (an_len == 7 && strncasecmp(an, "expires", 7) == 0) {
      time_t t = curl_getdate(attr_cstr(tmp, sizeof(tmp), av, av_len), NULL);
      if (t != -1) expires = t > 0 ? (int64_t)t : 1;
    } else if (an_len == 7 && strncasecmp(an, "max-age", 7) == 0) {
      int64_t delta = 0;
      size_t i = av_len > 0 && av[0] == '-' ? 1 : 0;
      if (i == av_len) continue;
      for (; i < av_len && av[i] >= '0' && av[i] <= '9'; i++)
        if (delta < INT64_C(1) << 40) delta = delta * 10 + (av[i] - '0');
      if (i < av_len) continue; /* not a number: ignored */
      have_max_age = 1;
      max_age_expires = av[0] == '-' || delta == 0 ? 1 : now + delta; /* 1: the earliest time, gone at once */
    } else if (an_len == 6 && strncasecmp(an, "domain", 6) == 0) {
      if (av_len > 0 && av[0] == '.') av++, av_len--;
      if (av_len == 0) continue;
      domain = av;
      domain_len = av_len;
      host_only = 0;
    } else if (an_len == 4 && strncasecmp(an, "path", 4) == 0) {
      if (av_len > 0 && av[0] == '/') {
        path = av;
        path_len = av_len;
      } else {
        path = NULL; /* "If the attribute-value is empty or if the first character is not /": the default path */
      }
    } else if (an_len == 6 && strncasecmp(an, "secure", 6) == 0) {
      secure = 1;
    } else if (an_len == 8 && strncasecmp(an, "httponly", 8) == 0) {
      http_only = 1;
    }
  }
  if (have_max_age) expires = max_age_expires; /* Max-Age wins over Expires, whatever their order */
  if (!host_only && !domain_match(origin->host, origin->host_len, url_host_is_ip(origin), domain, domain_len))
    return -1; /* a cookie for a domain the origin is not in */
  if (secure && !origin->https) return -1; /* only a secure origin sets a Secure cookie (6265bis 5.7, step 13) */
  if (path == NULL) { /* the default path: the request's, up to its last '/' (RFC 6265 5.1.4) */
    const char *rp = origin->target, *last = NULL;
    for (size_t i = 0; i < origin->path_len; i++)
      if (rp[i] == '/') last = rp + i;
    path = "/";
    path_len = 1;
    if (origin->path_len > 0 && rp[0] == '/' && last != NULL && last != rp) {
      path = rp;
      path_len = (size_t)(last - rp);
    }
  }
  return jar_store(j, name, name_len, value, value_len, domain, domain_len, path, path_len, expires, host_only,
                   secure, http_only, now);
}

#define JAR_HEADER_MAX 64 /* cookies sorted per request at most; more follow in the jar's order */

/* Whether the cookie goes with a request to u. */
static int jar_matches(const cookie_t *c, const url_t *u, int *ip) {
  if (c->secure && !u->https) return 0;
  if (c->host_only) {
    if (strlen(c->domain) != u->host_len || strncasecmp(c->domain, u->host, u->host_len) != 0) return 0;
  } else {
    if (*ip < 0) *ip = url_host_is_ip(u);
    if (!domain_match(u->host, u->host_len, *ip, c->domain, strlen(c->domain))) return 0;
  }
  return u->path_len ? path_match(u->target, u->path_len, c->path) : path_match("/", 1, c->path);
}

/* "name=value" after out's first `start` bytes, with "; " before it when something is there already. */
static int jar_append(buf_t *out, size_t start, const cookie_t *c) {
  return (out->len > start && buf_append(out, "; ", 2)) || buf_append(out, c->name, strlen(c->name)) ||
         buf_append(out, "=", 1) || buf_append(out, c->value, strlen(c->value));
}

/*
 * The Cookie header value for a request to u, appended to out: "a=1; b=2", nothing when none match (with "; "
 * before it when out has more than `start` bytes). Longer paths go first, then older cookies (RFC 6265 5.4, step
 * 2), for the first JAR_HEADER_MAX that match; any more follow in the jar's order.
 */
int jar_header(jar_t *j, const url_t *u, int64_t now, buf_t *out, size_t start) {
  const cookie_t *match[JAR_HEADER_MAX];
  int n = 0, more = 0, ip = -1, i;
  cookie_t **link = &j->head;
  while (*link) {
    cookie_t *c = *link;
    if (jar_expired(c, now)) {
      jar_remove(j, link);
      continue;
    }
    link = &c->next;
    if (!jar_matches(c, u, &ip)) continue;
    if (n == JAR_HEADER_MAX) {
      more = 1;
      continue;
    }
    i = n++; /* an insertion sort of a few */
    while (i > 0 && (strlen(match[i - 1]->path) < strlen(c->path) ||
                     (strlen(match[i - 1]->path) == strlen(c->path) && match[i - 1]->order > c->order))) {
      match[i] = match[i - 1];
      i--;
    }
    match[i] = c;
  }
  for (i = 0; i < n; i++)
    if (jar_append(out, start, match[i])) return -1;
  if (more) { /* those past the first JAR_HEADER_MAX matches, in the jar's order */
    int seen = 0;
    for (const cookie_t *c = j->head; c; c = c->next)
      if (jar_matches(c, u, &ip) && ++seen > JAR_HEADER_MAX && jar_append(out, start, c)) return -1;
  }
  return 0;
}

/*
 * One line of client.cookies from Python: "ALL" empties the jar, a Netscape cookie-file line (domain, subdomains,
 * path, secure, expires, name, value, tab-separated; "#HttpOnly_" before the domain) sets a cookie.
 */
int jar_load_line(jar_t *j, const char *line, size_t n, int64_t now) {
  const char *field[7];
  size_t len[7];
  int64_t expires = 0;
  int http_only = 0, host_only;
  if (n == 3 && memcmp(line, "ALL", 3) == 0) {
    jar_clear(j);
    return 0;
  }
  for (int i = 0; i < 7; i++) {
    const char *tab = i < 6 ? memchr(line, '\t', n) : NULL;
    if (i < 6 && tab == NULL) return -1;
    field[i] = line;
    len[i] = tab ? (size_t)(tab - line) : n;
    if (tab) {
      n -= len[i] + 1;
      line = tab + 1;
    }
  }
  if (len[0] > 10 && memcmp(field[0], "#HttpOnly_", 10) == 0) {
    field[0] += 10, len[0] -= 10;
    http_only = 1;
  }
  host_only = !(len[1] == 4 && memcmp(field[1], "TRUE", 4) == 0);
  if (len[0] > 0 && field[0][0] == '.') {
    field[0]++, len[0]--;
    host_only = 0;
  }
  for (size_t i = 0; i < len[4]; i++) {
    if (field[4][i] < '0' || field[4][i] > '9') return -1;
    if (expires < INT64_C(1) << 40) expires = expires * 10 + (field[4][i] - '0');
  }
  return jar_store(j, field[5], len[5], field[6], len[6], field[0], len[0], field[2], len[2], expires, host_only,
                   len[3] == 4 && memcmp(field[3], "TRUE", 4) == 0, http_only, now);
}

int jar_dump(jar_t *j, int64_t now, buf_t *out) {
  char num[24];
  for (const cookie_t *c = j->head; c; c = c->next) {
    if (jar_expired(c, now)) continue;
    snprintf(num, sizeof(num), "%lld", (long long)c->expires);
    if ((c->http_only && buf_append(out, "#HttpOnly_", 10)) || (!c->host_only && buf_append(out, ".", 1)) ||
        buf_append(out, c->domain, strlen(c->domain)) ||
        buf_append(out, c->host_only ? "\tFALSE\t" : "\tTRUE\t", c->host_only ? 7 : 6) ||
        buf_append(out, c->path, strlen(c->path)) ||
        buf_append(out, c->secure ? "\tTRUE\t" : "\tFALSE\t", c->secure ? 6 : 7) ||
        buf_append(out, num, strlen(num)) || buf_append(out, "\t", 1) ||
        buf_append(out, c->name, strlen(c->name)) || buf_append(out, "\t", 1) ||
        buf_append(out, c->value, strlen(c->value)) || buf_append(out, "\n", 1))
      return -1;
  }
  return 0;
}
