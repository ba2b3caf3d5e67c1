/* L1 entry blocks come from a per-thread jemalloc thread cache, created on a thread's first use
 * and destroyed at thread exit. Header: sz_value_data is "valid until sz_value_release(v), even
 * if the entry is overwritten, deleted, expired, evicted or cleared meanwhile"; sz_value_release
 * is "Safe from any thread, and after the cache that returned it was closed"; "A cache handle may
 * be used from many threads at once." Stressed with thousands of short-lived threads (fewer under
 * valgrind, SMARTCACHE_QUICK).
 * Scenarios that could kill the process (library use from thread-exit destructors and atexit
 * handlers) run in a child process: this program re-executes itself with "--child <name>". */
#define _GNU_SOURCE
#include "check.h"
#include "churn.h"
#include "clock.h"
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *self_path;

/* (a) Thousands of short-lived threads doing set/get/overwrite/delete on shared caches. */
static void test_thread_churn(void) {
    int total = check_quick() ? 240 : 5000;
    printf("-- memory: %d short-lived threads, 4 at a time\n", total);
    sz_cache *c = open_with((const char *const[]){"memory_capacity", "20000",
                                                  "compression_enabled", "false", NULL});
    sz_cache *e = open_with((const char *const[]){"memory_capacity", "32", NULL});
    sz_stats s = checked_stats(c);
    CHECK(s.jemalloc == 1); /* jemalloc_enabled defaults to true */
    int f0 = atomic_load(&worker_failures);
    double t0 = now_ms();
    run_churn(c, e, total, 4, 0);
    printf("  %.0f ms, worker failures %d\n", now_ms() - t0, atomic_load(&worker_failures) - f0);
    CHECK(atomic_load(&worker_failures) == f0);
    /* Whatever the dead threads left behind still reads back right from this thread. */
    int bad = 0;
    for (uint32_t k = 0; k < NSHARED; k++) {
        char sk[16];
        int skl = snprintf(sk, sizeof sk, "sh-%u", k);
        sz_value *v = NULL;
        if (sz_cache_get(c, sk, (size_t)skl, &v) == SZ_OK) {
            if (!matches_any_len(sz_value_data(v), sz_value_len(v), k)) bad++;
            sz_value_release(v);
        }
    }
    CHECK(bad == 0);
    /* Every value a dead thread stored (its blocks from its own, now destroyed, thread cache)
     * reads back byte for byte. */
    int lost = verify_kept(c, total, 0);
    CHECK(lost == 0);
    if (lost) fprintf(stderr, "  %d of %d kept values wrong or missing\n", lost, total * 2);
    s = checked_stats(c);
    CHECK(s.evictions == 0);
    s = checked_stats(e);
    CHECK(s.evictions > 0 && s.size <= 32);
    sz_cache_close(e);
    sz_cache_close(c);
}

/* (b) Pins taken on a thread that then exits, outliving overwrite / delete / eviction / churn,
 * released by other threads, half of them after the cache is closed. */
#define NPIN 256
static sz_cache *pin_cache;
static sz_value *pins[NPIN];
static size_t pin_len[NPIN];

static void *pin_taker(void *arg) {
    (void)arg;
    uint8_t *buf = malloc(MAXV);
    uint32_t s = 12345;
    for (int i = 0; i < NPIN; i++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "p-%d", i);
        pin_len[i] = i % 4 == 0 ? 0 : 1 + rnd(&s) % MAXV; /* empty values too */
        fill(buf, 5000 + (uint32_t)i, pin_len[i]);
        int rc = sz_cache_set(pin_cache, key, (size_t)kl, buf, pin_len[i], 0);
        if (rc != SZ_OK) worker_fail("pin set", 5000 + (uint32_t)i, pin_len[i], rc);
        rc = sz_cache_get(pin_cache, key, (size_t)kl, &pins[i]);
        if (rc != SZ_OK) {
            worker_fail("pin get", 5000 + (uint32_t)i, pin_len[i], rc);
            pins[i] = NULL;
        }
    }
    free(buf);
    return NULL;
}

struct release_job {
    int from, to;
    int bad;
};
static void *pin_releaser(void *arg) {
    struct release_job *j = arg;
    for (int i = j->from; i < j->to; i++) {
        if (pins[i] && !matches(sz_value_data(pins[i]), sz_value_len(pins[i]), 5000 + (uint32_t)i,
                                pin_len[i]))
            j->bad++;
        sz_value_release(pins[i]);
        pins[i] = NULL;
    }
    return NULL;
}

