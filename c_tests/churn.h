/* Values a reader can verify whoever wrote them, and short-lived threads that set, read,
 * overwrite, pin and delete them ("churn"): shared by the thread-cache tests and the
 * open-after-fork test of the Redis host-name tests. Include after check.h. */
#ifndef SMARTCACHE_CHURN_H
#define SMARTCACHE_CHURN_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* The content of a value is a function of (key id, length), so a reader can verify any value it
 * finds under a key, whoever wrote it. */
static inline void fill(uint8_t *v, uint32_t id, size_t len) {
    uint32_t s = id * 2654435761u ^ (uint32_t)len * 40503u ^ 0x9e3779b9u;
    for (size_t i = 0; i < len; i++) {
        s = s * 1103515245u + 12345u;
        v[i] = (uint8_t)(s >> 23);
    }
}

static inline int matches(const uint8_t *d, size_t len, uint32_t id, size_t want_len) {
    if (len != want_len || (len > 0 && d == NULL)) return 0;
    uint32_t s = id * 2654435761u ^ (uint32_t)len * 40503u ^ 0x9e3779b9u;
    for (size_t i = 0; i < len; i++) {
        s = s * 1103515245u + 12345u;
        if (d[i] != (uint8_t)(s >> 23)) return 0;
    }
    return 1;
}

static inline int matches_any_len(const uint8_t *d, size_t len, uint32_t id) {
    return matches(d, len, id, len);
}

/* Failures found on worker threads: counted, and the first few described. */
static atomic_int worker_failures;
static inline void worker_fail(const char *what, uint32_t id, size_t len, int rc) {
    if (atomic_fetch_add(&worker_failures, 1) < 10)
        fprintf(stderr, "  worker failure: %s (key id %u, len %zu, rc %d, last error: %s)\n", what,
                id, len, rc, sz_last_error());
}


#define NSHARED 64
#define MAXV 4096

struct churn {
    sz_cache *c;       /* the verifying cache: compression off, room for everything */
    sz_cache *evict;   /* a small cache that evicts all the time */
    uint32_t tid;
    int strict;        /* c never evicts: every value just stored must be found */
};

