/*
 * Fixed-memory latency histograms in HdrHistogram's layout (3 significant digits, 1 us to ~71 min), so
 * that percentiles are exact to within 0.1 % whatever the run length, and two histograms merge by adding
 * their counts: a master merges its workers' histograms without loss.
 */
#include "locust_c.h"

#include <math.h>
#include <string.h>

#define HIST_SUB_MASK ((uint64_t)HIST_SUB_COUNT - 1)
#define HIST_SUB_HALF_BITS (HIST_SUB_BITS - 1)

void hist_init(hist_t *h) {
  memset(h, 0, sizeof(*h));
  h->min_us = UINT64_MAX;
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

void hist_record(hist_t *h, uint64_t v) {
  h->counts[hist_index_of(v)]++;
  h->total++;
  h->sum_us += v;
  if (v < h->min_us) h->min_us = v;
  if (v > h->max_us) h->max_us = v;
}

int hist_merge(hist_t *dst, const hist_t *src) {
  size_t i;
  if (src->total == 0) return 0;
  for (i = 0; i < HIST_COUNTS; i++) dst->counts[i] += src->counts[i];
  dst->total += src->total;
  dst->sum_us += src->sum_us;
  if (src->min_us < dst->min_us) dst->min_us = src->min_us;
  if (src->max_us > dst->max_us) dst->max_us = src->max_us;
  return 0;
}

/* The value below which `percentile` % of the recorded values fall, as HdrHistogram reports it. */
uint64_t hist_value_at_percentile(const hist_t *h, double percentile) {
  uint64_t wanted, seen = 0;
  size_t i;
  if (h->total == 0) return 0;
  if (percentile > 100.0) percentile = 100.0;
  wanted = (uint64_t)(percentile / 100.0 * (double)h->total + 0.5);
  if (wanted < 1) wanted = 1;
  for (i = 0; i < HIST_COUNTS; i++) {
    seen += h->counts[i];
    if (seen >= wanted) {
      uint64_t v = hist_highest_equivalent(hist_value_of_index(i));
      return v > h->max_us ? h->max_us : v;
    }
  }
  return h->max_us;
}

/* ---- Locust stats deltas ----------------------------------------------------------------------------- */

void stats_delta_init(stats_delta_t *d) {
  d->count = 0;
  d->sum_ms = 0;
  d->min_ms = INFINITY;
  d->max_ms = 0;
  d->content_length = 0;
  d->last_time = 0;
  d->nseconds = 0;
  while (d->nbuckets > 0) d->buckets[d->used[--d->nbuckets]].count = 0;
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
  size_t slot = (size_t)((uint64_t)key * 2654435761u) % DELTA_BUCKET_SLOTS;
  int i;

  for (i = 0; i < d->nseconds && d->seconds[i].second != second; i++) {
  }
  if (i == d->nseconds) {
    if (d->nseconds == max_seconds) return -1;
    d->seconds[i].second = second;
    d->seconds[i].count = 0; /* a second left at zero by a full bucket table is skipped when folded */
    d->nseconds++;
  }
  while (d->buckets[slot].count != 0 && d->buckets[slot].key != key) slot = (slot + 1) % DELTA_BUCKET_SLOTS;
  if (d->buckets[slot].count == 0) {
    if (d->nbuckets >= DELTA_BUCKET_SLOTS / 2) return -1;
    d->buckets[slot].key = key;
    d->used[d->nbuckets++] = (uint16_t)slot;
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
