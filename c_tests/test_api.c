/* Every function of the C ABI, with good and bad input. */
#include "check.h"
#include <stdint.h>
#include <unistd.h>

static int produce(void *user, const void *key, size_t key_len, sz_sink *sink) {
    int *calls = user;
    (*calls)++;
    CHECK_RC(sz_sink_write(sink, "computed:", 9), SZ_OK);
    return sz_sink_write(sink, key, key_len);
}

static int refuse(void *user, const void *key, size_t key_len, sz_sink *sink) {
    (void)user; (void)key; (void)key_len; (void)sink;
    return 42;
}

static void test_version(void) {
    CHECK(strcmp(sz_version(), SZ_VERSION) == 0);
    CHECK(SZ_VERSION_NUMBER == SZ_VERSION_MAJOR * 10000 + SZ_VERSION_MINOR * 100 + SZ_VERSION_PATCH);
    CHECK(strcmp(sz_status_str(SZ_NOT_FOUND), "not found") == 0);
    CHECK(strcmp(sz_status_str(12345), "unknown status") == 0);
}

static void test_config(void) {
    sz_config *cfg = sz_config_new();
    CHECK(cfg != NULL);
    CHECK_RC(sz_config_set(cfg, "memory_capacity", "5000"), SZ_OK);
    CHECK_RC(sz_config_set(cfg, "memory_ttl", "300"), SZ_OK);
    CHECK_RC(sz_config_set(cfg, "compression_enabled", "true"), SZ_OK);
    CHECK_RC(sz_config_set(cfg, "disk_path", "/tmp/x"), SZ_OK);
    CHECK_RC(sz_config_set(cfg, "memory_max_bytes", "64M"), SZ_OK);
    char *v = NULL;
    CHECK_RC(sz_config_get(cfg, "memory_capacity", &v), SZ_OK);
    CHECK(v && strcmp(v, "5000") == 0);
    sz_string_free(v);
    CHECK_RC(sz_config_get(cfg, "memory_max_bytes", &v), SZ_OK);
    CHECK(v && strcmp(v, "67108864") == 0);
    sz_string_free(v);

    CHECK_RC(sz_config_set(cfg, "memry_ttl", "1"), SZ_ERR_CONFIG);
    CHECK(strstr(sz_last_error(), "memry_ttl") != NULL);
    CHECK_RC(sz_config_set(cfg, "memory_capacity", "lots"), SZ_ERR_CONFIG);
    CHECK(strstr(sz_last_error(), "memory_capacity") && strstr(sz_last_error(), "lots"));
    CHECK_RC(sz_config_set(cfg, "memory_capacity", "0"), SZ_ERR_CONFIG);
    CHECK_RC(sz_config_set(cfg, "jemalloc_enabled", "perhaps"), SZ_ERR_CONFIG);
    CHECK_RC(sz_config_set(cfg, "redis_url", "http://nope"), SZ_ERR_CONFIG);
    CHECK_RC(sz_config_get(cfg, "nope", &v), SZ_ERR_CONFIG);
    CHECK_RC(sz_config_set(NULL, "memory_ttl", "1"), SZ_ERR_INVALID);
    CHECK_RC(sz_config_set(cfg, NULL, "1"), SZ_ERR_INVALID);
    CHECK_RC(sz_config_set(cfg, "memory_ttl", NULL), SZ_ERR_INVALID);
    CHECK_RC(sz_config_get(cfg, "memory_ttl", NULL), SZ_ERR_INVALID);
    CHECK_RC(sz_config_get(NULL, "memory_ttl", &v), SZ_ERR_INVALID);
    sz_config_free(cfg);
    sz_config_free(NULL);
}

static void test_open_close(void) {
    sz_cache *c = NULL;
    CHECK_RC(sz_cache_open(NULL, &c), SZ_OK);
    CHECK(c != NULL);
    sz_cache_close(c);
    sz_cache_close(NULL);
    CHECK_RC(sz_cache_open(NULL, NULL), SZ_ERR_INVALID);
}

