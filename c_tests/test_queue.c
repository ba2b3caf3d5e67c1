/* Completion queues (sz_queue_*): calls run on the library's worker threads and are collected
 * from a descriptor an event loop watches. Covers every op and its status, a burst of gets
 * (one get_many in the library) including a bad key that fails alone, bad arguments, closing
 * the cache and the queue with calls in flight (under valgrind: no invalid access, no leak),
 * and fork(): a child cannot use its parent's queue but opens and uses its own. Runs with the
 * disk tier, and Redis too when scripts/with-redis.sh gives one. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 200

static char dir[] = "/tmp/smartcache-c-queue-XXXXXX";

/* One drained completion, copied (data and error are only valid until the next drain). */
typedef struct {
    int seen;
    int status;
    char value[64];
    size_t len;
    int has_error;
} result;

/* Waits (poll on the descriptor, 10 s at most each time) until `want` completions have come,
 * recording each by token into results[token]. Returns how many came. */
static int collect(sz_queue *q, int want, result *results, int max_token) {
    sz_completion out[16];
    int got = 0;
    while (got < want) {
        struct pollfd p = {.fd = sz_queue_fd(q), .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0) break; /* a hang would be a bug: give up, checks fail */
        int n = sz_queue_drain(q, out, 16);
        CHECK(n >= 0);
        for (int i = 0; i < n; i++) {
            uint64_t t = out[i].token;
            CHECK(t < (uint64_t)max_token);
            if (t >= (uint64_t)max_token) continue;
            result *r = &results[t];
            CHECK(!r->seen);
            r->seen = 1;
            r->status = out[i].status;
            r->has_error = out[i].error != NULL && out[i].error[0] != '\0';
            r->len = out[i].len;
            if (out[i].data && out[i].len < sizeof r->value) memcpy(r->value, out[i].data, out[i].len);
            CHECK((out[i].status < 0) == r->has_error);
        }
        got += n;
    }
    return got;
}

static sz_cache *open_cache(void) {
    const char *url = getenv("SMARTCACHE_TEST_REDIS_URL");
    char prefix[64];
    snprintf(prefix, sizeof prefix, "c-queue-%d:", (int)getpid());
    const char *with_redis[] = {"disk_enabled", "true", "disk_path", dir, "redis_enabled", "true",
                                "redis_url", url, "redis_key_prefix", prefix, NULL};
    const char *disk_only[] = {"disk_enabled", "true", "disk_path", dir, NULL};
    return open_with(url ? with_redis : disk_only);
}

static void test_descriptor_is_readable_only_while_completions_wait(sz_queue *q, sz_cache *c) {
    struct pollfd p = {.fd = sz_queue_fd(q), .events = POLLIN};
    CHECK(p.fd >= 0);
    CHECK(poll(&p, 1, 0) == 0);
    sz_completion out[1];
    CHECK(sz_queue_drain(q, out, 1) == 0);
    CHECK_RC(sz_queue_submit(q, c, SZ_OP_EXISTS, "nothing", 7, NULL, 0, 0, 7), SZ_OK);
    CHECK(poll(&p, 1, 10000) == 1);
    CHECK(sz_queue_drain(q, out, 1) == 1);
    CHECK(out[0].token == 7 && out[0].status == SZ_NOT_FOUND && out[0].data == NULL);
    CHECK(poll(&p, 1, 0) == 0);
}

