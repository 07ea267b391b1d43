/*
 * A C-only stress test of the engine's queues and life cycle, for ThreadSanitizer (make sanitize builds and runs
 * it): no Python, no gevent, whose stack switching TSan cannot follow. One thread submits, cancels and closes
 * while the engine thread runs the requests against a small keep-alive server on loopback and hands completions
 * back, one in fifty a gzipped body decoded across paused turns; every other user is on the native transport, the
 * rest on libcurl. Every request must come back exactly once, and the counters must settle.
 *
 *   engine_stress [users] [requests]
 */
#define _GNU_SOURCE /* memmem */
#include "../../csrc/locust_c.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char ANSWER[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* The answer to GET /z: 4 MiB of zeros, gzipped, which the engine decodes across several paused turns. */
#define ZEROS (4u << 20)
static char *zipped;
static size_t zipped_len;

static void zipped_make(void) {
  z_stream z = {0};
  char *zeros = calloc(1, ZEROS), head[128];
  size_t cap = compressBound(ZEROS) + 64;
  char *body = malloc(cap);
  deflateInit2(&z, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY);
  z.next_in = (Bytef *)zeros;
  z.avail_in = ZEROS;
  z.next_out = (Bytef *)body;
  z.avail_out = (uInt)cap;
  deflate(&z, Z_FINISH);
  int n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %lu\r\n\r\n",
                   z.total_out);
  zipped_len = (size_t)n + z.total_out;
  zipped = malloc(zipped_len);
  memcpy(zipped, head, (size_t)n);
  memcpy(zipped + n, body, z.total_out);
  deflateEnd(&z);
  free(body);
  free(zeros);
}

/* One connection of the server: answers every request (a header block) with ANSWER until the client closes. */
static void *serve_connection(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[4096];
  size_t have = 0;
  for (;;) {
    ssize_t n = recv(fd, buf + have, sizeof(buf) - have, 0);
    if (n <= 0) break;
    have += (size_t)n;
    char *end;
    while ((end = memmem(buf, have, "\r\n\r\n", 4)) != NULL) {
      size_t used = (size_t)(end + 4 - buf);
      int z = have > 6 && memcmp(buf, "GET /z ", 7) == 0;
      if (send(fd, z ? zipped : ANSWER, z ? zipped_len : sizeof(ANSWER) - 1, MSG_NOSIGNAL) < 0) goto done;
      memmove(buf, buf + used, have - used);
      have -= used;
    }
    if (have == sizeof(buf)) break;
  }
done:
  close(fd);
  return NULL;
}

static void *serve(void *arg) {
  int listener = (int)(intptr_t)arg;
  for (;;) {
    int fd = accept(listener, NULL, NULL);
    pthread_t t;
    if (fd < 0) return NULL; /* the listener was shut down */
    if (pthread_create(&t, NULL, serve_connection, (void *)(intptr_t)fd) != 0) close(fd);
    else pthread_detach(t);
  }
}

static request_t *request_make(client_t *c, const char *base, uint64_t id) {
  char url[80];
  snprintf(url, sizeof(url), "%s%s", base, id % 50 == 0 ? "z" : "");
  size_t url_len = strlen(url);
  request_t *req = calloc(1, sizeof(*req) + 4 + url_len + 1);
  char *p = (char *)(req + 1);
  memcpy(p, "GET", 4);
  req->method = p;
  memcpy(p + 4, url, url_len + 1);
  req->url = p + 4;
  req->flags = REQ_GET | REQ_IDEMPOTENT;
  req->client = c;
  req->id = id;
  req->cmd.kind = CMD_SUBMIT;
  req->cmd.client = c;
  req->cmd.req = req;
  return req;
}

static int send_command(engine_t *e, client_t *c, cmd_kind_t kind, uint64_t id) {
  cmd_t *cmd = calloc(1, sizeof(*cmd));
  cmd->kind = kind;
  cmd->client = c;
  cmd->id = id;
  client_ref(c); /* every command about a client holds a reference, dropped by the engine (locust_c.h) */
  if (engine_send(e, cmd) != 0) {
    client_unref(c);
    free(cmd);
    return -1;
  }
  return 0;
}

