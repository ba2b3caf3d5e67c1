/* Audit regressions that need the private redis-server of scripts/with-redis.sh
 * (SMARTCACHE_TEST_REDIS_URL); without it the test fails, as test_redis.c does. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include <unistd.h>

/* docs/guide.md, Using the cache: "set: write-through to every enabled tier; an explicit ttl applies to all
 * tiers". sz_cache_set takes any uint64_t ttl_ms. A very long ttl (UINT64_MAX, 2^63 ms: "as good
 * as forever") was sent to Redis as SET ... PX <n> beyond Redis' range, Redis refused it, and
 * the value silently never reached L2 while sz_cache_set returned SZ_OK (the breaker then also
 * counted a Redis error against a healthy server). Either refuse the ttl or store it (clamped)
 * in every tier; here: if set says OK, another worker with an empty L1 finds it in Redis. */
int main(void) {
    const char *url = getenv("SMARTCACHE_TEST_REDIS_URL");
    if (url == NULL) {
        fprintf(stderr, "SMARTCACHE_TEST_REDIS_URL is not set: run under scripts/with-redis.sh\n");
        return 2;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "c-audit-%ld:", (long)getpid());
    /* 5 s: the check is that no Redis error is counted; valgrind on a busy machine can take
     * longer than a few hundred ms over one round trip, which would count a (timeout) error. */
    const char *opts[] = {"redis_enabled", "true", "redis_url", url, "redis_key_prefix", prefix,
                          "redis_timeout_ms", "5000", NULL};
    static const uint64_t ttls[] = {UINT64_MAX, (uint64_t)1 << 63, (uint64_t)1 << 62};
    for (size_t i = 0; i < sizeof ttls / sizeof ttls[0]; i++) {
        sz_cache *a = open_with(opts);
        char key[16];
        int kl = snprintf(key, sizeof key, "long%zu", i);
        int rc = sz_cache_set(a, key, (size_t)kl, "v", 1, ttls[i]);
        CHECK(rc == SZ_OK || rc == SZ_ERR_INVALID);
        sz_health h;
        memset(&h, 0, sizeof h);
        h.struct_size = sizeof h;
        CHECK_RC(sz_cache_health(a, &h), SZ_OK);
        CHECK(h.redis.up == 1 && h.redis.errors == 0);
        sz_cache_close(a);
        if (rc != SZ_OK) continue;
        sz_cache *b = open_with(opts); /* another worker: empty L1, same prefix */
        char buf[4];
        size_t n = 0;
        CHECK_RC(sz_cache_get_copy(b, key, (size_t)kl, buf, sizeof buf, &n), SZ_OK);
        CHECK(n == 1 && buf[0] == 'v');
        sz_cache_clear(b);
        sz_cache_close(b);
    }
    CHECK_SUMMARY();
}