static inline uint32_t rnd(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

struct gc_arg {
    uint32_t id;
    size_t len;
};
static inline int gc_compute(void *ud, const void *key, size_t key_len, sz_sink *sink) {
    (void)key;
    (void)key_len;
    struct gc_arg *g = ud;
    uint8_t *b = malloc(g->len ? g->len : 1);
    fill(b, g->id, g->len);
    size_t half = g->len / 2; /* in two pieces */
    int rc = sz_sink_write(sink, b, half);
    if (rc == SZ_OK) rc = sz_sink_write(sink, b + half, g->len - half);
    free(b);
    return rc;
}

static inline void *churn_thread(void *p) {
    struct churn *a = p;
    uint32_t s = a->tid * 2654435761u + 1;
    uint8_t *buf = malloc(MAXV), *out = malloc(MAXV);
    char key[32];
    uint32_t own = 100000 + a->tid;
    int kl = snprintf(key, sizeof key, "own-%u", a->tid);
    for (int round = 0; round < 3; round++) {
        size_t la = 1 + rnd(&s) % MAXV, lb = 1 + rnd(&s) % MAXV;
        int rc;
        fill(buf, own, la);
        if ((rc = sz_cache_set(a->c, key, (size_t)kl, buf, la, 0)) != SZ_OK)
            worker_fail("set", own, la, rc);
        sz_value *pa = NULL, *pb = NULL;
        /* In a cache that may evict (a->strict == 0) a miss is allowed; a wrong value never. */
        const int miss_ok = a->strict ? SZ_OK : SZ_NOT_FOUND;
        if ((rc = sz_cache_get(a->c, key, (size_t)kl, &pa)) != SZ_OK) {
            if (rc != miss_ok) worker_fail("get after set", own, la, rc);
            pa = NULL;
        } else if (!matches(sz_value_data(pa), sz_value_len(pa), own, la))
            worker_fail("value read back differs", own, la, 0);
        fill(buf, own, lb); /* overwrite */
        if ((rc = sz_cache_set(a->c, key, (size_t)kl, buf, lb, 0)) != SZ_OK)
            worker_fail("overwrite", own, lb, rc);
        if ((rc = sz_cache_get(a->c, key, (size_t)kl, &pb)) != SZ_OK) {
            if (rc != miss_ok) worker_fail("get after overwrite", own, lb, rc);
            pb = NULL;
        } else if (!matches(sz_value_data(pb), sz_value_len(pb), own, lb))
            worker_fail("overwritten value differs", own, lb, 0);
        if (pa && !matches(sz_value_data(pa), sz_value_len(pa), own, la))
            worker_fail("pin changed by overwrite", own, la, 0);
        size_t n = 0;
        rc = sz_cache_get_copy(a->c, key, (size_t)kl, out, MAXV, &n);
        if (rc == SZ_OK ? !matches(out, n, own, lb) : rc != miss_ok)
            worker_fail("get_copy", own, lb, rc);
        if ((rc = sz_cache_delete(a->c, key, (size_t)kl)) != SZ_OK && rc != miss_ok)
            worker_fail("delete", own, lb, rc);
        sz_value *gone = NULL;
        if ((rc = sz_cache_get(a->c, key, (size_t)kl, &gone)) != SZ_NOT_FOUND) {
            worker_fail("get after delete", own, lb, rc);
            if (rc == SZ_OK) sz_value_release(gone);
        }
        if (pa && !matches(sz_value_data(pa), sz_value_len(pa), own, la))
            worker_fail("pin changed by delete", own, la, 0);
        if (pb && !matches(sz_value_data(pb), sz_value_len(pb), own, lb))
            worker_fail("pin changed by delete", own, lb, 0);
        sz_value_release(pa);

        /* Shared keys: anyone's value must verify. */
        uint32_t k1 = rnd(&s) % NSHARED, k2 = rnd(&s) % NSHARED;
        char sk[16];
        size_t ls = 1 + rnd(&s) % MAXV;
        fill(buf, k1, ls);
        int skl = snprintf(sk, sizeof sk, "sh-%u", k1);
        if ((rc = sz_cache_set(a->c, sk, (size_t)skl, buf, ls, 0)) != SZ_OK)
            worker_fail("shared set", k1, ls, rc);
        skl = snprintf(sk, sizeof sk, "sh-%u", k2);
        sz_value *ps = NULL;
        rc = sz_cache_get(a->c, sk, (size_t)skl, &ps);
        if (rc == SZ_OK) {
            if (!matches_any_len(sz_value_data(ps), sz_value_len(ps), k2))
                worker_fail("shared value differs", k2, sz_value_len(ps), 0);
        } else if (rc != SZ_NOT_FOUND)
            worker_fail("shared get", k2, 0, rc);

        /* The evicting cache: values may be gone, never wrong; pins survive eviction. */
        sz_value *pe = NULL;
        uint32_t ke = 1000 + rnd(&s) % 512;
        size_t le = 1 + rnd(&s) % MAXV;
        fill(buf, ke, le);
        skl = snprintf(sk, sizeof sk, "e-%u", ke);
        sz_cache_set(a->evict, sk, (size_t)skl, buf, le, 0);
        if (sz_cache_get(a->evict, sk, (size_t)skl, &pe) != SZ_OK) pe = NULL;
        for (int j = 0; j < 6; j++) {
            uint32_t kx = 1000 + rnd(&s) % 512;
            size_t lx = 1 + rnd(&s) % MAXV;
            fill(buf, kx, lx);
            skl = snprintf(sk, sizeof sk, "e-%u", kx);
            sz_cache_set(a->evict, sk, (size_t)skl, buf, lx, 0);
            sz_value *px = NULL;
            if (sz_cache_get(a->evict, sk, (size_t)skl, &px) == SZ_OK) {
                if (!matches_any_len(sz_value_data(px), sz_value_len(px), kx))
                    worker_fail("evicting cache value differs", kx, sz_value_len(px), 0);
                sz_value_release(px);
            }
        }
        if (pe && !matches_any_len(sz_value_data(pe), sz_value_len(pe), ke))
            worker_fail("pin changed by eviction", ke, sz_value_len(pe), 0);
        sz_value_release(pe);
        /* get_or_compute stores what the callback produced; set_many / get_many in one call */
        {
            char gk[32];
            int gkl = snprintf(gk, sizeof gk, "gc-%u-%d", a->tid, round);
            struct gc_arg g = {400000 + a->tid * 4 + (uint32_t)round, 1 + rnd(&s) % MAXV};
            sz_value *pg = NULL;
            rc = sz_cache_get_or_compute(a->c, gk, (size_t)gkl, 0, gc_compute, &g, &pg);
            if (rc != SZ_OK || !matches(sz_value_data(pg), sz_value_len(pg), g.id, g.len))
                worker_fail("get_or_compute", g.id, g.len, rc);
            sz_value *pg2 = NULL;
            rc = sz_cache_get(a->c, gk, (size_t)gkl, &pg2);
            if (rc == SZ_OK ? !matches(sz_value_data(pg2), sz_value_len(pg2), g.id, g.len)
                            : rc != miss_ok)
                worker_fail("get after get_or_compute", g.id, g.len, rc);
            sz_value_release(pg2);
            sz_cache_delete(a->c, gk, (size_t)gkl);
            if (pg && !matches(sz_value_data(pg), sz_value_len(pg), g.id, g.len))
                worker_fail("computed pin changed by delete", g.id, g.len, 0);
            sz_value_release(pg);

            char mk[4][32];
            const void *keys[4], *vals[4];
            size_t klens[4], vlens[4];
            uint8_t *mv[4];
            for (int m = 0; m < 4; m++) {
                klens[m] = (size_t)snprintf(mk[m], sizeof mk[m], "mm-%u-%d-%d", a->tid, round, m);
                keys[m] = mk[m];
                vlens[m] = 1 + rnd(&s) % 1024;
                mv[m] = malloc(vlens[m]);
                fill(mv[m], 500000 + a->tid * 16 + (uint32_t)(round * 4 + m), vlens[m]);
                vals[m] = mv[m];
            }
            if ((rc = sz_cache_set_many(a->c, keys, klens, vals, vlens, 4, 0)) != SZ_OK)
                worker_fail("set_many", a->tid, 4, rc);
            sz_value *outs[4] = {NULL, NULL, NULL, NULL};
            if ((rc = sz_cache_get_many(a->c, keys, klens, 4, outs)) != SZ_OK)
                worker_fail("get_many", a->tid, 4, rc);
            for (int m = 0; m < 4; m++) {
                uint32_t mid = 500000 + a->tid * 16 + (uint32_t)(round * 4 + m);
                /* a value may be evicted already in a small cache (a->strict == 0), never wrong */
                if (rc == SZ_OK && (outs[m] ? !matches(sz_value_data(outs[m]),
                                                       sz_value_len(outs[m]), mid, vlens[m])
                                            : a->strict))
                    worker_fail("get_many value", mid, vlens[m], 0);
                sz_cache_delete(a->c, mk[m], klens[m]);
                sz_value_release(outs[m]);
                free(mv[m]);
            }
        }
        /* pb and ps are left to outlive this iteration a bit: released last */
        if (pb && !matches(sz_value_data(pb), sz_value_len(pb), own, lb))
            worker_fail("pin changed", own, lb, 0);
        sz_value_release(pb);
        sz_value_release(ps);
    }
    /* Two values that stay after the thread is gone (mostly thread-cache sized). */
    for (uint32_t r = 0; r < 2; r++) {
        char kk[32];
        int kkl = snprintf(kk, sizeof kk, "keep-%u-%u", a->tid, r);
        size_t lk = r == 0 ? 1 + (a->tid * 7u) % 1024 : 1 + (a->tid * 13u) % MAXV;
        fill(buf, 2000000 + a->tid * 2 + r, lk);
        int rc = sz_cache_set(a->c, kk, (size_t)kkl, buf, lk, 0);
        if (rc != SZ_OK) worker_fail("keep set", a->tid, lk, rc);
    }
    free(buf);
    free(out);
    return NULL;
}

/* Verifies the "keep-" values of churn threads tid0 .. tid0+total-1 from this thread. */
static inline int verify_kept(sz_cache *c, int total, uint32_t tid0) {
    int bad = 0;
    uint8_t *out = malloc(MAXV);
    for (uint32_t t = tid0; t < tid0 + (uint32_t)total; t++)
        for (uint32_t r = 0; r < 2; r++) {
            char kk[32];
            int kkl = snprintf(kk, sizeof kk, "keep-%u-%u", t, r);
            size_t lk = r == 0 ? 1 + (t * 7u) % 1024 : 1 + (t * 13u) % MAXV, n = 0;
            int rc = sz_cache_get_copy(c, kk, (size_t)kkl, out, MAXV, &n);
            if (rc != SZ_OK || !matches(out, n, 2000000 + t * 2 + r, lk)) {
                if (bad < 5)
                    fprintf(stderr, "  kept value %s: rc %d len %zu (want %zu)\n", kk, rc, n, lk);
                bad++;
            }
        }
    free(out);
    return bad;
}

/* Runs `total` short-lived churn threads, `width` at a time. */
static inline void run_churn(sz_cache *c, sz_cache *evict, int total, int width, uint32_t tid0) {
    struct churn args[8];
    pthread_t th[8];
    sz_stats st = checked_stats(c);
    int strict = st.capacity >= 20000; /* the churn caches sized never to evict */
    for (int done = 0; done < total; done += width) {
        int n = total - done < width ? total - done : width;
        for (int i = 0; i < n; i++) {
            args[i] = (struct churn){c, evict, tid0 + (uint32_t)(done + i), strict};
            if (pthread_create(&th[i], NULL, churn_thread, &args[i]) != 0) {
                worker_fail("pthread_create", 0, 0, errno);
                n = i;
                break;
            }
        }
        for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    }
}


#endif