static void test_every_op_answers_as_the_sync_call(sz_queue *q, sz_cache *c) {
    static result r[3 * N + 8];
    memset(r, 0, sizeof r);
    char k[32], v[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "q%d", i);
        snprintf(v, sizeof v, "value-%d", i);
        CHECK_RC(sz_queue_submit(q, c, SZ_OP_SET, k, strlen(k), v, strlen(v), 60000, i), SZ_OK);
    }
    CHECK(collect(q, N, r, N) == N);
    for (int i = 0; i < N; i++) CHECK(r[i].seen && r[i].status == SZ_OK);

    /* A burst of gets in one call: N stored keys, one missing, one empty (refused alone). */
    static char keybuf[N + 2][32];
    const void *keys[N + 2];
    size_t lens[N + 2];
    uint64_t tokens[N + 2];
    for (int i = 0; i < N + 2; i++) {
        if (i < N) snprintf(keybuf[i], 32, "q%d", i);
        else snprintf(keybuf[i], 32, "%s", i == N ? "missing" : "");
        keys[i] = keybuf[i];
        lens[i] = strlen(keybuf[i]);
        tokens[i] = N + i;
    }
    memset(r, 0, sizeof r);
    CHECK_RC(sz_queue_submit_many(q, c, SZ_OP_GET, keys, lens, tokens, N + 2), SZ_OK);
    CHECK(collect(q, N + 2, r, 3 * N + 8) == N + 2);
    int right = 0;
    for (int i = 0; i < N; i++) {
        snprintf(v, sizeof v, "value-%d", i);
        result *g = &r[N + i];
        right += g->seen && g->status == SZ_OK && g->len == strlen(v) && memcmp(g->value, v, g->len) == 0;
    }
    CHECK(right == N);
    CHECK(r[2 * N].status == SZ_NOT_FOUND);
    CHECK(r[2 * N + 1].status == SZ_ERR_INVALID && r[2 * N + 1].has_error);

    memset(r, 0, sizeof r);
    CHECK_RC(sz_queue_submit(q, c, SZ_OP_DELETE, "q0", 2, NULL, 0, 0, 1), SZ_OK);
    CHECK(collect(q, 1, r, 8) == 1 && r[1].status == SZ_OK);
    CHECK_RC(sz_queue_submit(q, c, SZ_OP_DELETE, "q0", 2, NULL, 0, 0, 2), SZ_OK);
    CHECK(collect(q, 1, r, 8) == 1 && r[2].status == SZ_NOT_FOUND);
    CHECK_RC(sz_queue_submit(q, c, SZ_OP_EXISTS, "q1", 2, NULL, 0, 0, 3), SZ_OK);
    CHECK(collect(q, 1, r, 8) == 1 && r[3].status == SZ_OK);
    const void *one[] = {"a"};
    size_t one_len[] = {1};
    const void *vals[] = {"1"};
    CHECK_RC(sz_queue_submit_set_many(q, c, one, one_len, vals, one_len, 1, 0, 4), SZ_OK);
    CHECK(collect(q, 1, r, 8) == 1 && r[4].status == SZ_OK);
    CHECK_RC(sz_queue_submit(q, c, SZ_OP_CLEAR, NULL, 0, NULL, 0, 0, 5), SZ_OK);
    CHECK(collect(q, 1, r, 8) == 1 && r[5].status == SZ_OK);
    CHECK_RC(sz_cache_exists(c, "q1", 2), SZ_NOT_FOUND);
}

static void test_bad_arguments_are_refused(sz_queue *q, sz_cache *c) {
    sz_queue *none = NULL;
    CHECK_RC(sz_queue_open(NULL), SZ_ERR_INVALID);
    CHECK_RC(sz_queue_fd(NULL), SZ_ERR_INVALID);
    CHECK_RC(sz_queue_submit(NULL, c, SZ_OP_GET, "k", 1, NULL, 0, 0, 1), SZ_ERR_INVALID);
    CHECK_RC(sz_queue_submit(q, NULL, SZ_OP_GET, "k", 1, NULL, 0, 0, 1), SZ_ERR_INVALID);
    CHECK_RC(sz_queue_submit(q, c, 99, "k", 1, NULL, 0, 0, 1), SZ_ERR_INVALID);
    CHECK(strstr(sz_last_error(), "unknown op") != NULL);
    CHECK_RC(sz_queue_submit(q, c, SZ_OP_GET, NULL, 1, NULL, 0, 0, 1), SZ_ERR_INVALID);
    CHECK_RC(sz_queue_submit(q, c, SZ_OP_SET, "k", 1, NULL, 5, 0, 1), SZ_ERR_INVALID);
    CHECK_RC(sz_queue_submit_many(q, c, SZ_OP_SET, NULL, NULL, NULL, 0), SZ_ERR_INVALID);
    CHECK_RC(sz_queue_submit_many(q, c, SZ_OP_GET, NULL, NULL, NULL, 0), SZ_OK);
    const void *keys[] = {"a"};
    size_t lens[] = {1};
    CHECK_RC(sz_queue_submit_many(q, c, SZ_OP_GET, keys, lens, NULL, 1), SZ_ERR_INVALID);
    CHECK_RC(sz_queue_drain(NULL, NULL, 0), SZ_ERR_INVALID);
    CHECK_RC(sz_queue_drain(q, NULL, 4), SZ_ERR_INVALID);
    sz_queue_close(none); /* a no-op */
    struct pollfd p = {.fd = sz_queue_fd(q), .events = POLLIN};
    CHECK(poll(&p, 1, 0) == 0); /* nothing refused was queued */
}

