/*
 * locust-c private header: the C engine behind FastCUser.
 *
 * Threading model. Each engine_t owns one native thread running one libuv loop, which carries plain http://
 * requests on its own TCP streams (native.c) and drives one libcurl multi handle for the rest (curl.c). Python (holding the GIL) only ever does two things with an engine: it hands work over through the
 * command queue (engine_submit and friends, then uv_async_send) and it takes finished requests back in
 * batches (engine_drain), woken by an eventfd that the gevent hub watches. The engine thread never touches a
 * Python object and never takes the GIL; the only Python value it carries is an opaque token pointer, which
 * it copies and never dereferences.
 *
 * Ownership. A request_t is allocated by the Python side, owned by the engine thread from submission until
 * it is pushed on the completion queue, and owned by the Python side again after engine_drain. A client_t
 * (one simulated user: its keep-alive connections and its cookie jar) is reference-counted: the Python object, the
 * engine's registration and every queued command about it (a stream's reader may send one after its user closed)
 * each hold one. A request with stream=True goes to Python at the end of its headers while its transfer runs on;
 * the stream_t between them (stream.c) is reference-counted too, and a request Python lets go of while its
 * transfer may still read it is freed by the engine (stream_orphan).
 */
#ifndef LOCUST_C_H
#define LOCUST_C_H

#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>
#include <uv.h>
#include <zlib.h>

#if defined(__GNUC__)
#define LC_LIKELY(x) __builtin_expect(!!(x), 1)
#define LC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LC_LIKELY(x) (x)
#define LC_UNLIKELY(x) (x)
#endif

/* The wall clock in seconds since the epoch, as Python's time.time() gives it (Locust's timestamps). */
static inline double wall_clock_now(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* ---- growable byte buffer ---------------------------------------------------------------------------- */

typedef struct {
  char *data;
  size_t len;
  size_t cap;
} buf_t;

int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const char *data, size_t len);
void buf_free(buf_t *b);

/* ---- URLs (url.c) ------------------------------------------------------------------------------------ */

/* An absolute http(s) URL's parts, pointing into the URL. */
typedef struct {
  int https;
  int ipv6;               /* the host was a bracketed IPv6 literal (host is without the brackets) */
  int port;               /* the URL's, or the scheme's default */
  const char *host;
  size_t host_len;
  const char *authority;  /* host[:port] as written, for the Host header */
  size_t authority_len;
  const char *target;     /* from the path on ("" when there is none), without the fragment */
  size_t target_len;
  size_t path_len;        /* the path alone: target up to its query */
} url_t;

int url_split(const char *url, url_t *u);
int url_is_clean(const char *url, size_t len);
int url_host_is_ip(const url_t *u);

/* ---- cookie jars (cookies.c) ------------------------------------------------------------------------- */

#define JAR_MAX_COOKIES 300       /* per user: past it the oldest cookie goes */
#define JAR_MAX_COOKIE_BYTES 4096 /* name and value together (RFC 6265bis 5.6) */

typedef struct cookie_s cookie_t;

typedef struct {
  cookie_t *head;
  int count;
  uint64_t serial; /* creation order of the cookies */
} jar_t;

void jar_clear(jar_t *j);
int jar_set_cookie(jar_t *j, const char *value, size_t n, const url_t *origin, int64_t now);
int jar_header(jar_t *j, const url_t *u, int64_t now, buf_t *out, size_t start);
int jar_load_line(jar_t *j, const char *line, size_t n, int64_t now);
int jar_dump(jar_t *j, int64_t now, buf_t *out);

/* ---- stats ------------------------------------------------------------------------------------------- */

/*
 * A latency histogram in the HdrHistogram layout: values in microseconds from 1 us to about 2^32 us (71 minutes)
 * with 3 significant decimal digits. Each power-of-two range ("bucket") holds HIST_SUB_COUNT linear sub-buckets;
 * the first bucket covers 0..2047 exactly. Counts are 64-bit (a soak merged from many workers overflows 32 bits in
 * a busy bucket) and their memory comes on demand: a row of chunk pointers per HIST_SUB_HALF counts, a chunk of
 * HIST_CHUNK counts, each allocated when a value first falls in it. An endpoint whose latencies sit in a narrow
 * band holds a few chunks, not the 190 KiB that all counts would take.
 */
