/*
 * stats_health.c — what a cache reports about itself: the sz_stats counters, the JSON form
 * for a monitoring endpoint, and per-tier health.
 */
#include <smartcache.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                      \
  do {                                                                                   \
    int rc_ = (call);                                                                    \
    if (rc_ < 0) {                                                                       \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, sz_last_error(), sz_status_str(rc_)); \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)

static void print_tier(const char *name, const sz_tier_health *t) {
  printf("  %-6s enabled=%d up=%d errors=%llu last_error=\"%s\"\n", name, t->enabled, t->up,
         (unsigned long long)t->errors, t->last_error);
}

int main(void) {
  sz_config *cfg = sz_config_new();
  CHECK(sz_config_set(cfg, "memory_capacity", "100"));
  sz_cache *c = NULL;
  CHECK(sz_cache_open(cfg, &c));
  sz_config_free(cfg);

  /* A small workload: 200 sets into 100 slots (evictions), then gets of all 200 keys. */
  char key[32];
  for (int i = 0; i < 200; i++) {
    int n = snprintf(key, sizeof key, "item:%d", i);
    CHECK(sz_cache_set(c, key, (size_t)n, "payload", 7, 0));
  }
  for (int i = 0; i < 200; i++) {
    int n = snprintf(key, sizeof key, "item:%d", i);
    CHECK(sz_cache_exists(c, key, (size_t)n)); /* exists does not count as a get */
    sz_value *v = NULL;
    if (sz_cache_get(c, key, (size_t)n, &v) == SZ_OK) sz_value_release(v);
  }

  sz_stats s = {.struct_size = sizeof s}; /* set struct_size: the struct may grow */
  CHECK(sz_cache_stats(c, &s));
  printf("hits %llu misses %llu hit_ratio %.2f sets %llu evictions %llu\n",
         (unsigned long long)s.hits, (unsigned long long)s.misses, s.hit_ratio,
         (unsigned long long)s.sets, (unsigned long long)s.evictions);
  printf("size %llu / capacity %llu, memory %llu bytes, allocator %s, %.0f ops/s\n",
         (unsigned long long)s.size, (unsigned long long)s.capacity,
         (unsigned long long)s.memory_bytes, s.jemalloc ? "jemalloc arena" : "system",
         s.ops_per_second);

  char *json = sz_cache_stats_json(c);
  if (!json) {
    fprintf(stderr, "stats_json: %s\n", sz_last_error());
    return 1;
  }
  printf("json: %s\n", json);
  sz_string_free(json);

  sz_health h = {.struct_size = sizeof h};
  CHECK(sz_cache_health(c, &h));
  printf("healthy=%d\n", h.healthy);
  print_tier("memory", &h.memory);
  print_tier("redis", &h.redis);
  print_tier("disk", &h.disk);

  sz_cache_close(c);
  return s.hits + s.misses == 200 && s.evictions > 0 ? 0 : 1;
}
