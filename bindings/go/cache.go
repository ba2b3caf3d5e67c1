// Package smartcache is the Go binding of libsmartcache, a multi-tier cache: memory (L1),
// Redis (L2) and a memory-mapped disk file (L3), written in Rust behind a C ABI
// (smartcache.h).
//
// A *Cache is safe for concurrent use by many goroutines. Keys and values are byte slices;
// keys are 1..65535 bytes, values 0..max_value_size bytes. Get returns a copy; GetPinned
// returns a zero-copy *Value that must be Released.
//
// Errors are *Error values carrying the library's status code and message; test them with
// errors.Is against ErrInvalid, ErrTooLarge, ErrConfig and the other sentinels.
//
// Building: cgo finds the header and the library through pkg-config (smartcache.pc). After
// `make install` to a standard prefix, nothing needs setting; for another prefix set
// PKG_CONFIG_PATH=<prefix>/lib/pkgconfig (and LD_LIBRARY_PATH=<prefix>/lib to run). Inside the
// repository, `make lib` writes build/pkgconfig/smartcache.pc for the checkout's own build.
//
// Calls that may wait on Redis have Context variants (GetContext, SetContext, DeleteContext,
// ExistsContext): a context already done returns its error without calling, and a deadline
// shortens that call's Redis timeout.
package smartcache

