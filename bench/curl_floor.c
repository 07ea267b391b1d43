/*
 * libcurl's own cost per request, with no Python and no engine around it: N easy handles, each with its own
 * share (one keep-alive connection per "user", as FastCUser has), looping GET requests through one multi
 * handle with curl_multi_perform/curl_multi_poll. It prints CPU time (user + system) per request over the last
 * 80 % of the requests. This is the floor under FastCUser's engine thread on this machine; see README.md.
 *
 *   cc -O2 -o /tmp/curl_floor bench/curl_floor.c $(pkg-config --cflags --libs libcurl)
 *   taskset -c 1 /tmp/curl_floor http://127.0.0.1:8089/ 50 300000
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static size_t discard_cb(char *data, size_t size, size_t n, void *userp) {
  (void)data;
  (void)userp;
  return size * n;
}

static double cpu_seconds(double *user) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  *user = (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6;
  return *user + (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  CURLM *multi;
  CURLMsg *msg;
  long users, target, done = 0, from;
  double cpu0 = 0, user0 = 0, cpu1, user1;
  int running, queued;

  if (argc != 4 || (users = atol(argv[2])) < 1 || users > 10000 || (target = atol(argv[3])) < 1000) {
    fprintf(stderr, "usage: %s URL USERS(1-10000) REQUESTS(>=1000)\n", argv[0]);
    return 2;
  }
  from = target / 5; /* the first 20 % warm up: connections, allocator, caches */
  curl_global_init(CURL_GLOBAL_ALL);
  multi = curl_multi_init();
  for (long i = 0; i < users; i++) {
    CURL *easy = curl_easy_init();
    CURLSH *share = curl_share_init();
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(easy, CURLOPT_SHARE, share);
    curl_multi_add_handle(multi, easy);
  }
  while (done < target) {
    curl_multi_perform(multi, &running);
    while ((msg = curl_multi_info_read(multi, &queued)) != NULL) {
      if (msg->msg != CURLMSG_DONE) continue;
      if (msg->data.result != CURLE_OK) {
        fprintf(stderr, "request failed: %s\n", curl_easy_strerror(msg->data.result));
        return 1;
      }
      /* The same user sends its next request on its kept-alive connection. */
      curl_multi_remove_handle(multi, msg->easy_handle);
      curl_multi_add_handle(multi, msg->easy_handle);
      if (++done == from) cpu0 = cpu_seconds(&user0);
    }
    curl_multi_poll(multi, NULL, 0, 100, NULL);
  }
  cpu1 = cpu_seconds(&user1);
  printf("libcurl %s: %.1f us CPU per request (user %.1f), %ld users, %ld requests measured\n",
         curl_version_info(CURLVERSION_NOW)->version, (cpu1 - cpu0) / (double)(target - from) * 1e6,
         (user1 - user0) / (double)(target - from) * 1e6, users, target - from);
  return 0;
}
