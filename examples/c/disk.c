/*
 * disk.c — the disk tier (L3): a value written by one cache is read back by a cache opened
 * later on the same disk_path, as a restarted process (or another pre-fork worker) would.
 * Prints a note and exits 0 if this build of the library has no disk tier yet.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <smartcache.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(call)                                                                      \
  do {                                                                                   \
    int rc_ = (call);                                                                    \
    if (rc_ < 0) {                                                                       \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, sz_last_error(), sz_status_str(rc_)); \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)

/* Opens a memory + disk cache on dir. Returns NULL when the disk tier is not in this build. */
static sz_cache *open_disk_cache(const char *dir) {
  sz_config *cfg = sz_config_new();
  CHECK(sz_config_set(cfg, "disk_enabled", "true"));
  CHECK(sz_config_set(cfg, "disk_path", dir));        /* a directory; the tier keeps one file */
  CHECK(sz_config_set(cfg, "disk_max_size", "64M"));  /* sizes take K, M, G */
  CHECK(sz_config_set(cfg, "disk_ttl", "3600"));      /* seconds */
  sz_cache *c = NULL;
  int rc = sz_cache_open(cfg, &c);
  sz_config_free(cfg);
  if (rc == SZ_ERR_CONFIG && strstr(sz_last_error(), "not available in this build")) return NULL;
  CHECK(rc);
  return c;
}

static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[4096];
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

int main(void) {
  char dir[] = "/tmp/smartcache-disk-example.XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  sz_cache *first = open_disk_cache(dir);
  if (!first) {
    printf("note: %s -- skipping the disk example\n", sz_last_error());
    remove_dir(dir);
    return 0;
  }
  CHECK(sz_cache_set(first, "report:2024", 11, "expensive result", 16, 0));
  sz_cache_close(first); /* flushes the disk tier */

  sz_cache *second = open_disk_cache(dir);
  sz_value *v = NULL;
  int found = sz_cache_get(second, "report:2024", 11, &v) == SZ_OK;
  if (found) {
    printf("after reopen: %.*s\n", (int)sz_value_len(v), (const char *)sz_value_data(v));
    sz_value_release(v);
  }
  sz_stats s = {.struct_size = sizeof s};
  CHECK(sz_cache_stats(second, &s));
  sz_health h = {.struct_size = sizeof h};
  CHECK(sz_cache_health(second, &h));
  printf("disk hits %llu, disk file %s, %.4f%% full, disk tier %s\n",
         (unsigned long long)s.disk_hits, h.disk_path, 100 * h.disk_fill,
         h.disk.up ? "up" : "down");
  sz_cache_close(second);
  remove_dir(dir);
  return found ? 0 : 1;
}
