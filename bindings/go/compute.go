package smartcache

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/cgo"
	"time"
	"unsafe"
)

// computeCall carries a GetOrCompute function through C (as a cgo.Handle, since C may not
// hold Go pointers) and brings back what it returned, or the panic it raised.
type computeCall struct {
	fn       func() ([]byte, error)
	ran      bool
	err      error
	panicked bool
	panicVal any
}

// GetOrCompute returns the value of key, pinned as by GetPinned; on a miss it calls fn to
// produce it, stores it for ttl (0 = tier defaults) and returns it. Concurrent callers for the
// same key (in this process) wait for one computation instead of each running fn, and all
// receive its result: fn runs at most once per miss.
//
// If fn returns an error nothing is stored; the caller whose fn failed gets that error
// (wrapped, also matching ErrBackend), and callers that were waiting on it get ErrBackend. A
// panic in fn is re-raised in the caller after the library has been unwound cleanly.
//
// fn runs on the calling goroutine, inside the library's call (so on a locked OS thread): it
// must not call GetOrCompute for the same key on this cache (such a call fails with ErrInvalid
// rather than wait on itself), and it should not block for long, since other callers for the key wait on it. It may use the
// cache otherwise, but a Close started meanwhile waits for this call, so fn must not wait for
// a Close either.
func (c *Cache) GetOrCompute(key []byte, ttl time.Duration, fn func() ([]byte, error)) (*Value, error) {
	kp, kl := bytesAddr(key)
	c.mu.RLock()
	if c.h == 0 {
		c.mu.RUnlock()
		return nil, closedError("GetOrCompute") // before any argument check, like every call
	}
	ms, err := ttlMillis("GetOrCompute", ttl)
	if fn == nil {
		err = &Error{Op: "GetOrCompute", Code: CodeInvalid, Message: "fn is nil"}
	}
	if err != nil {
		c.mu.RUnlock()
		return nil, err
	}
	call := &computeCall{fn: fn}
	h := cgo.NewHandle(call)
	defer h.Delete()
	r := C.sc_get_or_compute(c.h, kp, kl, ms, C.uintptr_t(h))
	c.mu.RUnlock()
	runtime.KeepAlive(key)

	if call.panicked {
		if r.rc == C.SZ_OK {
			C.sc_release(r.v)
		}
		if r.err != nil {
			C.free(unsafe.Pointer(r.err))
		}
		panic(call.panicVal)
	}
	if r.rc == C.SZ_OK {
		return newValue(r.v, r.data, r.len), nil
	}
	e := codeError("GetOrCompute", r.rc, r.err)
	if call.ran && call.err != nil {
		// Our own fn failed: give the caller its error, still recognisable as ErrBackend.
		return nil, &computeError{err: call.err, status: e}
	}
	return nil, e
}

// computeError is the error of a GetOrCompute whose fn failed: errors.Is/As see both fn's
// error and the library's ErrBackend.
type computeError struct {
	err    error
	status error
}

// Error says that the compute function failed, with its error.
func (e *computeError) Error() string {
	return fmt.Sprintf("smartcache: GetOrCompute: compute function failed: %v", e.err)
}

// Unwrap gives the compute function's own error.
func (e *computeError) Unwrap() error { return e.err }

// Is matches the library's status as well (ErrBackend).
func (e *computeError) Is(target error) bool { return errors.Is(e.status, target) }

// smartcacheGoCompute is the compute callback the library calls (through the C trampoline in
// shim.c) on a miss in GetOrCompute. It must never let a panic unwind into the library's
// frames, so it recovers and reports the panic through the computeCall.
//
//export smartcacheGoCompute
func smartcacheGoCompute(handle C.uintptr_t, key unsafe.Pointer, keyLen C.size_t, sink *C.sz_sink) (rc C.int) {
	call := cgo.Handle(handle).Value().(*computeCall)
	call.ran = true
	defer func() {
		if p := recover(); p != nil {
			call.panicked, call.panicVal = true, p
			rc = -1
		}
	}()
	value, err := call.fn()
	if err != nil {
		call.err = err
		return -1
	}
	if len(value) > 0 {
		// The sink copies the bytes before returning, so passing Go memory is allowed.
		if st := C.sz_sink_write(sink, unsafe.Pointer(&value[0]), C.size_t(len(value))); st != C.SZ_OK {
			call.err = &Error{Op: "GetOrCompute", Code: Code(st), Message: "sz_sink_write failed"}
			return st
		}
	}
	return C.SZ_OK
}
