package smartcache

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Never, as a TTL field of Config, means "entries of this tier never expire" (the option's
// value 0); as AutoExpireInterval it turns the background expiry sweep off. (The zero value of
// a Config field means "the library's default", so "none" needs its own value.)
const Never time.Duration = -1

// OptionNames lists every option the library accepts, in the order smartcache.h documents
// them. Each can be set through Config.Options by this name.
var OptionNames = []string{
	"memory_capacity", "memory_max_bytes", "memory_ttl", "compression_enabled",
	"compression_min_size", "jemalloc_enabled", "redis_enabled", "redis_url", "redis_ttl",
	"redis_timeout_ms", "redis_pool_size", "redis_key_prefix", "redis_tls_ca_file",
	"redis_tls_cert_file", "redis_tls_key_file", "redis_tls_server_name", "redis_invalidation",
	"disk_enabled", "disk_path",
	"disk_max_size", "disk_ttl", "enable_stats", "auto_expire_interval", "max_value_size",
	"value_secret", "value_secret_previous",
}

// Config holds the options of a cache, under the names of the guide's SmartCacheConfig.
//
// The zero value of every field means "the library's default" (listed per field), so
// Config{} opens a memory-only cache with defaults, and a field only needs setting to change
// it. TTLs and intervals are time.Duration values that must be whole seconds (the options are
// seconds); use Never for "no expiry". Booleans whose default is true are *bool: leave them
// nil for the default, or use Bool(false).
//
// Options is applied last, by option name and in text form exactly as sz_config_set takes it
// (e.g. "disk_max_size": "64M"), so it reaches every option, including any this struct lacks,
// and overrides the fields.
type Config struct {
	// MemoryCapacity bounds L1 in items (memory_capacity; default 1000).
	MemoryCapacity int
	// MemoryMaxBytes bounds L1 in bytes of keys + values (memory_max_bytes; default 0 = bounded
	// by items only; otherwise at least 4096).
	MemoryMaxBytes int64
	// MemoryTTL is L1's default lifetime (memory_ttl; default 300 s; Never = none).
	MemoryTTL time.Duration
	// CompressionEnabled tries LZ4 on values of CompressionMinSize bytes or more
	// (compression_enabled; default true).
	CompressionEnabled *bool
	// CompressionMinSize in bytes (compression_min_size; default 1024).
	CompressionMinSize int
	// JemallocEnabled takes L1 storage from a dedicated jemalloc arena (jemalloc_enabled;
	// default true).
	JemallocEnabled *bool

	// RedisEnabled turns on the Redis tier, L2 (redis_enabled; default false).
	RedisEnabled bool
	// RedisURL is redis://[user:password@]host:port/db, rediss://... (TLS),
	// redis+sentinel://host:port[,host:port]/master-name[/db] (also rediss+sentinel://),
	// a Redis Cluster's redis+cluster://[user:password@]host:port,host:port/ (seed nodes;
	// also rediss+cluster://; see docs/scaling.md), or unix:///path?db=N
	// (redis_url; default redis://localhost:6379/0).
	RedisURL string
	// RedisTTL is L2's default lifetime (redis_ttl; default 1800 s; Never = none).
	RedisTTL time.Duration
	// RedisTimeout bounds each whole Redis call (pool wait, connect, command), in whole
	// milliseconds (redis_timeout_ms; default 100 ms).
	RedisTimeout time.Duration
	// RedisPoolSize is the number of Redis connections, 1..1024 (redis_pool_size; default 4).
	RedisPoolSize int
	// RedisKeyPrefix namespaces this cache's keys in Redis (redis_key_prefix; default: derived
	// by the library as "sc:" + 32 hex digits of SHA-256(canonical disk_path) + ":", so caches
	// with the same DiskPath share their Redis entries and others never overlap). Caches share entries exactly when their prefixes (and Redis) match.
	RedisKeyPrefix string
	// RedisTLSCAFile is a PEM file of the CA certificates that verify a rediss:// server
	// (redis_tls_ca_file; default "" = the system's trust store).
	RedisTLSCAFile string
	// RedisTLSCertFile and RedisTLSKeyFile are a PEM client certificate and its key, for
	// servers that require one (redis_tls_cert_file, redis_tls_key_file; default none).
	RedisTLSCertFile string
	RedisTLSKeyFile  string
	// RedisTLSServerName is the name the server's certificate must carry
	// (redis_tls_server_name; default "" = the URL's host).
	RedisTLSServerName string

	// RedisInvalidation keeps the memory tier coherent with other hosts' writes: Redis reports
	// every key under this cache's prefix that anyone changes (CLIENT TRACKING ... BCAST) and it
	// is dropped from memory; while that connection is down, memory holds nothing
	// (redis_invalidation; default false; needs RedisEnabled and Redis 6 or later).
	RedisInvalidation bool

	// DiskEnabled turns on the disk tier, L3 (disk_enabled; default false).
	DiskEnabled bool
	// DiskPath is the directory holding the tier's files (disk_path; default per user:
	// $XDG_CACHE_HOME/smartcache, else $HOME/.cache/smartcache, else /tmp/smartcache-<euid>).
	// It and its files must belong to the process's effective user and not be writable by
	// group or others, and must not be symbolic links; otherwise Open fails with CodeIO.
	DiskPath string
	// DiskMaxSize is the most the file grows to, in bytes, laid out when it is created
	// (disk_max_size; default 256 MiB): it starts with a few MiB on disk and grows as entries
	// arrive. An existing file keeps the layout it was created with.
	DiskMaxSize int64
	// DiskTTL is L3's default lifetime (disk_ttl; default 3600 s; Never = none).
	DiskTTL time.Duration

	// EnableStats counts hits, misses and the rest (enable_stats; default true).
	EnableStats *bool
	// AutoExpireInterval is the period of the background expiry sweep (auto_expire_interval;
	// default 60 s; Never = no sweep, expired entries are then still never returned).
	AutoExpireInterval time.Duration
	// MaxValueSize is the largest value Set accepts, in bytes (max_value_size; default 16 MiB).
	MaxValueSize int

	// ValueSecret signs every value written to Redis and disk (HMAC-SHA256); a value found
	// there without a valid signature is a miss, counted in Stats.RedisTampered /
	// DiskTampered (value_secret; default "" = off; else 16 to 4096 bytes, the same in every
	// process sharing the cache). Printing a Config never shows it.
	ValueSecret Secret
	// ValueSecretPrevious is accepted when verifying only, to rotate ValueSecret across a
	// fleet without misses (value_secret_previous; default "" = none).
	ValueSecretPrevious Secret

	// Options sets options by name, in the text form of sz_config_set; applied after the
	// fields above.
	Options map[string]string
}

// Secret is a secret option's value. Its String and GoString hide it, so fmt never prints it.
type Secret string

// String returns "***" for a set secret and "" for an unset one.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "***"
}