#define HIST_SUB_BITS 11
#define HIST_SUB_COUNT (1 << HIST_SUB_BITS)
#define HIST_SUB_HALF (HIST_SUB_COUNT / 2)
#define HIST_BUCKETS 22
#define HIST_COUNTS ((HIST_BUCKETS + 1) * HIST_SUB_HALF)
#define HIST_ROWS (HIST_COUNTS / HIST_SUB_HALF)
#define HIST_CHUNK_BITS 5
#define HIST_CHUNK (1 << HIST_CHUNK_BITS)
#define HIST_ROW_CHUNKS (HIST_SUB_HALF / HIST_CHUNK)

typedef struct {
  uint64_t total;
  uint64_t min_us;
  uint64_t max_us;
  uint64_t sum_us;
  uint64_t **rows[HIST_ROWS]; /* rows[r][c]: counts of indices r * HIST_SUB_HALF + c * HIST_CHUNK + ... */
} hist_t;

void hist_init(hist_t *h);
void hist_reset(hist_t *h); /* forgets every value and frees the counts' memory */
int hist_record(hist_t *h, uint64_t value_us);
int hist_add(hist_t *h, size_t index, uint64_t count);
int hist_merge(hist_t *dst, const hist_t *src);
int hist_subtract(hist_t *dst, const hist_t *src); /* -EINVAL unless src is contained in dst */
void hist_cumulative(const hist_t *h, const uint64_t *bounds, size_t n, uint64_t *out);
double hist_stddev(const hist_t *h);
size_t hist_next(const hist_t *h, size_t index, uint64_t *count); /* first index >= index with a count */
uint64_t hist_value_at_percentile(const hist_t *h, double percentile);
size_t hist_index_of(uint64_t value_us);
uint64_t hist_value_of_index(size_t index);
uint64_t hist_highest_equivalent(uint64_t value_us);

/*
 * What a batch of successful requests adds to one Locust stats entry, in Locust's own terms: count,
 * response-time sum/min/max in ms, content length, requests per wall-clock second and the rounded
 * response-time buckets of locust.stats.bucket_response_time. Python folds it into the entry once per batch.
 * The buckets are an open-addressing table that starts small and grows to DELTA_BUCKET_SLOTS; it is freed
 * when the delta is taken, so an endpoint between batches holds none.
 */
#define DELTA_BUCKET_SLOTS 1024 /* Locust's rounding gives at most ~400 distinct keys */
#define DELTA_BUCKET_FIRST 16

typedef struct {
  int64_t key;
  uint64_t count;
} delta_bucket_t;

typedef struct {
  int64_t second;
  uint32_t count;
} delta_second_t;

typedef struct {
  uint64_t count;
  double sum_ms;
  double min_ms;
  double max_ms;
  uint64_t content_length;
  double last_time; /* wall clock of the latest completion */
  delta_second_t seconds[8];
  int nseconds;
  int nbuckets;
  int cap;                  /* slots in buckets: 0, or a power of two up to DELTA_BUCKET_SLOTS */
  delta_bucket_t *buckets;  /* cap slots, then cap / 2 uint16_t: the slots in use, in order of first use */
} stats_delta_t;

void stats_delta_init(stats_delta_t *d);
void stats_delta_free(stats_delta_t *d);
const delta_bucket_t *stats_delta_bucket(const stats_delta_t *d, int i); /* i-th bucket in use */
int stats_delta_record(stats_delta_t *d, double response_ms, uint64_t content_length, double wall_time);
int64_t stats_locust_bucket(double response_ms);

/* ---- requests ---------------------------------------------------------------------------------------- */

enum {
  REQ_FOLLOW_REDIRECTS = 1 << 0,
  REQ_HEAD = 1 << 1,
  REQ_GET = 1 << 2,
  REQ_POST = 1 << 3,
  REQ_BATCH_STATS = 1 << 4, /* a success goes into Locust's stats in the batch, not through events.request */
  REQ_IDEMPOTENT = 1 << 5,  /* the method may be sent twice (RFC 9110 9.2.2): a retry may follow a send */
  REQ_STREAM = 1 << 6,      /* stream=True: delivered at the end of its headers, the body read from a stream_t */
  REQ_COOKIES = 1 << 7,     /* not HTTP: the body's lines change the user's cookie jar, the content is the jar */
};

/*
 * Outcomes that are not libcurl's codes, found by the engine itself. libcurl 7.88 counts a response cut inside
 * its header block as complete, and knows no limit on a body or on the header block as a whole.
 */
