/* What an application pays for a memory-tier hit: this program is linked against
 * libsmartcache.so like any application (a dynamic library, no LTO into the caller) and does
 * uniform random sz_cache_get + sz_value_data + sz_value_len + sz_value_release over 100,000
 * resident keys (16-byte keys, 100-byte values, memory_capacity 200,000), GETS gets per
 * thread, at 1 and 2 threads; then replacing sz_cache_set calls of a 100-byte value.
 *
 * Usage:
 *   so_get [gets_per_thread]        times: ns per get at 1 and 2 threads, ns per replacing set
 *   so_get callgrind gets|sets N    one thread, N operations in measured_gets / measured_sets,
 *                                   for valgrind --tool=callgrind --toggle-collect=measured_*
 * `make bench-so` builds and runs it (docs/BENCHMARKS.md). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "smartcache.h"

#define RESIDENT 100000u
#define CAPACITY "200000"
#define KEY_LEN 16
#define VALUE_LEN 100

static char keys[RESIDENT][KEY_LEN];
static unsigned char value[VALUE_LEN];

/* xorshift64*: the same cheap generator in every thread, seeded per thread. */
static inline uint64_t next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static inline uint32_t pick(uint64_t *s) {
    return (uint32_t)(((next(s) >> 32) * RESIDENT) >> 32);
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "so_get: %s failed (%d): %s\n", what, rc, sz_last_error());
    exit(1);
}

static sz_cache *open_filled(void) {
    sz_config *cfg = sz_config_new();
    if (!cfg) die("sz_config_new", -1);
    int rc = sz_config_set(cfg, "memory_capacity", CAPACITY);
    if (rc != SZ_OK) die("sz_config_set", rc);
    sz_cache *c;
    if ((rc = sz_cache_open(cfg, &c)) != SZ_OK) die("sz_cache_open", rc);
    sz_config_free(cfg);
    memset(value, 'v', sizeof value);
    for (unsigned i = 0; i < RESIDENT; i++) {
        char text[KEY_LEN + 1];
        snprintf(text, sizeof text, "key:%012u", i);
        memcpy(keys[i], text, KEY_LEN);
        if ((rc = sz_cache_set(c, keys[i], KEY_LEN, value, VALUE_LEN, 0)) != SZ_OK)
            die("sz_cache_set", rc);
    }
    return c;
}

/* The measured loops: not inlined, so callgrind can count exactly them. */
__attribute__((noinline)) uint64_t measured_gets(sz_cache *c, uint64_t seed, long n) {
    uint64_t sum = 0;
    for (long i = 0; i < n; i++) {
        sz_value *v;
        int rc = sz_cache_get(c, keys[pick(&seed)], KEY_LEN, &v);
        if (rc != SZ_OK) die("sz_cache_get (every key is resident)", rc);
        sum += sz_value_data(v)[0] + sz_value_len(v);
        sz_value_release(v);
    }
    return sum;
}

__attribute__((noinline)) void measured_sets(sz_cache *c, uint64_t seed, long n) {
    for (long i = 0; i < n; i++) {
        int rc = sz_cache_set(c, keys[pick(&seed)], KEY_LEN, value, VALUE_LEN, 0);
        if (rc != SZ_OK) die("sz_cache_set", rc);
    }
}

struct job {
    sz_cache *c;
    uint64_t seed;
    long n;
    int sets;
    pthread_barrier_t *start;
    double ns;
    uint64_t sum;
};

static void *run(void *arg) {
    struct job *j = arg;
    pthread_barrier_wait(j->start);
    double t0 = now_ns();
    if (j->sets)
        measured_sets(j->c, j->seed, j->n);
    else
        j->sum = measured_gets(j->c, j->seed, j->n);
    j->ns = now_ns() - t0;
    return NULL;
}

/* Mean over the threads of each thread's time per operation. */
static double timed(sz_cache *c, int threads, long n, int sets) {
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    struct job jobs[8];
    pthread_t tid[8];
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct job){c, 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1), n, sets, &start, 0, 0};
        pthread_create(&tid[t], NULL, run, &jobs[t]);
    }
    double total = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (!sets && jobs[t].sum != (uint64_t)n * ('v' + VALUE_LEN)) die("value check", -1);
        total += jobs[t].ns / (double)n;
    }
    pthread_barrier_destroy(&start);
    return total / threads;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "callgrind") == 0) {
        if (argc != 4) return 2;
        long n = atol(argv[3]);
        sz_cache *c = open_filled();
        if (strcmp(argv[2], "sets") == 0)
            measured_sets(c, 7, n);
        else if (measured_gets(c, 7, n) != (uint64_t)n * ('v' + VALUE_LEN))
            die("value check", -1);
        sz_cache_close(c);
        printf("so_get callgrind %s: %ld operations\n", argv[2], n);
        return 0;
    }
    long gets = argc >= 2 ? atol(argv[1]) : 1500000;
    sz_cache *c = open_filled();
    timed(c, 1, gets / 10, 0); /* warm up: fault in and touch every page once */
    for (int threads = 1; threads <= 2; threads++)
        printf("c_so get threads=%d: %.1f ns/get (%ld gets per thread)\n", threads,
               timed(c, threads, gets, 0), gets);
    printf("c_so set (replacing, 100-byte value) threads=1: %.1f ns/set (%ld sets)\n",
           timed(c, 1, gets, 1), gets);
    sz_cache_close(c);
    return 0;
}