// GoString hides the secret from %#v too.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Bool returns a pointer to b, for the *bool fields of Config.
func Bool(b bool) *bool { return &b }

// options turns the set fields into (name, text value) pairs, then Options in name order (so
// that errors are reproducible).
func (c *Config) options() ([][2]string, error) {
	var out [][2]string
	add := func(name, value string) { out = append(out, [2]string{name, value}) }
	num := func(name string, v int64) {
		if v != 0 {
			add(name, strconv.FormatInt(v, 10))
		}
	}
	flag := func(name string, b *bool) {
		if b != nil {
			add(name, strconv.FormatBool(*b))
		}
	}
	secs := func(name string, d time.Duration) error {
		switch {
		case d == 0:
			return nil
		case d == Never:
			add(name, "0")
		case d < 0 || d%time.Second != 0:
			return &Error{Op: "Open", Code: CodeConfig, Message: fmt.Sprintf(
				"bad value %v for option '%s': expected whole seconds, or Never", d, name)}
		default:
			add(name, strconv.FormatInt(int64(d/time.Second), 10))
		}
		return nil
	}

	num("memory_capacity", int64(c.MemoryCapacity))
	num("memory_max_bytes", c.MemoryMaxBytes)
	if err := secs("memory_ttl", c.MemoryTTL); err != nil {
		return nil, err
	}
	flag("compression_enabled", c.CompressionEnabled)
	num("compression_min_size", int64(c.CompressionMinSize))
	flag("jemalloc_enabled", c.JemallocEnabled)
	if c.RedisEnabled {
		add("redis_enabled", "true")
	}
	if c.RedisURL != "" {
		add("redis_url", c.RedisURL)
	}
	if err := secs("redis_ttl", c.RedisTTL); err != nil {
		return nil, err
	}
	if c.RedisTimeout != 0 {
		if c.RedisTimeout < 0 || c.RedisTimeout%time.Millisecond != 0 {
			return nil, &Error{Op: "Open", Code: CodeConfig, Message: fmt.Sprintf(
				"bad value %v for option 'redis_timeout_ms': expected whole milliseconds",
				c.RedisTimeout)}
		}
		add("redis_timeout_ms", strconv.FormatInt(c.RedisTimeout.Milliseconds(), 10))
	}
	num("redis_pool_size", int64(c.RedisPoolSize))
	if c.RedisKeyPrefix != "" {
		add("redis_key_prefix", c.RedisKeyPrefix)
	}
	for _, o := range [...]struct{ name, value string }{
		{"redis_tls_ca_file", c.RedisTLSCAFile},
		{"redis_tls_cert_file", c.RedisTLSCertFile},
		{"redis_tls_key_file", c.RedisTLSKeyFile},
		{"redis_tls_server_name", c.RedisTLSServerName},
	} {
		if o.value != "" {
			add(o.name, o.value)
		}
	}
	if c.RedisInvalidation {
		add("redis_invalidation", "true")
	}
	if c.DiskEnabled {
		add("disk_enabled", "true")
	}
	if c.DiskPath != "" {
		add("disk_path", c.DiskPath)
	}
	num("disk_max_size", c.DiskMaxSize)
	if err := secs("disk_ttl", c.DiskTTL); err != nil {
		return nil, err
	}
	flag("enable_stats", c.EnableStats)
	if err := secs("auto_expire_interval", c.AutoExpireInterval); err != nil {
		return nil, err
	}
	num("max_value_size", int64(c.MaxValueSize))
	if c.ValueSecret != "" {
		add("value_secret", string(c.ValueSecret))
	}
	if c.ValueSecretPrevious != "" {
		add("value_secret_previous", string(c.ValueSecretPrevious))
	}

	names := make([]string, 0, len(c.Options))
	for n := range c.Options {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		add(n, c.Options[n])
	}
	return out, nil
}