#define REQ_ERR_CANCELLED (-1)      /* cancelled by its user, or by the engine stopping */
#define REQ_ERR_HEAD_CUT (-2)       /* the connection closed before the end of the header block */
#define REQ_ERR_BODY_TOO_LARGE (-3) /* the body went past max_response_bytes */
#define REQ_ERR_HEAD_TOO_LARGE (-4) /* the header block went past ENGINE_MAX_HEAD_BYTES, or one line past libcurl's */
#define REQ_ERR_NO_MEMORY (-5)      /* no memory to keep the response */
#define REQ_ERR_BAD_LENGTH (-6)     /* a Content-Length that is not one number (libcurl 7.88 reads "1e3" as 1) */
#define REQ_ERR_BAD_ENCODING (-7)   /* a compressed body that is corrupt, cut short, or in a coding not offered */

/* The header block of a response may be this large at most, as in libcurl 8 (MAX_HTTP_RESP_HEADER_SIZE). */
#define ENGINE_MAX_HEAD_BYTES (300 * 1024)

/* Easy handles kept between transfers per engine; more are freed. Their number follows the requests in
 * flight, not the users, so that 10,000 idle users do not each hold libcurl's buffers. */
#define ENGINE_IDLE_HANDLES 256

/*
 * A user whose last request ended this long ago is set aside (see client_set_aside) unless
 * LOCUST_C_IDLE_SECONDS says otherwise; the sweep looks at most every second.
 */
#define ENGINE_SET_ASIDE_AFTER_MS 5000

/*
 * Decoded bytes the engine produces per loop iteration at most, across all transfers: a compressed body that
 * expands by a thousand (a gzip bomb, or a large honest one) would otherwise hold the thread for as long as it
 * takes to inflate max_response_bytes, and every other request's clock with it. Past the budget a transfer is
 * paused until the next iteration, after the loop has looked at every other socket.
 */
#define ENGINE_DECODE_BUDGET (1024 * 1024)

/* A set-aside connection idle this long is closed: libcurl's default CURLOPT_MAXAGE_CONN. */
#define ENGINE_KEPT_MAX_AGE_MS 118000

/* A streamed body's buffer pauses the transfer past the high mark and resumes it below the low one (stream.c). */
#define STREAM_HIGH_WATER (256 * 1024)
#define STREAM_LOW_WATER (64 * 1024)

typedef struct stream_s stream_t;
typedef struct client_s client_t;
typedef struct engine_s engine_t;
typedef struct xfer_s xfer_t;
typedef struct request_s request_t;
typedef struct sock_s sock_t;
typedef struct conn_s conn_t;

typedef enum { CMD_SUBMIT, CMD_CANCEL, CMD_SET_ASIDE, CMD_CLOSE_CLIENT, CMD_RESUME, CMD_STOP } cmd_kind_t;

typedef struct cmd_s {
  struct cmd_s *next;
  cmd_kind_t kind;
  client_t *client;
  request_t *req; /* CMD_SUBMIT: the request this command is embedded in */
  uint64_t id;    /* CMD_CANCEL, CMD_RESUME: the request (or stream) it is about */
} cmd_t;

struct request_s {
  cmd_t cmd;       /* the submit command travels inside its request: no allocation of its own */
  request_t *next; /* completion queue link */
  client_t *client;
  void *token;    /* opaque: the Python waiter; never dereferenced in C */
  void *endpoint; /* opaque: the Python stats endpoint or NULL; never dereferenced in C */
  void *pyresult; /* opaque: the Python Result it is delivered in, made at submit; never dereferenced in C */
  uint64_t id;
  int flags;
  int retries_left;
  int reconnected; /* native: sent again once on a fresh connection, its reused one having died */

  /* Inputs, all pointing into the same allocation as this struct. */
  const char *method;
  const char *url;
  struct curl_slist *headers; /* nodes built by hand in our allocation: never curl_slist_free_all */
  const char *body;
  size_t body_len;
  const char *cookie;      /* "a=1; b=2" sent after the jar's cookies, or NULL */
  long connect_timeout_ms; /* this request's own timeouts, 0 for the client's */
  long read_timeout_ms;
  int verify;              /* this request's certificate check: 1 on, 0 off, -1 the client's */
  const char *ca_file;     /* this request's CA bundle, or NULL for the client's */
  const char *cert;        /* this request's client certificate (PEM), or NULL for the client's */
  const char *key;         /* its private key, or NULL when the certificate file holds it */

