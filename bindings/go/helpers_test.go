package smartcache

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// collectConstantly runs the garbage collector over and over (pausing between runs) until the
// returned stop is called, which waits for the last run to end: slices handed to C while it
// runs must still be where C reads them.
func collectConstantly(pause time.Duration) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
				runtime.GC()
				time.Sleep(pause)
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// open opens a cache for one test and closes it when the test ends.
func open(t testing.TB, cfg Config) *Cache {
	t.Helper()
	c, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// openTier opens a cache that needs a tier this build may not have yet: it skips the test
// only when Open says exactly that (ErrConfig, "not available in this build").
func openTier(t *testing.T, cfg Config) *Cache {
	t.Helper()
	c, err := Open(cfg)
	if err != nil {
		if errors.Is(err, ErrConfig) && strings.Contains(err.Error(), "not available in this build") {
			if !IsNotAvailable(err) {
				t.Fatalf("IsNotAvailable(%v) = false", err)
			}
			t.Skipf("tier not in this build yet: %v", err)
		}
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustSet(t testing.TB, c *Cache, key, value string) {
	t.Helper()
	if err := c.Set([]byte(key), []byte(value), 0); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

// wantValue checks that key holds want, through both Get and GetPinned.
func wantValue(t testing.TB, c *Cache, key string, want []byte) {
	t.Helper()
	got, ok, err := c.Get([]byte(key))
	if err != nil || !ok || !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %q, %v, %v; want %q", key, got, ok, err, want)
	}
	v, ok, err := c.GetPinned([]byte(key))
	if err != nil || !ok {
		t.Fatalf("GetPinned(%q) = %v, %v", key, ok, err)
	}
	defer v.Release()
	if !bytes.Equal(v.Bytes(), want) || v.Len() != len(want) {
		t.Fatalf("GetPinned(%q) = %q (len %d); want %q", key, v.Bytes(), v.Len(), want)
	}
}

func wantMissing(t testing.TB, c *Cache, key string) {
	t.Helper()
	got, ok, err := c.Get([]byte(key))
	if err != nil || ok || got != nil {
		t.Fatalf("Get(%q) = %q, %v, %v; want a miss", key, got, ok, err)
	}
	v, ok, err := c.GetPinned([]byte(key))
	if err != nil || ok || v != nil {
		t.Fatalf("GetPinned(%q) = %v, %v, %v; want a miss", key, v, ok, err)
	}
}

// wantCode checks err is an *Error with the given code, matching the sentinel, and whose
// message contains msg.
func wantCode(t testing.TB, err error, sentinel error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error; want %v", sentinel)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("errors.Is(%v, %v) = false", err, sentinel)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%v (%T) is not an *Error", err, err)
	}
	if e.Code != sentinel.(*Error).Code {
		t.Fatalf("code %d, want %d", e.Code, sentinel.(*Error).Code)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q does not mention %q", err, msg)
	}
}

// surelyLive reports whether an entry set with ttl at or after setStart must still be live
// now, less 1 ms for the cache's clock (which errs early). Called after a read, it says
// whether the read surely began before the deadline.
func surelyLive(setStart time.Time, ttl time.Duration) bool {
	return time.Since(setStart) < ttl-time.Millisecond
}

// wantValueWhileLive is wantValue for an entry set with a short ttl at or after setStart: a
// busy machine (or -race) can stall the test past the ttl before the read, and then the entry
// has rightly expired. A hit must hold want; a miss fails only if the read surely came within
// the ttl. It reports whether both reads hit.
func wantValueWhileLive(t testing.TB, c *Cache, key string, want []byte, setStart time.Time, ttl time.Duration) bool {
	t.Helper()
	got, ok, err := c.Get([]byte(key))
	if err != nil || (ok && !bytes.Equal(got, want)) || (!ok && surelyLive(setStart, ttl)) {
		t.Fatalf("Get(%q) = %q, %v, %v %v after the set; want %q", key, got, ok, err, time.Since(setStart), want)
	}
	v, pok, err := c.GetPinned([]byte(key))
	if err != nil || (!pok && surelyLive(setStart, ttl)) {
		t.Fatalf("GetPinned(%q) = %v, %v %v after the set", key, pok, err, time.Since(setStart))
	}
	if pok {
		defer v.Release()
		if !bytes.Equal(v.Bytes(), want) || v.Len() != len(want) {
			t.Fatalf("GetPinned(%q) = %q (len %d); want %q", key, v.Bytes(), v.Len(), want)
		}
	}
	return ok && pok
}

func randomPayload(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// privateRedisConfig is the private test Redis under a fresh prefix, or a skip when there is none.
func privateRedisConfig(t *testing.T) Config {
	url := os.Getenv("SMARTCACHE_TEST_REDIS_URL")
	if url == "" {
		t.Fatal("SMARTCACHE_TEST_REDIS_URL is not set (run through make test-go)")
	}
	prefix := fmt.Sprintf("go-redis-%d-%d:", os.Getpid(), time.Now().UnixNano())
	return Config{RedisEnabled: true, RedisURL: url, RedisKeyPrefix: prefix, RedisTimeout: time.Second}
}

// keyedPayload: bytes that are a function of (key id, length), so any writer's value verifies.
func keyedPayload(id uint32, n int) []byte {
	b := make([]byte, n)
	s := id*2654435761 ^ uint32(n)*40503 ^ 0x9e3779b9
	for i := range b {
		s = s*1103515245 + 12345
		b[i] = byte(s >> 23)
	}
	return b
}
