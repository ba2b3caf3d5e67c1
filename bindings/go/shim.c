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

/* Bounds this thread's Redis wait for the one call a helper makes (0: no bound). The bound is
 * set and removed inside the same helper, i.e. on the one thread of one cgo call. */
static void redis_bound(uint32_t timeout_ms) {
  if (timeout_ms) sz_thread_redis_timeout(timeout_ms);
}

static void redis_unbound(uint32_t timeout_ms) {
  if (timeout_ms) sz_thread_redis_timeout(0);
}

sc_status sc_set(uintptr_t c, sc_goptr key, size_t key_len, sc_goptr val, size_t val_len,
                 uint64_t ttl_ms, uint32_t timeout_ms) {
  redis_bound(timeout_ms);
  sc_status s = status_of(
      sz_cache_set(CACHE(c), key_ptr(key), key_len, (const void *)val, val_len, ttl_ms));
  redis_unbound(timeout_ms);
  return s;
}

/* The result of a call that pins v on SZ_OK. */
static sc_pinned pinned_of(int rc, sz_value *v) {
  sc_pinned r = {rc, NULL, 0, NULL, 0};
  if (rc == SZ_OK) {
    r.v = (uintptr_t)v;
    r.data = sz_value_data(v);
    r.len = sz_value_len(v);
  } else if (rc < 0) {
    r.err = last_error_copy();
  }
  return r;
}

sc_pinned sc_get(uintptr_t c, sc_goptr key, size_t key_len) {
  sz_value *v = NULL;
  int rc = sz_cache_get(CACHE(c), key_ptr(key), key_len, &v);
  return pinned_of(rc, v);
}

sc_pinned sc_get_into(uintptr_t c, sc_goptr key, size_t key_len, sc_goptr buf, size_t cap,
                      uint32_t timeout_ms) {
  sc_pinned r = {0, NULL, 0, NULL, 0};
  sz_value *v = NULL;
  redis_bound(timeout_ms);
  r.rc = sz_cache_get(CACHE(c), key_ptr(key), key_len, &v);
  redis_unbound(timeout_ms);
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

sc_status sc_delete(uintptr_t c, sc_goptr key, size_t key_len, uint32_t timeout_ms) {
  redis_bound(timeout_ms);
  sc_status s = status_of(sz_cache_delete(CACHE(c), key_ptr(key), key_len));
  redis_unbound(timeout_ms);
  return s;
}

sc_status sc_exists(uintptr_t c, sc_goptr key, size_t key_len, uint32_t timeout_ms) {
  redis_bound(timeout_ms);
  sc_status s = status_of(sz_cache_exists(CACHE(c), key_ptr(key), key_len));
  redis_unbound(timeout_ms);
  return s;
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

/* A library-owned string (sz_cache_stats_json, sz_cache_stats_prometheus) as an sc_string,
 * with the error copied here, on the thread of the call that returned NULL. */
static sc_string library_string(char *s) {
  sc_string r = {SZ_OK, NULL, s};
  if (!s) {
    r.rc = SZ_ERR_INTERNAL; /* the library gives no code with a NULL string */
    r.err = last_error_copy();
  }
  return r;
}

sc_string sc_stats_json(uintptr_t c) { return library_string(sz_cache_stats_json(CACHE(c))); }

sc_string sc_stats_prometheus(uintptr_t c) {
  return library_string(sz_cache_stats_prometheus(CACHE(c)));
}

/* Points ptrs[i] at the i-th of n items packed back to back from base, lens[i] bytes each.
 * An empty item gets &sc_empty_key, as in key_ptr: the library reports a NULL key as "key is
 * NULL" rather than "key is empty" (an empty value may be either). The address is advanced as
 * an integer, since base is 0 when every item is empty. */
static void unpack(sc_goptr base, const size_t *lens, size_t n, const void **ptrs) {
  uintptr_t p = base;
  for (size_t i = 0; i < n; i++) {
    ptrs[i] = lens[i] ? (const void *)p : (const void *)&sc_empty_key;
    p += lens[i];
  }
}

/* malloc(n * each), or NULL when that overflows or fails. */
static void *alloc_arrays(size_t n, size_t each) {
  if (n > SIZE_MAX / each) return NULL;
  return malloc(n * each);
}

static sc_status no_memory(void) {
  sc_status s = {SZ_ERR_NOMEM, strdup("cannot allocate the pointer arrays of a batch call")};
  return s;
}

sc_status sc_get_many(uintptr_t c, sc_goptr keys, sc_goptr key_lens, size_t n, sc_goptr out) {
  if (n == 0) return status_of(sz_cache_get_many(CACHE(c), NULL, NULL, 0, NULL));
  const size_t *lens = (const size_t *)key_lens;
  /* One block: the n key pointers, then the n value handles the library fills. */
  char *mem = alloc_arrays(n, sizeof(const void *) + sizeof(sz_value *));
  if (!mem) return no_memory();
  const void **kp = (const void **)mem;
  sz_value **vals = (sz_value **)(mem + n * sizeof(const void *));
  unpack(keys, lens, n, kp);
  sc_status s = status_of(sz_cache_get_many(CACHE(c), kp, lens, n, vals));
  if (s.rc == SZ_OK) {
    sc_found *f = (sc_found *)out;
    for (size_t i = 0; i < n; i++) {
      f[i].v = (uintptr_t)vals[i];
      f[i].data = vals[i] ? sz_value_data(vals[i]) : NULL;
      f[i].len = vals[i] ? sz_value_len(vals[i]) : 0;
    }
  }
  free(mem);
  return s;
}

void sc_release_found(sc_goptr found, size_t n) {
  const sc_found *f = (const sc_found *)found;
  for (size_t i = 0; i < n; i++)
    if (f[i].v) sz_value_release((sz_value *)f[i].v);
}

sc_status sc_set_many(uintptr_t c, sc_goptr keys, sc_goptr key_lens, sc_goptr vals,
                      sc_goptr val_lens, size_t n, uint64_t ttl_ms) {
  if (n == 0) return status_of(sz_cache_set_many(CACHE(c), NULL, NULL, NULL, NULL, 0, ttl_ms));
  const size_t *klens = (const size_t *)key_lens, *vlens = (const size_t *)val_lens;
  /* One block: the n key pointers, then the n value pointers. */
  const void **kp = alloc_arrays(n, 2 * sizeof(const void *));
  if (!kp) return no_memory();
  const void **vp = kp + n;
  unpack(keys, klens, n, kp);
  unpack(vals, vlens, n, vp);
  sc_status s = status_of(sz_cache_set_many(CACHE(c), kp, klens, vp, vlens, n, ttl_ms));
  free(kp);
  return s;
}

/* The sz_compute_fn handed to the library: forwards to the exported Go function with the
 * cgo.Handle that identifies the Go closure. */
static int sc_compute_trampoline(void *user_data, const void *key, size_t key_len,
                                 sz_sink *sink) {
  return smartcacheGoCompute((uintptr_t)user_data, (void *)key, key_len, sink);
}

sc_pinned sc_get_or_compute(uintptr_t c, sc_goptr key, size_t key_len, uint64_t ttl_ms,
                            uintptr_t handle) {
  sz_value *v = NULL;
  int rc = sz_cache_get_or_compute(CACHE(c), key_ptr(key), key_len, ttl_ms, sc_compute_trampoline,
                                   (void *)handle, &v);
  return pinned_of(rc, v);
}

uint64_t sc_identity(uint64_t x) { return x; }
