/* Every option, walked with sz_config_option so options added later are covered too, set to
 * extreme values and a cache opened: nothing aborts or hangs. Each value is refused by
 * sz_config_set with SZ_ERR_CONFIG and a message naming the option, or the cache opens and
 * works, or sz_cache_open fails with SZ_ERR_CONFIG or SZ_ERR_NOMEM and a message (SZ_ERR_IO
 * too for a disk_path the filesystem cannot hold). */
#define _GNU_SOURCE
#include "check.h"
#include <stdint.h>
#include <unistd.h>

#define MiB (1024ull * 1024ull)

static const char *const extremes[] = {
    "0", "1", "-1", "4294967295", "4294967296", "18446744073709551615",
    "18446744073709551616", "", "nonsense",
};

static unsigned long long option_value(const sz_config *cfg, const char *name) {
    char *v = NULL;
    CHECK_RC(sz_config_get(cfg, name, &v), SZ_OK);
    unsigned long long n = v ? strtoull(v, NULL, 10) : 0;
    sz_string_free(v);
    return n;
}

static int refused, opened, failed;

static void try_value(const char *dir, const char *name, const char *value, int quick) {
    sz_config *cfg = sz_config_new();
    CHECK(cfg != NULL);
    CHECK_RC(sz_config_set(cfg, "disk_enabled", "true"), SZ_OK);
    CHECK_RC(sz_config_set(cfg, "disk_path", dir), SZ_OK);
    CHECK_RC(sz_config_set(cfg, "disk_max_size", "1M"), SZ_OK);
    CHECK_RC(sz_config_set(cfg, "auto_expire_interval", "0"), SZ_OK);
    int rc = sz_config_set(cfg, name, value);
    if (rc != SZ_OK) {
        CHECK(rc == SZ_ERR_CONFIG);
        CHECK(strstr(sz_last_error(), name) != NULL);
        refused++;
        sz_config_free(cfg);
        return;
    }
    /* The disk tier at its largest would reserve 256 GiB of this machine's disk. */
    if (option_value(cfg, "disk_max_size") > 64 * MiB)
        CHECK_RC(sz_config_set(cfg, "disk_enabled", "false"), SZ_OK);
    /* Under valgrind (quick mode) a calloc of gigabytes is zeroed eagerly: the large values
     * are only set there, opened in the plain run. */
    if (quick && strlen(value) > 7) {
        sz_config_free(cfg);
        return;
    }
    sz_cache *c = NULL;
    rc = sz_cache_open(cfg, &c);
    if (rc == SZ_OK) {
        CHECK_RC(sz_cache_set(c, "k", 1, "v", 1, 0), SZ_OK);
        sz_cache_close(c);
        opened++;
    } else {
        int io_ok = strcmp(name, "disk_path") == 0 && rc == SZ_ERR_IO;
        CHECK(rc == SZ_ERR_CONFIG || rc == SZ_ERR_NOMEM || io_ok);
        CHECK(strlen(sz_last_error()) > 0);
        failed++;
    }
    sz_config_free(cfg);
}

int main(void) {
    char dir[] = "/tmp/smartcache-extremes-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    /* A disk_path extreme such as "0" or "-1" is a relative directory: made here, not in the
     * directory the test was started from (the checkout). */
    CHECK(chdir(dir) == 0);
    int quick = check_quick();
    size_t big_len = 1 << 20;
    char *big = malloc(big_len + 1);
    CHECK(big != NULL);
    memset(big, '9', big_len);
    big[big_len] = '\0';

    size_t names = 0;
    for (const char *name; (name = sz_config_option(names)) != NULL; names++) {
        for (size_t j = 0; j < sizeof extremes / sizeof extremes[0]; j++)
            try_value(dir, name, extremes[j], quick);
        try_value(dir, name, big, quick);
    }
    CHECK(names >= 19);
    CHECK(sz_config_option(names) == NULL);
    CHECK(sz_config_option(SIZE_MAX) == NULL);
    CHECK(refused > 0 && opened > 0);
    printf("%zu options: %d values refused by sz_config_set, %d opened, %d refused by open\n",
           names, refused, opened, failed);

    free(big);
    CHECK(chdir("/") == 0);
    char rm[96];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    CHECK(system(rm) == 0);
    CHECK_SUMMARY();
}
