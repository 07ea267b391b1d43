/*
 * Latency histograms in HdrHistogram's layout (3 significant digits, 1 us to ~71 min, memory on demand), so
 * that percentiles are exact to within 0.1 % whatever the run length, and two histograms merge by adding
 * their counts: a master merges its workers' histograms without loss.
 */
#include "locust_c.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HIST_SUB_MASK ((uint64_t)HIST_SUB_COUNT - 1)
#define HIST_SUB_HALF_BITS (HIST_SUB_BITS - 1)

void hist_init(hist_t *h) {
  memset(h, 0, sizeof(*h));
  h->min_us = UINT64_MAX;
}

void hist_reset(hist_t *h) {
  for (int r = 0; r < HIST_ROWS; r++) {
    if (h->rows[r] == NULL) continue;
    for (int c = 0; c < HIST_ROW_CHUNKS; c++) free(h->rows[r][c]);
    free(h->rows[r]);
  }
  hist_init(h);
}

/* The chunk that holds index, allocated when create is set; NULL when it has none (or no memory). */
static uint64_t *hist_chunk(const hist_t *h, size_t index, int create) {
  size_t r = index / HIST_SUB_HALF, c = (index % HIST_SUB_HALF) >> HIST_CHUNK_BITS;
  uint64_t **row = h->rows[r];
  if (LC_UNLIKELY(row == NULL)) {
    if (!create || (row = calloc(HIST_ROW_CHUNKS, sizeof(*row))) == NULL) return NULL;
    ((hist_t *)h)->rows[r] = row;
  }
  if (LC_UNLIKELY(row[c] == NULL) && create) row[c] = calloc(HIST_CHUNK, sizeof(uint64_t));
  return row[c];
}

static inline int hist_bucket_of(uint64_t v) {
  return 64 - __builtin_clzll(v | HIST_SUB_MASK) - HIST_SUB_BITS;
}

size_t hist_index_of(uint64_t v) {
  int bucket = hist_bucket_of(v);
  size_t sub;
  if (LC_UNLIKELY(bucket >= HIST_BUCKETS)) return HIST_COUNTS - 1; /* clamp: beyond ~71 minutes */
  sub = (size_t)(v >> bucket);
  return ((size_t)(bucket + 1) << HIST_SUB_HALF_BITS) + (sub - HIST_SUB_HALF);
}

static void hist_split(size_t index, int *bucket, uint64_t *sub) {
  int b = (int)(index >> HIST_SUB_HALF_BITS) - 1;
  uint64_t s = (index & (HIST_SUB_HALF - 1)) + HIST_SUB_HALF;
  if (b < 0) {
    s -= HIST_SUB_HALF;
    b = 0;
  }
  *bucket = b;
  *sub = s;
}

uint64_t hist_value_of_index(size_t index) {
  int bucket;
  uint64_t sub;
  hist_split(index, &bucket, &sub);
  return sub << bucket;
}

uint64_t hist_highest_equivalent(uint64_t v) {
  int bucket = hist_bucket_of(v);
  uint64_t sub = v >> bucket;
  uint64_t lowest = sub << bucket;
  uint64_t range = (uint64_t)1 << (bucket + (sub >= HIST_SUB_COUNT ? 1 : 0));
  return lowest + range - 1;
}

/*
 * Counts one value. Without memory for its chunk the value still counts in the total, sum, min and max (a
 * percentile then errs high, towards the max), and -ENOMEM says so.
 */
int hist_record(hist_t *h, uint64_t v) {
  size_t index = hist_index_of(v);
  uint64_t *chunk = hist_chunk(h, index, 1);
  h->total++;
  h->sum_us += v;
  if (v < h->min_us) h->min_us = v;
  if (v > h->max_us) h->max_us = v;
  if (LC_UNLIKELY(chunk == NULL)) return -ENOMEM;
  chunk[index & (HIST_CHUNK - 1)]++;
  return 0;
}

/* Adds count to one index's count (the total and the rest are the caller's). */
int hist_add(hist_t *h, size_t index, uint64_t count) {
  uint64_t *chunk;
  assert(index < HIST_COUNTS);
  if (count == 0) return 0;
  if ((chunk = hist_chunk(h, index, 1)) == NULL) return -ENOMEM;
  chunk[index & (HIST_CHUNK - 1)] += count;
  return 0;
}

size_t hist_next(const hist_t *h, size_t index, uint64_t *count) {
  while (index < HIST_COUNTS) {
    size_t r = index / HIST_SUB_HALF, c = (index % HIST_SUB_HALF) >> HIST_CHUNK_BITS;
    const uint64_t *chunk;
    if (h->rows[r] == NULL) {
      index = (r + 1) * HIST_SUB_HALF;
      continue;
    }
    if ((chunk = h->rows[r][c]) == NULL) {
      index = (index | (HIST_CHUNK - 1)) + 1;
      continue;
    }
    for (size_t k = index & (HIST_CHUNK - 1); k < HIST_CHUNK; k++, index++) {
      if (chunk[k] != 0) {
        *count = chunk[k];
        return index;
      }
    }
  }
  *count = 0;
  return HIST_COUNTS;
}

