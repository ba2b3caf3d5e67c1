/* The main job of SmartCache on embedded defaults: cache an expensive computation in memory and
 * on disk (no Redis needed), show the speedup, and print the stats. Run it twice: the second
 * process finds the first one's results on disk. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "smartcache.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The "expensive" work: count the primes below n, by trial division. */
static int compute_primes(void *user, const void *key, size_t key_len, sz_sink *sink) {
    (void)key; (void)key_len;
    long n = *(const long *)user, count = 0;
    for (long i = 2; i < n; i++) {
        int prime = 1;
        for (long d = 2; d * d <= i; d++)
            if (i % d == 0) { prime = 0; break; }
        count += prime;
    }
    char text[64];
    int len = snprintf(text, sizeof text, "%ld primes below %ld", count, n);
    return sz_sink_write(sink, text, (size_t)len);
}

static void die(const char *what, int rc) {
    fprintf(stderr, "%s failed (%d): %s\n", what, rc, sz_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "build/demo-cache";
    sz_config *cfg = sz_config_new();
    sz_config_set(cfg, "memory_capacity", "10000");
    sz_config_set(cfg, "memory_ttl", "300");
    sz_config_set(cfg, "disk_enabled", "true");
    sz_config_set(cfg, "disk_path", dir);
    sz_config_set(cfg, "disk_ttl", "3600");

    sz_cache *cache = NULL;
    int rc = sz_cache_open(cfg, &cache);
    if (rc == SZ_ERR_CONFIG && strstr(sz_last_error(), "not available in this build")) {
        printf("note: %s -- running memory-only\n", sz_last_error());
        sz_config_set(cfg, "disk_enabled", "false");
        rc = sz_cache_open(cfg, &cache);
    }
    if (rc != SZ_OK) die("sz_cache_open", rc);
    sz_config_free(cfg);
    printf("SmartCache %s, disk tier under %s\n\n", sz_version(), dir);

    long inputs[] = {200000, 300000, 400000, 500000};
    int n = (int)(sizeof inputs / sizeof inputs[0]);
    for (int i = 0; i < n; i++) {
        char key[32];
        int kl = snprintf(key, sizeof key, "primes:%ld", inputs[i]);
        int was_cached = sz_cache_exists(cache, key, (size_t)kl) == SZ_OK;

        double t0 = now_ms();
        sz_value *v = NULL;
        rc = sz_cache_get_or_compute(cache, key, (size_t)kl, 0, compute_primes, &inputs[i], &v);
        if (rc != SZ_OK) die("sz_cache_get_or_compute", rc);
        double first = now_ms() - t0;
        sz_value_release(v);

        t0 = now_ms();
        const int reps = 100000;
        for (int r = 0; r < reps; r++) {
            if ((rc = sz_cache_get(cache, key, (size_t)kl, &v)) != SZ_OK) die("sz_cache_get", rc);
            sz_value_release(v);
        }
        double hit_us = (now_ms() - t0) * 1e3 / reps;
        rc = sz_cache_get(cache, key, (size_t)kl, &v);
        if (rc != SZ_OK) die("sz_cache_get", rc);
        printf("%-14s %-32.*s first: %8.3f ms (%s)  hit: %.3f us  speedup: %.0fx\n", key,
               (int)sz_value_len(v), (const char *)sz_value_data(v), first,
               was_cached ? "from disk, previous run" : "computed", hit_us,
               first * 1e3 / hit_us);
        sz_value_release(v);
    }

    sz_stats s;
    s.struct_size = sizeof s;
    sz_cache_stats(cache, &s);
    printf("\nstats: hits %llu, misses %llu, hit ratio %.4f, size %llu/%llu items, memory %.1f KiB (%s), "
           "disk hits %llu\n",
           (unsigned long long)s.hits, (unsigned long long)s.misses, s.hit_ratio,
           (unsigned long long)s.size, (unsigned long long)s.capacity, s.memory_bytes / 1024.0,
           s.jemalloc ? "jemalloc arena" : "system allocator", (unsigned long long)s.disk_hits);
    char *json = sz_cache_stats_json(cache);
    printf("stats JSON: %s\n", json);
    sz_string_free(json);
    sz_cache_close(cache);
    return 0;
}