/*
#cgo pkg-config: smartcache
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"math"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Cache is an open cache. Close it when done; its methods then return ErrClosed.
type Cache struct {
	// mu guards h: every call holds the read side for its duration, Close takes the write
	// side, because sz_cache_close must not run while another thread uses the handle.
	mu sync.RWMutex
	h  C.uintptr_t // the sz_cache *; 0 once closed
}

// Open opens a cache with cfg (see Config; Config{} is all defaults).
//
// It fails with ErrConfig for an unknown option, a bad value, or a tier this build does not
// provide (see IsNotAvailable), and with ErrIO when the disk tier's file cannot be used.
func Open(cfg Config) (*Cache, error) {
	ncfg, err := newNativeConfig("Open", &cfg)
	if err != nil {
		return nil, err
	}
	defer C.sz_config_free(ncfg)
	r := C.sc_open(ncfg)
	if r.rc != C.SZ_OK {
		return nil, codeError("Open", r.rc, r.err)
	}
	return &Cache{h: r.c}, nil
}

// Close closes the cache: it stops the background threads and flushes the disk tier. It
// waits for calls in progress to return. Values pinned earlier stay valid until Released.
// Closing twice is a no-op.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h != 0 {
		C.sc_close(c.h)
		c.h = 0
	}
	return nil
}

// bytesAddr is how a byte slice crosses into C: its address as an integer (sc_goptr) and its
// length; an empty slice is 0, 0 (the shim maps an empty key to a non-NULL pointer itself, and
// an empty value may be NULL with length 0).
//
// Why an integer: cgo checks each pointer argument of every call for Go pointers stored in
// the memory it points to, about 20 ns per call, a fifth of a pinned get, and a byte slice
// can hold none. An integer is not checked, so what the pointer type guaranteed is kept here
// by hand instead:
//   - The memory does not move during the call: b escapes (through escapeSink, the way cgo
//     makes its own pointer arguments escape), so it lives in the heap, which Go's collector
//     does not compact, never on a goroutine stack, which can be copied.
//   - It stays alive: every caller uses b after the C call returns (runtime.KeepAlive), so
//     the collector cannot free it meanwhile.
//
// C reads or writes the memory only during the call and keeps no copy of the address.
func bytesAddr(b []byte) (C.sc_goptr, C.size_t) {
	if len(b) == 0 {
		return 0, 0
	}
	p := unsafe.Pointer(&b[0])
	if escapeAlways {
		escapeSink = p
	}
	return C.sc_goptr(uintptr(p)), C.size_t(len(b))
}

// escapeAlways is never set; the compiler cannot prove that, so the store in bytesAddr makes
// every slice passed to it escape to the heap.
var (
	escapeAlways bool
	escapeSink   unsafe.Pointer
)

// ttlMillis turns a Set TTL into the ABI's milliseconds: 0 stays 0 (each tier's default); a
// positive TTL below a millisecond becomes 1 ms rather than 0, which would mean "default".
func ttlMillis(op string, ttl time.Duration) (C.uint64_t, error) {
	if ttl < 0 {
		return 0, &Error{Op: op, Code: CodeInvalid, Message: "negative ttl"}
	}
	ms := ttl / time.Millisecond
	if ttl%time.Millisecond != 0 {
		ms++ // round up without overflowing near the largest Duration
	}
	return C.uint64_t(ms), nil
}

// Set stores value under key in every enabled tier for ttl (0 = each tier's configured default;
// rounded up to whole milliseconds). An empty value is valid; an empty key is ErrInvalid; a key
// over 65535 bytes or a value over max_value_size is ErrTooLarge.
func (c *Cache) Set(key, value []byte, ttl time.Duration) error {
	return c.set(key, value, ttl, 0)
}

// SetContext is Set bounded by ctx: if ctx is done it returns ctx.Err() without storing, and
// its deadline, if sooner, is the longest the call waits on Redis.
func (c *Cache) SetContext(ctx context.Context, key, value []byte, ttl time.Duration) error {
	bound, err := redisBound(ctx)
	if err != nil {
		return err
	}
	return c.set(key, value, ttl, bound)
}

func (c *Cache) set(key, value []byte, ttl time.Duration, bound C.uint32_t) error {
	kp, kl := bytesAddr(key)
	vp, vl := bytesAddr(value)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h == 0 {
		return closedError("Set") // before any argument check: a closed cache says so first
	}
	ms, err := ttlMillis("Set", ttl)
	if err != nil {
		return err
	}
	s := C.sc_set(c.h, kp, kl, vp, vl, ms, bound)
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return statusError("Set", s)
}

// copyScratch is the size of the buffer Get lends to C: values up to this size are copied out
// in one cgo call; larger ones take a second call to release the pin after copying.
const copyScratch = 512

var scratchPool = sync.Pool{New: func() any { b := make([]byte, copyScratch); return &b }}

// Get returns a copy of the value of key, and whether it was found. A hit in a lower tier is
// copied into the tiers above it with its remaining lifetime.
func (c *Cache) Get(key []byte) ([]byte, bool, error) {
	return c.get(key, 0)
}

// GetContext is Get bounded by ctx: if ctx is done it returns ctx.Err() without looking, and
// its deadline, if sooner, is the longest the call waits on Redis (a Redis that does not answer
// in time is a miss there, as with redis_timeout_ms).
func (c *Cache) GetContext(ctx context.Context, key []byte) ([]byte, bool, error) {
	bound, err := redisBound(ctx)
	if err != nil {
		return nil, false, err
	}
	return c.get(key, bound)
}

func (c *Cache) get(key []byte, bound C.uint32_t) ([]byte, bool, error) {
	kp, kl := bytesAddr(key)
	bp := scratchPool.Get().(*[]byte)
	buf := *bp
	bufp, bufl := bytesAddr(buf)
	c.mu.RLock()
	if c.h == 0 {
		c.mu.RUnlock()
		scratchPool.Put(bp)
		return nil, false, closedError("Get")
	}
	r := C.sc_get_into(c.h, kp, kl, bufp, bufl, bound)
	c.mu.RUnlock()
	runtime.KeepAlive(key)
	if r.rc != C.SZ_OK {
		scratchPool.Put(bp)
		if r.rc == C.SZ_NOT_FOUND {
			return nil, false, nil
		}
		return nil, false, codeError("Get", r.rc, r.err)
	}
	out := make([]byte, int(r.len))
	if r.v == 0 {
		copy(out, buf[:len(out)])
	} else {
		// Too large for the scratch buffer: copy straight from the pinned bytes, then unpin.
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(r.data)), len(out)))
		C.sc_release(r.v)
	}
	scratchPool.Put(bp)
	return out, true, nil
}

// GetPinned returns the value of key without copying it: the returned *Value points into the
// cache's own memory, which stays valid (and unchanged) until Value.Release, even if the
// entry is overwritten, deleted, expired, evicted or cleared, or the cache is closed meanwhile.
// Call Release exactly when done with the bytes; a pin held for long keeps the memory of a
// replaced entry alive.
func (c *Cache) GetPinned(key []byte) (*Value, bool, error) {
	kp, kl := bytesAddr(key)
	c.mu.RLock()
	if c.h == 0 {
		c.mu.RUnlock()
		return nil, false, closedError("GetPinned")
	}
	r := C.sc_get(c.h, kp, kl)
	c.mu.RUnlock()
	runtime.KeepAlive(key)
	switch r.rc {
	case C.SZ_OK:
		return newValue(r.v, r.data, r.len), true, nil
	case C.SZ_NOT_FOUND:
		return nil, false, nil
	}
	return nil, false, codeError("GetPinned", r.rc, r.err)
}

// Delete removes key from every tier and reports whether some tier had it.
func (c *Cache) Delete(key []byte) (bool, error) {
	return c.keyOp("Delete", key, false, 0)
}

// DeleteContext is Delete bounded by ctx, as GetContext is Get.
func (c *Cache) DeleteContext(ctx context.Context, key []byte) (bool, error) {
	return c.keyOpContext(ctx, "Delete", key, false)
}

// Exists reports whether some tier holds a live entry for key. It neither promotes the entry
// nor counts as an access.
func (c *Cache) Exists(key []byte) (bool, error) {
	return c.keyOp("Exists", key, true, 0)
}

// ExistsContext is Exists bounded by ctx, as GetContext is Get.
func (c *Cache) ExistsContext(ctx context.Context, key []byte) (bool, error) {
	return c.keyOpContext(ctx, "Exists", key, true)
}

// keyOpContext is keyOp bounded by ctx (see GetContext).
func (c *Cache) keyOpContext(ctx context.Context, op string, key []byte, exists bool) (bool, error) {
	bound, err := redisBound(ctx)
	if err != nil {
		return false, err
	}
	return c.keyOp(op, key, exists, bound)
}

// redisBound is the Redis wait ctx allows one call, in whole milliseconds (0: no bound), or
// ctx's error when it is already done or its deadline has passed.
func redisBound(ctx context.Context) (C.uint32_t, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	left := time.Until(deadline)
	if left <= 0 {
		return 0, context.DeadlineExceeded
	}
	ms := (left + time.Millisecond - 1) / time.Millisecond // rounded up: never 0
	if ms > math.MaxUint32 {
		ms = math.MaxUint32
	}
	return C.uint32_t(ms), nil
}

func (c *Cache) keyOp(op string, key []byte, exists bool, bound C.uint32_t) (bool, error) {
	kp, kl := bytesAddr(key)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h == 0 {
		return false, closedError(op)
	}
	var s C.sc_status
	if exists {
		s = C.sc_exists(c.h, kp, kl, bound)
	} else {
		s = C.sc_delete(c.h, kp, kl, bound)
	}
	runtime.KeepAlive(key)
	if err := statusError(op, s); err != nil {
		return false, err
	}
	return s.rc == C.SZ_OK, nil
}

// Clear removes this cache's entries from every tier (in Redis only the keys under its
// prefix). Values pinned earlier stay valid until Released.
func (c *Cache) Clear() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h == 0 {
		return closedError("Clear")
	}
	return statusError("Clear", C.sc_clear(c.h))
}

// ExpireNow runs one bounded pass of expiry over every tier now (the background sweep does
// this every AutoExpireInterval) and returns how many entries it reclaimed. Expired entries
// are never returned either way; this only frees their memory sooner.
func (c *Cache) ExpireNow() (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h == 0 {
		return 0, closedError("ExpireNow")
	}
	s := C.sc_expire_now(c.h)
	if err := statusError("ExpireNow", s); err != nil {
		return 0, err
	}
	return int(s.rc), nil
}

// Version returns the library's version, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.sz_version()) }

// cgoIdentity is the bare cost of a cgo call (a C function returning its argument); the
// benchmarks compare the cache calls against it.
func cgoIdentity(x uint64) uint64 { return uint64(C.sc_identity(C.uint64_t(x))) }