int hist_merge(hist_t *dst, const hist_t *src) {
  uint64_t count;
  int rc = 0;
  if (src->total == 0) return 0;
  for (size_t i = hist_next(src, 0, &count); i < HIST_COUNTS; i = hist_next(src, i + 1, &count))
    if (hist_add(dst, i, count) != 0) rc = -ENOMEM;
  dst->total += src->total;
  dst->sum_us += src->sum_us;
  if (src->min_us < dst->min_us) dst->min_us = src->min_us;
  if (src->max_us > dst->max_us) dst->max_us = src->max_us;
  return rc;
}

/* Takes src's values out of dst, for the histogram of a time window (now minus then). src must be contained in
 * dst (-EINVAL and no change otherwise). min and max become those of the counts that remain, to the histogram's
 * precision. */
int hist_subtract(hist_t *dst, const hist_t *src) {
  uint64_t count, have;
  size_t i, first = HIST_COUNTS, last = 0;
  if (src->total == 0) return 0;
  if (src->total > dst->total || src->sum_us > dst->sum_us) return -EINVAL;
  for (i = hist_next(src, 0, &count); i < HIST_COUNTS; i = hist_next(src, i + 1, &count)) {
    const uint64_t *chunk = hist_chunk(dst, i, 0);
    have = chunk ? chunk[i & (HIST_CHUNK - 1)] : 0;
    if (have < count) return -EINVAL;
  }
  for (i = hist_next(src, 0, &count); i < HIST_COUNTS; i = hist_next(src, i + 1, &count))
    hist_chunk(dst, i, 0)[i & (HIST_CHUNK - 1)] -= count;
  dst->total -= src->total;
  dst->sum_us -= src->sum_us;
  for (i = hist_next(dst, 0, &count); i < HIST_COUNTS; i = hist_next(dst, i + 1, &count)) {
    if (first == HIST_COUNTS) first = i;
    last = i;
  }
  if (first == HIST_COUNTS) {
    dst->min_us = UINT64_MAX;
    dst->max_us = 0;
  } else {
    uint64_t lo = hist_value_of_index(first), hi = hist_highest_equivalent(hist_value_of_index(last));
    if (lo > dst->min_us) dst->min_us = lo;
    if (hi < dst->max_us) dst->max_us = hi;
  }
  return 0;
}

/* How many values are at most each of n ascending bounds (us), in one walk: the buckets of a Prometheus or
 * OpenTelemetry histogram. A value counts as at most a bound when the lowest value of its sub-bucket is, so a
 * count is off only by values within the histogram's precision (0.1 %) of the bound. */
void hist_cumulative(const hist_t *h, const uint64_t *bounds, size_t n, uint64_t *out) {
  uint64_t count, seen = 0;
  size_t b = 0, i = hist_next(h, 0, &count);
  for (; b < n; b++) {
    while (i < HIST_COUNTS && hist_value_of_index(i) <= bounds[b]) {
      seen += count;
      i = hist_next(h, i + 1, &count);
    }
    out[b] = seen;
  }
}

/* The standard deviation (us) of the recorded values, each taken at the middle of its sub-bucket. */
double hist_stddev(const hist_t *h) {
  uint64_t count;
  double mean, acc = 0.0;
  if (h->total < 2) return 0.0;
  mean = (double)h->sum_us / (double)h->total;
  for (size_t i = hist_next(h, 0, &count); i < HIST_COUNTS; i = hist_next(h, i + 1, &count)) {
    uint64_t lo = hist_value_of_index(i);
    double d = ((double)lo + (double)hist_highest_equivalent(lo)) / 2.0 - mean;
    acc += d * d * (double)count;
  }
  return sqrt(acc / (double)(h->total - 1));
}

/* The value below which `percentile` % of the recorded values fall, as HdrHistogram reports it. */
uint64_t hist_value_at_percentile(const hist_t *h, double percentile) {
  uint64_t wanted, seen = 0, count;
  if (h->total == 0) return 0;
  if (percentile > 100.0) percentile = 100.0;
  wanted = (uint64_t)(percentile / 100.0 * (double)h->total + 0.5);
  if (wanted < 1) wanted = 1;
  for (size_t i = hist_next(h, 0, &count); i < HIST_COUNTS; i = hist_next(h, i + 1, &count)) {
    seen += count;
    if (seen >= wanted) {
      uint64_t v = hist_highest_equivalent(hist_value_of_index(i));
      return v > h->max_us ? h->max_us : v;
    }
  }
  return h->max_us;
}