static void test_pins_outlive_their_thread(void) {
    printf("-- memory: pins from a thread that exited\n");
    pin_cache = open_with((const char *const[]){"memory_capacity", "64", "compression_enabled",
                                                "false", NULL});
    sz_cache *e = open_with((const char *const[]){"memory_capacity", "32", NULL});
    int f0 = atomic_load(&worker_failures);
    pthread_t t;
    pthread_create(&t, NULL, pin_taker, NULL);
    pthread_join(t, NULL); /* the thread, and its thread cache, are gone */
    CHECK(atomic_load(&worker_failures) == f0);

    /* Overwrite some, delete some, clear, and push lots of new entries through (evicting). */
    uint8_t *buf = malloc(MAXV);
    for (int i = 0; i < NPIN; i++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "p-%d", i);
        if (i % 3 == 0) {
            fill(buf, 7000 + (uint32_t)i, 1 + (size_t)i * 13 % MAXV);
            sz_cache_set(pin_cache, key, (size_t)kl, buf, 1 + (size_t)i * 13 % MAXV, 0);
        } else if (i % 3 == 1) {
            sz_cache_delete(pin_cache, key, (size_t)kl);
        }
    }
    for (uint32_t i = 0; i < 2000; i++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "q-%u", i);
        size_t len = 1 + (i * 37) % MAXV;
        fill(buf, 20000 + i, len);
        sz_cache_set(pin_cache, key, (size_t)kl, buf, len, 0);
    }
    free(buf);
    sz_stats s = checked_stats(pin_cache);
    CHECK(s.evictions > 0);
    run_churn(pin_cache, e, check_quick() ? 40 : 400, 4, 50000); /* reuse freed blocks */
    CHECK_RC(sz_cache_clear(pin_cache), SZ_OK);
    run_churn(pin_cache, e, check_quick() ? 20 : 200, 4, 60000);
    CHECK(atomic_load(&worker_failures) == f0);

    /* First half released by another thread while the cache is open... */
    struct release_job j1 = {0, NPIN / 2, 0}, j2 = {NPIN / 2, NPIN, 0};
    pthread_create(&t, NULL, pin_releaser, &j1);
    pthread_join(t, NULL);
    CHECK(j1.bad == 0);
    /* ...the rest by yet another thread after close. */
    sz_cache_close(pin_cache);
    sz_cache_close(e);
    pthread_create(&t, NULL, pin_releaser, &j2);
    pthread_join(t, NULL);
    CHECK(j2.bad == 0);
    if (j1.bad || j2.bad) fprintf(stderr, "  pins changed: %d + %d of %d\n", j1.bad, j2.bad, NPIN);
}

/* (b) The same while the pins are handed, as they are taken, to a long-lived thread that checks
 * and releases them concurrently with their takers' exits. */
struct handed {
    sz_value *v;
    uint32_t id;
    size_t len;
};
#define QCAP 4096
static struct handed queue[QCAP];
static int q_head, q_tail, q_done;
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static sz_cache *hand_cache;
static atomic_int handed_bad, handed_count;

static void hand_over(struct handed h) {
    pthread_mutex_lock(&q_mu);
    while ((q_tail + 1) % QCAP == q_head) {
        pthread_mutex_unlock(&q_mu);
        sleep_ms(1);
        pthread_mutex_lock(&q_mu);
    }
    queue[q_tail] = h;
    q_tail = (q_tail + 1) % QCAP;
    pthread_cond_signal(&q_cv);
    pthread_mutex_unlock(&q_mu);
}

static void *hand_consumer(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&q_mu);
        while (q_head == q_tail && !q_done) pthread_cond_wait(&q_cv, &q_mu);
        if (q_head == q_tail && q_done) {
            pthread_mutex_unlock(&q_mu);
            return NULL;
        }
        struct handed h = queue[q_head];
        q_head = (q_head + 1) % QCAP;
        pthread_mutex_unlock(&q_mu);
        if (!matches(sz_value_data(h.v), sz_value_len(h.v), h.id, h.len))
            atomic_fetch_add(&handed_bad, 1);
        sz_value_release(h.v);
        atomic_fetch_add(&handed_count, 1);
    }
}

