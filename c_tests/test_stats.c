/* The counters, rates and Prometheus text of sz_cache_stats / sz_cache_stats_prometheus, and the
 * documented edges of the batch calls they count: each test quotes the promise it checks (each
 * was broken when the test was written). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "clock.h"

static int compute_one(void *user_data, const void *key, size_t key_len, sz_sink *sink) {
    (void)user_data;
    (void)key;
    (void)key_len;
    return sz_sink_write(sink, "computed", 8);
}

/* sz_stats: "hits, misses: Gets answered by any tier / by none", hit_ratio = hits / (hits +
 * misses). One get_or_compute that misses and computes is one get answered by no tier: it must
 * count one miss, not two (the bug: the leader's re-check under the single-flight lock counted a
 * second miss, so a miss-then-hit workload showed hit_ratio 0.33 instead of 0.5). */
static void test_get_or_compute_counts_one_miss(void) {
    sz_cache *c = open_with(NULL);
    sz_value *v = NULL;
    CHECK_RC(sz_cache_get_or_compute(c, "k", 1, 0, compute_one, NULL, &v), SZ_OK);
    sz_value_release(v);
    sz_stats s = checked_stats(c);
    CHECK(s.hits == 0);
    CHECK(s.misses == 1);

    v = NULL;
    CHECK_RC(sz_cache_get_or_compute(c, "k", 1, 0, compute_one, NULL, &v), SZ_OK);
    sz_value_release(v);
    s = checked_stats(c);
    CHECK(s.hits == 1 && s.misses == 1);
    CHECK(s.hit_ratio > 0.49 && s.hit_ratio < 0.51);
    sz_cache_close(c);
}

/* Header, sz_stats.ops_per_second: "Operations per second over the last few seconds."; issue 6:
 * "ops_per_second over the last few seconds (not a lifetime average)"; docs/guide.md: "memory
 * gets, sets and deletes per second over the last ~5 seconds (not a lifetime average)".
 * The bug: the rate is measured between samples taken only when someone reads the stats, so the
 * first read (or any read after a quiet gap, e.g. a /metrics scrape every 30 s) reports the
 * average since open / since the previous read. A burst, then 6.5 s of silence, then the first
 * stats read: nothing happened in the last ~5 s, yet the library reports ~burst/6.5 ops/s (a
 * lifetime average). */
static void test_ops_per_second_is_recent_on_first_read(void) {
    sz_cache *c = open_with(NULL);
    for (int i = 0; i < 20000; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", i % 100);
        CHECK_RC(sz_cache_set(c, key, (size_t)n, "v", 1, 0), SZ_OK);
    }
    sleep_ms(6500);
    sz_stats s = checked_stats(c);
    /* Over the last ~5 s there were no operations at all; allow a little slack. */
    if (!(s.ops_per_second < 100.0))
        fprintf(stderr, "ops_per_second after 6.5 s idle: %.1f (a lifetime average)\n",
                s.ops_per_second);
    CHECK(s.ops_per_second < 100.0);

    /* Same after a second quiet gap between two reads (a scraper reading every 30 s): a burst
     * right after one read, 6.5 s of silence, then the next read. */
    for (int i = 0; i < 20000; i++)
        CHECK_RC(sz_cache_set(c, "x", 1, "v", 1, 0), SZ_OK);
    sleep_ms(6500);
    s = checked_stats(c);
    if (!(s.ops_per_second < 100.0))
        fprintf(stderr, "ops_per_second after a burst and 6.5 s idle: %.1f\n", s.ops_per_second);
    CHECK(s.ops_per_second < 100.0);
    sz_cache_close(c);
}

/* The documented edges of the batch calls and the Prometheus text. */


/* The value of an unlabelled sample line "name value" in Prometheus text, or -1 if absent. */
static double prom_value(const char *text, const char *name) {
    size_t nl = strlen(name);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, name, nl) == 0 && line[nl] == ' ') return strtod(line + nl + 1, NULL);
    }
    return -1;
}