  /* Outputs, written by the engine thread. */
  int result; /* CURLcode, or one of REQ_ERR_* */
  int os_errno;
  long status;
  int64_t total_us;
  int64_t redirects;
  int64_t hops_us;  /* the response times of the redirects followed before this hop */
  uint64_t started_ms; /* loop time its first hop started: request_timeout counts from here */
  jar_t *hop_jar;      /* a client without a jar: the cookies its hops set, for the next hops (request.c) */
  double done_time; /* wall clock (seconds since the epoch) when the last byte arrived */
  double due_time;  /* wall clock when the iteration that sent it was due (arrival_rate), 0 for none */
  buf_t head; /* header block of the last response */
  buf_t redirects_head; /* the header blocks of the redirects followed before it, one after the other */
  buf_t content;
  char *effective_url;
  char *error; /* libcurl's message for a failure, malloc'ed */
  stream_t *stream; /* REQ_STREAM: where the body goes once the request is delivered; one reference */
};

/* ---- streamed bodies (stream.c) ---------------------------------------------------------------------- */

struct stream_s {
  pthread_mutex_t lock; /* guards everything below but refs, id and next_wake */
  int refs;             /* the request's, the running transfer's, a queued wake-up's */
  uint64_t id;          /* the request's: commands about the stream name it */
  buf_t data;           /* decoded body bytes; those before start were taken */
  size_t start;
  int done;             /* the transfer ended: result and error are final */
  int result;           /* CURLcode or REQ_ERR_*, once done */
  char *error;
  int reader_paused;    /* the engine paused the transfer because the buffer is full */
  int waiting;          /* the reader waits for data or the end */
  int wake_queued;      /* a wake-up is on its way to the reader */
  stream_t *next_wake;  /* engine thread: its list of wake-ups to publish */
  void *reader;         /* opaque: the Python Result that reads it; set and cleared under the GIL, never in C */
  int running;          /* its transfer runs: libcurl may still read the request's header list and body */
  request_t *orphan;    /* the request Python let go of while it ran: freed by the engine when it ends */
};

stream_t *stream_create(uint64_t id);
void stream_ref(stream_t *s);
void stream_unref(stream_t *s);
size_t stream_take(stream_t *s, char *out, size_t max, int *resume);
size_t stream_available(stream_t *s);
int stream_arm(stream_t *s);
int stream_disarm(stream_t *s);
int stream_should_wake(stream_t *s);
int stream_orphan(stream_t *s, request_t *req);
int stream_end(stream_t *s, int result, const char *error, request_t **orphan);
void stream_end_with_body(stream_t *s, buf_t *body, int result);

/* ---- clients (one per simulated user) ---------------------------------------------------------------- */

/*
 * The ranges a client's options are checked against. A timeout is a whole number of milliseconds for libcurl,
 * where 0 means none: 1 ms is the shortest, and a day is beyond any test. Larger counts are mistakes.
 */
#define CLIENT_MIN_TIMEOUT 0.001
#define CLIENT_MAX_TIMEOUT 86400.0
#define CLIENT_MAX_REDIRECTS 1000
#define CLIENT_MAX_RETRIES 100
#define CLIENT_MAX_CONNECTIONS 10000

typedef struct {
  long connect_timeout_ms;
  long read_timeout_ms; /* the longest wait for the server once connected (see xfer_read_expired); 0: none */
  long timeout_ms;      /* the whole request, redirects included (CURLOPT_TIMEOUT_MS); 0: no limit */
  long max_redirects;
  int max_retries;
  int max_connections;
  curl_off_t max_response_bytes; /* a body larger than this fails the request; 0: no limit */ /* requests in flight at once; more wait in the client's queue */
  int insecure;
  int http2;
  int tls_sessions;  /* keep TLS sessions for resumption (users of an https host); costs ~2 KiB a user */
  const char *proxy; /* "http://host:port" or NULL; copied */
  const char *user_agent; /* copied */
  const char *ca_file;    /* CA bundle for verification, or NULL for the system's; copied */
  const char *cert;       /* client certificate (PEM) for mutual TLS, or NULL; copied */
  const char *key;        /* its private key, or NULL when the certificate file holds it; copied */
  const char *ciphers;    /* OpenSSL cipher list (TLS 1.2 and below), or NULL for libcurl's; copied */
  long tls_min;           /* CURL_SSLVERSION_* of the lowest TLS version, 0 for libcurl's */
  long tls_max;           /* CURL_SSLVERSION_MAX_*, 0 for libcurl's */
  int verify_host;        /* with verification on: also check the name (0 when the SSLContext says not to) */
  void *ssl_ctx;          /* the OpenSSL SSL_CTX of ssl_context_factory's context (tls.c), referenced, or NULL */
  int cookies;            /* keep a cookie jar; 0 for a client_pool shared by users whose jars are their own */
  int native;             /* plain http:// requests may take the native transport (0: LOCUST_C_TRANSPORT=curl) */
} client_options_t;

