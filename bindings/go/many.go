package smartcache

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"time"
	"unsafe"
)

// How GetMany and SetMany cross into C. sz_cache_get_many and sz_cache_set_many take arrays of
// pointers, and a Go slice of pointers is Go memory holding Go pointers, which cgo forbids
// passing. So the Go side packs the keys (and values) back to back into one byte slice, with
// their lengths in a []C.size_t, and a C helper (sc_get_many, sc_set_many in shim.c) builds the
// pointer arrays in malloc'd memory and frees them before returning. Everything handed over is
// Go memory holding no Go pointers, passed as an integer address like bytesAddr does, so one cgo
// call makes the whole batch. The price is one copy of every key (and, in SetMany, value) into the
// packed buffer, small beside the library's own copy of what it stores.
//
// GetMany's results come back in a Go-allocated []C.sc_found: per key the pinned sz_value
// handle (an integer), its data pointer (C memory) and length. Go copies each value into a
// slice of its own, then releases every handle in one more call (sc_release_found): two cgo
// calls per batch whatever its size. That is simpler than having C copy into Go buffers, which
// would need the sizes first and so a third call or a second lookup, and gives each result its
// own backing array, so keeping one value does not keep the whole batch alive. (The data field
// is a C pointer type rather than an integer because turning an integer back into a pointer is
// what go vet's unsafeptr check rejects; the collector ignores pointers to C memory.)

// goAddr is bytesAddr for Go memory of other element types (the lengths and results arrays):
// its address as an integer, with the memory forced into the heap the same way. The memory must
// hold no Go pointers, and the caller must keep it alive (runtime.KeepAlive) until the C call
// returns, as with bytesAddr.
func goAddr(p unsafe.Pointer) C.sc_goptr {
	if escapeAlways {
		escapeSink = p
	}
	return C.sc_goptr(uintptr(p))
}

// pack lays out items for the *_many helpers: their bytes back to back in data (empty when every
// item is), their lengths in lens.
func pack(items [][]byte) (data []byte, lens []C.size_t) {
	total := 0
	for _, b := range items {
		total += len(b)
	}
	data = make([]byte, 0, total)
	lens = make([]C.size_t, len(items))
	for i, b := range items {
		data = append(data, b...)
		lens[i] = C.size_t(len(b))
	}
	return data, lens
}

// GetMany returns copies of the values of keys, in one library call: memory first, then the
// keys still missing from Redis in one round trip (MGET), then disk. The result has one entry
// per key, in order: the value, or nil for a missing key (a stored empty value is a non-nil
// empty slice). Hits in lower tiers are promoted as by Get.
//
// Every key is checked before any lookup: an empty key is ErrInvalid, a key over 65535 bytes
// ErrTooLarge, the message naming its index (keys[i]). No keys give an empty result.
func (c *Cache) GetMany(keys [][]byte) ([][]byte, error) {
	n := len(keys)
	if n == 0 {
		c.mu.RLock()
		defer c.mu.RUnlock()
		if c.h == 0 {
			return nil, closedError("GetMany")
		}
		return [][]byte{}, nil
	}
	data, lens := pack(keys)
	found := make([]C.sc_found, n)
	dp, _ := bytesAddr(data)
	lp := goAddr(unsafe.Pointer(&lens[0]))
	fp := goAddr(unsafe.Pointer(&found[0]))
	c.mu.RLock()
	if c.h == 0 {
		c.mu.RUnlock()
		return nil, closedError("GetMany")
	}
	s := C.sc_get_many(c.h, dp, lp, C.size_t(n), fp)
	c.mu.RUnlock()
	runtime.KeepAlive(data)
	runtime.KeepAlive(lens)
	if err := statusError("GetMany", s); err != nil {
		return nil, err
	}
	out := make([][]byte, n)
	pinned := false
	for i := range found {
		f := &found[i]
		if f.v == 0 {
			continue
		}
		pinned = true
		v := make([]byte, int(f.len))
		if len(v) > 0 {
			copy(v, unsafe.Slice((*byte)(unsafe.Pointer(f.data)), len(v)))
		}
		out[i] = v
	}
	if pinned {
		// The pins outlive the cache's handle (like a Value's), so no lock is needed here.
		C.sc_release_found(fp, C.size_t(n))
	}
	runtime.KeepAlive(found)
	return out, nil
}

// SetMany stores values[i] under keys[i] for every i, all for ttl (as in Set), in every enabled
// tier and in one library call; Redis receives them pipelined in one round trip.
//
// Every key and value is checked before anything is stored: keys and values of different
// lengths are ErrInvalid, as is an empty key; a key over 65535 bytes or a value over
// max_value_size is ErrTooLarge; the message names the index (keys[i], vals[i]). No keys
// store nothing.
func (c *Cache) SetMany(keys, values [][]byte, ttl time.Duration) error {
	// A closed cache answers ErrClosed whatever the arguments, like every other call.
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h == 0 {
		return closedError("SetMany")
	}
	if len(keys) != len(values) {
		return &Error{Op: "SetMany", Code: CodeInvalid,
			Message: fmt.Sprintf("%d keys but %d values", len(keys), len(values))}
	}
	ms, err := ttlMillis("SetMany", ttl)
	if err != nil {
		return err
	}
	n := len(keys)
	if n == 0 {
		return nil
	}
	kdata, klens := pack(keys)
	vdata, vlens := pack(values)
	kp, _ := bytesAddr(kdata)
	vp, _ := bytesAddr(vdata)
	klp := goAddr(unsafe.Pointer(&klens[0]))
	vlp := goAddr(unsafe.Pointer(&vlens[0]))
	s := C.sc_set_many(c.h, kp, klp, vp, vlp, C.size_t(n), ms)
	runtime.KeepAlive(kdata)
	runtime.KeepAlive(klens)
	runtime.KeepAlive(vdata)
	runtime.KeepAlive(vlens)
	return statusError("SetMany", s)
}
