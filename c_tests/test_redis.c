/* The Redis tier (L2) through the C ABI, against the private redis-server that
 * scripts/with-redis.sh starts (SMARTCACHE_TEST_REDIS_URL). Without that variable the test fails:
 * a silently skipped Redis test would prove nothing. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include <unistd.h>

static const char KEY[] = "k\0bin";  /* binary key, 5 bytes */
static const char VAL[] = "v\0al";   /* binary value, 4 bytes */

/* docs/guide.md, Using the cache: "set: write-through to every enabled tier; an explicit ttl applies to all
 * tiers". sz_cache_set takes any uint64_t ttl_ms. A very long ttl (UINT64_MAX, 2^63 ms: "as good
 * as forever") was sent to Redis as SET ... PX <n> beyond Redis' range, Redis refused it, and
 * the value silently never reached L2 while sz_cache_set returned SZ_OK (the breaker then also
 * counted a Redis error against a healthy server). Either refuse the ttl or store it (clamped)
 * in every tier; here: if set says OK, another worker with an empty L1 finds it in Redis. */
static void test_long_ttl_reaches_redis(const char *url) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "c-long-ttl-%ld:", (long)getpid());
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
}

int main(void) {
    const char *url = getenv("SMARTCACHE_TEST_REDIS_URL");
    if (url == NULL) {
        fprintf(stderr, "SMARTCACHE_TEST_REDIS_URL is not set: run under scripts/with-redis.sh\n");
        return 2;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "c-test-%ld:", (long)getpid());
    /* 5 s: these checks are about what reaches Redis, not the timeout; valgrind on a busy
     * machine can take longer than a few hundred ms over one round trip. */
    const char *opts[] = {"redis_enabled", "true", "redis_url", url, "redis_key_prefix", prefix,
                          "redis_timeout_ms", "5000", NULL};

    /* Written through to Redis... */
    sz_cache *a = open_with(opts);
    CHECK_RC(sz_cache_set(a, KEY, 5, VAL, 4, 60000), SZ_OK);
    sz_health h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    CHECK_RC(sz_cache_health(a, &h), SZ_OK);
    CHECK(h.healthy == 1 && h.redis.enabled == 1 && h.redis.up == 1);
    sz_cache_close(a);

    /* ...so a second cache (empty L1, same prefix: another worker) finds it in L2. */
    sz_cache *b = open_with(opts);
    sz_value *v = NULL;
    CHECK_RC(sz_cache_get(b, KEY, 5, &v), SZ_OK);
    CHECK(v != NULL && sz_value_len(v) == 4 && memcmp(sz_value_data(v), VAL, 4) == 0);
    sz_value_release(v);
    sz_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    CHECK_RC(sz_cache_stats(b, &s), SZ_OK);
    CHECK(s.redis_hits == 1 && s.redis_errors == 0);
    CHECK_RC(sz_cache_delete(b, KEY, 5), SZ_OK);
    sz_cache_close(b);

    /* delete reached Redis: a fresh cache does not find it. */
    sz_cache *c = open_with(opts);
    CHECK_RC(sz_cache_exists(c, KEY, 5), SZ_NOT_FOUND);
    CHECK_RC(sz_cache_set(c, "x", 1, "y", 1, 0), SZ_OK);
    CHECK_RC(sz_cache_clear(c), SZ_OK);
    sz_cache_close(c);
    c = open_with(opts);
    CHECK_RC(sz_cache_exists(c, "x", 1), SZ_NOT_FOUND);
    sz_cache_close(c);

    /* A malformed URL is refused where it is set, naming the option. */
    sz_config *cfg = sz_config_new();
    CHECK_RC(sz_config_set(cfg, "redis_enabled", "true"), SZ_OK);
    CHECK_RC(sz_config_set(cfg, "redis_url", "redis://127.0.0.1:notaport/0"), SZ_ERR_CONFIG);
    CHECK(strstr(sz_last_error(), "redis_url") != NULL);

    /* Redis unreachable is not an error: the cache works from L1 and health says why. */
    CHECK_RC(sz_config_set(cfg, "redis_url", "redis://127.0.0.1:1/0"), SZ_OK);
    sz_cache *down = NULL;
    CHECK_RC(sz_cache_open(cfg, &down), SZ_OK);
    sz_config_free(cfg);
    CHECK_RC(sz_cache_set(down, "k", 1, "v", 1, 0), SZ_OK);
    CHECK_RC(sz_cache_get(down, "k", 1, &v), SZ_OK);
    sz_value_release(v);
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    CHECK_RC(sz_cache_health(down, &h), SZ_OK);
    CHECK(h.healthy == 0 && h.redis.enabled == 1 && h.redis.up == 0);
    CHECK(strstr(h.redis.last_error, "127.0.0.1:1") != NULL);
    sz_cache_close(down);

    test_long_ttl_reaches_redis(url);
    CHECK_SUMMARY();
}
