/* Options that take the values the header and guide document, and take effect: each test quotes
 * the promise it checks (each was broken when the test was written). */
#include "check.h"

/* Header, sz_config_set: "sizes take an optional K, M or G suffix"; max_value_size is a size
 * (bytes), and the Python binding documents SmartCacheConfig(max_value_size="16M"). The bug:
 * max_value_size alone rejects the suffix with SZ_ERR_CONFIG. */
static void test_max_value_size_takes_size_suffix(void) {
    sz_config *cfg = sz_config_new();
    CHECK_RC(sz_config_set(cfg, "max_value_size", "16K"), SZ_OK);
    char *got = NULL;
    CHECK_RC(sz_config_get(cfg, "max_value_size", &got), SZ_OK);
    CHECK(got != NULL && strcmp(got, "16384") == 0);
    sz_string_free(got);
    CHECK_RC(sz_config_set(cfg, "max_value_size", "2M"), SZ_OK);
    CHECK_RC(sz_config_set(cfg, "compression_min_size", "1K"), SZ_OK);
    sz_config_free(cfg);
}

/* docs/guide.md: "An unknown name or bad value is SZ_ERR_CONFIG with a message naming it"; header:
 * sz_config_set returns "SZ_ERR_CONFIG for an unknown name or a bad value". A redis_url whose port
 * or database is not a number in range is a bad value, yet sz_config_set accepted it (only
 * sz_cache_open with redis_enabled refused it later). */
static void test_config_set_rejects_bad_redis_url(void) {
    static const char *const bad[] = {"redis://127.0.0.1:99999/0", "redis://127.0.0.1:6379/abc",
                                      NULL};
    for (const char *const *u = bad; *u; u++) {
        sz_config *cfg = sz_config_new();
        CHECK_RC(sz_config_set(cfg, "redis_url", *u), SZ_ERR_CONFIG);
        CHECK(strstr(sz_last_error(), "redis_url") != NULL);
        sz_config_free(cfg);
    }
}

/* docs/architecture.md: src/compress.rs "LZ4 via lz4-sys"; "A value stored compressed is decompressed once
 * into the handle"; config compression_enabled / compression_min_size; guide: "Intelligent
 * Compression - Automatic data compression", "High Memory Usage: Enable compression"; sz_stats:
 * compression_ratio "Bytes before compression / bytes stored". The bug: compression_enabled is
 * accepted and ignored (no compression module; README lists it as a caveat), so 1 MiB of zeros
 * costs 1 MiB of memory and compression_ratio stays 1.0. */
static void test_compression_enabled_compresses(void) {
    static const char *const opts[] = {"compression_enabled", "true", "compression_min_size",
                                       "1024", NULL};
    sz_cache *c = open_with(opts);
    size_t len = (size_t)1 << 20;
    unsigned char *zeros = calloc(len, 1);
    CHECK(zeros != NULL);
    CHECK_RC(sz_cache_set(c, "z", 1, zeros, len, 0), SZ_OK);
    sz_stats s = checked_stats(c);
    CHECK(s.compression_ratio > 2.0);
    CHECK(s.memory_bytes < len / 2);
    /* and it reads back whole, decompressed into the handle */
    sz_value *v = NULL;
    CHECK_RC(sz_cache_get(c, "z", 1, &v), SZ_OK);
    CHECK(v != NULL && sz_value_len(v) == len && memcmp(sz_value_data(v), zeros, len) == 0);
    sz_value_release(v);
    free(zeros);
    sz_cache_close(c);
}

int main(void) {
    test_max_value_size_takes_size_suffix();
    test_config_set_rejects_bad_redis_url();
    test_compression_enabled_compresses();
    CHECK_SUMMARY();
}