/* ---- Locust stats deltas ----------------------------------------------------------------------------- */

static uint16_t *stats_delta_used(const stats_delta_t *d) { return (uint16_t *)(d->buckets + d->cap); }

const delta_bucket_t *stats_delta_bucket(const stats_delta_t *d, int i) {
  assert(i >= 0 && i < d->nbuckets);
  return &d->buckets[stats_delta_used(d)[i]];
}

void stats_delta_free(stats_delta_t *d) {
  free(d->buckets);
  d->buckets = NULL;
  d->cap = d->nbuckets = 0;
}

/*
 * Starts an empty delta. Its table is freed: a delta lives for one batch, while an endpoint may wait long for its
 * next request (thousands of rows that each saw a few requests), and one allocation per batch costs nothing
 * beside folding the batch into Locust.
 */
void stats_delta_init(stats_delta_t *d) {
  d->count = 0;
  d->sum_ms = 0;
  d->min_ms = INFINITY;
  d->max_ms = 0;
  d->content_length = 0;
  d->last_time = 0;
  d->nseconds = 0;
  stats_delta_free(d);
}

static size_t stats_delta_slot(const stats_delta_t *d, int64_t key) {
  size_t slot = (size_t)((uint64_t)key * 2654435761u) & (size_t)(d->cap - 1);
  while (d->buckets[slot].count != 0 && d->buckets[slot].key != key) slot = (slot + 1) & (size_t)(d->cap - 1);
  return slot;
}

/* Doubles the table (or makes its first one), keeping what it holds. Returns 0, or -1 when it cannot. */
static int stats_delta_grow(stats_delta_t *d) {
  int cap = d->cap ? d->cap * 2 : DELTA_BUCKET_FIRST;
  stats_delta_t old = *d;
  if (cap > DELTA_BUCKET_SLOTS) return -1;
  d->buckets = calloc(1, (size_t)cap * sizeof(delta_bucket_t) + (size_t)cap / 2 * sizeof(uint16_t));
  if (d->buckets == NULL) {
    d->buckets = old.buckets;
    return -1;
  }
  d->cap = cap;
  d->nbuckets = 0;
  for (int i = 0; i < old.nbuckets; i++) {
    const delta_bucket_t *b = stats_delta_bucket(&old, i);
    size_t slot = stats_delta_slot(d, b->key);
    d->buckets[slot] = *b;
    stats_delta_used(d)[d->nbuckets++] = (uint16_t)slot;
  }
  free(old.buckets);
  return 0;
}

/*
 * locust.stats.bucket_response_time in C: round() to about two significant digits. Python's round() is
 * round-half-even, as nearbyint() is in the default rounding mode; response times here are whole
 * microseconds, so a tie is always exact in binary and both round it the same way.
 */
int64_t stats_locust_bucket(double ms) {
  if (ms < 100) return (int64_t)nearbyint(ms);
  if (ms < 1000) return (int64_t)nearbyint(ms / 10) * 10;
  if (ms < 10000) return (int64_t)nearbyint(ms / 100) * 100;
  return (int64_t)nearbyint(ms / 1000) * 1000;
}

/* Returns 0, or -1 when the delta is full and must be folded into Locust before it can take more. */
int stats_delta_record(stats_delta_t *d, double ms, uint64_t content_length, double wall_time) {
  const int max_seconds = (int)(sizeof(d->seconds) / sizeof(d->seconds[0]));
  int64_t key = stats_locust_bucket(ms), second = (int64_t)wall_time;
  size_t slot;
  int i;

  for (i = 0; i < d->nseconds && d->seconds[i].second != second; i++) {
  }
  if (i == d->nseconds) {
    if (d->nseconds == max_seconds) return -1;
    d->seconds[i].second = second;
    d->seconds[i].count = 0; /* a second left at zero by a full bucket table is skipped when folded */
    d->nseconds++;
  }
  if (LC_UNLIKELY(d->nbuckets >= d->cap / 2) && stats_delta_grow(d) != 0) {
    /* Full: it takes only keys it has. The caller folds the delta into Locust before it takes more. */
    if (d->cap == 0 || d->buckets[stats_delta_slot(d, key)].count == 0) return -1;
  }
  slot = stats_delta_slot(d, key);
  if (d->buckets[slot].count == 0) {
    d->buckets[slot].key = key;
    stats_delta_used(d)[d->nbuckets++] = (uint16_t)slot;
  }
  d->buckets[slot].count++;
  d->seconds[i].count++;
  d->count++;
  d->sum_ms += ms;
  if (ms < d->min_ms) d->min_ms = ms;
  if (ms > d->max_ms) d->max_ms = ms;
  d->content_length += content_length;
  if (wall_time > d->last_time) d->last_time = wall_time;
  return 0;
}
