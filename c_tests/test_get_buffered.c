/* sz_cache_get_buffered with a reusable sz_get_buffer, written from include/smartcache.h and
 * docs/guide.md only: the same results as sz_cache_get_copy, the zeroed tail, the
 * release/reacquire hooks (memory, disk and Redis tiers), many threads each with its own buffer.
 * Each test quotes the promise it checks. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>
#include "check.h"

#define PAT 0xA5 /* a byte the library never writes on its own */

/* ---------------------------------------------------------------------------------------------
 * Helpers */

static char disk_dir[64];

/* A fresh unique directory under /tmp for a disk tier. */
static const char *new_disk_dir(void) {
    snprintf(disk_dir, sizeof disk_dir, "/tmp/sc-get-buffered-%ld-XXXXXX", (long)getpid());
    if (mkdtemp(disk_dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    return disk_dir;
}

static sz_cache *open_disk(const char *dir, const char *memory_max_bytes) {
    const char *opts[] = {"disk_enabled",  "true", "disk_path",        dir,
                          "disk_max_size", "8M",   "memory_max_bytes", memory_max_bytes,
                          NULL};
    return open_with(opts);
}

static int all_bytes(const uint8_t *p, size_t n, uint8_t b) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != b) return 0;
    return 1;
}

static void fill_value(uint8_t *v, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) v[i] = (uint8_t)(1 + (seed * 31u + i * 7u) % 250u); /* != 0 */
}

/* Hook bookkeeping (per thread, so the threaded test can use it too). */
static _Thread_local int hook_releases, hook_reacquires, hook_unpaired, hook_bad_token;
static _Thread_local int hook_depth;
static _Thread_local char hook_token_cell;

static void *test_release(void) {
    hook_releases++;
    if (hook_depth != 0) hook_unpaired++;
    hook_depth = 1;
    return &hook_token_cell;
}

static void test_reacquire(void *token) {
    hook_reacquires++;
    if (hook_depth != 1) hook_unpaired++;
    if (token != &hook_token_cell) hook_bad_token++;
    hook_depth = 0;
}

static void hooks_reset(void) {
    hook_releases = hook_reacquires = hook_unpaired = hook_bad_token = hook_depth = 0;
}

/* ---------------------------------------------------------------------------------------------
 * 1. Same results as sz_cache_get_copy.
 * Header: "sz_cache_get_copy with the cache, buffer and length out-parameter gathered in `b`: the
 * same lookup, copy and results". */

/* Runs both gets for one key and buffer size and checks the status, length and bytes agree. */
static void compare_with_get_copy(sz_cache *c, const char *key, size_t cap) {
    uint8_t *a = malloc(cap + 1), *b = malloc(cap + 1);
    memset(a, PAT, cap + 1);
    memset(b, PAT, cap + 1);
    size_t la = 777;
    int ra = sz_cache_get_copy(c, key, strlen(key), cap ? a : NULL, cap, &la);
    sz_get_buffer gb = {.cache = c, .data = cap ? b : NULL, .cap = cap, .len = 777};
    int rb = sz_cache_get_buffered(&gb, key, strlen(key));
    CHECK(ra == rb);
    CHECK(la == gb.len);
    if (ra == SZ_OK) CHECK(memcmp(a, b, la) == 0);
    if (ra != SZ_OK) CHECK(all_bytes(b, cap + 1, PAT)); /* untouched on a miss / too small */
    if (ra != rb || la != gb.len)
        fprintf(stderr, "key %s cap %zu: get_copy %d len %zu, get_buffered %d len %zu\n", key,
                cap, ra, la, rb, gb.len);
    free(a);
    free(b);
}

