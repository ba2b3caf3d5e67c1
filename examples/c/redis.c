/*
 * redis.c — the Redis tier (L2): two caches with the same redis_url and redis_key_prefix (two
 * processes, typically) see each other's writes. Uses SMARTCACHE_TEST_REDIS_URL; without it,
 * or when this build has no Redis tier yet, prints a note and exits 0.
 */
#define _POSIX_C_SOURCE 200809L
#include <smartcache.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(call)                                                                      \
  do {                                                                                   \
    int rc_ = (call);                                                                    \
    if (rc_ < 0) {                                                                       \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, sz_last_error(), sz_status_str(rc_)); \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)

static sz_cache *open_redis_cache(const char *url, const char *prefix) {
  sz_config *cfg = sz_config_new();
  CHECK(sz_config_set(cfg, "redis_enabled", "true"));
  CHECK(sz_config_set(cfg, "redis_url", url));
  CHECK(sz_config_set(cfg, "redis_key_prefix", prefix)); /* same prefix = shared entries */
  CHECK(sz_config_set(cfg, "redis_timeout_ms", "200"));  /* bound on every Redis call */
  CHECK(sz_config_set(cfg, "redis_ttl", "60"));          /* seconds */
  sz_cache *c = NULL;
  int rc = sz_cache_open(cfg, &c);
  sz_config_free(cfg);
  if (rc == SZ_ERR_CONFIG && strstr(sz_last_error(), "not available in this build")) return NULL;
  CHECK(rc);
  return c;
}

int main(void) {
  const char *url = getenv("SMARTCACHE_TEST_REDIS_URL");
  if (!url || !*url) {
    printf("note: SMARTCACHE_TEST_REDIS_URL is not set -- skipping the Redis example\n");
    return 0;
  }
  char prefix[64];
  snprintf(prefix, sizeof prefix, "example:%ld:", (long)getpid());
  sz_cache *a = open_redis_cache(url, prefix);
  if (!a) {
    printf("note: %s -- skipping the Redis example\n", sz_last_error());
    return 0;
  }
  sz_cache *b = open_redis_cache(url, prefix);
  CHECK(sz_cache_set(a, "greeting", 8, "hello from a", 12, 0));

  sz_value *v = NULL;
  int found = sz_cache_get(b, "greeting", 8, &v) == SZ_OK; /* b's memory misses; Redis hits */
  if (found) {
    printf("b read a's write: %.*s\n", (int)sz_value_len(v), (const char *)sz_value_data(v));
    sz_value_release(v);
  }
  sz_stats s = {.struct_size = sizeof s};
  CHECK(sz_cache_stats(b, &s));
  sz_health h = {.struct_size = sizeof h};
  CHECK(sz_cache_health(b, &h));
  printf("b: redis hits %llu, misses %llu, errors %llu; redis tier %s\n",
         (unsigned long long)s.redis_hits, (unsigned long long)s.redis_misses,
         (unsigned long long)s.redis_errors, h.redis.up ? "up" : "down");
  CHECK(sz_cache_clear(a)); /* only keys under this prefix */
  sz_cache_close(a);
  sz_cache_close(b);
  return found ? 0 : 1;
}
