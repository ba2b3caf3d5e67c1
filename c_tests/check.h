/* A tiny check harness: CHECK prints file:line, the expression and sz_last_error() on failure;
 * a test file ends with CHECK_SUMMARY(), which prints "N passed, N failed" and sets the exit
 * status. */
#ifndef SMARTCACHE_CHECK_H
#define SMARTCACHE_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "smartcache.h"

static int check_passed, check_failed;

#define CHECK(expr)                                                                        \
    do {                                                                                   \
        if (expr) {                                                                        \
            check_passed++;                                                                \
        } else {                                                                           \
            check_failed++;                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, \
                    #expr, sz_last_error());                                               \
        }                                                                                  \
    } while (0)

/* Checks a call's status code and prints both codes when they differ. */
#define CHECK_RC(call, want)                                                               \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_ == (want)) {                                                               \
            check_passed++;                                                                \
        } else {                                                                           \
            check_failed++;                                                                \
            fprintf(stderr, "%s:%d: %s returned %d, want %d (last error: %s)\n", __FILE__,  \
                    __LINE__, #call, rc_, (int)(want), sz_last_error());                   \
        }                                                                                  \
    } while (0)

#define CHECK_SUMMARY()                                                                    \
    do {                                                                                   \
        printf("%d passed, %d failed\n", check_passed, check_failed);                      \
        return check_failed ? 1 : 0;                                                       \
    } while (0)

/* The cache's counters in the current sz_stats layout; a failing call is a failed check. */
static inline sz_stats checked_stats(sz_cache *c) {
    sz_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    CHECK_RC(sz_cache_stats(c, &s), SZ_OK);
    return s;
}

/* Removes a disk_path a test made: the tier's two files, then the directory. */
static inline void remove_disk_dir(const char *dir) {
    char file[4200];
    snprintf(file, sizeof file, "%s/smartcache.l3", dir);
    remove(file);
    snprintf(file, sizeof file, "%s/smartcache.writes", dir);
    remove(file);
    remove(dir);
}

/* A quick run (under valgrind) does less of the long loops. */
static inline int check_quick(void) { return getenv("SMARTCACHE_QUICK") != NULL; }

/* Opens a cache with name/value option pairs (NULL-terminated); a bad option exits. Returns
 * NULL (having printed why, and stored the status in *rc_out when given) if open fails. */
static inline sz_cache *try_open(const char *const *opts, int *rc_out) {
    sz_config *cfg = sz_config_new();
    for (; opts && opts[0]; opts += 2) {
        if (sz_config_set(cfg, opts[0], opts[1]) != SZ_OK) {
            fprintf(stderr, "config %s=%s: %s\n", opts[0], opts[1], sz_last_error());
            exit(2);
        }
    }
    sz_cache *c = NULL;
    int rc = sz_cache_open(cfg, &c);
    if (rc != SZ_OK) fprintf(stderr, "open: %d %s\n", rc, sz_last_error());
    sz_config_free(cfg);
    if (rc_out) *rc_out = rc;
    return rc == SZ_OK ? c : NULL;
}

/* try_open for tests that cannot go on without the cache. */
static inline sz_cache *open_with(const char *const *opts) {
    sz_cache *c = try_open(opts, NULL);
    if (c == NULL) exit(2);
    return c;
}

/* The cache's health; a failed read prints why (and leaves the fields zero). */
static inline sz_health health_of(sz_cache *c) {
    sz_health h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    if (sz_cache_health(c, &h) != SZ_OK) fprintf(stderr, "health: %s\n", sz_last_error());
    return h;
}

#endif