static void test_same_results_as_get_copy(void) {
    sz_cache *c = open_with(NULL);
    uint8_t big[5000];
    fill_value(big, sizeof big, 3);
    CHECK_RC(sz_cache_set(c, "empty", 5, NULL, 0, 0), SZ_OK);
    CHECK_RC(sz_cache_set(c, "one", 3, "x", 1, 0), SZ_OK);
    CHECK_RC(sz_cache_set(c, "big", 3, big, sizeof big, 0), SZ_OK);
    const char *keys[] = {"empty", "one", "big", "absent"};
    const size_t caps[] = {0, 1, 2, 4999, 5000, 5001, 8192};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
            compare_with_get_copy(c, keys[k], caps[i]);

    /* Hit: value in data, length in len. */
    uint8_t buf[8192];
    memset(buf, 0, sizeof buf);
    sz_get_buffer gb = {.cache = c, .data = buf, .cap = sizeof buf};
    CHECK_RC(sz_cache_get_buffered(&gb, "big", 3), SZ_OK);
    CHECK(gb.len == sizeof big && memcmp(buf, big, sizeof big) == 0);

    /* Empty value: SZ_OK, len 0, also with no buffer at all (data NULL, cap 0). */
    sz_get_buffer nobuf = {.cache = c, .data = NULL, .cap = 0, .len = 99};
    CHECK_RC(sz_cache_get_buffered(&nobuf, "empty", 5), SZ_OK);
    CHECK(nobuf.len == 0);

    /* "SZ_ERR_BUFFER_TOO_SMALL, with b->len set to the length needed and b->data untouched". */
    uint8_t small[100];
    memset(small, PAT, sizeof small);
    sz_get_buffer sb = {.cache = c, .data = small, .cap = sizeof small, .len = 3};
    CHECK_RC(sz_cache_get_buffered(&sb, "big", 3), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(sb.len == sizeof big);
    CHECK(all_bytes(small, sizeof small, PAT));
    sz_get_buffer sb0 = {.cache = c, .data = NULL, .cap = 0};
    CHECK_RC(sz_cache_get_buffered(&sb0, "one", 3), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(sb0.len == 1);

    /* Miss: SZ_NOT_FOUND; "Outputs are written only on success": len and data untouched. */
    memset(small, PAT, sizeof small);
    sz_get_buffer mb = {.cache = c, .data = small, .cap = sizeof small, .len = 42};
    CHECK_RC(sz_cache_get_buffered(&mb, "absent", 6), SZ_NOT_FOUND);
    CHECK(mb.len == 42);
    CHECK(all_bytes(small, sizeof small, PAT));

    /* After a delete, a miss again. */
    CHECK_RC(sz_cache_delete(c, "one", 3), SZ_OK);
    CHECK_RC(sz_cache_get_buffered(&mb, "one", 3), SZ_NOT_FOUND);
    sz_cache_close(c);
}

/* "SZ_ERR_INVALID (NULL `b`, b->cache or key, or only one of release / reacquire);
 * SZ_ERR_TOO_LARGE (key)". And the conventions: "Any pointer argument may be NULL: the call
 * returns SZ_ERR_INVALID, it never crashes", "Outputs are written only on success". */
static void test_invalid_arguments(void) {
    sz_cache *c = open_with(NULL);
    CHECK_RC(sz_cache_set(c, "k", 1, "value", 5, 0), SZ_OK);
    uint8_t buf[16];
    memset(buf, PAT, sizeof buf);

    CHECK_RC(sz_cache_get_buffered(NULL, "k", 1), SZ_ERR_INVALID);
    CHECK(strlen(sz_last_error()) > 0);

    sz_get_buffer nocache = {.cache = NULL, .data = buf, .cap = sizeof buf, .len = 5};
    CHECK_RC(sz_cache_get_buffered(&nocache, "k", 1), SZ_ERR_INVALID);
    CHECK(nocache.len == 5 && all_bytes(buf, sizeof buf, PAT));

    sz_get_buffer gb = {.cache = c, .data = buf, .cap = sizeof buf, .len = 5};
    CHECK_RC(sz_cache_get_buffered(&gb, NULL, 1), SZ_ERR_INVALID);
    CHECK(gb.len == 5 && all_bytes(buf, sizeof buf, PAT));
    CHECK_RC(sz_cache_get_buffered(&gb, NULL, 0), SZ_ERR_INVALID);
    /* Empty key: as sz_cache_get_copy. */
    size_t l = 5;
    CHECK_RC(sz_cache_get_copy(c, "k", 0, buf, sizeof buf, &l), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_buffered(&gb, "k", 0), SZ_ERR_INVALID);
    CHECK(gb.len == 5 && all_bytes(buf, sizeof buf, PAT));

    /* Key over 65535 bytes. */
    size_t klen = 65536;
    char *longkey = malloc(klen);
    memset(longkey, 'k', klen);
    CHECK_RC(sz_cache_get_copy(c, longkey, klen, buf, sizeof buf, &l), SZ_ERR_TOO_LARGE);
    CHECK_RC(sz_cache_get_buffered(&gb, longkey, klen), SZ_ERR_TOO_LARGE);
    CHECK(gb.len == 5 && all_bytes(buf, sizeof buf, PAT));
    /* 65535 bytes is a valid key (absent). */
    CHECK_RC(sz_cache_get_buffered(&gb, longkey, 65535), SZ_NOT_FOUND);
    free(longkey);

    /* Only one hook set: SZ_ERR_INVALID, and the hook that is set is not called. Checked on a
     * memory hit, a miss, and with a disk tier where a miss would call the hooks. */
    const char *dir = new_disk_dir();
    sz_cache *d = open_disk(dir, "0");
    CHECK_RC(sz_cache_set(d, "k", 1, "value", 5, 0), SZ_OK);
    sz_cache *caches[] = {c, d};
    for (int i = 0; i < 2; i++) {
        hooks_reset();
        sz_get_buffer onlyrel = {
            .cache = caches[i], .data = buf, .cap = sizeof buf, .len = 5, .release = test_release};
        CHECK_RC(sz_cache_get_buffered(&onlyrel, "k", 1), SZ_ERR_INVALID);
        CHECK_RC(sz_cache_get_buffered(&onlyrel, "absent", 6), SZ_ERR_INVALID);
        sz_get_buffer onlyreacq = {.cache = caches[i],
                                   .data = buf,
                                   .cap = sizeof buf,
                                   .len = 5,
                                   .reacquire = test_reacquire};
        CHECK_RC(sz_cache_get_buffered(&onlyreacq, "k", 1), SZ_ERR_INVALID);
        CHECK_RC(sz_cache_get_buffered(&onlyreacq, "absent", 6), SZ_ERR_INVALID);
        CHECK(hook_releases == 0 && hook_reacquires == 0);
        CHECK(onlyrel.len == 5 && onlyreacq.len == 5);
        CHECK(all_bytes(buf, sizeof buf, PAT));
    }
    sz_cache_close(d);
    remove_disk_dir(dir);

    /* data NULL with cap > 0 is a NULL pointer argument too: never a crash. */
    sz_get_buffer nodata = {.cache = c, .data = NULL, .cap = 16};
    int rc = sz_cache_get_buffered(&nodata, "k", 1);
    CHECK(rc == SZ_ERR_INVALID || rc == SZ_ERR_BUFFER_TOO_SMALL);
    sz_cache_close(c);
}

/* ---------------------------------------------------------------------------------------------
 * 2. The zeroed tail.
 * Header: "After SZ_OK the bytes from the value's end up to the previous value's end (`len` on
 * entry, at most `cap`) are zeroed. So a buffer that starts zeroed holds zeros after its value,
 * always: a value shorter than `cap` is NUL-terminated, and a decoder that reads past a value's
 * end finds zeros, never the bytes of an earlier value." */

static void set_sized(sz_cache *c, const char *key, size_t n, unsigned seed) {
    uint8_t *v = malloc(n ? n : 1);
    fill_value(v, n, seed);
    CHECK_RC(sz_cache_set(c, key, strlen(key), v, n, 0), SZ_OK);
    free(v);
}

static int holds_value(const uint8_t *p, size_t n, unsigned seed) {
    uint8_t *v = malloc(n ? n : 1);
    fill_value(v, n, seed);
    int ok = memcmp(p, v, n) == 0;
    free(v);
    return ok;
}

static void test_zeroed_tail_exact_range(void) {
    sz_cache *c = open_with(NULL);
    set_sized(c, "s0", 0, 1);
    set_sized(c, "s10", 10, 2);
    set_sized(c, "s100", 100, 3);
    set_sized(c, "s300", 300, 4);
    set_sized(c, "s2000", 2000, 5);

    enum { CAP = 1024 };
    uint8_t buf[CAP + 64]; /* 64 guard bytes beyond cap */

    /* A shorter value: [0,10) value, [10,100) zero, [100,cap) and the guard untouched. */
    memset(buf, PAT, sizeof buf);
    sz_get_buffer gb = {.cache = c, .data = buf, .cap = CAP, .len = 100};
    CHECK_RC(sz_cache_get_buffered(&gb, "s10", 3), SZ_OK);
    CHECK(gb.len == 10 && holds_value(buf, 10, 2));
    CHECK(all_bytes(buf + 10, 90, 0));
    CHECK(all_bytes(buf + 100, sizeof buf - 100, PAT));

    /* A longer value than the previous one: nothing after it touched. */
    memset(buf, PAT, sizeof buf);
    gb.len = 10;
    CHECK_RC(sz_cache_get_buffered(&gb, "s300", 4), SZ_OK);
    CHECK(gb.len == 300 && holds_value(buf, 300, 4));
    CHECK(all_bytes(buf + 300, sizeof buf - 300, PAT));

    /* Same length: nothing after it touched. */
    memset(buf, PAT, sizeof buf);
    gb.len = 100;
    CHECK_RC(sz_cache_get_buffered(&gb, "s100", 4), SZ_OK);
    CHECK(gb.len == 100 && holds_value(buf, 100, 3));
    CHECK(all_bytes(buf + 100, sizeof buf - 100, PAT));

    /* An empty value after a 300-byte one: [0,300) zeroed, nothing beyond. */
    memset(buf, PAT, sizeof buf);
    gb.len = 300;
    CHECK_RC(sz_cache_get_buffered(&gb, "s0", 2), SZ_OK);
    CHECK(gb.len == 0);
    CHECK(all_bytes(buf, 300, 0));
    CHECK(all_bytes(buf + 300, sizeof buf - 300, PAT));

    /* `len` on entry above cap (e.g. left by SZ_ERR_BUFFER_TOO_SMALL): zeroed up to cap only,
     * the guard bytes beyond cap untouched. */
    memset(buf, PAT, sizeof buf);
    gb.len = 0;
    CHECK_RC(sz_cache_get_buffered(&gb, "s2000", 5), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(gb.len == 2000);
    CHECK(all_bytes(buf, sizeof buf, PAT));
    CHECK_RC(sz_cache_get_buffered(&gb, "s10", 3), SZ_OK);
    CHECK(gb.len == 10 && holds_value(buf, 10, 2));
    CHECK(all_bytes(buf + 10, CAP - 10, 0));
    CHECK(all_bytes(buf + CAP, 64, PAT));

    /* A miss in between leaves the buffer and len alone, so the next hit still zeroes up to the
     * end of the value before the miss. */
    memset(buf, PAT, sizeof buf);
    gb.len = 0;
    CHECK_RC(sz_cache_get_buffered(&gb, "s300", 4), SZ_OK);
    CHECK_RC(sz_cache_get_buffered(&gb, "absent", 6), SZ_NOT_FOUND);
    CHECK(gb.len == 300);
    CHECK_RC(sz_cache_get_buffered(&gb, "s10", 3), SZ_OK);
    CHECK(holds_value(buf, 10, 2) && all_bytes(buf + 10, 290, 0));
    CHECK(all_bytes(buf + 300, sizeof buf - 300, PAT));
    sz_cache_close(c);
}

/* A zero-started buffer reused for a long random sequence of values: after every SZ_OK, every
 * byte after the value up to cap is zero; a value shorter than cap is NUL-terminated. */
static void test_zeroed_tail_invariant_sequence(void) {
    sz_cache *c = open_with(NULL);
    enum { NVAL = 12, CAP = 4096 };
    static const size_t sizes[NVAL] = {0, 1, 2, 7, 100, 1023, 1024, 1025, 2048, 4095, 4096, 5000};
    for (int i = 0; i < NVAL; i++) {
        char key[8];
        snprintf(key, sizeof key, "v%d", i);
        set_sized(c, key, sizes[i], (unsigned)i + 10);
    }
    uint8_t *buf = calloc(CAP + 32, 1);
    memset(buf + CAP, PAT, 32);
    sz_get_buffer gb = {.cache = c, .data = buf, .cap = CAP};
    unsigned x = 12345;
    int n = check_quick() ? 300 : 3000;
    int bad = 0;
    for (int it = 0; it < n; it++) {
        x = x * 1103515245u + 12345u;
        int i = (int)((x >> 16) % NVAL);
        char key[8];
        snprintf(key, sizeof key, "v%d", i);
        int rc = sz_cache_get_buffered(&gb, key, strlen(key));
        if (sizes[i] > CAP) {
            if (rc != SZ_ERR_BUFFER_TOO_SMALL || gb.len != sizes[i]) bad++;
        } else {
            if (rc != SZ_OK || gb.len != sizes[i] || !holds_value(buf, sizes[i], (unsigned)i + 10))
                bad++;
            if (!all_bytes(buf + sizes[i], CAP - sizes[i], 0)) bad++;
            if (sizes[i] < CAP && buf[sizes[i]] != 0) bad++;
        }
        if (!all_bytes(buf + CAP, 32, PAT)) bad++;
        if (bad) {
            fprintf(stderr, "tail sequence: iteration %d key %s rc %d len %zu\n", it, key, rc,
                    gb.len);
            break;
        }
    }
    CHECK(bad == 0);
    free(buf);
    sz_cache_close(c);
}

/* The tail is zeroed on a hit answered by the disk tier as well (the same get, another tier). */
static void test_zeroed_tail_on_disk_hit(void) {
    const char *dir = new_disk_dir();
    sz_cache *c = open_disk(dir, "0");
    set_sized(c, "long", 900, 7);
    set_sized(c, "short", 20, 8);
    sz_cache_close(c);
    c = open_disk(dir, "0"); /* memory empty: both answered by disk */
    uint8_t buf[1024];
    memset(buf, 0, sizeof buf);
    sz_get_buffer gb = {.cache = c, .data = buf, .cap = sizeof buf};
    CHECK_RC(sz_cache_get_buffered(&gb, "long", 4), SZ_OK);
    CHECK(gb.len == 900 && holds_value(buf, 900, 7));
    CHECK_RC(sz_cache_get_buffered(&gb, "short", 5), SZ_OK);
    CHECK(gb.len == 20 && holds_value(buf, 20, 8));
    CHECK(all_bytes(buf + 20, sizeof buf - 20, 0));
    sz_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    CHECK_RC(sz_cache_stats(c, &s), SZ_OK);
    CHECK(s.disk_hits == 2);
    sz_cache_close(c);
    remove_disk_dir(dir);
}

/* ---------------------------------------------------------------------------------------------
 * 3. The release / reacquire hooks.
 * Header: "when set, the get calls `release` once before it does anything that may block (a
 * memory-tier miss asking Redis or the disk tier), and `reacquire` with its token before it
 * returns; a memory hit calls neither." */

static void test_hooks_memory_only_never_called(void) {
    sz_cache *c = open_with(NULL);
    CHECK_RC(sz_cache_set(c, "k", 1, "value", 5, 0), SZ_OK);
    CHECK_RC(sz_cache_set(c, "e", 1, NULL, 0, 0), SZ_OK);
    uint8_t buf[8];
    hooks_reset();
    sz_get_buffer gb = {.cache = c,
                        .data = buf,
                        .cap = sizeof buf,
                        .release = test_release,
                        .reacquire = test_reacquire};
    for (int i = 0; i < 100; i++) {
        CHECK_RC(sz_cache_get_buffered(&gb, "k", 1), SZ_OK);         /* hit */
        CHECK_RC(sz_cache_get_buffered(&gb, "e", 1), SZ_OK);         /* hit, empty */
        CHECK_RC(sz_cache_get_buffered(&gb, "absent", 6), SZ_NOT_FOUND); /* nothing below */
    }
    CHECK_RC(sz_cache_set(c, "big", 3, "0123456789", 10, 0), SZ_OK);
    CHECK_RC(sz_cache_get_buffered(&gb, "big", 3), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(gb.len == 10);
    if (hook_releases || hook_reacquires)
        fprintf(stderr, "memory-only cache: release called %d times, reacquire %d\n",
                hook_releases, hook_reacquires);
    CHECK(hook_releases == 0 && hook_reacquires == 0);
    sz_cache_close(c);
}

static void test_hooks_with_disk_tier(void) {
    const char *dir = new_disk_dir();
    sz_cache *c = open_disk(dir, "0");
    CHECK_RC(sz_cache_set(c, "k", 1, "from-disk", 9, 0), SZ_OK);
    CHECK_RC(sz_cache_set(c, "e", 1, NULL, 0, 0), SZ_OK);
    uint8_t buf[64];
    memset(buf, 0, sizeof buf);

    /* Memory hits (the value was just written to memory too): no hook. */
    hooks_reset();
    sz_get_buffer gb = {.cache = c,
                        .data = buf,
                        .cap = sizeof buf,
                        .release = test_release,
                        .reacquire = test_reacquire};
    for (int i = 0; i < 50; i++) CHECK_RC(sz_cache_get_buffered(&gb, "k", 1), SZ_OK);
    CHECK(gb.len == 9 && memcmp(buf, "from-disk", 9) == 0);
    CHECK(hook_releases == 0 && hook_reacquires == 0);

    /* A key in no tier: memory misses and asks the disk: one release, one reacquire. */
    hooks_reset();
    CHECK_RC(sz_cache_get_buffered(&gb, "absent", 6), SZ_NOT_FOUND);
    CHECK(hook_releases == 1 && hook_reacquires == 1);
    CHECK(hook_unpaired == 0 && hook_bad_token == 0 && hook_depth == 0);
    sz_cache_close(c);

    /* A new cache on the same file: memory is empty, the disk answers. */
    c = open_disk(dir, "0");
    gb.cache = c;
    hooks_reset();
    gb.len = 0;
    CHECK_RC(sz_cache_get_buffered(&gb, "k", 1), SZ_OK);
    CHECK(gb.len == 9 && memcmp(buf, "from-disk", 9) == 0);
    if (hook_releases != 1 || hook_reacquires != 1)
        fprintf(stderr, "disk hit: release called %d times, reacquire %d (want 1, 1)\n",
                hook_releases, hook_reacquires);
    CHECK(hook_releases == 1 && hook_reacquires == 1);
    CHECK(hook_unpaired == 0 && hook_bad_token == 0 && hook_depth == 0);

    /* Promoted into memory by that get: the next gets are memory hits, no hook. */
    hooks_reset();
    for (int i = 0; i < 20; i++) CHECK_RC(sz_cache_get_buffered(&gb, "k", 1), SZ_OK);
    CHECK(hook_releases == 0 && hook_reacquires == 0);

    /* An empty value found on disk: hooks paired, SZ_OK, len 0. */
    hooks_reset();
    CHECK_RC(sz_cache_get_buffered(&gb, "e", 1), SZ_OK);
    CHECK(gb.len == 0);
    CHECK(hook_releases == 1 && hook_reacquires == 1 && hook_unpaired == 0);
    sz_cache_close(c);

    /* Too small a buffer for a value on disk: the status as documented, hooks still paired. */
    c = open_disk(dir, "0");
    gb.cache = c;
    sz_get_buffer tiny = {.cache = c,
                          .data = buf,
                          .cap = 4,
                          .release = test_release,
                          .reacquire = test_reacquire};
    memset(buf, PAT, sizeof buf);
    hooks_reset();
    CHECK_RC(sz_cache_get_buffered(&tiny, "k", 1), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(tiny.len == 9 && all_bytes(buf, sizeof buf, PAT));
    CHECK(hook_releases == 1 && hook_reacquires == 1);
    CHECK(hook_unpaired == 0 && hook_bad_token == 0 && hook_depth == 0);
    sz_cache_close(c);
    remove_disk_dir(dir);
}

/* A value too large for memory's per-shard budget "is kept by the lower tiers and served from
 * there" (guide): every get of it leaves memory, so every one calls the hooks, paired. A
 * small value next to it stays a memory hit. */
static void test_hooks_value_served_by_disk_every_time(void) {
    const char *dir = new_disk_dir();
    /* Compression off, so the 64 KiB value cannot shrink into memory's 4 KiB budget. */
    const char *opts[] = {"disk_enabled",        "true",  "disk_path",        dir,
                          "disk_max_size",       "8M",    "memory_max_bytes", "4096",
                          "compression_enabled", "false", NULL};
    sz_cache *c = open_with(opts);
    enum { N = 64 * 1024 };
    set_sized(c, "huge", N, 9);
    CHECK_RC(sz_cache_set(c, "small", 5, "tiny", 4, 0), SZ_OK);
    uint8_t *buf = calloc(N + 16, 1);
    sz_get_buffer gb = {
        .cache = c, .data = buf, .cap = N + 16, .release = test_release, .reacquire = test_reacquire};
    hooks_reset();
    for (int i = 0; i < 10; i++) {
        CHECK_RC(sz_cache_get_buffered(&gb, "huge", 4), SZ_OK);
        CHECK(gb.len == N && holds_value(buf, N, 9));
    }
    if (hook_releases != 10 || hook_reacquires != 10)
        fprintf(stderr, "10 disk-served gets: release called %d times, reacquire %d\n",
                hook_releases, hook_reacquires);
    CHECK(hook_releases == 10 && hook_reacquires == 10);
    sz_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_RC(sz_cache_stats(c, &st), SZ_OK);
    CHECK(st.disk_hits == 10 && st.memory_hits == 0); /* the premise: served by disk */
    CHECK(hook_unpaired == 0 && hook_bad_token == 0 && hook_depth == 0);
    hooks_reset();
    CHECK_RC(sz_cache_get_buffered(&gb, "small", 5), SZ_OK);
    CHECK(gb.len == 4 && memcmp(buf, "tiny", 4) == 0);
    CHECK(all_bytes(buf + 4, N + 16 - 4, 0)); /* zeroed tail after the 64 KiB value */
    CHECK(hook_releases == 0 && hook_reacquires == 0);
    free(buf);
    sz_cache_close(c);
    remove_disk_dir(dir);
}

/* With a Redis tier (the private server of scripts/with-redis.sh, when there is one). */
static void test_hooks_with_redis_tier(void) {
    const char *url = getenv("SMARTCACHE_TEST_REDIS_URL");
    if (url == NULL) {
        fprintf(stderr, "SMARTCACHE_TEST_REDIS_URL not set: Redis hook test not run\n");
        return;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "c-get-buffered-%ld:", (long)getpid());
    const char *opts[] = {"redis_enabled",    "true", "redis_url",        url,
                          "redis_key_prefix", prefix, "redis_timeout_ms", "5000",
                          NULL};
    sz_cache *a = open_with(opts);
    CHECK_RC(sz_cache_set(a, "rk", 2, "via-redis", 9, 0), SZ_OK);
    sz_cache *b = open_with(opts); /* another worker: empty memory */
    uint8_t buf[32];
    memset(buf, 0, sizeof buf);
    sz_get_buffer gb = {.cache = b,
                        .data = buf,
                        .cap = sizeof buf,
                        .release = test_release,
                        .reacquire = test_reacquire};
    hooks_reset();
    CHECK_RC(sz_cache_get_buffered(&gb, "rk", 2), SZ_OK);
    CHECK(gb.len == 9 && memcmp(buf, "via-redis", 9) == 0);
    CHECK(hook_releases == 1 && hook_reacquires == 1 && hook_unpaired == 0 && hook_bad_token == 0);
    hooks_reset();
    CHECK_RC(sz_cache_get_buffered(&gb, "rk", 2), SZ_OK); /* promoted: memory hit */
    CHECK(hook_releases == 0 && hook_reacquires == 0);
    hooks_reset();
    CHECK_RC(sz_cache_get_buffered(&gb, "nope", 4), SZ_NOT_FOUND);
    CHECK(hook_releases == 1 && hook_reacquires == 1 && hook_unpaired == 0);
    sz_cache_clear(a);
    sz_cache_close(b);
    sz_cache_close(a);
}

/* ---------------------------------------------------------------------------------------------
 * 4. Many threads, each with its own sz_get_buffer, on one cache (memory + disk, values moving
 * in and out of memory); a writer rewrites the keys with values of other sizes meanwhile.
 * Header: "A cache handle may be used from many threads at once"; sz_get_buffer: "reuses it
 * for many gets (one thread at a time)". Every value read must be one that was written for
 * that key, whole, with zeros after it. */

enum { TKEYS = 64, TCAP = 3000, TREADERS = 8 };

static sz_cache *tcache;
static volatile int tstop;

/* Value of key k version ver (0..63): empty when ver % 7 == 0, else 8..2607 bytes starting
 * with ver and k, the rest a function of (k, ver). */
static size_t tvalue(unsigned k, unsigned ver, uint8_t *out) {
    if (ver % 7 == 0) return 0;
    size_t n = 8 + (size_t)((k * 131u + ver * 977u) % 2600u);
    out[0] = (uint8_t)ver;
    out[1] = (uint8_t)k;
    for (size_t i = 2; i < n; i++) out[i] = (uint8_t)(1 + (k * 17u + ver * 29u + i) % 251u);
    return n;
}

static int tvalid(unsigned k, const uint8_t *p, size_t n) {
    if (n == 0) return 1; /* an empty version */
    if (p[0] >= 64 || p[1] != (uint8_t)k) return 0;
    uint8_t tmp[TCAP];
    size_t m = tvalue(k, p[0], tmp);
    return m == n && memcmp(tmp, p, n) == 0;
}

struct treader {
    int id, bad, gets, releases, reacquires, unpaired;
};

static void *reader_main(void *arg) {
    struct treader *r = arg;
    uint8_t *buf = calloc(TCAP, 1);
    sz_get_buffer gb = {.cache = tcache,
                        .data = buf,
                        .cap = TCAP,
                        .release = (r->id % 2) ? test_release : NULL,
                        .reacquire = (r->id % 2) ? test_reacquire : NULL};
    hooks_reset();
    unsigned x = (unsigned)r->id * 7919u + 1u;
    int n = check_quick() ? 400 : 20000;
    for (int i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        unsigned k = (x >> 16) % TKEYS;
        char key[16];
        int kl = snprintf(key, sizeof key, "t%u", k);
        int rc = sz_cache_get_buffered(&gb, key, (size_t)kl);
        r->gets++;
        if (rc == SZ_OK) {
            if (gb.len > TCAP || !tvalid(k, buf, gb.len) ||
                !all_bytes(buf + gb.len, TCAP - gb.len, 0))
                r->bad++;
        } else if (rc != SZ_NOT_FOUND) {
            r->bad++;
        }
        if (hook_depth != 0) r->unpaired++;
    }
    r->releases = hook_releases;
    r->reacquires = hook_reacquires;
    r->unpaired += hook_unpaired + hook_bad_token;
    free(buf);
    return NULL;
}

static void *writer_main(void *arg) {
    (void)arg;
    uint8_t v[TCAP];
    unsigned ver = 1;
    while (!tstop) {
        for (unsigned k = 0; k < TKEYS && !tstop; k++) {
            char key[16];
            int kl = snprintf(key, sizeof key, "t%u", k);
            size_t n = tvalue(k, ver % 64, v);
            sz_cache_set(tcache, key, (size_t)kl, v, n, 0);
            if ((k + ver) % 11 == 0) sz_cache_delete(tcache, key, (size_t)kl);
        }
        ver++;
    }
    return NULL;
}

static void test_many_threads_own_buffers(void) {
    const char *dir = new_disk_dir();
    /* Small memory (items) so values move between memory and disk. */
    const char *opts[] = {"disk_enabled",    "true", "disk_path", dir, "disk_max_size", "8M",
                          "memory_capacity", "16",   NULL};
    tcache = open_with(opts);
    uint8_t v[TCAP];
    for (unsigned k = 0; k < TKEYS; k++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "t%u", k);
        size_t n = tvalue(k, 0, v);
        CHECK_RC(sz_cache_set(tcache, key, (size_t)kl, v, n, 0), SZ_OK);
    }
    tstop = 0;
    pthread_t w, rt[TREADERS];
    struct treader rs[TREADERS];
    memset(rs, 0, sizeof rs);
    CHECK(pthread_create(&w, NULL, writer_main, NULL) == 0);
    for (int i = 0; i < TREADERS; i++) {
        rs[i].id = i;
        CHECK(pthread_create(&rt[i], NULL, reader_main, &rs[i]) == 0);
    }
    for (int i = 0; i < TREADERS; i++) pthread_join(rt[i], NULL);
    tstop = 1;
    pthread_join(w, NULL);
    int bad = 0, unpaired = 0, hooked = 0;
    for (int i = 0; i < TREADERS; i++) {
        bad += rs[i].bad;
        unpaired += rs[i].unpaired;
        if (rs[i].releases != rs[i].reacquires) unpaired++;
        if (i % 2 == 0 && rs[i].releases != 0) unpaired++; /* no hooks set: none called */
        hooked += rs[i].releases;
    }
    if (bad || unpaired)
        fprintf(stderr, "threads: %d bad values, %d unpaired hook calls\n", bad, unpaired);
    CHECK(bad == 0);
    CHECK(unpaired == 0);
    CHECK(hooked > 0); /* with 16 items in memory for 64 keys, some gets went to disk */
    sz_cache_close(tcache);
    remove_disk_dir(dir);
}

int main(void) {
    test_same_results_as_get_copy();
    test_invalid_arguments();
    test_zeroed_tail_exact_range();
    test_zeroed_tail_invariant_sequence();
    test_zeroed_tail_on_disk_hit();
    test_hooks_memory_only_never_called();
    test_hooks_with_disk_tier();
    test_hooks_value_served_by_disk_every_time();
    test_hooks_with_redis_tier();
    test_many_threads_own_buffers();
    CHECK_SUMMARY();
}