static void *hand_producer(void *arg) {
    uint32_t tid = (uint32_t)(uintptr_t)arg, s = tid * 747796405u + 1;
    uint8_t buf[MAXV];
    for (uint32_t i = 0; i < 4; i++) {
        char key[32];
        int kl = snprintf(key, sizeof key, "h-%u-%u", tid, i);
        uint32_t id = 3000000 + tid * 4 + i;
        size_t len = i < 3 ? 1 + rnd(&s) % 1024 : 1 + rnd(&s) % MAXV;
        fill(buf, id, len);
        sz_cache_set(hand_cache, key, (size_t)kl, buf, len, 0);
        sz_value *v = NULL;
        int rc = sz_cache_get(hand_cache, key, (size_t)kl, &v);
        if (rc != SZ_OK) {
            worker_fail("handoff get", id, len, rc);
            continue;
        }
        hand_over((struct handed){v, id, len});
        /* the entry goes away: only the pin keeps the block */
        if (i % 2) {
            sz_cache_delete(hand_cache, key, (size_t)kl);
        } else {
            fill(buf, id + 1, 7);
            sz_cache_set(hand_cache, key, (size_t)kl, buf, 7, 0);
        }
    }
    return NULL;
}

static void test_pins_handed_to_a_live_thread(void) {
    int total = check_quick() ? 100 : 3000;
    printf("-- memory: pins handed from %d exiting threads to a live one\n", total);
    hand_cache = open_with((const char *const[]){"memory_capacity", "100000",
                                                 "compression_enabled", "false", NULL});
    q_head = q_tail = q_done = 0;
    pthread_t cons[2];
    for (int i = 0; i < 2; i++) pthread_create(&cons[i], NULL, hand_consumer, NULL);
    int f0 = atomic_load(&worker_failures);
    for (int done = 0; done < total; done += 6) {
        pthread_t th[6];
        int n = total - done < 6 ? total - done : 6;
        for (int k = 0; k < n; k++)
            pthread_create(&th[k], NULL, hand_producer, (void *)(uintptr_t)(done + k));
        for (int k = 0; k < n; k++) pthread_join(th[k], NULL);
    }
    pthread_mutex_lock(&q_mu);
    q_done = 1;
    pthread_cond_broadcast(&q_cv);
    pthread_mutex_unlock(&q_mu);
    for (int i = 0; i < 2; i++) pthread_join(cons[i], NULL);
    CHECK(atomic_load(&worker_failures) == f0);
    CHECK(atomic_load(&handed_bad) == 0);
    CHECK(atomic_load(&handed_count) == total * 4);
    if (atomic_load(&handed_bad))
        fprintf(stderr, "  %d of %d handed pins changed\n", atomic_load(&handed_bad),
                atomic_load(&handed_count));
    sz_cache_close(hand_cache);
}

/* (b) Pins taken on a thread that exits, of entries that then expire and are reclaimed by the
 * background pass and by sz_cache_expire_now (other threads than their writer). */
static sz_cache *exp_cache;
static sz_value *exp_pins[64];
static size_t exp_len[64];
/* Entries set (each expires: none is overwritten), and the longest ttl given to one. */
static int exp_sets;
static long exp_max_ttl;
static void *exp_taker(void *arg) {
    (void)arg;
    uint8_t *buf = malloc(MAXV);
    for (uint32_t i = 0; i < 64; i++) {
        exp_len[i] = 1 + (i * 211) % MAXV;
        fill(buf, 600000 + i, exp_len[i]);
        /* 100 ms; if a busy machine (or valgrind) stalls this thread past that between the
         * set and the get, the entry rightly expired first: again under a new key with a
         * longer ttl. A miss within the ttl is a failure. */
        exp_pins[i] = NULL;
        for (long ttl = 100; ttl <= 100L << 12; ttl *= 4) {
            char key[32];
            int kl = snprintf(key, sizeof key, "x-%u-%ld", i, ttl);
            double t0 = now_ms();
            sz_cache_set(exp_cache, key, (size_t)kl, buf, exp_len[i], (uint64_t)ttl);
            exp_sets++;
            if (ttl > exp_max_ttl) exp_max_ttl = ttl;
            if (sz_cache_get(exp_cache, key, (size_t)kl, &exp_pins[i]) == SZ_OK) break;
            exp_pins[i] = NULL;
            if (now_ms() - t0 < (double)ttl - 1) {
                worker_fail("expiring get", 600000 + i, exp_len[i], 0);
                break;
            }
        }
        if (exp_pins[i] == NULL) worker_fail("expiring get never in time", 600000 + i, 0, 0);
    }
    free(buf);
    return NULL;
}
static void *exp_release(void *arg) {
    int *bad = arg;
    for (uint32_t i = 0; i < 64; i++) {
        if (exp_pins[i] &&
            !matches(sz_value_data(exp_pins[i]), sz_value_len(exp_pins[i]), 600000 + i, exp_len[i]))
            (*bad)++;
        sz_value_release(exp_pins[i]);
    }
    return NULL;
}