/* Closing the cache right after submitting: every call still completes (done, or refused as
 * closed), nothing it used is freed under it. */
static void test_cache_closed_with_calls_in_flight(sz_queue *q) {
    sz_cache *c = open_cache();
    char k[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "f%d", i);
        CHECK_RC(sz_queue_submit(q, c, i % 2 ? SZ_OP_GET : SZ_OP_SET, k, strlen(k), "v", 1, 0, i),
                 SZ_OK);
    }
    sz_cache_close(c);
    static result r[N];
    memset(r, 0, sizeof r);
    CHECK(collect(q, N, r, N) == N);
    int sane = 0;
    for (int i = 0; i < N; i++)
        sane += r[i].seen && (r[i].status == SZ_OK || r[i].status == SZ_NOT_FOUND ||
                              r[i].status == SZ_ERR_INVALID);
    CHECK(sane == N);
}

/* Closing the queue with calls in flight: it does not wait, and the calls' completions are
 * dropped when they end (valgrind finds no leak of them at exit). */
static void test_queue_closed_with_calls_in_flight(sz_cache *c) {
    sz_queue *q = NULL;
    CHECK_RC(sz_queue_open(&q), SZ_OK);
    char k[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "g%d", i);
        CHECK_RC(sz_queue_submit(q, c, SZ_OP_SET, k, strlen(k), "v", 1, 0, i), SZ_OK);
    }
    sz_queue_close(q);
    /* The cache still works, and its calls are done or in progress on the workers. */
    CHECK_RC(sz_cache_set(c, "after", 5, "x", 1, 0), SZ_OK);
}

static void test_fork_child_uses_its_own_queue(sz_queue *parent_q, sz_cache *c) {
    CHECK_RC(sz_cache_set(c, "forked", 6, "yes", 3, 0), SZ_OK);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = 0;
        int rc1 = sz_queue_submit(parent_q, c, SZ_OP_GET, "forked", 6, NULL, 0, 0, 1);
        if (rc1 != SZ_ERR_INVALID) { bad |= 1; fprintf(stderr, "child submit on the parent queue: %d\n", rc1); }
        sz_completion out[1];
        if (sz_queue_drain(parent_q, out, 1) != SZ_ERR_INVALID) bad |= 2;
        sz_queue_close(parent_q);
        sz_queue *q = NULL;
        if (sz_queue_open(&q) != SZ_OK) _exit(10);
        result r[2];
        memset(r, 0, sizeof r);
        if (sz_queue_submit(q, c, SZ_OP_GET, "forked", 6, NULL, 0, 0, 1) != SZ_OK) bad |= 4;
        if (collect(q, 1, r, 2) != 1 || r[1].status != SZ_OK || r[1].len != 3 ||
            memcmp(r[1].value, "yes", 3) != 0)
            bad |= 8;
        sz_queue_close(q);
        sz_cache_close(c);
        if (bad) fprintf(stderr, "child: failed checks %d\n", bad);
        /* The status by exec rather than exit: what the parent's other threads owned at the
         * fork cannot be freed here, and valgrind's leak check at exit would count it. */
        execl(bad ? "/bin/false" : "/bin/true", "child-status", (char *)NULL);
        _exit(2);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The parent's queue is unaffected. */
    result r[2];
    memset(r, 0, sizeof r);
    CHECK_RC(sz_queue_submit(parent_q, c, SZ_OP_GET, "forked", 6, NULL, 0, 0, 1), SZ_OK);
    CHECK(collect(parent_q, 1, r, 2) == 1 && r[1].status == SZ_OK);
}

int main(void) {
    if (!mkdtemp(dir)) return 2;
    sz_queue *q = NULL;
    CHECK_RC(sz_queue_open(&q), SZ_OK);
    sz_cache *c = open_cache();
    test_descriptor_is_readable_only_while_completions_wait(q, c);
    test_every_op_answers_as_the_sync_call(q, c);
    test_bad_arguments_are_refused(q, c);
    test_fork_child_uses_its_own_queue(q, c);
    test_queue_closed_with_calls_in_flight(c);
    sz_cache_close(c);
    test_cache_closed_with_calls_in_flight(q);
    sz_queue_close(q);
    remove_disk_dir(dir);
    CHECK_SUMMARY();
}