struct client_s {
  engine_t *engine;
  client_t *prev, *next; /* engine's list, engine thread only */
  CURLSH *share;         /* this user's libcurl connection cache, opened for its first libcurl transfer */
  xfer_t *active;        /* transfers in the multi */
  conn_t *conns;         /* native connections, carrying a request or idle */
  int nconns;
  request_t *waiting_head, *waiting_tail; /* over max_connections */
  int nactive;           /* requests in flight, on either transport */
  uint64_t serial;       /* unique per client: tells a pooled easy handle whether it is set up for us */
  client_options_t opts;
  char *strings; /* the copies of the options' strings, one allocation */
  int refs;       /* Python's object, the engine's registration, a queued close command */
  int registered; /* known to the engine thread (it has submitted through this client) */

  /* Engine thread only: setting an idle user aside (client_set_aside). */
  uint64_t idle_since;             /* loop time (ms) when its last transfer ended */
  int tls_socks;                   /* open connections that carry TLS: those cannot be set aside */
  sock_t *kept;                    /* set aside: its keep-alive connections, without libcurl's state */
  jar_t jar;                       /* its cookies, for every transport (cookies.c) */
};

/* ---- content decoding (decode.c) --------------------------------------------------------------------- */

typedef enum { CODING_NONE, CODING_GZIP, CODING_DEFLATE, CODING_BR } coding_t;

typedef struct {
  coding_t coding;
  int received; /* a byte of the compressed body arrived */
  int finished; /* the compressed stream reached its end */
  int z_ready;  /* z is initialised (gzip, deflate) */
  int pending;  /* the last step filled its room: more output may wait inside the decoder */
  int nheld;    /* deflate: the first byte waits for the second, which tells the format */
  unsigned char held;
  z_stream z;
  struct BrotliDecoderStateStruct *br;
} decoder_t;

int decode_begin(decoder_t *d, const char *value, size_t n);
int decode_write(decoder_t *d, const char *data, size_t len, buf_t *out, size_t max, size_t budget, size_t *used);
int decode_pending(const decoder_t *d);
int decode_finish(decoder_t *d);
void decode_end(decoder_t *d);

/* ---- the HTTP/1.1 response parser (h1.c) ------------------------------------------------------------ */

typedef enum { H1_HEAD, H1_BODY_LENGTH, H1_BODY_EOF, H1_CHUNK_SIZE, H1_CHUNK_DATA, H1_CHUNK_END, H1_TRAILER, H1_DONE } h1_state_t;

#define H1_MORE 0     /* the response needs more bytes */
#define H1_COMPLETE 1 /* the response ended */
#define H1_PAUSE 2    /* on_body asked to stop: feed the bytes from *used again to go on */
/* Faults, apart from the REQ_ERR_* codes the callbacks return, which pass through. */
#define H1_ERR_STATUS (-100)         /* not an HTTP/1.x status line */
#define H1_ERR_LENGTH (-101)         /* a Content-Length that is not one number */
#define H1_ERR_CHUNK (-102)          /* a bad chunk-size line, or a chunk not followed by CRLF */
#define H1_ERR_HEAD_TOO_LARGE (-103) /* the header block (1xx blocks included), or the trailers, too large */
#define H1_ERR_MEMORY (-104)
#define H1_ERR_NOTHING (-105)        /* closed before a byte of the response */
#define H1_ERR_HEAD_CUT (-106)       /* closed inside the header block */
#define H1_ERR_BODY_CUT (-107)       /* closed inside a framed body */
#define H1_ERR_LINE_TOO_LONG (-108)  /* one line of the header block longer than libcurl takes */

