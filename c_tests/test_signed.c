/* Signed values through the C ABI: value_secret bounds and redaction in sz_config_set/get, a
 * reader with the secret refusing what a writer without it stored in Redis and on disk (misses
 * counted as tampered in sz_stats, the JSON, Prometheus and health), rotation through
 * value_secret_previous, and sz_stats callers built before the tampered fields. Uses the private
 * redis-server of scripts/with-redis.sh (SMARTCACHE_TEST_REDIS_URL). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include <stddef.h>
#include <unistd.h>

#define SECRET "c-fleet-secret-000001"
#define NEXT_SECRET "c-fleet-secret-000002"

static int text_has(char *text, const char *needle) {
    int found = text != NULL && strstr(text, needle) != NULL;
    sz_string_free(text);
    return found;
}

static void test_option_bounds_and_redaction(void) {
    sz_config *cfg = sz_config_new();
    CHECK_RC(sz_config_set(cfg, "value_secret", "fifteen-bytes!!"), SZ_ERR_CONFIG);
    CHECK(strstr(sz_last_error(), "value_secret") != NULL);
    CHECK(strstr(sz_last_error(), "fifteen-bytes!!") == NULL);
    char big[4098];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_RC(sz_config_set(cfg, "value_secret", big), SZ_ERR_CONFIG);
    big[4096] = '\0';
    CHECK_RC(sz_config_set(cfg, "value_secret", big), SZ_OK);
    CHECK_RC(sz_config_set(cfg, "value_secret", SECRET), SZ_OK);
    CHECK_RC(sz_config_set(cfg, "value_secret_previous", NEXT_SECRET), SZ_OK);
    char *shown = NULL;
    CHECK_RC(sz_config_get(cfg, "value_secret", &shown), SZ_OK);
    CHECK(shown != NULL && strcmp(shown, "***") == 0);
    sz_string_free(shown);
    CHECK_RC(sz_config_set(cfg, "value_secret", ""), SZ_OK);
    CHECK_RC(sz_config_get(cfg, "value_secret", &shown), SZ_OK);
    CHECK(shown != NULL && strcmp(shown, "") == 0);
    sz_string_free(shown);
    CHECK_RC(sz_config_set(NULL, "value_secret", SECRET), SZ_ERR_INVALID);
    CHECK_RC(sz_config_set(cfg, "value_secret", NULL), SZ_ERR_INVALID);
    /* Only a previous secret: nothing could be signed. */
    sz_cache *c = NULL;
    CHECK_RC(sz_cache_open(cfg, &c), SZ_ERR_CONFIG);
    CHECK(strstr(sz_last_error(), "value_secret_previous") != NULL);
    CHECK(c == NULL);
    sz_config_free(cfg);
}

static void test_unsigned_values_are_tampered(const char *url, const char *dir) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "c-signed-%ld:", (long)getpid());
    const char *plain[] = {"redis_enabled", "true", "redis_url", url, "redis_key_prefix", prefix,
                           "redis_timeout_ms", "5000", "disk_enabled", "true", "disk_path", dir,
                           "disk_max_size", "1M", NULL};
    sz_cache *w = open_with(plain);
    CHECK_RC(sz_cache_set(w, "k", 1, "unsigned", 8, 0), SZ_OK);
    sz_cache_close(w);

    const char *signed_opts[] = {"redis_enabled", "true", "redis_url", url, "redis_key_prefix",
                                 prefix, "redis_timeout_ms", "5000", "disk_enabled", "true",
                                 "disk_path", dir, "disk_max_size", "1M", "value_secret", SECRET,
                                 NULL};
    sz_cache *r = open_with(signed_opts);
    sz_value *v = NULL;
    CHECK_RC(sz_cache_get(r, "k", 1, &v), SZ_NOT_FOUND);
    CHECK(v == NULL);
    sz_stats s = checked_stats(r);
    CHECK(s.redis_tampered == 1 && s.disk_tampered == 1);
    CHECK(s.redis_hits == 0 && s.disk_hits == 0 && s.redis_errors == 0);
    CHECK(text_has(sz_cache_stats_json(r), "\"tampered\":1"));
    char *prom = sz_cache_stats_prometheus(r);
    CHECK(prom != NULL && strstr(prom, "smartcache_tampered_total{tier=\"redis\"} 1") != NULL);
    CHECK(prom != NULL && strstr(prom, "smartcache_tampered_total{tier=\"disk\"} 1") != NULL);
    sz_string_free(prom);
    sz_health h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    CHECK_RC(sz_cache_health(r, &h), SZ_OK);
    CHECK(strstr(h.redis.last_error, "tampered") != NULL);
    CHECK(strstr(h.disk.last_error, "carries no MAC") != NULL);

    /* A caller built before the tampered fields existed: they are left alone. */
    sz_stats old;
    memset(&old, 0xAB, sizeof old);
    old.struct_size = offsetof(sz_stats, redis_tampered);
    CHECK_RC(sz_cache_stats(r, &old), SZ_OK);
    CHECK(old.struct_size == offsetof(sz_stats, redis_tampered));
    CHECK(old.redis_tampered == 0xABABABABABABABABull && old.redis_hits == 0);

    /* Its own values are signed and read back; after rotation too. */
    CHECK_RC(sz_cache_set(r, "own", 3, "signed", 6, 0), SZ_OK);
    sz_cache_close(r);
    const char *rotated[] = {"redis_enabled", "true", "redis_url", url, "redis_key_prefix",
                             prefix, "redis_timeout_ms", "5000", "disk_enabled", "true",
                             "disk_path", dir, "disk_max_size", "1M", "value_secret", NEXT_SECRET,
                             "value_secret_previous", SECRET, NULL};
    sz_cache *n = open_with(rotated);
    CHECK_RC(sz_cache_get(n, "own", 3, &v), SZ_OK);
    CHECK(v != NULL && sz_value_len(v) == 6 && memcmp(sz_value_data(v), "signed", 6) == 0);
    sz_value_release(v);
    CHECK(checked_stats(n).redis_tampered == 0);
    CHECK_RC(sz_cache_clear(n), SZ_OK);
    sz_cache_close(n);
}

int main(void) {
    const char *url = getenv("SMARTCACHE_TEST_REDIS_URL");
    if (url == NULL) {
        fprintf(stderr, "SMARTCACHE_TEST_REDIS_URL is not set: run under scripts/with-redis.sh\n");
        return 2;
    }
    char dir[] = "/tmp/smartcache-c-signed-XXXXXX";
    if (mkdtemp(dir) == NULL) return 2;
    test_option_bounds_and_redaction();
    test_unsigned_values_are_tampered(url, dir);
    remove_disk_dir(dir);
    CHECK_SUMMARY();
}
