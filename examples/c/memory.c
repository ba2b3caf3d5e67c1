/*
 * memory.c — the memory tier (L1): set, zero-copy and copying gets, TTLs, delete, and
 * get_or_compute. Build and run: examples/run-all.sh (or see docs/guide.md).
 */
#define _POSIX_C_SOURCE 200809L
#include <smartcache.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Prints the failing call with the library's message and exits. */
#define CHECK(call)                                                                      \
  do {                                                                                   \
    int rc_ = (call);                                                                    \
    if (rc_ < 0) {                                                                       \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, sz_last_error(), sz_status_str(rc_)); \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A compute callback for sz_cache_get_or_compute: runs only on a miss. */
static int compute_greeting(void *user_data, const void *key, size_t key_len, sz_sink *sink) {
  int *calls = user_data;
  ++*calls;
  static const char prefix[] = "computed for ";
  if (sz_sink_write(sink, prefix, sizeof prefix - 1) != SZ_OK) return 1;
  return sz_sink_write(sink, key, key_len) == SZ_OK ? SZ_OK : 1;
}

int main(void) {
  printf("libsmartcache %s (header %s)\n", sz_version(), SZ_VERSION);

  sz_config *cfg = sz_config_new();
  CHECK(sz_config_set(cfg, "memory_capacity", "1000")); /* items */
  CHECK(sz_config_set(cfg, "memory_ttl", "300"));       /* seconds; 0 = no expiry */
  sz_cache *cache = NULL;
  CHECK(sz_cache_open(cfg, &cache));
  sz_config_free(cfg); /* open copied it */

  const char *key = "user:42";
  const char *val = "{\"name\":\"Ada\"}";
  CHECK(sz_cache_set(cache, key, strlen(key), val, strlen(val), 0)); /* 0 = memory_ttl */

  /* Zero-copy: the bytes stay valid until released, even if the entry changes meanwhile. */
  sz_value *v = NULL;
  if (sz_cache_get(cache, key, strlen(key), &v) == SZ_OK) {
    CHECK(sz_cache_set(cache, key, strlen(key), "replaced", 8, 0));
    printf("pinned get (after an overwrite): %.*s\n", (int)sz_value_len(v),
           (const char *)sz_value_data(v));
    sz_value_release(v);
  }

  /* Copying get: a buffer too small says how much is needed. */
  size_t need = 0;
  int rc = sz_cache_get_copy(cache, key, strlen(key), NULL, 0, &need);
  if (rc == SZ_ERR_BUFFER_TOO_SMALL) {
    char *buf = malloc(need);
    CHECK(sz_cache_get_copy(cache, key, strlen(key), buf, need, &need));
    printf("copied get: %.*s (%zu bytes)\n", (int)need, buf, need);
    free(buf);
  }

  /* An explicit TTL in milliseconds; expired entries are never returned. */
  CHECK(sz_cache_set(cache, "session", 7, "token", 5, 100));
  printf("session before its TTL: %s\n",
         sz_cache_exists(cache, "session", 7) == SZ_OK ? "present" : "missing");
  sleep_ms(150);
  printf("session after its TTL:  %s\n",
         sz_cache_exists(cache, "session", 7) == SZ_OK ? "present" : "missing");

  CHECK(sz_cache_delete(cache, key, strlen(key)));
  printf("after delete: %s\n",
         sz_cache_get(cache, key, strlen(key), &v) == SZ_NOT_FOUND ? "not found" : "FOUND?");

  /* get_or_compute: the callback runs once per miss, however many threads ask at once. */
  int calls = 0;
  for (int i = 0; i < 3; i++) {
    CHECK(sz_cache_get_or_compute(cache, "greeting", 8, 0, compute_greeting, &calls, &v));
    if (i == 2)
      printf("get_or_compute: %.*s (callback ran %d time)\n", (int)sz_value_len(v),
             (const char *)sz_value_data(v), calls);
    sz_value_release(v);
  }

  /* Errors carry a status and a message: an empty key is invalid. */
  rc = sz_cache_set(cache, "", 0, "v", 1, 0);
  printf("empty key: %s: %s\n", sz_status_str(rc), sz_last_error());

  sz_cache_close(cache);
  return calls == 1 ? 0 : 1;
}
