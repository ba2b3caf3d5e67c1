/* A fixed workload for instruction counting under callgrind: fill 100,000 keys, then do N
 * pinned gets. Usage: get_loop <enable_stats true|false> <gets> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "smartcache.h"

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    sz_config *cfg = sz_config_new();
    sz_config_set(cfg, "memory_capacity", "200000");
    sz_config_set(cfg, "auto_expire_interval", "0");
    sz_config_set(cfg, "enable_stats", argv[1]);
    sz_cache *c;
    if (sz_cache_open(cfg, &c) != SZ_OK) return 1;
    sz_config_free(cfg);
    char key[32], val[100];
    memset(val, 'v', sizeof val);
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(key, sizeof key, "key:%012d", i);
        sz_cache_set(c, key, (size_t)n, val, sizeof val, 0);
    }
    long gets = atol(argv[2]);
    unsigned x = 1, sum = 0;
    for (long i = 0; i < gets; i++) {
        x = x * 1103515245u + 12345u;
        int n = snprintf(key, sizeof key, "key:%012u", (x >> 8) % 100000);
        sz_value *v;
        if (sz_cache_get(c, key, (size_t)n, &v) == SZ_OK) {
            sum += sz_value_data(v)[0];
            sz_value_release(v);
        }
    }
    sz_cache_close(c);
    printf("%u\n", sum);
    return 0;
}
