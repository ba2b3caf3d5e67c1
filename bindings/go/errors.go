package smartcache

import (
	"errors"
	"fmt"
	"strings"
)

// Code is a status code of the C ABI (the SZ_* constants of smartcache.h).
type Code int

// The status codes of smartcache.h. The numbers are part of the ABI.
const (
	CodeOK             Code = 0   // SZ_OK
	CodeNotFound       Code = 1   // SZ_NOT_FOUND
	CodeInvalid        Code = -1  // SZ_ERR_INVALID
	CodeTooLarge       Code = -2  // SZ_ERR_TOO_LARGE
	CodeNoMem          Code = -3  // SZ_ERR_NOMEM
	CodeIO             Code = -4  // SZ_ERR_IO
	CodeBackend        Code = -5  // SZ_ERR_BACKEND
	CodeConfig         Code = -6  // SZ_ERR_CONFIG
	CodeBufferTooSmall Code = -7  // SZ_ERR_BUFFER_TOO_SMALL
	CodeInternal       Code = -99 // SZ_ERR_INTERNAL
)

// String describes the code the way sz_status_str does.
func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeNotFound:
		return "not found"
	case CodeInvalid:
		return "invalid argument"
	case CodeTooLarge:
		return "too large"
	case CodeNoMem:
		return "out of memory"
	case CodeIO:
		return "disk I/O error"
	case CodeBackend:
		return "backend error"
	case CodeConfig:
		return "configuration error"
	case CodeBufferTooSmall:
		return "buffer too small"
	case CodeInternal:
		return "internal error"
	}
	return fmt.Sprintf("status %d", int(c))
}

// Error is what every failing call returns: the operation, the library's status code and the
// message sz_last_error gave for it. Compare with the Err* sentinels through errors.Is, e.g.
// errors.Is(err, smartcache.ErrConfig); use errors.As to read Code and Message.
type Error struct {
	Op      string // the Go method that failed, e.g. "Set"
	Code    Code   // the SZ_* status
	Message string // sz_last_error() of the failing call ("" if the library gave none)

	cause error // a further sentinel this error also matches (ErrClosed)
}

// Error formats the error as "smartcache: Op: message (code)".
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Code.String()
	}
	if e.Op == "" {
		return "smartcache: " + msg
	}
	return fmt.Sprintf("smartcache: %s: %s (%s)", e.Op, msg, e.Code)
}

// Is makes errors.Is(err, ErrX) true when err carries ErrX's status code. Only the sentinels
// match by code; two ordinary errors are not "the same" merely because their codes agree.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.sentinel() && t.Code == e.Code
}

// Unwrap returns the further sentinel this error matches, if any (ErrClosed).
func (e *Error) Unwrap() error { return e.cause }

func (e *Error) sentinel() bool { return e.Op == "" && e.Message == "" && e.cause == nil }

// Sentinels, one per failure status of the C ABI. Use them with errors.Is.
var (
	// ErrInvalid: a bad argument, e.g. an empty key (SZ_ERR_INVALID).
	ErrInvalid error = &Error{Code: CodeInvalid}
	// ErrTooLarge: a key over 65535 bytes, or a value over max_value_size or over the memory
	// tier's byte budget when no lower tier is enabled to keep it (SZ_ERR_TOO_LARGE).
	ErrTooLarge error = &Error{Code: CodeTooLarge}
	// ErrNoMem: memory could not be allocated (SZ_ERR_NOMEM).
	ErrNoMem error = &Error{Code: CodeNoMem}
	// ErrIO: the disk tier's file could not be used, or is not a SmartCache file (SZ_ERR_IO).
	ErrIO error = &Error{Code: CodeIO}
	// ErrBackend: the Redis tier failed, or a GetOrCompute function failed (SZ_ERR_BACKEND).
	ErrBackend error = &Error{Code: CodeBackend}
	// ErrConfig: an unknown option or a bad option value, e.g. a redis_url the library cannot
	// parse (SZ_ERR_CONFIG).
	ErrConfig error = &Error{Code: CodeConfig}
	// ErrBufferTooSmall: a caller's buffer was too small (SZ_ERR_BUFFER_TOO_SMALL). The Go
	// API sizes its own buffers, so it does not normally return this.
	ErrBufferTooSmall error = &Error{Code: CodeBufferTooSmall}
	// ErrInternal: a bug in the library, e.g. a caught panic (SZ_ERR_INTERNAL).
	ErrInternal error = &Error{Code: CodeInternal}

	// ErrClosed: the Cache was used after Close. Such errors also match ErrInvalid.
	ErrClosed = errors.New("smartcache: cache is closed")
)

func closedError(op string) error {
	return &Error{Op: op, Code: CodeInvalid, Message: "cache is closed", cause: ErrClosed}
}

// IsNotAvailable reports whether err says that a tier was configured on that the library does
// not provide (ErrConfig with "not available in this build"). Libraries from before the Redis
// and disk tiers landed returned that; the current library has every tier, so this is false
// for its errors. Kept for compatibility.
func IsNotAvailable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == CodeConfig &&
		strings.Contains(e.Message, "not available in this build")
}
