package smartcache

/*
#include "shim.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Value is a pinned, zero-copy view of a cached value, from GetPinned or GetOrCompute. Its
// bytes live in the cache's memory and stay valid until Release, whatever happens to the
// entry meanwhile (overwrite, delete, expiry, eviction, Clear, Close). A Value may be
// released from any goroutine.
//
// Release every Value exactly when done with it, and do not use the slice from Bytes after
// that. A Value that becomes unreachable unreleased is released by a finalizer, but that is
// only a safety net against leaks, never something to rely on: finalizers run late or never,
// so a forgotten pin keeps the value's memory alive arbitrarily long. (It also means the bytes
// of a Value that is no longer referenced may be released under a slice from Bytes still in
// use: keep the Value, and Release it after the last use of the slice.)
type Value struct {
	h    uintptr // the sz_value *; 0 once released
	data *byte   // C memory, valid while h is held
	n    int
}

// Values are carved out of blocks that carry one finalizer each: runtime.SetFinalizer costs
// several hundred nanoseconds, far more than the rest of GetPinned, so it is paid once per
// block rather than once per Value. A Value points into its block, which keeps the whole
// block reachable; when no Value of a block is reachable any more, the block's finalizer
// releases those that were never released.
const valuesPerBlock = 128

type valueBlock struct {
	next int // next free slot; touched only by the goroutine that took the block from the pool
	vals [valuesPerBlock]Value
}

// blockPool hands each P a partly used block, so allocation needs no shared counter. A block
// the pool drops is not a leak: it holds no pins of its own, only the Values handed out.
var blockPool = sync.Pool{New: func() any {
	b := new(valueBlock)
	runtime.SetFinalizer(b, (*valueBlock).releaseForgotten)
	return b
}}

// forgottenPins counts pins released by the safety net instead of by Release: a number that
// grows means a program forgets to call Release.
var forgottenPins int64

// ForgottenPins returns how many Values so far were released by the finalizer safety net
// rather than by Release. Anything but 0 points at a missing Release in the program.
func ForgottenPins() int64 { return atomic.LoadInt64(&forgottenPins) }

func (b *valueBlock) releaseForgotten() {
	for i := range b.vals[:b.next] {
		if atomic.LoadUintptr(&b.vals[i].h) != 0 {
			atomic.AddInt64(&forgottenPins, 1)
			b.vals[i].Release()
		}
	}
}

func newValue(h C.uintptr_t, data *C.uint8_t, n C.size_t) *Value {
	b := blockPool.Get().(*valueBlock)
	v := &b.vals[b.next]
	b.next++
	if b.next < valuesPerBlock {
		blockPool.Put(b)
	}
	v.h, v.data, v.n = uintptr(h), (*byte)(unsafe.Pointer(data)), int(n)
	return v
}

// Bytes returns the value's bytes, without copying. The slice is valid until Release and must
// not be modified (it is the cache's memory). Copy it (for example with
// append([]byte(nil), v.Bytes()...)) to keep the data longer. Nil after Release.
func (v *Value) Bytes() []byte {
	if atomic.LoadUintptr(&v.h) == 0 || v.n == 0 {
		return nil
	}
	return unsafe.Slice(v.data, v.n)
}

// Len is the value's length in bytes (also after Release).
func (v *Value) Len() int { return v.n }

// Release unpins the value; its bytes are invalid afterwards. Releasing again is a no-op.
//
// Small values are handed back to the library in batches (see releaseQueue), so their memory
// may be reclaimed a little after Release returns; values over batchedMaxLen are unpinned at
// once.
func (v *Value) Release() {
	// The swap makes a double or concurrent Release unpin exactly once.
	h := atomic.SwapUintptr(&v.h, 0)
	if h == 0 {
		return
	}
	if v.n > batchedMaxLen {
		C.sc_release(C.uintptr_t(h))
		return
	}
	q := releasePool.Get().(*releaseQueue)
	q.hs[q.n] = C.uintptr_t(h)
	q.n++
	if q.n == len(q.hs) {
		q.flush()
	}
	releasePool.Put(q)
}

// Releasing a pin is one atomic decrement in the library, but one cgo call (~50 ns) from Go,
// more than the rest of GetPinned together. So releases of small values are queued per P and
// handed over releaseBatch at a time, in one call. What a queue holds is bounded: at most
// releaseBatch-1 values of at most batchedMaxLen bytes per P. A queue the pool drops flushes
// itself from its finalizer, so no release is lost.
const (
	releaseBatch  = 16
	batchedMaxLen = 4096
)

type releaseQueue struct {
	n  int
	hs [releaseBatch]C.uintptr_t // sz_value handles: C pointers, no Go pointers
}

var releasePool = sync.Pool{New: func() any {
	q := new(releaseQueue)
	runtime.SetFinalizer(q, (*releaseQueue).flush)
	return q
}}

func (q *releaseQueue) flush() {
	if q.n > 0 {
		p := &q.hs[0] // taken apart from the call, so cgo does not box the array to check it
		C.sc_release_many(p, C.size_t(q.n))
		q.n = 0
	}
}
