/* Four threads mixing get/set/delete/clear on one cache for several seconds; every value read
 * must belong to its key, and pinned values must stay intact while held. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static sz_cache *cache;
static atomic_int failures;
static double seconds = 3.0;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u;
    double end = now_s() + seconds;
    long ops = 0;
    while (now_s() < end) {
        for (int i = 0; i < 1000; i++, ops++) {
            seed = seed * 1103515245u + 12345u;
            unsigned k = seed >> 8;
            seed = seed * 1103515245u + 12345u;
            unsigned r = seed >> 8; /* independent of the key: any key sees every operation */
            char key[24], val[64];
            int kl = snprintf(key, sizeof key, "key%u", k % 2000);
            /* The value repeats the key so a read can prove it belongs to it. */
            int vl = snprintf(val, sizeof val, "%s|%s|%u", key, key, r % 7);
            switch (r % 100) {
            case 0:
                if (r % 5000 == 0 && sz_cache_clear(cache) != SZ_OK) atomic_fetch_add(&failures, 1);
                break;
            case 1: case 2: case 3: case 4: case 5:
                if (sz_cache_delete(cache, key, (size_t)kl) < 0) atomic_fetch_add(&failures, 1);
                break;
            case 6: case 7: case 8: case 9: case 10: case 11: case 12: case 13: case 14: case 15:
            case 16: case 17: case 18: case 19: case 20:
                if (sz_cache_set(cache, key, (size_t)kl, val, (size_t)vl, (r % 3) * 5) != SZ_OK)
                    atomic_fetch_add(&failures, 1);
                break;
            default: {
                sz_value *v = NULL;
                int rc = sz_cache_get(cache, key, (size_t)kl, &v);
                if (rc == SZ_OK) {
                    size_t n = sz_value_len(v);
                    const char *d = (const char *)sz_value_data(v);
                    if (n < (size_t)kl * 2 + 2 || memcmp(d, key, (size_t)kl) != 0 ||
                        d[kl] != '|' || memcmp(d + kl + 1, key, (size_t)kl) != 0)
                        atomic_fetch_add(&failures, 1);
                    sz_value_release(v);
                } else if (rc != SZ_NOT_FOUND) {
                    atomic_fetch_add(&failures, 1);
                }
            }
            }
        }
    }
    return (void *)ops;
}

int main(void) {
    if (check_quick()) seconds = 1.0;
    cache = open_with((const char *const[]){"memory_capacity", "500", "auto_expire_interval", "1", NULL});
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(i + 1)) == 0);
    long total = 0;
    for (int i = 0; i < 4; i++) {
        void *ops;
        pthread_join(t[i], &ops);
        total += (long)ops;
    }
    CHECK(atomic_load(&failures) == 0);
    sz_stats s;
    s.struct_size = sizeof s;
    CHECK_RC(sz_cache_stats(cache, &s), SZ_OK);
    CHECK(s.size <= 500);
    CHECK(s.hits + s.misses > 0);
    printf("threads: %ld operations in %.1f s, hit ratio %.2f\n", total, seconds, s.hit_ratio);
    sz_cache_close(cache);
    CHECK_SUMMARY();
}
