/* A cache opened before fork() and used in the children as it is, never reopened (a pre-fork
 * server that builds its cache at import time). The parent fills the cache (so its memory
 * tier, inherited by every child, holds the old values), keeps a thread writing other keys
 * while it forks (so its locks are likely held at the instant of each fork) and forks 4
 * workers. Each worker deletes and rewrites its share of the keys, reading each back at once;
 * then, once all have finished, every worker and the parent read every key: each process must
 * see the current value or the delete, never the value its inherited memory held. With Redis
 * (scripts/with-redis.sh) the children use sockets of their own while the parent's thread uses
 * its own at the same time: a child on the parent's socket would read the parent's replies. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 4

static char dir[] = "/tmp/smartcache-c-fork-XXXXXX";
static int keys;
static atomic_int stop_churn;

static void key_of(int i, char *k, size_t n) { snprintf(k, n, "k%d", i); }

/* Final state after the workers: every other key of a worker's share rewritten, the rest
 * deleted. */
static int kept(int i) { return (i / WORKERS) % 2 == 0; }

static void final_value(int i, char *v, size_t n) { snprintf(v, n, "new%d-by-%d", i, i % WORKERS); }

/* get_copy of `key` is `want` (NULL: a miss). */
static int reads(sz_cache *c, const char *key, const char *want) {
    char buf[64];
    size_t n = 0;
    int rc = sz_cache_get_copy(c, key, strlen(key), buf, sizeof buf, &n);
    if (want == NULL) return rc == SZ_NOT_FOUND;
    return rc == SZ_OK && n == strlen(want) && memcmp(buf, want, n) == 0;
}

/* Every key holds its final state, as this process reads it. */
static void check_all_current(sz_cache *c, const char *who) {
    int wrong = 0;
    for (int i = 0; i < keys; i++) {
        char k[32], v[64];
        key_of(i, k, sizeof k);
        final_value(i, v, sizeof v);
        if (!reads(c, k, kept(i) ? v : NULL)) {
            if (wrong++ < 5) fprintf(stderr, "  %s: %s is not %s\n", who, k, kept(i) ? v : "gone");
        }
    }
    CHECK(wrong == 0);
}

static void *churn(void *arg) {
    sz_cache *c = arg;
    char k[32], v[32];
    for (unsigned n = 0; !atomic_load(&stop_churn); n++) {
        snprintf(k, sizeof k, "churn%u", n % 64);
        snprintf(v, sizeof v, "c%u", n);
        sz_cache_set(c, k, strlen(k), v, strlen(v), 0);
        reads(c, k, v);
        if (n % 3 == 0) sz_cache_delete(c, k, strlen(k));
    }
    return NULL;
}

static void worker(sz_cache *c, int w, int ready, int go) {
    int rounds = check_quick() ? 3 : 10;
    for (int i = w; i < keys; i += WORKERS) {
        char k[32], v[64];
        key_of(i, k, sizeof k);
        CHECK_RC(sz_cache_delete(c, k, strlen(k)), SZ_OK);
        CHECK(reads(c, k, NULL));
        for (int r = 0; r < rounds; r++) {
            snprintf(v, sizeof v, "w%d-r%d-%d", w, r, i);
            CHECK_RC(sz_cache_set(c, k, strlen(k), v, strlen(v), 0), SZ_OK);
            CHECK(reads(c, k, v));
        }
        if (kept(i)) {
            final_value(i, v, sizeof v);
            CHECK_RC(sz_cache_set(c, k, strlen(k), v, strlen(v), 0), SZ_OK);
        } else {
            CHECK_RC(sz_cache_delete(c, k, strlen(k)), SZ_OK);
        }
    }
    char byte = 'r';
    CHECK(write(ready, &byte, 1) == 1);
    CHECK(read(go, &byte, 1) == 1);
    char who[32];
    snprintf(who, sizeof who, "worker %d", w);
    check_all_current(c, who);
    sz_stats s;
    s.struct_size = sizeof s;
    CHECK_RC(sz_cache_stats(c, &s), SZ_OK);
    /* Its memory tier was used: a rewritten key read back is a memory hit. */
    CHECK(s.memory_hits > 0);
    sz_cache_close(c);
    /* The status by exec rather than exit: what the parent's other threads owned at the fork
     * (their stacks are gone here) cannot be freed by the child, and valgrind's leak check,
     * which runs at exit, would count it against the library. */
    execl(check_failed ? "/bin/false" : "/bin/true", "worker-status", (char *)NULL);
    _exit(2);
}

int main(void) {
    if (mkdtemp(dir) == NULL) return 2;
    keys = check_quick() ? 64 : 400;
    const char *url = getenv("SMARTCACHE_TEST_REDIS_URL");
    char prefix[64];
    snprintf(prefix, sizeof prefix, "fork-test-%d:", (int)getpid());
    const char *opts[] = {"disk_enabled", "true", "disk_path", dir, "disk_max_size", "8M",
                          "auto_expire_interval", "1", "redis_enabled", url ? "true" : "false",
                          "redis_url", url ? url : "redis://127.0.0.1:1/0", "redis_key_prefix",
                          prefix, NULL};
    sz_cache *c = open_with(opts);
    printf("-- fork: %d keys, %d workers, redis %s\n", keys, WORKERS, url ? "on" : "off");
    for (int i = 0; i < keys; i++) {
        char k[32], v[32];
        key_of(i, k, sizeof k);
        snprintf(v, sizeof v, "old%d", i);
        CHECK_RC(sz_cache_set(c, k, strlen(k), v, strlen(v), 0), SZ_OK);
        CHECK(reads(c, k, v));
    }

    pthread_t churner;
    CHECK(pthread_create(&churner, NULL, churn, c) == 0);
    int ready[2], go[2];
    if (pipe(ready) != 0 || pipe(go) != 0) return 2;
    pid_t pids[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        /* the churn thread is mid-call at each fork */
        nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);
        pids[w] = fork();
        if (pids[w] < 0) return 2;
        if (pids[w] == 0) worker(c, w, ready[1], go[0]);
    }
    /* The parent's memory still holds old values; it must not serve them. */
    for (int w = 0; w < WORKERS; w++) {
        char byte;
        if (read(ready[0], &byte, 1) != 1) {
            fprintf(stderr, "a worker died before it was done\n");
            break;
        }
    }
    check_all_current(c, "parent");
    for (int w = 0; w < WORKERS; w++) CHECK(write(go[1], "g", 1) == 1);
    for (int w = 0; w < WORKERS; w++) {
        int status = 0;
        CHECK(waitpid(pids[w], &status, 0) == pids[w]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fprintf(stderr, "  worker %d: status %#x\n", w, status);
    }
    atomic_store(&stop_churn, 1);
    CHECK(pthread_join(churner, NULL) == 0);
    check_all_current(c, "parent, after the workers");
    sz_cache_close(c);

    /* A fresh process on the same disk_path agrees. */
    sz_cache *fresh = open_with(opts);
    check_all_current(fresh, "a new cache");
    sz_cache_clear(fresh);
    sz_cache_close(fresh);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    CHECK_SUMMARY();
}
