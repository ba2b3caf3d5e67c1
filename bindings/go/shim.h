/*
 * shim.h — small C helpers between the Go package and libsmartcache.
 *
 * Why they exist: sz_last_error() is thread-local, and a goroutine may move to another OS
 * thread between two cgo calls. So every helper makes the sz_ call AND, on failure, copies
 * sz_last_error() (into malloc'd memory the Go side frees) within one C function, i.e. one
 * cgo call on one thread. The helpers also return their results by value so the Go side
 * passes no Go pointer for C to write through on the hot path (which would force an
 * allocation per call).
 *
 * Cache and value handles cross as uintptr_t, not as pointers to the opaque sz_cache /
 * sz_value: cgo boxes a pointer to an incomplete C type on every call (an 8-byte allocation),
 * and these are C pointers the Go GC need not see anyway. *
 * Go byte slices (keys, values, the copy buffer) cross as sc_goptr, their address as an
 * integer: cgo checks every pointer argument of a call for Go pointers inside the memory it
 * points to (~20 ns a call, a fifth of a pinned get), a check with nothing to find in a byte
 * slice. The Go side (bytesAddr in cache.go) keeps the memory in the heap and alive for the
 * call; C uses it only during the call and never keeps it.
 */
#ifndef SMARTCACHE_GO_SHIM_H
#define SMARTCACHE_GO_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include "smartcache.h"

/* The address of Go memory holding no Go pointers, valid for the duration of the call. */
typedef uintptr_t sc_goptr;

/* The result of a call: rc is the sz_ status; err is NULL on success (rc >= 0), otherwise a
 * malloc'd copy of sz_last_error() the caller frees. */
typedef struct {
  int rc;
  char *err;
} sc_status;

/* A get's result: on rc == SZ_OK, v is a pinned handle and data/len its bytes; or, from
 * sc_get_into when the value fit in the caller's buffer, v is 0 and len its length. */
typedef struct {
  int rc;
  char *err;
  uintptr_t v; /* sz_value * */
  const uint8_t *data;
  size_t len;
} sc_pinned;

sc_status sc_config_set(sz_config *cfg, const char *name, const char *value);
/* A library-owned string (free with sz_string_free) or, when s is NULL, the error. */
typedef struct {
  int rc;
  char *err;
  char *s;
} sc_string;

sc_string sc_config_get(sz_config *cfg, const char *name);
typedef struct {
  int rc;
  char *err;
  uintptr_t c; /* sz_cache * */
} sc_opened;

sc_opened sc_open(sz_config *cfg);
void sc_close(uintptr_t c);
void sc_release(uintptr_t v);
/* Releases n pinned values in one call (batched releases from Go). */
void sc_release_many(const uintptr_t *vs, size_t n);

/* timeout_ms: when non-zero, the call waits at most that long on Redis (see
 * sz_thread_redis_timeout); the Go side derives it from a context's deadline. */
sc_status sc_set(uintptr_t c, sc_goptr key, size_t key_len, sc_goptr val, size_t val_len,
                 uint64_t ttl_ms, uint32_t timeout_ms);
sc_pinned sc_get(uintptr_t c, sc_goptr key, size_t key_len);
sc_pinned sc_get_into(uintptr_t c, sc_goptr key, size_t key_len, sc_goptr buf, size_t cap,
                      uint32_t timeout_ms);
sc_status sc_delete(uintptr_t c, sc_goptr key, size_t key_len, uint32_t timeout_ms);
sc_status sc_exists(uintptr_t c, sc_goptr key, size_t key_len, uint32_t timeout_ms);
sc_status sc_clear(uintptr_t c);
sc_status sc_expire_now(uintptr_t c);
sc_status sc_stats(uintptr_t c, sz_stats *out);
sc_status sc_health(uintptr_t c, sz_health *out);
sc_string sc_stats_json(uintptr_t c);
sc_string sc_stats_prometheus(uintptr_t c);

/* One key's result of sc_get_many: v is the pinned sz_value * (0 for a missing key), data and
 * len its bytes (data is not to be read when len is 0). The Go side allocates the array and
 * hands it over as an sc_goptr; it holds no Go pointers, only a handle and C memory. */
typedef struct {
  uintptr_t v; /* sz_value * */
  const uint8_t *data;
  size_t len;
} sc_found;

/* The *_many calls take arrays of pointers, which Go cannot hand to C (a Go slice of pointers
 * is Go memory holding Go pointers). So the Go side packs the n items back to back in one byte
 * slice (keys, vals: sc_goptr, 0 when every item is empty) with their lengths in a size_t
 * array (key_lens, val_lens), and these helpers build the pointer arrays in malloc'd memory,
 * freed before they return. */

/* sz_cache_get_many; on SZ_OK, fills out[0..n) (an sc_found array) with a pinned handle per
 * found key. Release them with sc_release_found. */
sc_status sc_get_many(uintptr_t c, sc_goptr keys, sc_goptr key_lens, size_t n, sc_goptr out);
/* Releases every handle of an sc_found array of n elements (0 entries are skipped). */
void sc_release_found(sc_goptr found, size_t n);
/* sz_cache_set_many. */
sc_status sc_set_many(uintptr_t c, sc_goptr keys, sc_goptr key_lens, sc_goptr vals,
                      sc_goptr val_lens, size_t n, uint64_t ttl_ms);
sc_pinned sc_get_or_compute(uintptr_t c, sc_goptr key, size_t key_len, uint64_t ttl_ms,
                            uintptr_t handle);

/* Trivial function for measuring the bare cost of a cgo call. */
uint64_t sc_identity(uint64_t x);

#endif