static void test_pins_outlive_expiry(void) {
    printf("-- memory: pins of expired entries from a thread that exited\n");
    exp_cache = open_with((const char *const[]){"auto_expire_interval", "1", "compression_enabled",
                                                "false", NULL});
    int f0 = atomic_load(&worker_failures);
    pthread_t t;
    pthread_create(&t, NULL, exp_taker, NULL);
    pthread_join(t, NULL);
    sleep_ms(exp_max_ttl + 1200); /* all expired; the background pass runs every second */
    sz_stats s = checked_stats(exp_cache);
    uint64_t bg = s.expirations;
    int n = sz_cache_expire_now(exp_cache);
    s = checked_stats(exp_cache);
    CHECK(n >= 0);
    CHECK(s.expirations == (uint64_t)exp_sets && s.size == 0);
    if (exp_sets != 64) printf("  %d entries set (stalls past the 100 ms ttl)\n", exp_sets);
    printf("  reclaimed: %llu by the background pass, %d by expire_now\n", (unsigned long long)bg,
           n);
    run_churn(exp_cache, exp_cache, check_quick() ? 20 : 200, 4, 90000);
    int bad = 0;
    pthread_create(&t, NULL, exp_release, &bad);
    pthread_join(t, NULL);
    CHECK(bad == 0);
    CHECK(atomic_load(&worker_failures) == f0);
    sz_cache_close(exp_cache);
}

/* (c) Caches opened and closed while threads come and go; the main thread (long-lived) uses
 * each; pins of a closed cache released by a thread born after the close. */
struct cyc {
    sz_cache *c;
    uint32_t base;
    sz_value *pinned[4];
    size_t lens[4];
};
static void *cycle_thread(void *p) {
    struct cyc *a = p;
    uint8_t *buf = malloc(MAXV);
    for (uint32_t i = 0; i < 16; i++) {
        char key[24];
        int kl = snprintf(key, sizeof key, "cy-%u", a->base + i);
        size_t len = 1 + (a->base * 7 + i * 131) % MAXV;
        fill(buf, a->base + i, len);
        int rc = sz_cache_set(a->c, key, (size_t)kl, buf, len, 0);
        if (rc != SZ_OK) worker_fail("cycle set", a->base + i, len, rc);
        if (i < 4) {
            a->lens[i] = len;
            if (sz_cache_get(a->c, key, (size_t)kl, &a->pinned[i]) != SZ_OK) {
                worker_fail("cycle get", a->base + i, len, 0);
                a->pinned[i] = NULL;
            }
        }
    }
    free(buf);
    return NULL;
}
static void *cycle_release(void *p) {
    struct cyc *a = p;
    for (int t = 0; t < 4; t++)
        for (uint32_t i = 0; i < 4; i++) {
            sz_value *v = a[t].pinned[i];
            if (v && !matches(sz_value_data(v), sz_value_len(v), a[t].base + i, a[t].lens[i]))
                worker_fail("pin of a closed cache changed", a[t].base + i, a[t].lens[i], 0);
            sz_value_release(v);
            a[t].pinned[i] = NULL;
        }
    return NULL;
}

