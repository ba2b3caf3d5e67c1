package smartcache

// Redis host names (guide, "L2 — Redis"): "Host names are looked up by the system resolver on a
// thread of the library's own, and a call waits for the answer only within redis_timeout_ms".
// Against the private redis-server of scripts/with-redis.sh (SMARTCACHE_TEST_REDIS_URL, bound to
// 127.0.0.1), addressed as "localhost".

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

const redisCallBound = 2 * time.Second // redis_timeout_ms (100) plus generous slack

func localhostRedisURL(t *testing.T) string {
	raw := os.Getenv("SMARTCACHE_TEST_REDIS_URL")
	if raw == "" {
		t.Fatal("SMARTCACHE_TEST_REDIS_URL is not set (run through make test-go / scripts/with-redis.sh)")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Port() == "" {
		t.Fatalf("SMARTCACHE_TEST_REDIS_URL %q: %v", raw, err)
	}
	return "redis://localhost:" + u.Port() + "/0"
}

// withinCallBound runs f and fails the test if it took longer than the bound.
func withinCallBound(t *testing.T, label string, f func()) {
	t.Helper()
	t0 := time.Now()
	f()
	if d := time.Since(t0); d >= redisCallBound {
		t.Errorf("%s took %v (bound %v)", label, d, redisCallBound)
	}
}

// (a) redis://localhost:<port>/0 end to end: set in one cache, read from another with an empty
// memory tier and the same prefix, and from a MemoryCapacity=1 cache.
func TestRedisLocalhostURL(t *testing.T) {
	u := localhostRedisURL(t)
	prefix := fmt.Sprintf("go-localhost-%d-%d:", os.Getpid(), time.Now().UnixNano())
	// 5 s: the first call looks "localhost" up on the library's resolver thread and connects
	// within this budget; under -race on a busy machine that can take longer than 500 ms, and
	// the subject here is the round trip, not the timeout.
	cfg := Config{RedisEnabled: true, RedisURL: u, RedisKeyPrefix: prefix, RedisTimeout: 5 * time.Second}
	a := open(t, cfg)
	b := open(t, cfg)
	val := keyedPayload(1, 3000)
	if err := a.Set([]byte("lh"), val, time.Minute); err != nil {
		t.Fatal(err)
	}
	if h, _ := a.Health(); !h.Healthy || !h.Redis.Up {
		t.Fatalf("health after set on localhost: %+v", h)
	}
	wantValue(t, b, "lh", val)
	if s, _ := b.Stats(); s.RedisHits == 0 || s.RedisErrors != 0 {
		t.Fatalf("second cache: RedisHits %d RedisErrors %d", s.RedisHits, s.RedisErrors)
	}
	cfg1 := cfg
	cfg1.MemoryCapacity = 1
	c := open(t, cfg1)
	for i := 0; i < 8; i++ {
		if err := c.Set([]byte(fmt.Sprint("cap1-", i)), keyedPayload(uint32(100+i), 100+i), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 8; i++ {
		got, ok, err := c.Get([]byte(fmt.Sprint("cap1-", i)))
		if err != nil || !ok || !bytes.Equal(got, keyedPayload(uint32(100+i), 100+i)) {
			t.Fatalf("cap1-%d: %d bytes, %v, %v", i, len(got), ok, err)
		}
	}
	if s, _ := c.Stats(); s.RedisHits < 6 {
		t.Fatalf("capacity-1 cache answered %d of 8 from Redis", s.RedisHits)
	}
	c.Clear()
}

// (b) redis://no-such-host.invalid: Open and every call return within the bound; gets of what
// memory lacks miss; Set still stores in memory; Health says Redis is down, naming the host.
func TestRedisUnresolvableHostNoHang(t *testing.T) {
	cfg := Config{RedisEnabled: true, RedisURL: "redis://no-such-host.invalid:6379/0",
		RedisTimeout: 100 * time.Millisecond, RedisKeyPrefix: "go-unresolvable:"}
	var c *Cache
	withinCallBound(t, "Open", func() {
		var err error
		c, err = Open(cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
	})
	if c == nil {
		return
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				k := []byte(fmt.Sprintf("k-%d-%d", g, i))
				withinCallBound(t, "Set", func() {
					if err := c.Set(k, []byte("v"), 0); err != nil {
						t.Errorf("Set: %v", err)
					}
				})
				withinCallBound(t, "Get (memory)", func() {
					if v, ok, err := c.Get(k); err != nil || !ok || string(v) != "v" {
						t.Errorf("Get(%s) = %q %v %v", k, v, ok, err)
					}
				})
				withinCallBound(t, "Get (miss)", func() {
					if _, ok, err := c.Get([]byte("absent")); err != nil || ok {
						t.Errorf("Get(absent) = %v %v", ok, err)
					}
				})
				withinCallBound(t, "GetPinned (miss)", func() {
					if v, ok, err := c.GetPinned([]byte("absent")); err != nil || ok || v != nil {
						t.Errorf("GetPinned(absent) = %v %v", ok, err)
					}
				})
				withinCallBound(t, "Exists", func() {
					if ok, err := c.Exists([]byte("absent")); err != nil || ok {
						t.Errorf("Exists(absent) = %v %v", ok, err)
					}
				})
				withinCallBound(t, "Delete", func() {
					if ok, err := c.Delete(k); err != nil || !ok {
						t.Errorf("Delete(%s) = %v %v", k, ok, err)
					}
				})
			}
		}(g)
	}
	wg.Wait()
	var h Health
	withinCallBound(t, "Health", func() { h, _ = c.Health() })
	if h.Healthy || !h.Redis.Enabled || h.Redis.Up {
		t.Errorf("Health = %+v; want Redis enabled and down", h)
	}
	if !strings.Contains(h.Redis.LastError, "no-such-host.invalid") {
		t.Errorf("Redis.LastError = %q; want it to name the host", h.Redis.LastError)
	}
	withinCallBound(t, "Close", func() { c.Close() })
}

// (c) Short-lived OS threads: goroutines lock their thread and return still locked, so Go ends
// the thread (and the library's per-thread cache with it). 2000 of them, 8 at a time, each with
// a set / get / pinned get / overwrite / delete cycle on one shared cache, values 1..4096 bytes
// checked byte for byte; two values per goroutine left behind and checked after all are gone.
