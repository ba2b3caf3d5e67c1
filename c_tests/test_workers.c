/* Worker processes of a pre-fork server sharing a disk_path: each opens its own cache after
 * fork() and has its own memory tier, and a set, delete or clear in one is seen by the next get
 * in the others -- never the value it replaced. The parent drives a forked worker over pipes:
 * it writes, then asks the worker what its get returns. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/smartcache-c-workers-XXXXXX";

static sz_cache *open_worker_cache(void) {
    return open_with((const char *const[]){"disk_enabled", "true", "disk_path", dir,
                                           "disk_max_size", "4M", "auto_expire_interval", "0",
                                           NULL});
}

/* A request is a key (NUL-terminated, at most 63 bytes); the answer is the value's length
 * (-1 when missing) and its bytes, then the worker's memory hit count so far. */
struct answer {
    int64_t len;
    char value[64];
    uint64_t memory_hits;
};

static void worker(int in, int out) {
    sz_cache *c = open_worker_cache();
    char key[64];
    while (read(in, key, sizeof key) == (ssize_t)sizeof key) {
        struct answer a = {0};
        size_t n = 0;
        int rc = sz_cache_get_copy(c, key, strlen(key), a.value, sizeof a.value, &n);
        a.len = rc == SZ_OK ? (int64_t)n : -1;
        sz_stats s;
        s.struct_size = sizeof s;
        if (sz_cache_stats(c, &s) == SZ_OK) a.memory_hits = s.memory_hits;
        if (write(out, &a, sizeof a) != (ssize_t)sizeof a) break;
    }
    sz_cache_close(c);
    _exit(0);
}

static int to_worker, from_worker;

static struct answer ask(const char *key) {
    char k[64] = {0};
    strncpy(k, key, sizeof k - 1);
    struct answer a = {.len = -2};
    if (write(to_worker, k, sizeof k) != (ssize_t)sizeof k ||
        read(from_worker, &a, sizeof a) != (ssize_t)sizeof a) {
        fprintf(stderr, "the worker is gone\n");
        exit(2);
    }
    return a;
}

/* The worker's get of `key` returned `want` (NULL: a miss). */
static int worker_sees(const char *key, const char *want) {
    struct answer a = ask(key);
    if (want == NULL) return a.len == -1;
    return a.len == (int64_t)strlen(want) && memcmp(a.value, want, (size_t)a.len) == 0;
}

static void set(sz_cache *c, const char *k, const char *v) {
    CHECK_RC(sz_cache_set(c, k, strlen(k), v, strlen(v), 0), SZ_OK);
}

int main(void) {
    if (mkdtemp(dir) == NULL) return 2;
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0) return 2;
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        worker(down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    to_worker = down[1];
    from_worker = up[0];
    sz_cache *c = open_worker_cache();

    set(c, "user:1", "alice");
    CHECK(worker_sees("user:1", "alice"));
    uint64_t hits = ask("user:1").memory_hits;
    CHECK(worker_sees("user:1", "alice"));
    CHECK(ask("user:1").memory_hits > hits); /* kept in the worker's memory */

    set(c, "user:1", "alicia");
    CHECK(worker_sees("user:1", "alicia"));
    CHECK_RC(sz_cache_delete(c, "user:1", 6), SZ_OK);
    CHECK(worker_sees("user:1", NULL));

    set(c, "a", "1");
    set(c, "b", "2");
    CHECK(worker_sees("a", "1") && worker_sees("b", "2"));
    CHECK_RC(sz_cache_clear(c), SZ_OK);
    CHECK(worker_sees("a", NULL) && worker_sees("b", NULL));

    /* Versions read right after each set returned: never an older one. */
    int rounds = check_quick() ? 20 : 200;
    for (int v = 1; v <= rounds; v++) {
        char value[16];
        snprintf(value, sizeof value, "v%d", v);
        set(c, "counter", value);
        CHECK(worker_sees("counter", value));
    }

    close(to_worker);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    sz_cache_close(c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    CHECK_SUMMARY();
}