// newNativeConfig builds an sz_config from c; the caller frees it with sz_config_free.
func newNativeConfig(op string, c *Config) (*C.sz_config, error) {
	opts, err := c.options()
	if err != nil {
		return nil, err
	}
	cfg := C.sz_config_new()
	if cfg == nil {
		return nil, &Error{Op: op, Code: CodeNoMem, Message: "sz_config_new failed"}
	}
	for _, o := range opts {
		if err := configSet(op, cfg, o[0], o[1]); err != nil {
			C.sz_config_free(cfg)
			return nil, err
		}
	}
	return cfg, nil
}

func configSet(op string, cfg *C.sz_config, name, value string) error {
	// C strings end at the first NUL: refuse one rather than silently set a truncated value.
	if strings.IndexByte(name, 0) >= 0 || strings.IndexByte(value, 0) >= 0 {
		shown := value
		if strings.HasPrefix(name, "value_secret") {
			shown = Secret(value).String()
		}
		return &Error{Op: op, Code: CodeConfig, Message: fmt.Sprintf(
			"option %q = %q: names and values cannot contain NUL bytes", name, shown)}
	}
	cn, cv := C.CString(name), C.CString(value)
	defer C.free(unsafe.Pointer(cn))
	defer C.free(unsafe.Pointer(cv))
	return statusError(op, C.sc_config_set(cfg, cn, cv))
}

// DefaultOptions returns every option at the library's default, in the text form that
// Config.Options accepts (read back from the library, so it is always current).
func DefaultOptions() (map[string]string, error) {
	cfg := C.sz_config_new()
	if cfg == nil {
		return nil, &Error{Op: "DefaultOptions", Code: CodeNoMem, Message: "sz_config_new failed"}
	}
	defer C.sz_config_free(cfg)
	out := make(map[string]string, len(OptionNames))
	for _, name := range OptionNames {
		cn := C.CString(name)
		r := C.sc_config_get(cfg, cn)
		C.free(unsafe.Pointer(cn))
		if r.s == nil {
			return nil, codeError("DefaultOptions", r.rc, r.err)
		}
		out[name] = C.GoString(r.s)
		C.sz_string_free(r.s)
	}
	return out, nil
}

// statusError turns a failing sc_status into an *Error (nil for SZ_OK and SZ_NOT_FOUND), and
// frees the copied message.
func statusError(op string, s C.sc_status) error {
	if s.rc >= 0 {
		return nil
	}
	return codeError(op, s.rc, s.err)
}

// codeError builds an *Error from a status and a malloc'd message (which it frees; may be NULL).
func codeError(op string, rc C.int, msg *C.char) error {
	e := &Error{Op: op, Code: Code(rc)}
	if msg != nil {
		e.Message = C.GoString(msg)
		C.free(unsafe.Pointer(msg))
	}
	return e
}