typedef struct {
  h1_state_t state;
  int status;
  int64_t content_length; /* -1: none */
  uint64_t remaining;     /* of the body, or of the chunk */
  size_t scan;            /* bytes of the header block searched for its end */
  size_t line_start;      /* where its current line starts */
  size_t skipped;         /* bytes of 1xx blocks dropped before this one */
  size_t trailer_bytes;
  uint32_t line_len;      /* bytes of the current chunk-size or trailer line */
  uint8_t digits, in_ext, cr;
  uint8_t http10, keep_alive, close, chunked;
  uint8_t request_no_body; /* a HEAD request: its answer has no body, whatever its header says */
} h1_parser_t;

typedef struct {
  int (*on_field)(void *ud, const h1_parser_t *p, const char *name, size_t name_len, const char *value, size_t n);
  int (*on_head)(void *ud, const h1_parser_t *p); /* the final header block ended; the body follows */
  int (*on_body)(void *ud, const char *data, size_t len);
} h1_callbacks_t;

void h1_begin(h1_parser_t *p, int no_body);
int h1_execute(h1_parser_t *p, buf_t *head, const char *data, size_t len, size_t *used, const h1_callbacks_t *cb,
               void *ud);
int h1_finish(h1_parser_t *p, size_t head_len);
int http_check_length(int64_t *length, const char *v, size_t n);

/* ---- the native transport (native.c) ----------------------------------------------------------------- */

/* The engine's read buffer for native connections: a read is parsed before the next one, so one serves all. */
#define NATIVE_READ_BUFFER (64 * 1024)

int native_eligible(client_t *c, request_t *req, url_t *u);
void native_start(client_t *c, request_t *req, const url_t *u);
int native_cancel(client_t *c, uint64_t id);
void native_close_all(client_t *c);
int native_check_reads(client_t *c, uint64_t now);
void native_resume(engine_t *e);

/* ---- transfers (an easy handle and what it is doing) ------------------------------------------------- */

struct xfer_s {
  xfer_t *prev, *next;
  CURL *easy;
  engine_t *engine;
  client_t *client;        /* while a transfer runs */
  uint64_t client_serial;  /* the client whose options the handle carries */
  const char *default_ca;  /* libcurl's built-in CA bundle path (setting NULL would disable it) */
  request_t *req;
  curl_socket_t resume_fd; /* a set-aside connection handed to libcurl as already connected, or -1 */
  int resumed;             /* this attempt runs on a set-aside connection */
  int head_done;           /* the last response's header block has ended (its empty line arrived) */
  int64_t content_length;  /* the last response's Content-Length, -1 before one arrived */
  int status;              /* the last response's status code, from its status line */
  decoder_t decoder;       /* the last response's Content-Encoding */
  size_t decode_skip;      /* bytes of the chunk libcurl delivers again after a pause that were decoded already */
  int paused;              /* waiting in the engine's paused list for the next loop iteration (see decode budget) */
  int cookie_set;          /* CURLOPT_COOKIE holds a request's cookies: the next request must clear it */
  url_t url;               /* the parts of this hop's URL: the origin of the cookies its response sets */
  buf_t cookies;           /* the Cookie header value of this hop (CURLOPT_COOKIE), NUL-terminated */
  struct curl_slist no_type; /* "Content-Type:" before the request's own lines, for a POST without a body */
  int connected;           /* the request is on a connection (CURLOPT_PREREQFUNCTION): the read timeout counts */
  int has_location;        /* the last response has a Location header: a 3xx with it is followed */
  int reader_paused;       /* paused until the stream's reader has taken enough (stream.c) */
  stream_t *stream;        /* delivered with stream=True: req is NULL, the body goes here; one reference */
  uint64_t start_ns;       /* stream=True: when the attempt started, for the response time at the headers */
  long read_timeout_ms;    /* this attempt's read timeout, 0 for none */
  uint64_t last_io;        /* loop time (ms) when the server last sent something, or the request went out */
  uint64_t last_cb_ns;     /* when libcurl last handed over response bytes (the response's end, for its timing) */
  xfer_t *next_paused;
  int fault;               /* REQ_ERR_* found by our own callbacks, 0 when none */
  const char *rejected;    /* the first option libcurl refused since the last start (see XFER_SET) */
  CURLcode rejected_code;
  char errbuf[CURL_ERROR_SIZE];
};

/*
 * Every option goes through XFER_SET, which keeps the first one libcurl rejects: a pooled handle must never
 * carry on with the previous user's value because this user's was refused. The request then fails, naming it.
 */
