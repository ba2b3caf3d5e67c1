/* TTL expiry, eviction by items and by bytes, pinned values outliving their entries. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "clock.h"

/* An entry set with a ttl of ttl_ms at or after `set_start` must still be live at a check that
 * started before set_start + ttl_ms (less 1 ms for the cache's clock, which errs early). A busy
 * machine (or valgrind) can stall the test past that between the set and the check; then the
 * check cannot demand the entry, and is skipped. */
static int surely_live(double set_start, double ttl_ms) { return now_ms() < set_start + ttl_ms - 1; }

static void test_ttl(void) {
    sz_cache *c = open_with((const char *const[]){"memory_ttl", "1", NULL});
    sz_value *v;
    double t_short = now_ms();
    CHECK_RC(sz_cache_set(c, "short", 5, "v", 1, 50), SZ_OK);   /* explicit 50 ms */
    double t_default = now_ms();
    CHECK_RC(sz_cache_set(c, "default", 7, "v", 1, 0), SZ_OK);  /* memory_ttl: 1 s */
    int live = surely_live(t_short, 50);
    int rc = sz_cache_exists(c, "short", 5);
    if (live)
        CHECK_RC(rc, SZ_OK);
    else
        CHECK(rc == SZ_OK || rc == SZ_NOT_FOUND);
    sleep_ms(70);
    CHECK_RC(sz_cache_get(c, "short", 5, &v), SZ_NOT_FOUND);
    CHECK_RC(sz_cache_exists(c, "short", 5), SZ_NOT_FOUND);
    live = surely_live(t_default, 1000);
    rc = sz_cache_exists(c, "default", 7);
    if (live)
        CHECK_RC(rc, SZ_OK);
    else
        CHECK(rc == SZ_OK || rc == SZ_NOT_FOUND);
    sleep_ms(1000);
    CHECK_RC(sz_cache_exists(c, "default", 7), SZ_NOT_FOUND);
    size_t n;
    CHECK_RC(sz_cache_get_copy(c, "default", 7, NULL, 0, &n), SZ_NOT_FOUND);

    /* Background-style expiry on demand reclaims memory. */
    for (int i = 0; i < 500; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "e%d", i);
        CHECK_RC(sz_cache_set(c, k, (size_t)kl, "0123456789", 10, 20), SZ_OK);
    }
    sleep_ms(30);
    int reclaimed = 0;
    for (int round = 0; round < 100 && reclaimed < 500; round++) {
        int r = sz_cache_expire_now(c);
        CHECK(r >= 0);
        reclaimed += r;
    }
    CHECK(reclaimed == 500);
    CHECK(checked_stats(c).size == 0);
    sz_cache_close(c);
}

static void test_evict_by_items(void) {
    sz_cache *c = open_with((const char *const[]){"memory_capacity", "1000", NULL});
    for (int i = 0; i < 20000; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "k%d", i);
        CHECK_RC(sz_cache_set(c, k, (size_t)kl, k, (size_t)kl, 0), SZ_OK);
    }
    sz_stats s = checked_stats(c);
    CHECK(s.size <= 1000 && s.size >= 900);
    CHECK(s.evictions == 20000 - s.size);
    /* Whatever survived is intact. */
    int found = 0;
    for (int i = 0; i < 20000; i++) {
        char k[16], buf[16];
        size_t n;
        int kl = snprintf(k, sizeof k, "k%d", i);
        if (sz_cache_get_copy(c, k, (size_t)kl, buf, sizeof buf, &n) == SZ_OK) {
            found++;
            CHECK(n == (size_t)kl && memcmp(buf, k, n) == 0);
        }
    }
    CHECK((uint64_t)found == s.size);
    sz_cache_close(c);
}

static void test_evict_by_bytes(void) {
    sz_cache *c = open_with((const char *const[]){
        "memory_capacity", "1000000", "memory_max_bytes", "2M", NULL});
    char val[1000];
    memset(val, 'v', sizeof val);
    for (int i = 0; i < 10000; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "b%d", i);
        CHECK_RC(sz_cache_set(c, k, (size_t)kl, val, sizeof val, 0), SZ_OK);
    }
    sz_stats s = checked_stats(c);
    CHECK(s.memory_bytes <= 2u << 20);
    CHECK(s.memory_bytes > 1u << 20);
    CHECK(s.evictions > 0 && s.size < 2100);
    /* A value larger than the whole byte budget is refused, not silently dropped. */
    /* Random bytes: compression (on by default) cannot shrink them under the budget. */
    unsigned char *huge = malloc(3u << 20);
    unsigned x = 12345;
    for (size_t i = 0; i < (3u << 20); i++) { x = x * 1103515245u + 12345u; huge[i] = (unsigned char)(x >> 16); }
    CHECK_RC(sz_cache_set(c, "huge", 4, huge, 3u << 20, 0), SZ_ERR_TOO_LARGE);
    free(huge);
    sz_cache_close(c);
}

static void test_pinned_outlives_everything(void) {
    sz_cache *c = open_with((const char *const[]){"memory_capacity", "100", NULL});
    sz_value *first, *second, *third;
    CHECK_RC(sz_cache_set(c, "p", 1, "first", 5, 0), SZ_OK);
    CHECK_RC(sz_cache_get(c, "p", 1, &first), SZ_OK);
    CHECK_RC(sz_cache_set(c, "p", 1, "second", 6, 0), SZ_OK);  /* overwrite */
    CHECK_RC(sz_cache_get(c, "p", 1, &second), SZ_OK);
    CHECK_RC(sz_cache_delete(c, "p", 1), SZ_OK);                /* delete */
    /* A short ttl, so the entry expires under the pin; should the thread be stalled past it
     * between the set and the get (a busy machine, valgrind), again with a longer one. */
    long ttl = 20;
    for (;;) {
        double t = now_ms();
        CHECK_RC(sz_cache_set(c, "q", 1, "third", 5, (uint64_t)ttl), SZ_OK);
        if (sz_cache_get(c, "q", 1, &third) == SZ_OK) break;
        CHECK(!surely_live(t, (double)ttl));
        if (ttl > 60000) {
            fprintf(stderr, "q never read back within its ttl\n");
            exit(1);
        }
        ttl *= 4;
    }
    sleep_ms(ttl + 10);                                         /* expiry */
    CHECK_RC(sz_cache_expire_now(c) >= 0 ? SZ_OK : -1, SZ_OK);
    for (int i = 0; i < 5000; i++) {                            /* eviction */
        char k[16];
        int kl = snprintf(k, sizeof k, "x%d", i);
        CHECK_RC(sz_cache_set(c, k, (size_t)kl, "filler", 6, 0), SZ_OK);
    }
    CHECK_RC(sz_cache_clear(c), SZ_OK);                         /* clear */
    CHECK(sz_value_len(first) == 5 && memcmp(sz_value_data(first), "first", 5) == 0);
    CHECK(sz_value_len(second) == 6 && memcmp(sz_value_data(second), "second", 6) == 0);
    sz_cache_close(c);                                          /* even close */
    CHECK(memcmp(sz_value_data(third), "third", 5) == 0);
    sz_value_release(first);
    sz_value_release(second);
    sz_value_release(third);
}

int main(void) {
    test_ttl();
    test_evict_by_items();
    test_evict_by_bytes();
    test_pinned_outlives_everything();
    CHECK_SUMMARY();
}
