package smartcache

// L1 entry blocks come from a per-thread jemalloc thread cache, destroyed when the thread exits.
// Goroutines that call runtime.LockOSThread and return without unlocking make Go terminate their
// OS thread; values must stay correct, and pins (GetPinned) valid until Release, from any
// goroutine, also after Close.

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockedThreadChurn(t *testing.T) {
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
	threads0 := osThreadCount()
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
				if err := c.Set(own, keyedPayload(id, la), 0); err != nil {
					fail("Set: %v", err)
				}
				pa, ok, err := c.GetPinned(own)
				if err != nil || !ok || !bytes.Equal(pa.Bytes(), keyedPayload(id, la)) {
					fail("GetPinned %s after set (len %d): %v %v", own, la, ok, err)
				}
				if err := c.Set(own, keyedPayload(id, lb), 0); err != nil {
					fail("overwrite: %v", err)
				}
				if got, ok, err := c.Get(own); err != nil || !ok || !bytes.Equal(got, keyedPayload(id, lb)) {
					fail("Get %s after overwrite: %d bytes, want %d", own, len(got), lb)
				}
				if ok, err := c.Delete(own); err != nil || !ok {
					fail("Delete %s: %v %v", own, ok, err)
				}
				if _, ok, _ := c.Get(own); ok {
					fail("%s found after delete", own)
				}
				if pa != nil {
					if !bytes.Equal(pa.Bytes(), keyedPayload(id, la)) {
						fail("pin of %s changed by overwrite + delete", own)
					}
					pa.Release()
				}
				k := next() % 64
				if err := c.Set([]byte(fmt.Sprint("sh-", k)), keyedPayload(k, 1+int(next()%4096)), 0); err != nil {
					fail("shared Set: %v", err)
				}
				k2 := next() % 64
				if got, ok, _ := c.Get([]byte(fmt.Sprint("sh-", k2))); ok && !bytes.Equal(got, keyedPayload(k2, len(got))) {
					fail("sh-%d: %d bytes not its own", k2, len(got))
				}
			}
			for r := 0; r < 2; r++ {
				n := 1 + (tid*7+r*977)%4096
				if err := c.Set([]byte(fmt.Sprintf("keep-%d-%d", tid, r)), keyedPayload(uint32(1000000+tid*2+r), n), 0); err != nil {
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
			if err != nil || !ok || !bytes.Equal(got, keyedPayload(uint32(1000000+tid*2+r), n)) {
				lost++
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d values written on threads that have ended are wrong or missing", lost, total*2)
	}
	t.Logf("%d locked goroutines in %v; OS threads %d before, %d after", total, elapsed, threads0, osThreadCount())
}

// (c) Pins taken on locked goroutines whose threads then end, kept through overwrite, delete,
// eviction and more thread churn, released on other goroutines, half of them after Close.
func TestPinsOutliveTheirThread(t *testing.T) {
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
				if err := c.Set(k, keyedPayload(uint32(i), n), 0); err != nil {
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
				c.Set([]byte(fmt.Sprintf("q-%d-%d", g, i)), keyedPayload(uint32(50000+i), 1+(g*31+i*17)%4096), 0)
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
			if !bytes.Equal(p.v.Bytes(), keyedPayload(p.id, p.n)) || p.v.Len() != p.n {
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

// osThreadCount: the process's OS thread count (for the log only).
func osThreadCount() int {
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
