package smartcache

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// A pinned value keeps its bytes, unchanged, through whatever happens to its entry.
func TestPinnedValueOutlivesItsEntry(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 32})
	want := bytes.Repeat([]byte("pinned!"), 300) // larger than a cache line or two
	events := map[string]func(){
		"overwrite": func() { mustSet(t, c, "k", "something else entirely") },
		"delete":    func() { c.Delete([]byte("k")) },
		"clear":     func() { c.Clear() },
		"evict": func() {
			for i := 0; i < 2000; i++ {
				mustSet(t, c, fmt.Sprint("filler", i), "x")
			}
		},
		"clear-then-refill": func() {
			c.Clear()
			for i := 0; i < 100; i++ {
				mustSet(t, c, fmt.Sprint("reuse", i), string(bytes.Repeat([]byte{'Z'}, len(want))))
			}
		},
	}
	for name, event := range events {
		t.Run(name, func(t *testing.T) {
			if err := c.Set([]byte("k"), want, 0); err != nil {
				t.Fatal(err)
			}
			v, ok, err := c.GetPinned([]byte("k"))
			if err != nil || !ok {
				t.Fatal(ok, err)
			}
			b := v.Bytes()
			event()
			if !bytes.Equal(b, want) || !bytes.Equal(v.Bytes(), want) {
				t.Fatalf("pinned bytes changed after %s", name)
			}
			v.Release()
			if v.Bytes() != nil || v.Len() != len(want) {
				t.Fatalf("after Release: Bytes %v Len %d", v.Bytes() != nil, v.Len())
			}
			v.Release() // a second Release is a no-op
		})
	}
}

func TestPinnedValueSurvivesExpiry(t *testing.T) {
	c := open(t, Config{AutoExpireInterval: Never})
	// 200 ms; should a loaded machine (or -race) stall the test past it before the pin is
	// taken (the entry then rightly expired), again with a longer ttl.
	var v *Value
	ttl := 200 * time.Millisecond
	for ; ; ttl *= 4 {
		start := time.Now()
		if err := c.Set([]byte("k"), []byte("short-lived"), ttl); err != nil {
			t.Fatal(err)
		}
		pinned, ok, err := c.GetPinned([]byte("k"))
		if err != nil || (!ok && surelyLive(start, ttl)) {
			t.Fatal(ok, err)
		}
		if ok {
			v = pinned
			break
		}
		if ttl > time.Minute {
			t.Fatal("never pinned within the ttl")
		}
	}
	defer v.Release()
	time.Sleep(ttl + 100*time.Millisecond)
	if n, _ := c.ExpireNow(); n != 1 {
		t.Fatalf("ExpireNow reclaimed %d entries; want 1", n)
	}
	wantMissing(t, c, "k")
	if string(v.Bytes()) != "short-lived" {
		t.Fatalf("pinned bytes after expiry: %q", v.Bytes())
	}
}

func TestReleaseFromAnotherGoroutine(t *testing.T) {
	c := open(t, Config{})
	mustSet(t, c, "k", "v")
	v, _, _ := c.GetPinned([]byte("k"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if string(v.Bytes()) != "v" {
			t.Errorf("Bytes in another goroutine: %q", v.Bytes())
		}
		v.Release()
	}()
	<-done
	if v.Bytes() != nil {
		t.Fatal("released in another goroutine but Bytes still set")
	}
}

// The finalizer safety net releases pins the program forgot; this is what ForgottenPins
// counts. (Programs must not rely on it: this test forces garbage collections to see it.)
func TestForgottenPinsAreReleasedByFinalizer(t *testing.T) {
	c := open(t, Config{})
	mustSet(t, c, "k", "v")
	before := ForgottenPins()
	func() {
		for i := 0; i < 3*valuesPerBlock; i++ {
			if _, ok, err := c.GetPinned([]byte("k")); !ok || err != nil {
				t.Fatal(ok, err)
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for ForgottenPins()-before < 2*valuesPerBlock && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	// Blocks still held by the pool (at most one per P) may keep their Values for now.
	if got := ForgottenPins() - before; got < 2*valuesPerBlock {
		t.Fatalf("finalizers released %d forgotten pins; want at least %d", got, 2*valuesPerBlock)
	}
}

// Released Values are not counted as forgotten.
func TestReleasedPinsAreNotCountedForgotten(t *testing.T) {
	c := open(t, Config{})
	mustSet(t, c, "k", "v")
	settle := func() {
		// Enough cycles for the pool to drop its blocks and their finalizers to run.
		for i := 0; i < 5; i++ {
			runtime.GC()
			time.Sleep(5 * time.Millisecond)
		}
	}
	settle() // pins other tests forgot on purpose are counted before we start
	before := ForgottenPins()
	for i := 0; i < 4*valuesPerBlock; i++ {
		v, _, _ := c.GetPinned([]byte("k"))
		v.Release()
	}
	settle()
	if got := ForgottenPins() - before; got != 0 {
		t.Fatalf("%d released pins were counted as forgotten", got)
	}
}

// Byte slices cross into C as integer addresses (bytesAddr), which is sound only because
// they are forced into the heap, where nothing moves them during the call. A key in a local
// array must therefore still cost one allocation per call: if it stopped escaping, it could sit
// on a goroutine stack that is copied while C reads it.
func TestSlicesPassedToCLiveInTheHeap(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 64})
	// Direct calls on misses (nothing else in them allocates): a call through a func value
	// would make the key escape by itself and prove nothing.
	check := func(name string, allocs float64) {
		if allocs < 1 {
			t.Errorf("%s: a key in a local array stayed on the stack (%.1f allocs per call)", name, allocs)
		}
	}
	check("Exists", testing.AllocsPerRun(200, func() {
		var k [16]byte
		copy(k[:], "absent-key-00001")
		c.Exists(k[:])
	}))
	check("Delete", testing.AllocsPerRun(200, func() {
		var k [16]byte
		copy(k[:], "absent-key-00001")
		c.Delete(k[:])
	}))
	check("GetPinned", testing.AllocsPerRun(200, func() {
		var k [16]byte
		copy(k[:], "absent-key-00001")
		c.GetPinned(k[:])
	}))
}

// Keys and values built in local arrays, read and written while the collector runs and the
// goroutines' stacks grow and shrink, come back intact.
func TestLocalKeysUnderGCAndStackGrowth(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 4096})
	stopCollecting := collectConstantly(0)
	var growStack func(n int) int
	growStack = func(n int) int {
		var pad [256]byte
		pad[n%256] = byte(n)
		if n == 0 {
			return int(pad[0])
		}
		return growStack(n-1) + int(pad[n%256])
	}
	done := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func(g int) {
			for i := 0; i < 2000; i++ {
				var k, v [24]byte
				copy(k[:], fmt.Sprintf("g%d-key-%06d", g, i%100))
				copy(v[:], fmt.Sprintf("g%d-val-%06d", g, i%100))
				growStack(i % 64) // moves this goroutine's stack now and then
				if err := c.Set(k[:], v[:], 0); err != nil {
					done <- err
					return
				}
				got, ok, err := c.Get(k[:])
				if err != nil || !ok || !bytes.Equal(got, v[:]) {
					done <- fmt.Errorf("Get(%q) = %q, %v, %v", k[:], got, ok, err)
					return
				}
				p, ok, err := c.GetPinned(k[:])
				if err != nil || !ok || !bytes.Equal(p.Bytes(), v[:]) {
					done <- fmt.Errorf("GetPinned(%q) = %v, %v", k[:], ok, err)
					return
				}
				p.Release()
			}
			done <- nil
		}(g)
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	stopCollecting()
}
