/* shim.c — see shim.h for why these helpers exist. */
#include <stdlib.h>
#include <string.h>
#include "shim.h"
#include "_cgo_export.h"

/* Stands in for the key of an empty (possibly nil) Go slice so the library sees a non-NULL
 * pointer and reports "key is empty" (SZ_ERR_INVALID) rather than "key is NULL". */
static const uint8_t sc_empty_key = 0;

static const void *key_ptr(sc_goptr key) { return key ? (const void *)key : &sc_empty_key; }

/* A malloc'd copy of this thread's last error. Must run on the thread of the failing call,
 * i.e. inside the same helper. */
static char *last_error_copy(void) {
  const char *m = sz_last_error();
  char *s = strdup(m ? m : "");
  return s; /* NULL if out of memory: the Go side then uses the status text alone. */
}

static sc_status status_of(int rc) {
  sc_status s = {rc, NULL};
  if (rc < 0) s.err = last_error_copy();
  return s;
}

sc_status sc_config_set(sz_config *cfg, const char *name, const char *value) {
  return status_of(sz_config_set(cfg, name, value));
}

sc_string sc_config_get(sz_config *cfg, const char *name) {
  sc_string r = {0, NULL, NULL};
  r.rc = sz_config_get(cfg, name, &r.s);
  if (r.rc != SZ_OK) {
    r.s = NULL;
    r.err = last_error_copy();
  }
  return r;
}

#define CACHE(c) ((sz_cache *)(c))

sc_opened sc_open(sz_config *cfg) {
  sc_opened r = {0, NULL, 0};
  sz_cache *c = NULL;
  r.rc = sz_cache_open(cfg, &c);
  if (r.rc == SZ_OK)
    r.c = (uintptr_t)c;
  else
    r.err = last_error_copy();
  return r;
}

void sc_close(uintptr_t c) { sz_cache_close(CACHE(c)); }

void sc_release(uintptr_t v) { sz_value_release((sz_value *)v); }

void sc_release_many(const uintptr_t *vs, size_t n) {
  for (size_t i = 0; i < n; i++) sz_value_release((sz_value *)vs[i]);
}

sc_status sc_set(uintptr_t c, sc_goptr key, size_t key_len, sc_goptr val, size_t val_len,
                 uint64_t ttl_ms) {
  return status_of(sz_cache_set(CACHE(c), key_ptr(key), key_len, (const void *)val, val_len, ttl_ms));
}

sc_pinned sc_get(uintptr_t c, sc_goptr key, size_t key_len) {
  sc_pinned r = {0, NULL, 0, NULL, 0};
  sz_value *v = NULL;
  r.rc = sz_cache_get(CACHE(c), key_ptr(key), key_len, &v);
  if (r.rc == SZ_OK) {
    r.v = (uintptr_t)v;
    r.data = sz_value_data(v);
    r.len = sz_value_len(v);
  } else if (r.rc < 0) {
    r.err = last_error_copy();
  }
  return r;
}

sc_copied sc_get_into(uintptr_t c, sc_goptr key, size_t key_len, sc_goptr buf, size_t cap) {
  sc_copied r = {0, NULL, 0, NULL, 0};
  sz_value *v = NULL;
  r.rc = sz_cache_get(CACHE(c), key_ptr(key), key_len, &v);
  if (r.rc != SZ_OK) {
    if (r.rc < 0) r.err = last_error_copy();
    return r;
  }
  r.len = sz_value_len(v);
  if (r.len <= cap) {
    /* The common case: one cgo call, the pin taken and dropped here. */
    if (r.len > 0) memcpy((void *)buf, sz_value_data(v), r.len);
    sz_value_release(v);
  } else {
    /* Too big for the caller's buffer: hand the pin over; the caller copies, then releases. */
    r.v = (uintptr_t)v;
    r.data = sz_value_data(v);
  }
  return r;
}

sc_status sc_delete(uintptr_t c, sc_goptr key, size_t key_len) {
  return status_of(sz_cache_delete(CACHE(c), key_ptr(key), key_len));
}

sc_status sc_exists(uintptr_t c, sc_goptr key, size_t key_len) {
  return status_of(sz_cache_exists(CACHE(c), key_ptr(key), key_len));
}

sc_status sc_clear(uintptr_t c) { return status_of(sz_cache_clear(CACHE(c))); }

sc_status sc_expire_now(uintptr_t c) { return status_of(sz_cache_expire_now(CACHE(c))); }

sc_status sc_stats(uintptr_t c, sz_stats *out) {
  out->struct_size = sizeof(sz_stats);
  return status_of(sz_cache_stats(CACHE(c), out));
}

sc_status sc_health(uintptr_t c, sz_health *out) {
  out->struct_size = sizeof(sz_health);
  return status_of(sz_cache_health(CACHE(c), out));
}

sc_string sc_stats_json(uintptr_t c) {
  sc_string r = {SZ_OK, NULL, sz_cache_stats_json(CACHE(c))};
  if (!r.s) {
    r.rc = SZ_ERR_INTERNAL; /* the library gives no code with a NULL string */
    r.err = last_error_copy();
  }
  return r;
}

/* The sz_compute_fn handed to the library: forwards to the exported Go function with the
 * cgo.Handle that identifies the Go closure. */
static int sc_compute_trampoline(void *user_data, const void *key, size_t key_len,
                                 sz_sink *sink) {
  return smartcacheGoCompute((uintptr_t)user_data, (void *)key, key_len, sink);
}

sc_pinned sc_get_or_compute(uintptr_t c, sc_goptr key, size_t key_len, uint64_t ttl_ms,
                            uintptr_t handle) {
  sc_pinned r = {0, NULL, 0, NULL, 0};
  sz_value *v = NULL;
  r.rc = sz_cache_get_or_compute(CACHE(c), key_ptr(key), key_len, ttl_ms, sc_compute_trampoline,
                                 (void *)handle, &v);
  if (r.rc == SZ_OK) {
    r.v = (uintptr_t)v;
    r.data = sz_value_data(v);
    r.len = sz_value_len(v);
  } else if (r.rc < 0) {
    r.err = last_error_copy();
  }
  return r;
}

uint64_t sc_identity(uint64_t x) { return x; }