static void test_cache_cycles(void) {
    int cycles = check_quick() ? 5 : 30;
    printf("-- memory: %d open/close cycles with thread churn\n", cycles);
    int f0 = atomic_load(&worker_failures);
    uint8_t *buf = malloc(MAXV);
    for (int cy = 0; cy < cycles; cy++) {
        sz_cache *c = open_with((const char *const[]){"memory_capacity", "100", NULL});
        struct cyc a[4];
        pthread_t th[4];
        for (int t = 0; t < 4; t++) {
            a[t] = (struct cyc){.c = c, .base = (uint32_t)(cy * 1000 + t * 100)};
            pthread_create(&th[t], NULL, cycle_thread, &a[t]);
        }
        /* the long-lived main thread uses this cache meanwhile */
        for (uint32_t i = 0; i < 32; i++) {
            char key[24];
            int kl = snprintf(key, sizeof key, "main-%u", i);
            size_t len = 1 + (i * 977 + (uint32_t)cy) % MAXV;
            fill(buf, 900000 + i, len);
            CHECK_RC(sz_cache_set(c, key, (size_t)kl, buf, len, 0), SZ_OK);
            size_t n = 0;
            uint8_t out[MAXV];
            int rc = sz_cache_get_copy(c, key, (size_t)kl, out, sizeof out, &n);
            CHECK(rc == SZ_OK && matches(out, n, 900000 + i, len));
        }
        for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
        sz_cache_close(c);
        pthread_t r;
        pthread_create(&r, NULL, cycle_release, a);
        pthread_join(r, NULL);
    }
    free(buf);
    CHECK(atomic_load(&worker_failures) == f0);
}

/* jemalloc_enabled=false: stats say so, and the same churn is just as correct. */
static void test_system_allocator(void) {
    printf("-- memory: jemalloc_enabled=false\n");
    sz_cache *c = open_with((const char *const[]){"jemalloc_enabled", "false", "compression_enabled",
                                                  "false", "memory_capacity", "20000", NULL});
    sz_cache *e = open_with((const char *const[]){"jemalloc_enabled", "false", "memory_capacity",
                                                  "32", NULL});
    sz_stats s = checked_stats(c);
    CHECK(s.jemalloc == 0);
    int f0 = atomic_load(&worker_failures);
    run_churn(c, e, check_quick() ? 40 : 400, 4, 70000);
    CHECK(atomic_load(&worker_failures) == f0);
    sz_cache_close(e);
    sz_cache_close(c);
}

/* ---------------------------------------------------------------------------------------------
 * Child scenarios: the library used while a thread is exiting. */

static sz_cache *child_cache;
static pthread_key_t dtor_key;
static atomic_int child_bad, child_ok;

/* At thread exit (pthread TSD destructor, which glibc runs after C++/Rust thread_local
 * destructors): verify and release a pin taken while the thread lived, then store and read a
 * value. */
struct dtor_state {
    uint32_t id;
    size_t len;
    sz_value *pin;
};
static void exit_dtor(void *p) {
    struct dtor_state *st = p;
    if (st->pin) {
        if (!matches(sz_value_data(st->pin), sz_value_len(st->pin), st->id, st->len))
            atomic_fetch_add(&child_bad, 1);
        sz_value_release(st->pin);
    }
    char key[24];
    int kl = snprintf(key, sizeof key, "dtor-%u", st->id);
    uint8_t buf[600];
    size_t len = 1 + st->id % sizeof buf;
    fill(buf, st->id + 1, len);
    if (sz_cache_set(child_cache, key, (size_t)kl, buf, len, 0) != SZ_OK)
        atomic_fetch_add(&child_bad, 1);
    sz_value *v = NULL;
    if (sz_cache_get(child_cache, key, (size_t)kl, &v) != SZ_OK ||
        !matches(sz_value_data(v), sz_value_len(v), st->id + 1, len))
        atomic_fetch_add(&child_bad, 1);
    else
        atomic_fetch_add(&child_ok, 1);
    sz_value_release(v);
    free(st);
}

static void *dtor_thread(void *arg) {
    uint32_t id = (uint32_t)(uintptr_t)arg;
    struct dtor_state *st = calloc(1, sizeof *st);
    st->id = id;
    if (id % 2 == 0) { /* even: use the cache while alive too; odd: first use is at exit */
        char key[24];
        int kl = snprintf(key, sizeof key, "live-%u", id);
        uint8_t buf[900];
        st->len = 1 + id % sizeof buf;
        fill(buf, id, st->len);
        sz_cache_set(child_cache, key, (size_t)kl, buf, st->len, 0);
        if (sz_cache_get(child_cache, key, (size_t)kl, &st->pin) != SZ_OK) st->pin = NULL;
    }
    pthread_setspecific(dtor_key, st);
    return NULL;
}