/* Takes every finished request; returns how many there were, counting successes and cancellations. */
static size_t drain(engine_t *e, size_t *ok, size_t *cancelled, size_t *other) {
  size_t n = 0;
  for (request_t *req = engine_drain(e), *next; req; req = next) {
    next = req->next;
    if (req->result == CURLE_OK && req->status == 200 && (req->content.len == 2 || req->content.len == ZEROS)) (*ok)++;
    else if (req->result == REQ_ERR_CANCELLED) (*cancelled)++;
    else (*other)++;
    request_free(req);
    n++;
  }
  return n;
}

int main(int argc, char **argv) {
  int users = argc > 1 ? atoi(argv[1]) : 20, total = argc > 2 ? atoi(argv[2]) : 20000;
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(addr);
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  pthread_t server;
  engine_t engine;
  client_t **clients = calloc((size_t)users, sizeof(*clients));
  client_options_t opts = {.connect_timeout_ms = 5000, .timeout_ms = 5000, .max_connections = 2, .insecure = 1};
  client_options_t native = opts;
  size_t submitted = 0, finished = 0, ok = 0, cancelled = 0, other = 0;
  char url[64];

  if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(listener, 128) != 0 ||
      getsockname(listener, (struct sockaddr *)&addr, &len) != 0) {
    perror("listen");
    return 2;
  }
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(addr.sin_port));
  zipped_make();
  pthread_create(&server, NULL, serve, (void *)(intptr_t)listener);
  curl_global_init(CURL_GLOBAL_ALL);
  if (engine_init(&engine, 50) != 0 || engine_start(&engine) != 0) {
    fprintf(stderr, "cannot start the engine\n");
    return 2;
  }
  native.native = 1;
  for (int i = 0; i < users; i++) clients[i] = client_create(&engine, i % 2 ? &native : &opts);

  /* Submit in waves, cancel every seventh request, and close and replace a user now and then. */
  while (submitted < (size_t)total) {
    for (int i = 0; i < users && submitted < (size_t)total; i++) {
      uint64_t id = ++submitted;
      engine_send(&engine, &request_make(clients[i], url, id)->cmd);
      if (id % 7 == 0) send_command(&engine, clients[i], CMD_CANCEL, id);
      if (id % 997 == 0) {
        send_command(&engine, clients[i], CMD_CLOSE_CLIENT, 0);
        client_unref(clients[i]);
        clients[i] = client_create(&engine, i % 2 ? &native : &opts);
      }
    }
    struct pollfd pfd = {.fd = engine.event_fd, .events = POLLIN};
    while (submitted - finished > (size_t)(4 * users) && poll(&pfd, 1, 5000) > 0)
      finished += drain(&engine, &ok, &cancelled, &other);
  }
  for (int tries = 0; finished < submitted && tries < 100; tries++) {
    struct pollfd pfd = {.fd = engine.event_fd, .events = POLLIN};
    poll(&pfd, 1, 100);
    finished += drain(&engine, &ok, &cancelled, &other);
  }
  engine_counters_t counters;
  engine_counters(&engine, &counters);
  for (int i = 0; i < users; i++) {
    send_command(&engine, clients[i], CMD_CLOSE_CLIENT, 0);
    client_unref(clients[i]);
  }
  engine_stop(&engine);
  finished += drain(&engine, &ok, &cancelled, &other);
  engine_destroy(&engine);
  shutdown(listener, SHUT_RDWR);
  close(listener);
  pthread_join(server, NULL);
  curl_global_cleanup();
  free(clients); /* zipped stays: detached connection threads may still be sending it */

  int failed = finished != submitted || counters.in_flight != 0 || other != 0 || ok == 0 ||
               counters.decode_pauses == 0 || counters.native == 0;
  printf("%zu requests: %zu ok, %zu cancelled, %zu other; in flight at the end: %llu; decode pauses: %llu; "
         "native: %llu\n", submitted, ok, cancelled, other, (unsigned long long)counters.in_flight,
         (unsigned long long)counters.decode_pauses, (unsigned long long)counters.native);
  printf("%d passed, %d failed\n", failed ? 0 : 1, failed ? 1 : 0);
  return failed;
}