static void test_crud(void) {
    sz_cache *c = open_with(NULL);
    const char key[] = {'k', 0, 'y'}; /* keys are bytes, NUL included */
    CHECK_RC(sz_cache_set(c, key, sizeof key, "value", 5, 0), SZ_OK);
    sz_value *v = NULL;
    CHECK_RC(sz_cache_get(c, key, sizeof key, &v), SZ_OK);
    CHECK(v && sz_value_len(v) == 5 && memcmp(sz_value_data(v), "value", 5) == 0);
    sz_value_release(v);
    CHECK_RC(sz_cache_get(c, "k", 1, &v), SZ_NOT_FOUND);
    CHECK_RC(sz_cache_exists(c, key, sizeof key), SZ_OK);
    CHECK_RC(sz_cache_exists(c, "k", 1), SZ_NOT_FOUND);

    char buf[16];
    size_t n = 0;
    CHECK_RC(sz_cache_get_copy(c, key, sizeof key, buf, sizeof buf, &n), SZ_OK);
    CHECK(n == 5 && memcmp(buf, "value", 5) == 0);
    n = 0;
    memset(buf, 'x', sizeof buf);
    CHECK_RC(sz_cache_get_copy(c, key, sizeof key, buf, 2, &n), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(n == 5 && buf[0] == 'x');
    CHECK_RC(sz_cache_get_copy(c, key, sizeof key, NULL, 0, &n), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(n == 5);
    CHECK_RC(sz_cache_get_copy(c, "zz", 2, buf, sizeof buf, &n), SZ_NOT_FOUND);

    /* An empty value is a value. */
    CHECK_RC(sz_cache_set(c, "empty", 5, NULL, 0, 0), SZ_OK);
    CHECK_RC(sz_cache_get(c, "empty", 5, &v), SZ_OK);
    CHECK(sz_value_len(v) == 0);
    sz_value_release(v);
    CHECK_RC(sz_cache_get_copy(c, "empty", 5, NULL, 0, &n), SZ_OK);
    CHECK(n == 0);

    /* Overwrite. */
    CHECK_RC(sz_cache_set(c, key, sizeof key, "second", 6, 0), SZ_OK);
    CHECK_RC(sz_cache_get_copy(c, key, sizeof key, buf, sizeof buf, &n), SZ_OK);
    CHECK(n == 6 && memcmp(buf, "second", 6) == 0);

    CHECK_RC(sz_cache_delete(c, key, sizeof key), SZ_OK);
    CHECK_RC(sz_cache_delete(c, key, sizeof key), SZ_NOT_FOUND);
    CHECK_RC(sz_cache_get(c, key, sizeof key, &v), SZ_NOT_FOUND);

    CHECK_RC(sz_cache_set(c, "a", 1, "1", 1, 0), SZ_OK);
    CHECK_RC(sz_cache_clear(c), SZ_OK);
    CHECK_RC(sz_cache_exists(c, "a", 1), SZ_NOT_FOUND);
    sz_cache_close(c);
}

static void test_bad_input(void) {
    sz_cache *c = open_with((const char *const[]){"max_value_size", "1024", NULL});
    sz_value *v = NULL;
    size_t n;
    char buf[8];
    /* NULL everywhere. */
    CHECK_RC(sz_cache_set(NULL, "k", 1, "v", 1, 0), SZ_ERR_INVALID);
    CHECK(strstr(sz_last_error(), "cache is NULL") != NULL);
    CHECK_RC(sz_cache_set(c, NULL, 1, "v", 1, 0), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_set(c, "k", 1, NULL, 1, 0), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get(NULL, "k", 1, &v), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get(c, NULL, 1, &v), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get(c, "k", 1, NULL), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_copy(c, "k", 1, buf, sizeof buf, NULL), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_copy(c, "k", 1, NULL, 8, &n), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_delete(NULL, "k", 1), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_delete(c, NULL, 1), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_exists(NULL, "k", 1), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_exists(c, NULL, 0), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_clear(NULL), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_stats(c, NULL), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_stats(NULL, NULL), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_health(c, NULL), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_expire_now(NULL), SZ_ERR_INVALID);
    CHECK(sz_cache_stats_json(NULL) == NULL);
    CHECK(sz_value_data(NULL) == NULL && sz_value_len(NULL) == 0);
    sz_value_release(NULL);
    sz_string_free(NULL);
    CHECK_RC(sz_sink_write(NULL, "x", 1), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_or_compute(c, "k", 1, 0, NULL, NULL, &v), SZ_ERR_INVALID);

    /* Empty and huge keys. */
    CHECK_RC(sz_cache_set(c, "", 0, "v", 1, 0), SZ_ERR_INVALID);
    CHECK(strstr(sz_last_error(), "empty") != NULL);
    CHECK_RC(sz_cache_get(c, "", 0, &v), SZ_ERR_INVALID);
    size_t huge = 1 << 20;
    char *big = malloc(huge);
    memset(big, 'k', huge);
    CHECK_RC(sz_cache_set(c, big, huge, "v", 1, 0), SZ_ERR_TOO_LARGE);
    CHECK(strstr(sz_last_error(), "key") != NULL);
    CHECK_RC(sz_cache_get(c, big, huge, &v), SZ_ERR_TOO_LARGE);
    CHECK_RC(sz_cache_delete(c, big, huge), SZ_ERR_TOO_LARGE);
    CHECK_RC(sz_cache_set(c, big, 65535, "v", 1, 0), SZ_OK); /* the limit itself is fine */
    CHECK_RC(sz_cache_exists(c, big, 65535), SZ_OK);

    /* Values over max_value_size. */
    CHECK_RC(sz_cache_set(c, "big", 3, big, 1025, 0), SZ_ERR_TOO_LARGE);
    CHECK(strstr(sz_last_error(), "max_value_size") != NULL);
    CHECK_RC(sz_cache_set(c, "big", 3, big, 1024, 0), SZ_OK);
    free(big);

    /* A failing call does not disturb the next one's output. */
    CHECK_RC(sz_cache_get(c, "big", 3, &v), SZ_OK);
    CHECK(sz_value_len(v) == 1024);
    sz_value_release(v);
    sz_cache_close(c);

    /* Tiers not available in this build are refused at open, never ignored. */
    sz_config *cfg = sz_config_new();
    sz_cache *bad = NULL;
    CHECK_RC(sz_config_set(cfg, "redis_enabled", "true"), SZ_OK);
    int rc = sz_cache_open(cfg, &bad);
    CHECK(rc == SZ_OK || rc == SZ_ERR_CONFIG);
    if (rc == SZ_OK) sz_cache_close(bad);
    sz_config_free(cfg);
}

static void test_get_or_compute(void) {
    sz_cache *c = open_with(NULL);
    int calls = 0;
    sz_value *v = NULL;
    CHECK_RC(sz_cache_get_or_compute(c, "user:1", 6, 60000, produce, &calls, &v), SZ_OK);
    CHECK(calls == 1 && sz_value_len(v) == 15 && memcmp(sz_value_data(v), "computed:user:1", 15) == 0);
    sz_value_release(v);
    CHECK_RC(sz_cache_get_or_compute(c, "user:1", 6, 60000, produce, &calls, &v), SZ_OK);
    CHECK(calls == 1); /* served from the cache */
    sz_value_release(v);
    CHECK_RC(sz_cache_get_or_compute(c, "user:2", 6, 0, refuse, NULL, &v), SZ_ERR_BACKEND);
    CHECK(strstr(sz_last_error(), "42") != NULL);
    CHECK_RC(sz_cache_exists(c, "user:2", 6), SZ_NOT_FOUND);
    sz_cache_close(c);
}

static void test_stats_health_json(void) {
    sz_cache *c = open_with((const char *const[]){"memory_capacity", "100", NULL});
    sz_value *v;
    CHECK_RC(sz_cache_set(c, "a", 1, "1", 1, 0), SZ_OK);
    CHECK_RC(sz_cache_get(c, "a", 1, &v), SZ_OK);
    sz_value_release(v);
    CHECK_RC(sz_cache_get(c, "b", 1, &v), SZ_NOT_FOUND);
    sz_stats s;
    memset(&s, 0xff, sizeof s);
    s.struct_size = sizeof s;
    CHECK_RC(sz_cache_stats(c, &s), SZ_OK);
    CHECK(s.struct_size == sizeof s);
    CHECK(s.hits == 1 && s.misses == 1 && s.sets == 1 && s.size == 1 && s.capacity == 100);
    CHECK(s.hit_ratio == 0.5 && s.memory_bytes > 0 && s.jemalloc == 1);
    CHECK(s.memory_hits == 1 && s.redis_hits == 0 && s.disk_hits == 0);
    s.struct_size = 4; /* too small to be a struct */
    CHECK_RC(sz_cache_stats(c, &s), SZ_ERR_INVALID);

    sz_health h;
    h.struct_size = sizeof h;
    CHECK_RC(sz_cache_health(c, &h), SZ_OK);
    CHECK(h.healthy == 1 && h.memory.enabled == 1 && h.memory.up == 1);
    CHECK(h.redis.enabled == 0 && h.disk.enabled == 0 && h.memory.last_error[0] == 0);

    char *json = sz_cache_stats_json(c);
    CHECK(json && json[0] == '{' && strstr(json, "\"hits\":1") && strstr(json, "\"tiers\""));
    sz_string_free(json);
    char *prom = sz_cache_stats_prometheus(c);
    CHECK(prom && strstr(prom, "# TYPE smartcache_hits_total counter") &&
          strstr(prom, "smartcache_hits_total 1\n") && strstr(prom, "smartcache_tier_up{tier=\"memory\"} 1"));
    sz_string_free(prom);
    CHECK(sz_cache_stats_prometheus(NULL) == NULL);
    sz_cache_close(c);
}

static void test_batches(void) {
    sz_cache *c = open_with(NULL);
    const void *keys[] = {"a", "b\0b", "c"};
    const size_t key_lens[] = {1, 3, 1};
    const void *vals[] = {"1", "22", ""};
    const size_t val_lens[] = {1, 2, 0};
    CHECK_RC(sz_cache_set_many(c, keys, key_lens, vals, val_lens, 3, 0), SZ_OK);
    const void *wanted[] = {"c", "missing", "b\0b", "a"};
    const size_t wanted_lens[] = {1, 7, 3, 1};
    sz_value *out[4] = {NULL, NULL, NULL, NULL};
    CHECK_RC(sz_cache_get_many(c, wanted, wanted_lens, 4, out), SZ_OK);
    CHECK(out[0] && sz_value_len(out[0]) == 0);
    CHECK(out[1] == NULL);
    CHECK(out[2] && sz_value_len(out[2]) == 2 && memcmp(sz_value_data(out[2]), "22", 2) == 0);
    CHECK(out[3] && sz_value_len(out[3]) == 1 && memcmp(sz_value_data(out[3]), "1", 1) == 0);
    for (int i = 0; i < 4; i++) sz_value_release(out[i]);

    /* n == 0 takes NULL arrays. */
    CHECK_RC(sz_cache_get_many(c, NULL, NULL, 0, NULL), SZ_OK);
    CHECK_RC(sz_cache_set_many(c, NULL, NULL, NULL, NULL, 0, 0), SZ_OK);
    /* Bad input names the index; outputs untouched, nothing stored. */
    sz_value *sentinel = (sz_value *)&out;
    sz_value *out2[2] = {sentinel, sentinel};
    const void *bad_keys[] = {"x", ""};
    const size_t bad_lens[] = {1, 0};
    CHECK_RC(sz_cache_get_many(c, bad_keys, bad_lens, 2, out2), SZ_ERR_INVALID);
    CHECK(strstr(sz_last_error(), "keys[1]") != NULL && out2[0] == sentinel);
    const void *null_keys[] = {"x", NULL};
    CHECK_RC(sz_cache_get_many(c, null_keys, bad_lens, 2, out2), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_many(c, NULL, bad_lens, 2, out2), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_many(c, wanted, wanted_lens, 4, NULL), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_many(NULL, wanted, wanted_lens, 4, out), SZ_ERR_INVALID);
    const void *two_vals[] = {"v", "w"};
    const size_t two_lens[] = {1, 1};
    CHECK_RC(sz_cache_set_many(c, bad_keys, bad_lens, two_vals, two_lens, 2, 0), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_exists(c, "x", 1), SZ_NOT_FOUND);
    CHECK_RC(sz_cache_set_many(c, keys, key_lens, NULL, val_lens, 3, 0), SZ_ERR_INVALID);
    sz_cache_close(c);
}

/* A batch with one entry over a limit stores none of them (SZ_ERR_TOO_LARGE, nothing stored);
 * the memory budget applies to the stored (compressed) size. */
static void test_batch_is_all_or_nothing(void) {
    sz_cache *c = open_with((const char *const[]){"memory_max_bytes", "1M", NULL});
    static unsigned char noise[2 << 20], doc[2 << 20];
    uint64_t x = 88172645463325252u;
    for (size_t i = 0; i < sizeof noise; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        noise[i] = (unsigned char)x;
        doc[i] = "{\"id\": 1, \"tags\": [\"a\"]} "[i % 25];
    }
    CHECK_RC(sz_cache_set(c, "a", 1, "old", 3, 0), SZ_OK);
    const void *keys[] = {"a", "b", "c"};
    const size_t key_lens[] = {1, 1, 1};
    const void *vals[] = {"new", "2", noise};
    const size_t val_lens[] = {3, 1, sizeof noise};
    CHECK_RC(sz_cache_set_many(c, keys, key_lens, vals, val_lens, 3, 0), SZ_ERR_TOO_LARGE);
    CHECK(strstr(sz_last_error(), "vals[2]") != NULL);
    char out[8];
    size_t n = 0;
    CHECK_RC(sz_cache_get_copy(c, "a", 1, out, sizeof out, &n), SZ_OK);
    CHECK(n == 3 && memcmp(out, "old", 3) == 0);
    CHECK_RC(sz_cache_exists(c, "b", 1), SZ_NOT_FOUND);
    CHECK_RC(sz_cache_exists(c, "c", 1), SZ_NOT_FOUND);

    vals[2] = doc;
    CHECK_RC(sz_cache_set_many(c, keys, key_lens, vals, val_lens, 3, 0), SZ_OK);
    sz_value *v = NULL;
    CHECK_RC(sz_cache_get(c, "c", 1, &v), SZ_OK);
    CHECK(v && sz_value_len(v) == sizeof doc && memcmp(sz_value_data(v), doc, sizeof doc) == 0);
    sz_value_release(v);
    CHECK_RC(sz_cache_get_copy(c, "a", 1, out, sizeof out, &n), SZ_OK);
    CHECK(n == 3 && memcmp(out, "new", 3) == 0);
    sz_cache_close(c);
}

static void test_compression(void) {
    sz_cache *c = open_with((const char *const[]){"compression_min_size", "512", NULL});
    static char doc[64 * 1024];
    for (size_t i = 0; i < sizeof doc; i++) doc[i] = "{\"id\": 1, \"tags\": [\"a\"]} "[i % 25];
    CHECK_RC(sz_cache_set(c, "doc", 3, doc, sizeof doc, 0), SZ_OK);
    sz_value *v = NULL;
    CHECK_RC(sz_cache_get(c, "doc", 3, &v), SZ_OK);
    CHECK(v && sz_value_len(v) == sizeof doc && memcmp(sz_value_data(v), doc, sizeof doc) == 0);
    CHECK_RC(sz_cache_delete(c, "doc", 3), SZ_OK); /* the decompressed pin outlives the entry */
    CHECK(memcmp(sz_value_data(v), doc, sizeof doc) == 0);
    sz_value_release(v);
    CHECK_RC(sz_cache_set(c, "doc", 3, doc, sizeof doc, 0), SZ_OK);
    static char out[64 * 1024];
    size_t n = 0;
    CHECK_RC(sz_cache_get_copy(c, "doc", 3, out, 100, &n), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(n == sizeof doc); /* the plain length, not the stored one */
    CHECK_RC(sz_cache_get_copy(c, "doc", 3, out, sizeof out, &n), SZ_OK);
    CHECK(n == sizeof doc && memcmp(out, doc, n) == 0);
    sz_stats s;
    s.struct_size = sizeof s;
    CHECK_RC(sz_cache_stats(c, &s), SZ_OK);
    CHECK(s.compression_ratio > 10.0 && s.memory_bytes < sizeof doc / 4);
    sz_cache_close(c);
}

/* sz_cache_get_buffered: the results of sz_cache_get_copy, through one reusable struct. */
static void test_get_buffered(void) {
    sz_cache *c = open_with(NULL);
    const char key[] = {'k', 0, 'y'};
    CHECK_RC(sz_cache_set(c, key, sizeof key, "value", 5, 0), SZ_OK);
    CHECK_RC(sz_cache_set(c, "empty", 5, NULL, 0, 0), SZ_OK);

    uint8_t buf[16];
    sz_get_buffer gb = {.cache = c, .data = buf, .cap = sizeof buf};
    CHECK_RC(sz_cache_get_buffered(&gb, key, sizeof key), SZ_OK);
    CHECK(gb.len == 5 && memcmp(buf, "value", 5) == 0);
    CHECK_RC(sz_cache_get_buffered(&gb, "zz", 2), SZ_NOT_FOUND);
    CHECK_RC(sz_cache_get_buffered(&gb, "empty", 5), SZ_OK);
    CHECK(gb.len == 0);

    /* Too small: the length needed, the buffer untouched; then the same struct, grown. */
    sz_get_buffer small = {.cache = c, .data = buf, .cap = 2};
    memset(buf, 'x', sizeof buf);
    CHECK_RC(sz_cache_get_buffered(&small, key, sizeof key), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(small.len == 5 && buf[0] == 'x');
    small.cap = sizeof buf;
    CHECK_RC(sz_cache_get_buffered(&small, key, sizeof key), SZ_OK);
    CHECK(small.len == 5 && memcmp(buf, "value", 5) == 0);
    sz_get_buffer none = {.cache = c};
    CHECK_RC(sz_cache_get_buffered(&none, key, sizeof key), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(none.len == 5);

    /* The tail stays zeroed: a shorter value clears what a longer one left behind. */
    uint8_t tail[32] = {0};
    sz_get_buffer tb = {.cache = c, .data = tail, .cap = sizeof tail};
    CHECK_RC(sz_cache_set(c, "long", 4, "0123456789", 10, 0), SZ_OK);
    CHECK_RC(sz_cache_set(c, "short", 5, "ab", 2, 0), SZ_OK);
    CHECK_RC(sz_cache_get_buffered(&tb, "long", 4), SZ_OK);
    CHECK_RC(sz_cache_get_buffered(&tb, "short", 5), SZ_OK);
    uint8_t zeros[sizeof tail] = {0};
    CHECK(tb.len == 2 && memcmp(tail, "ab", 2) == 0 && memcmp(tail + 2, zeros, 30) == 0);
    CHECK_RC(sz_cache_get_buffered(&tb, "long", 4), SZ_OK);
    CHECK_RC(sz_cache_get_buffered(&tb, "empty", 5), SZ_OK);
    CHECK(tb.len == 0 && memcmp(tail, zeros, sizeof tail) == 0);

    /* pin_larger: a value too big for the buffer is handed over pinned, from one lookup. */
    sz_stats before = {.struct_size = sizeof before}, after = {.struct_size = sizeof after};
    CHECK_RC(sz_cache_stats(c, &before), SZ_OK);
    sz_get_buffer pin = {.cache = c, .data = buf, .cap = 2, .pin_larger = 1};
    memset(buf, 'x', sizeof buf);
    CHECK_RC(sz_cache_get_buffered(&pin, key, sizeof key), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(pin.len == 5 && pin.value != NULL && buf[0] == 'x');
    CHECK(pin.value && sz_value_len(pin.value) == 5 &&
          memcmp(sz_value_data(pin.value), "value", 5) == 0);
    sz_value_release(pin.value);
    CHECK_RC(sz_cache_stats(c, &after), SZ_OK);
    CHECK(after.hits == before.hits + 1);
    CHECK_RC(sz_cache_get_buffered(&pin, "long", 4), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(pin.len == 10 && pin.value && sz_value_len(pin.value) == 10);
    sz_value_release(pin.value);
    pin.cap = sizeof buf; /* fits: copied, nothing pinned */
    CHECK_RC(sz_cache_get_buffered(&pin, key, sizeof key), SZ_OK);
    CHECK(pin.value == NULL && pin.len == 5);
    CHECK_RC(sz_cache_get_buffered(&pin, "zz", 2), SZ_NOT_FOUND);
    CHECK(pin.value == NULL);
    small.len = 0; /* without pin_larger nothing is pinned */
    small.cap = 2;
    CHECK_RC(sz_cache_get_buffered(&small, key, sizeof key), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(small.value == NULL);

    /* Bad input: every NULL is named, nothing crashes. */
    CHECK_RC(sz_cache_get_buffered(NULL, key, sizeof key), SZ_ERR_INVALID);
    CHECK(strstr(sz_last_error(), "get buffer") != NULL);
    sz_get_buffer closed = {.data = buf, .cap = sizeof buf};
    CHECK_RC(sz_cache_get_buffered(&closed, key, sizeof key), SZ_ERR_INVALID);
    CHECK(strstr(sz_last_error(), "cache is NULL") != NULL);
    sz_get_buffer nodata = {.cache = c, .cap = 8};
    CHECK_RC(sz_cache_get_buffered(&nodata, key, sizeof key), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_buffered(&gb, NULL, 3), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_buffered(&gb, "", 0), SZ_ERR_INVALID);
    sz_cache_close(c);
}

/* Counts the hook calls of sz_get_buffer and checks they pair up. */
static int releases, reacquires;
static int lock_token;

static void *count_release(void) {
    releases++;
    return &lock_token;
}

static void count_reacquire(void *token) {
    CHECK(token == &lock_token);
    reacquires++;
}

/* release / reacquire run only when a get leaves the memory tier, once each. */
static void test_get_buffered_hooks(void) {
    uint8_t buf[64];
    sz_cache *mem = open_with(NULL);
    sz_get_buffer gb = {.cache = mem, .data = buf, .cap = sizeof buf, .release = count_release,
                       .reacquire = count_reacquire};
    CHECK_RC(sz_cache_set(mem, "k", 1, "v", 1, 0), SZ_OK);
    CHECK_RC(sz_cache_get_buffered(&gb, "k", 1), SZ_OK);
    CHECK_RC(sz_cache_get_buffered(&gb, "absent", 6), SZ_NOT_FOUND);
    CHECK(releases == 0 && reacquires == 0); /* no tier below memory: nothing may block */
    sz_get_buffer half = {.cache = mem, .data = buf, .cap = sizeof buf, .release = count_release};
    CHECK_RC(sz_cache_get_buffered(&half, "k", 1), SZ_ERR_INVALID);
    sz_cache_close(mem);

    char path[64];
    snprintf(path, sizeof path, "/tmp/sc-c-hooks-%d", (int)getpid());
    const char *const disk[] = {"disk_enabled", "true", "disk_path", path, NULL};
    sz_cache *writer = open_with(disk);
    CHECK_RC(sz_cache_set(writer, "on-disk", 7, "from L3", 7, 0), SZ_OK);
    sz_cache *reader = open_with(disk); /* its memory tier is empty */
    gb.cache = reader;
    CHECK_RC(sz_cache_get_buffered(&gb, "on-disk", 7), SZ_OK);
    CHECK(gb.len == 7 && memcmp(buf, "from L3", 7) == 0);
    CHECK(releases == 1 && reacquires == 1);
    CHECK_RC(sz_cache_get_buffered(&gb, "on-disk", 7), SZ_OK); /* promoted: a memory hit */
    CHECK_RC(sz_cache_get_buffered(&gb, "nowhere", 7), SZ_NOT_FOUND);
    CHECK(releases == 2 && reacquires == 2);
    sz_cache_close(reader);
    sz_cache_close(writer);
    unlink(path);
}

/* sz_cache_get_memory: the memory tier only; a miss there is SZ_NOT_FOUND at once, uncounted,
 * and nothing below memory is asked (no hook call: it never blocks). */
static void test_get_memory(void) {
    uint8_t buf[64];
    char path[64];
    snprintf(path, sizeof path, "/tmp/sc-c-memory-%d", (int)getpid());
    const char *const disk[] = {"disk_enabled", "true", "disk_path", path,
                                "compression_min_size", "64", NULL};
    sz_cache *writer = open_with(disk);
    CHECK_RC(sz_cache_set(writer, "on-disk", 7, "from L3", 7, 0), SZ_OK);
    uint8_t big[4096];
    memset(big, 'z', sizeof big); /* compressible: stored compressed */
    CHECK_RC(sz_cache_set(writer, "big", 3, big, sizeof big, 0), SZ_OK);
    sz_cache *reader = open_with(disk); /* its memory tier is empty */
    releases = reacquires = 0;
    sz_get_buffer gb = {.cache = reader, .data = buf, .cap = sizeof buf, .release = count_release,
                       .reacquire = count_reacquire};
    sz_stats before = {.struct_size = sizeof before}, after = {.struct_size = sizeof after};
    CHECK_RC(sz_cache_stats(reader, &before), SZ_OK);
    CHECK_RC(sz_cache_get_memory(&gb, "on-disk", 7), SZ_NOT_FOUND); /* on disk, not in memory */
    CHECK_RC(sz_cache_stats(reader, &after), SZ_OK);
    CHECK(after.misses == before.misses && after.hits == before.hits);
    CHECK(releases == 0 && reacquires == 0);
    CHECK_RC(sz_cache_get_buffered(&gb, "on-disk", 7), SZ_OK); /* the full get promotes it */
    memset(buf, 0, sizeof buf);
    gb.len = 0;
    CHECK_RC(sz_cache_get_memory(&gb, "on-disk", 7), SZ_OK);
    CHECK(gb.len == 7 && memcmp(buf, "from L3", 7) == 0);
    CHECK_RC(sz_cache_stats(reader, &after), SZ_OK);
    CHECK(after.hits == before.hits + 2 && after.misses == before.misses);

    /* A compressed value too big for the buffer: decompressed and handed over pinned. */
    sz_get_buffer pin = {.cache = reader, .data = buf, .cap = sizeof buf, .pin_larger = 1};
    CHECK_RC(sz_cache_get_buffered(&pin, "big", 3), SZ_ERR_BUFFER_TOO_SMALL);
    sz_value_release(pin.value);
    CHECK_RC(sz_cache_get_memory(&pin, "big", 3), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(pin.len == sizeof big && pin.value && sz_value_len(pin.value) == sizeof big &&
          memcmp(sz_value_data(pin.value), big, sizeof big) == 0);
    sz_value_release(pin.value);

    /* Bad input: every NULL is named, nothing crashes. */
    CHECK_RC(sz_cache_get_memory(NULL, "k", 1), SZ_ERR_INVALID);
    CHECK(strstr(sz_last_error(), "get buffer") != NULL);
    sz_get_buffer closed = {.data = buf, .cap = sizeof buf};
    CHECK_RC(sz_cache_get_memory(&closed, "k", 1), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_memory(&gb, NULL, 3), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_memory(&gb, "", 0), SZ_ERR_INVALID);
    sz_cache_close(reader);
    sz_cache_close(writer);
    remove_disk_dir(path);
}

int main(void) {
    test_version();
    test_config();
    test_open_close();
    test_crud();
    test_get_buffered();
    test_get_buffered_hooks();
    test_get_memory();
    test_bad_input();
    test_get_or_compute();
    test_stats_health_json();
    test_compression();
    test_batches();
    test_batch_is_all_or_nothing();
    CHECK_SUMMARY();
}