static void test_many_and_prometheus_edges(void) {
    sz_cache *c = open_with(NULL);
    /* "With n == 0 the arrays may be NULL." */
    CHECK_RC(sz_cache_get_many(c, NULL, NULL, 0, NULL), SZ_OK);
    CHECK_RC(sz_cache_set_many(c, NULL, NULL, NULL, NULL, 0, 0), SZ_OK);
    /* NULL cache / arrays with n > 0: SZ_ERR_INVALID. */
    const void *keys[3] = {"a", "", "c"};
    size_t klens[3] = {1, 0, 1};
    const void *vals[3] = {"1", "2", "3"};
    size_t vlens[3] = {1, 1, 1};
    sz_value *out[3] = {NULL, NULL, NULL};
    CHECK_RC(sz_cache_get_many(NULL, keys, klens, 1, out), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_many(c, NULL, klens, 1, out), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_set_many(c, keys, klens, NULL, vlens, 1, 0), SZ_ERR_INVALID);
    /* An empty key at index 1: invalid, "naming its index"; set_many "checked before anything
     * is stored": "a" must not be there; get_many leaves out untouched. */
    CHECK_RC(sz_cache_set_many(c, keys, klens, vals, vlens, 3, 0), SZ_ERR_INVALID);
    CHECK(strstr(sz_last_error(), "1") != NULL);
    CHECK_RC(sz_cache_exists(c, "a", 1), SZ_NOT_FOUND);
    CHECK_RC(sz_cache_exists(c, "c", 1), SZ_NOT_FOUND);
    sz_value *sentinel = (sz_value *)(uintptr_t)0x1;
    out[0] = out[1] = out[2] = sentinel;
    CHECK_RC(sz_cache_get_many(c, keys, klens, 3, out), SZ_ERR_INVALID);
    CHECK(out[0] == sentinel && out[1] == sentinel && out[2] == sentinel);
    /* A good batch: stored; get_many returns pinned values, NULL for a missing key. */
    const void *k2[3] = {"a", "missing", "c"};
    size_t kl2[3] = {1, 7, 1};
    const void *k2set[2] = {"a", "c"};
    size_t kl2set[2] = {1, 1};
    const void *v2[2] = {"AA", ""};
    size_t vl2[2] = {2, 0};
    CHECK_RC(sz_cache_set_many(c, k2set, kl2set, v2, vl2, 2, 0), SZ_OK);
    CHECK_RC(sz_cache_get_many(c, k2, kl2, 3, out), SZ_OK);
    CHECK(out[0] != NULL && sz_value_len(out[0]) == 2 && memcmp(sz_value_data(out[0]), "AA", 2) == 0);
    CHECK(out[1] == NULL);
    CHECK(out[2] != NULL && sz_value_len(out[2]) == 0);
    for (int i = 0; i < 3; i++) sz_value_release(out[i]);

    /* Prometheus: NULL cache gives NULL; a cache gives text with TYPE lines. */
    CHECK(sz_cache_stats_prometheus(NULL) == NULL);
    char *p = sz_cache_stats_prometheus(c);
    CHECK(p != NULL);
    if (p) {
        CHECK(strstr(p, "# TYPE smartcache_hits_total counter") != NULL);
        CHECK(strstr(p, "# TYPE smartcache_hit_ratio gauge") != NULL);
        /* "the same snapshot" as the stats */
        sz_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        CHECK_RC(sz_cache_stats(c, &st), SZ_OK);
        CHECK(prom_value(p, "smartcache_hits_total") == (double)st.hits);
        CHECK(prom_value(p, "smartcache_misses_total") == (double)st.misses);
        CHECK(prom_value(p, "smartcache_sets_total") == (double)st.sets);
        CHECK(prom_value(p, "smartcache_size") == (double)st.size);
        CHECK(st.hits == 2 && st.misses == 1 && st.size == 2);
        CHECK(strstr(p, "tier=\"memory\"") != NULL);
        CHECK(strstr(p, "tier=\"disk\"") == NULL); /* "per enabled tier" */
        CHECK(strstr(p, "disk_fill_ratio") == NULL); /* "when the disk tier is on" */
        sz_string_free(p);
    }
    sz_cache_close(c);
}

int main(void) {
    test_get_or_compute_counts_one_miss();
    test_many_and_prometheus_edges();
    test_ops_per_second_is_recent_on_first_read();
    CHECK_SUMMARY();
}