static int child_thread_exit_destructors(void) {
    child_cache = open_with((const char *const[]){"memory_capacity", "100000", NULL});
    pthread_key_create(&dtor_key, exit_dtor);
    /* More threads than jemalloc has explicit thread caches (4096), in case thread caches
     * first created during thread exit are never destroyed. */
    int total = 4400;
    for (int i = 0; i < total; i += 4) {
        pthread_t th[4];
        for (int k = 0; k < 4; k++)
            pthread_create(&th[k], NULL, dtor_thread, (void *)(uintptr_t)(i + k));
        for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
    }
    /* All of it readable from here. */
    int bad_after = 0;
    for (uint32_t id = 0; id < (uint32_t)total; id++) {
        char key[24];
        int kl = snprintf(key, sizeof key, "dtor-%u", id);
        uint8_t out[600];
        size_t n = 0;
        if (sz_cache_get_copy(child_cache, key, (size_t)kl, out, sizeof out, &n) != SZ_OK ||
            !matches(out, n, id + 1, 1 + id % sizeof out))
            bad_after++;
    }
    sz_cache_close(child_cache);
    printf("child thread-exit: %d ok, %d bad at exit, %d bad after\n", atomic_load(&child_ok),
           atomic_load(&child_bad), bad_after);
    return (atomic_load(&child_bad) == 0 && bad_after == 0 && atomic_load(&child_ok) == total) ? 0
                                                                                              : 1;
}

static sz_value *atexit_pin;
static void atexit_handler(void) {
    /* glibc has run the main thread's thread_local destructors by now */
    int bad = 0;
    if (!matches(sz_value_data(atexit_pin), sz_value_len(atexit_pin), 31, 700)) bad++;
    sz_value_release(atexit_pin);
    uint8_t buf[800];
    fill(buf, 32, sizeof buf);
    if (sz_cache_set(child_cache, "late", 4, buf, sizeof buf, 0) != SZ_OK) bad++;
    sz_value *v = NULL;
    if (sz_cache_get(child_cache, "late", 4, &v) != SZ_OK ||
        !matches(sz_value_data(v), sz_value_len(v), 32, sizeof buf))
        bad++;
    sz_value_release(v);
    if (sz_cache_delete(child_cache, "early", 5) != SZ_OK) bad++;
    sz_cache_close(child_cache);
    printf("child atexit: %d bad\n", bad);
    fflush(stdout);
    if (bad) _exit(7);
}

static int child_atexit(void) {
    child_cache = open_with((const char *const[]){"compression_enabled", "false", NULL});
    uint8_t buf[700];
    fill(buf, 31, sizeof buf);
    sz_cache_set(child_cache, "early", 5, buf, sizeof buf, 0);
    if (sz_cache_get(child_cache, "early", 5, &atexit_pin) != SZ_OK) return 1;
    atexit(atexit_handler);
    return 0; /* exit() runs TLS destructors, then the handler */
}

/* Runs this program as a child with "--child name"; returns its wait status. */
static int run_child(const char *name) {
    char *argv[] = {(char *)self_path, (char *)"--child", (char *)name, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, self_path, NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "posix_spawn %s: %s\n", self_path, strerror(rc));
        return -1;
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return st;
}

static void report_child(const char *name, int st) {
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return;
    if (WIFSIGNALED(st))
        fprintf(stderr, "  child %s killed by signal %d\n", name, WTERMSIG(st));
    else
        fprintf(stderr, "  child %s exited with %d\n", name, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static void test_children(void) {
    printf("-- memory: library used from thread-exit destructors (child process)\n");
    int st = run_child("thread-exit");
    report_child("thread-exit", st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("-- memory: library used from an atexit handler (child process)\n");
    st = run_child("atexit");
    report_child("atexit", st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv) {
    self_path = argv[0];
    if (argc == 3 && strcmp(argv[1], "--child") == 0) {
        if (strcmp(argv[2], "thread-exit") == 0) return child_thread_exit_destructors();
        if (strcmp(argv[2], "atexit") == 0) return child_atexit();
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* 2. memory tier */
    test_thread_churn();
    test_pins_outlive_their_thread();
    test_pins_handed_to_a_live_thread();
    test_pins_outlive_expiry();
    test_cache_cycles();
    test_system_allocator();
    test_children();
    CHECK_SUMMARY();
}