#define XFER_SET(x, option, value) xfer_setopt_result((x), curl_easy_setopt((x)->easy, option, value), #option)
void xfer_setopt_result(xfer_t *x, CURLcode rc, const char *option);

xfer_t *xfer_create(engine_t *e);
int xfer_start(xfer_t *x, request_t *req);
void xfer_finish(xfer_t *x, CURLcode code);
int xfer_read_expired(xfer_t *x, uint64_t now);
void xfer_destroy(xfer_t *x);

/* ---- TLS settings from a Python SSLContext (tls.c) ------------------------------------------------- */

uintptr_t tls_library_marker(void);
void *tls_context_ref(void *ssl_ctx);
void tls_context_unref(void *ssl_ctx);
CURLcode tls_ssl_ctx_cb(CURL *easy, void *ssl_ctx, void *userp);

/* ---- sockets ----------------------------------------------------------------------------------------- */

/*
 * A socket libcurl uses, with the loop's watcher on it. Connection sockets (opened through the engine's
 * CURLOPT_OPENSOCKETFUNCTION) keep theirs from open to close: between two requests on a keep-alive connection
 * libcurl stops watching the socket, and stopping and restarting a uv_poll_t costs several epoll_ctl calls,
 * so the socket is parked instead, still watched for readability. Other sockets libcurl watches (the
 * threaded resolver's) lose their watcher as soon as libcurl lets go, because they are closed without a word.
 */
struct sock_s {
  uv_poll_t poll;
  curl_socket_t fd;
  int watching; /* UV_READABLE | UV_WRITABLE currently asked of the loop, 0 when stopped */
  int wanted;   /* what libcurl asked for, 0 while parked */
  int owned;    /* opened by us: the close callback will tell when it closes */
  int tls;      /* opened for an https URL */
  int kept;     /* in client->kept: libcurl has forgotten this connection, we hold it */
  int active;   /* libcurl made it a connection's socket: it will close it through our callback (see sock_alive) */
  int dead;     /* the loop saw an error, or the server closing it while parked */
  int handed_back;     /* times it went back to libcurl after being kept */
  uint64_t kept_since; /* loop time (ms) it was kept */
  uint64_t authority;  /* hash of the host and port it was opened for */
  uint64_t ino;        /* the socket's inode: tells our socket from another on the same descriptor */
  engine_t *engine;
  client_t *client; /* owned sockets: the user whose connection this is */
  sock_t *next_kept;
  union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
  } peer; /* where it is connected to, to hand it back only for the same address */
  socklen_t peer_len;
};

void engine_multi_sockets(engine_t *e);
void engine_socket_callbacks(engine_t *e, xfer_t *x);
void sock_close(sock_t *s);
void sock_close_cb(uv_handle_t *handle);
void engine_socks_free(engine_t *e);

/* ---- engine ------------------------------------------------------------------------------------------ */

typedef struct {
  uint64_t submitted;
  uint64_t completed;
  uint64_t in_flight;
  uint64_t clients;
  uint64_t socket_events; /* readiness events the loop delivered, parked connections' included */
  uint64_t set_aside;     /* times an idle user was set aside */
  uint64_t resumed;       /* times a set-aside connection carried a request again */
  uint64_t decode_pauses; /* times a transfer paused for the next loop iteration, past the decode budget */
  uint64_t stream_pauses; /* times a stream paused because its reader had not taken its buffer */
  uint64_t native;        /* request hops the native transport carried */
  uint64_t native_connects; /* native connections opened */
  uint64_t native_open;     /* native connections open now */
} engine_counters_t;

struct engine_s {
  uv_loop_t loop;
  uv_async_t wakeup;
  uv_timer_t timeout;
  CURLM *multi;
  pthread_t thread;
  int started;
  int priority_boost; /* nice levels above the process for the engine thread (0: none) */
  int curl_verbose;
  int event_fd; /* readable while completions are queued */

  pthread_mutex_t lock; /* guards the two queues below and counters */
  cmd_t *cmd_head, *cmd_tail;
  request_t *done_head, *done_tail;
  stream_t *woken_head, *woken_tail; /* streams whose readers are to be woken */
  int stopping;
  cmd_t stop_cmd;

