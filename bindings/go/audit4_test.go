package smartcache

// Fourth audit, from docs/guide.md, include/smartcache.h and the binding's README only.
//
//  1. Redis host names (guide, "L2 — Redis"): "Host names are looked up by the system resolver on
//     a thread of the library's own, and a call waits for the answer only within
//     redis_timeout_ms". Against the private redis-server of scripts/with-redis.sh
//     (SMARTCACHE_TEST_REDIS_URL, bound to 127.0.0.1), addressed as "localhost".
//  2. L1 entry blocks from a per-thread jemalloc thread cache, destroyed when the thread exits.
//     Goroutines that call runtime.LockOSThread and return without unlocking make Go terminate
//     their OS thread; values must stay correct, and pins (GetPinned) valid until Release, from
//     any goroutine, also after Close.

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const audit4CallBound = 2 * time.Second // redis_timeout_ms (100) plus generous slack

// audit4Payload: bytes that are a function of (key id, length), so any writer's value verifies.
func audit4Payload(id uint32, n int) []byte {
	b := make([]byte, n)
	s := id*2654435761 ^ uint32(n)*40503 ^ 0x9e3779b9
	for i := range b {
		s = s*1103515245 + 12345
		b[i] = byte(s >> 23)
	}
	return b
}

func audit4LocalhostURL(t *testing.T) string {
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

// audit4Timed runs f and fails the test if it took longer than the bound.
func audit4Timed(t *testing.T, label string, f func()) {
	t.Helper()
	t0 := time.Now()
	f()
	if d := time.Since(t0); d >= audit4CallBound {
		t.Errorf("%s took %v (bound %v)", label, d, audit4CallBound)
	}
}

// (a) redis://localhost:<port>/0 end to end: set in one cache, read from another with an empty
// memory tier and the same prefix, and from a MemoryCapacity=1 cache.
func TestAudit4RedisLocalhostURL(t *testing.T) {
	u := audit4LocalhostURL(t)
	prefix := fmt.Sprintf("audit4-go-%d-%d:", os.Getpid(), time.Now().UnixNano())
	// 5 s: the first call looks "localhost" up on the library's resolver thread and connects
	// within this budget; under -race on a busy machine that can take longer than 500 ms, and
	// the subject here is the round trip, not the timeout.
	cfg := Config{RedisEnabled: true, RedisURL: u, RedisKeyPrefix: prefix, RedisTimeout: 5 * time.Second}
	a := open(t, cfg)
	b := open(t, cfg)
	val := audit4Payload(1, 3000)
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
		if err := c.Set([]byte(fmt.Sprint("cap1-", i)), audit4Payload(uint32(100+i), 100+i), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 8; i++ {
		got, ok, err := c.Get([]byte(fmt.Sprint("cap1-", i)))
		if err != nil || !ok || !bytes.Equal(got, audit4Payload(uint32(100+i), 100+i)) {
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
func TestAudit4RedisUnresolvableHostNoHang(t *testing.T) {
	cfg := Config{RedisEnabled: true, RedisURL: "redis://no-such-host.invalid:6379/0",
		RedisTimeout: 100 * time.Millisecond, RedisKeyPrefix: "audit4-go-invalid:"}
	var c *Cache
	audit4Timed(t, "Open", func() {
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
				audit4Timed(t, "Set", func() {
					if err := c.Set(k, []byte("v"), 0); err != nil {
						t.Errorf("Set: %v", err)
					}
				})
				audit4Timed(t, "Get (memory)", func() {
					if v, ok, err := c.Get(k); err != nil || !ok || string(v) != "v" {
						t.Errorf("Get(%s) = %q %v %v", k, v, ok, err)
					}
				})
				audit4Timed(t, "Get (miss)", func() {
					if _, ok, err := c.Get([]byte("absent")); err != nil || ok {
						t.Errorf("Get(absent) = %v %v", ok, err)
					}
				})
				audit4Timed(t, "GetPinned (miss)", func() {
					if v, ok, err := c.GetPinned([]byte("absent")); err != nil || ok || v != nil {
						t.Errorf("GetPinned(absent) = %v %v", ok, err)
					}
				})
				audit4Timed(t, "Exists", func() {
					if ok, err := c.Exists([]byte("absent")); err != nil || ok {
						t.Errorf("Exists(absent) = %v %v", ok, err)
					}
				})
				audit4Timed(t, "Delete", func() {
					if ok, err := c.Delete(k); err != nil || !ok {
						t.Errorf("Delete(%s) = %v %v", k, ok, err)
					}
				})
			}
		}(g)
	}
	wg.Wait()
	var h Health
	audit4Timed(t, "Health", func() { h, _ = c.Health() })
	if h.Healthy || !h.Redis.Enabled || h.Redis.Up {
		t.Errorf("Health = %+v; want Redis enabled and down", h)
	}
	if !strings.Contains(h.Redis.LastError, "no-such-host.invalid") {
		t.Errorf("Redis.LastError = %q; want it to name the host", h.Redis.LastError)
	}
	audit4Timed(t, "Close", func() { c.Close() })
}

// (c) Short-lived OS threads: goroutines lock their thread and return still locked, so Go ends
// the thread (and the library's per-thread cache with it). 2000 of them, 8 at a time, each with
// a set / get / pinned get / overwrite / delete cycle on one shared cache, values 1..4096 bytes
// checked byte for byte; two values per goroutine left behind and checked after all are gone.
func TestAudit4LockedThreadChurn(t *testing.T) {
	total := 2000
	c := open(t, Config{MemoryCapacity: 20000, CompressionEnabled: Bool(false)})
	if s, _ := c.Stats(); !s.Jemalloc {
		t.Errorf("Stats.Jemalloc = false; jemalloc_enabled defaults to true")
	}
	var failures int64
	var firstErr atomic.Value
	fail := func(format string, a ...interface{}) {
		if atomic.AddInt64(&failures, 1) == 1 {
			firstErr.Store(fmt.Sprintf(format, a...))
		}
	}
	threads0 := audit4Threads()
	t0 := time.Now()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for tid := 0; tid < total; tid++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(tid int) {
			defer wg.Done()
			defer func() { <-sem }()
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			s := uint32(tid)*747796405 + 1
			next := func() uint32 { s ^= s << 13; s ^= s >> 17; s ^= s << 5; return s }
			own := []byte(fmt.Sprintf("own-%d", tid))
			id := uint32(100000 + tid)
			for r := 0; r < 2; r++ {
				la, lb := 1+int(next()%4096), 1+int(next()%4096)
				if err := c.Set(own, audit4Payload(id, la), 0); err != nil {
					fail("Set: %v", err)
				}
				pa, ok, err := c.GetPinned(own)
				if err != nil || !ok || !bytes.Equal(pa.Bytes(), audit4Payload(id, la)) {
					fail("GetPinned %s after set (len %d): %v %v", own, la, ok, err)
				}
				if err := c.Set(own, audit4Payload(id, lb), 0); err != nil {
					fail("overwrite: %v", err)
				}
				if got, ok, err := c.Get(own); err != nil || !ok || !bytes.Equal(got, audit4Payload(id, lb)) {
					fail("Get %s after overwrite: %d bytes, want %d", own, len(got), lb)
				}
				if ok, err := c.Delete(own); err != nil || !ok {
					fail("Delete %s: %v %v", own, ok, err)
				}
				if _, ok, _ := c.Get(own); ok {
					fail("%s found after delete", own)
				}
				if pa != nil {
					if !bytes.Equal(pa.Bytes(), audit4Payload(id, la)) {
						fail("pin of %s changed by overwrite + delete", own)
					}
					pa.Release()
				}
				k := next() % 64
				if err := c.Set([]byte(fmt.Sprint("sh-", k)), audit4Payload(k, 1+int(next()%4096)), 0); err != nil {
					fail("shared Set: %v", err)
				}
				k2 := next() % 64
				if got, ok, _ := c.Get([]byte(fmt.Sprint("sh-", k2))); ok && !bytes.Equal(got, audit4Payload(k2, len(got))) {
					fail("sh-%d: %d bytes not its own", k2, len(got))
				}
			}
			for r := 0; r < 2; r++ {
				n := 1 + (tid*7+r*977)%4096
				if err := c.Set([]byte(fmt.Sprintf("keep-%d-%d", tid, r)), audit4Payload(uint32(1000000+tid*2+r), n), 0); err != nil {
					fail("keep Set: %v", err)
				}
			}
		}(tid)
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if n := atomic.LoadInt64(&failures); n > 0 {
		t.Errorf("%d failures; first: %v", n, firstErr.Load())
	}
	lost := 0
	for tid := 0; tid < total; tid++ {
		for r := 0; r < 2; r++ {
			n := 1 + (tid*7+r*977)%4096
			got, ok, err := c.Get([]byte(fmt.Sprintf("keep-%d-%d", tid, r)))
			if err != nil || !ok || !bytes.Equal(got, audit4Payload(uint32(1000000+tid*2+r), n)) {
				lost++
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d values written on threads that have ended are wrong or missing", lost, total*2)
	}
	t.Logf("%d locked goroutines in %v; OS threads %d before, %d after", total, elapsed, threads0, audit4Threads())
}

// (c) Pins taken on locked goroutines whose threads then end, kept through overwrite, delete,
// eviction and more thread churn, released on other goroutines, half of them after Close.
func TestAudit4PinsOutliveTheirThread(t *testing.T) {
	c, err := Open(Config{MemoryCapacity: 64, CompressionEnabled: Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	type pin struct {
		v  *Value
		id uint32
		n  int
	}
	pins := make(chan pin, 256)
	for base := 0; base < 256; base += 32 {
		done := make(chan struct{})
		go func(base int) {
			defer close(done)
			runtime.LockOSThread()
			for i := base; i < base+32; i++ {
				n := 0
				if i%5 != 0 {
					n = 1 + (i*389)%4096
				}
				k := []byte(fmt.Sprint("p-", i))
				if err := c.Set(k, audit4Payload(uint32(i), n), 0); err != nil {
					t.Errorf("Set: %v", err)
				}
				v, ok, err := c.GetPinned(k)
				if err != nil || !ok {
					t.Errorf("GetPinned(%s): %v %v", k, ok, err)
					continue
				}
				pins <- pin{v, uint32(i), n}
			}
		}(base)
		<-done
	}
	close(pins)
	var all []pin
	for p := range pins {
		all = append(all, p)
	}
	// Churn on more ending threads: overwrite / delete the pinned keys, evict everything.
	var wg sync.WaitGroup
	for g := 0; g < 200; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			runtime.LockOSThread()
			for i := 0; i < 32; i++ {
				c.Set([]byte(fmt.Sprintf("q-%d-%d", g, i)), audit4Payload(uint32(50000+i), 1+(g*31+i*17)%4096), 0)
				k := []byte(fmt.Sprint("p-", (g+i)%256))
				if i%2 == 0 {
					c.Delete(k)
				} else {
					c.Set(k, []byte("overwritten"), 0)
				}
			}
		}(g)
		if g%8 == 7 {
			wg.Wait()
		}
	}
	wg.Wait()
	if s, _ := c.Stats(); s.Evictions == 0 {
		t.Errorf("no evictions with MemoryCapacity 64")
	}
	c.Clear()
	check := func(ps []pin) int {
		bad := 0
		for _, p := range ps {
			if !bytes.Equal(p.v.Bytes(), audit4Payload(p.id, p.n)) || p.v.Len() != p.n {
				bad++
			}
			p.v.Release()
		}
		return bad
	}
	var bad1, bad2 int
	done := make(chan struct{})
	go func() { defer close(done); bad1 = check(all[:len(all)/2]) }()
	<-done
	c.Close()
	done = make(chan struct{})
	go func() { defer close(done); runtime.LockOSThread(); bad2 = check(all[len(all)/2:]) }()
	<-done
	if len(all) != 256 || bad1+bad2 > 0 {
		t.Errorf("%d pins; %d changed before Close, %d after", len(all), bad1, bad2)
	}
}

// audit4Threads: the process's OS thread count (for the log only).
func audit4Threads() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Threads:") {
			var n int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "Threads:")), "%d", &n)
			return n
		}
	}
	return -1
}