  /* Engine thread only. */
  uv_prepare_t flush_timers;          /* hands completions to Python in one go: those of the timer phase */
  uv_check_t flush_io;                /* and those of the I/O phase */
  uv_idle_t resume;                   /* runs while transfers are paused by the decode budget: resumes them */
  xfer_t *paused, *paused_tail;       /* transfers paused by the decode budget, in the order they paused */
  conn_t *paused_conns, *paused_conns_tail; /* and native connections (native.c) */
  size_t decoded;                     /* decoded bytes produced since the budget was last renewed */
  request_t *batch_head, *batch_tail; /* completions of the current loop iteration */
  stream_t *wake_head, *wake_tail;    /* and wake-ups of stream readers */
  client_t *clients;
  uint64_t io_wake_ns; /* when this loop iteration's epoll_wait returned (first I/O callback), 0 before */
  int in_io;           /* inside a socket callback: a transfer finishing now was woken at io_wake_ns */
  sock_t **socks; /* the watched sockets, indexed by descriptor */
  size_t nsocks;
  sock_t *free_socks;       /* unused records of the slabs below */
  struct sock_slab_s *sock_slabs;
  client_t *setting_aside; /* the client whose connections the close callback keeps open */
  uv_timer_t sweep;        /* sets idle users aside */
  uv_timer_t reads;        /* runs while transfers with a read timeout are in flight: fails those past it */
  uint64_t reads_every_ms; /* its period: an eighth of the shortest read timeout seen, from 5 ms to 1 s */
  uint64_t set_aside_after_ms;
  int hand_back_again;     /* libcurl honours CURL_SOCKOPT_ALREADY_CONNECTED (8.0 and later) */
  char *native_buf; /* NATIVE_READ_BUFFER bytes, made on the first native read */
  buf_t native_out; /* the header block of the native request being written (native.c's conn_send) */
  xfer_t *idle; /* easy handles between transfers, shared by every client of the engine */
  int nidle;
  int nidle_low; /* the fewest idle handles since the last sweep: that many were not needed */
  int destroyed_since_trim; /* pooled handles freed since the last trim */
  uint64_t in_flight;
  engine_counters_t counters;
};

int engine_init(engine_t *e, uint64_t set_aside_after_ms);
int engine_start(engine_t *e);
int engine_send(engine_t *e, cmd_t *cmd);
int engine_stop(engine_t *e);
request_t *engine_drain(engine_t *e);
stream_t *engine_drain_wakes(engine_t *e);
void engine_wake(engine_t *e, stream_t *s);
void engine_destroy(engine_t *e);
void engine_complete(engine_t *e, request_t *req);
void engine_pause(engine_t *e, xfer_t *x);
void engine_unpause(engine_t *e, xfer_t *x);
void engine_resume_soon(engine_t *e);
void engine_counters(engine_t *e, engine_counters_t *out);
void engine_watch_reads(engine_t *e, long read_timeout_ms);
void engine_check_done(engine_t *e);

client_t *client_create(engine_t *e, const client_options_t *opts);
void client_ref(client_t *c);
void client_unref(client_t *c);
void client_run_next(client_t *c);
void client_close(client_t *c);
void client_cancel(client_t *c, uint64_t id);
void client_resume_stream(client_t *c, uint64_t id);
void client_recycle(client_t *c, xfer_t *x);
void xfer_stream_end(xfer_t *x, int result, const char *message);
void client_submit(client_t *c, request_t *req);
int client_set_aside(client_t *c);

void client_start(client_t *c, request_t *req);

/* ---- between hops (request.c) ------------------------------------------------------------------------ */

typedef enum {
  FAULT_BODY_TOO_LARGE, FAULT_HEAD_TOO_LARGE, FAULT_LINE_TOO_LONG, FAULT_BAD_LENGTH, FAULT_BAD_ENCODING,
  FAULT_ENCODING_CUT, FAULT_HEAD_CUT, FAULT_NO_MEMORY
} fault_t;

void request_free(request_t *req);
int request_fault(fault_t fault, const client_t *c, char *out, size_t n);
const char *head_find(const buf_t *head, const char *name, size_t *value_len);
int request_cookies(client_t *c, request_t *req, const url_t *u, buf_t *out);
void request_set_cookie(client_t *c, request_t *req, const url_t *u, const char *value, size_t n);
int request_has_cookies(const client_t *c, const request_t *req);
int request_follow(request_t *req, long max_redirects, int64_t hop_us);

#endif /* LOCUST_C_H */
