package smartcache

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
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

// ---------------------------------------------------------------------------------------------
// GetPinned with keys built in local arrays under concurrent GC. Guide: "GetPinned returns a
// *Value whose Bytes() is valid until Release()"; "Keep the *Value alive until after the last use
// of Bytes()".

func TestGetPinnedLocalKeysUnderGC(t *testing.T) {
	old := debug.SetGCPercent(1)
	defer debug.SetGCPercent(old)
	c := open(t, Config{MemoryCapacity: 10000})
	const nkeys = 200
	valueOf := func(i int) []byte {
		return []byte(fmt.Sprintf("value-%05d-%s", i, strings.Repeat(string(rune('a'+i%26)), i%300)))
	}
	for i := 0; i < nkeys; i++ {
		var k [20]byte
		copy(k[:], fmt.Sprintf("local-key-%05d", i))
		if err := c.Set(k[:], valueOf(i), 0); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var gcWG sync.WaitGroup
	gcWG.Add(1)
	go func() {
		defer gcWG.Done()
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
				_ = make([]byte, 1<<16) // garbage
			}
		}
	}()
	var deep func(n int) byte
	deep = func(n int) byte {
		var pad [512]byte
		pad[n%512] = byte(n)
		if n == 0 {
			return pad[0]
		}
		return deep(n-1) ^ pad[n%512]
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			held := make([]*Value, 0, 8)
			heldIdx := make([]int, 0, 8)
			for it := 0; it < 1500; it++ {
				i := (g*37 + it*11) % nkeys
				var k [20]byte // a key on this goroutine's stack
				copy(k[:], fmt.Sprintf("local-key-%05d", i))
				deep(it % 40) // grows / moves the stack between calls
				v, ok, err := c.GetPinned(k[:])
				// Scribble over the key right away: the call must not have kept it.
				for j := range k {
					k[j] = 0xEE
				}
				if err != nil || !ok {
					errs <- fmt.Errorf("GetPinned(local-key-%05d) = %v, %v", i, ok, err)
					return
				}
				if !bytes.Equal(v.Bytes(), valueOf(i)) {
					errs <- fmt.Errorf("GetPinned(local-key-%05d) = %q", i, v.Bytes())
					return
				}
				// Hold a few pins across collections, then check and release them.
				held = append(held, v)
				heldIdx = append(heldIdx, i)
				if len(held) == cap(held) {
					runtime.GC()
					for j, hv := range held {
						if !bytes.Equal(hv.Bytes(), valueOf(heldIdx[j])) || hv.Len() != len(valueOf(heldIdx[j])) {
							errs <- fmt.Errorf("a pin held across GC changed: %q", hv.Bytes())
							return
						}
						hv.Release()
					}
					held, heldIdx = held[:0], heldIdx[:0]
				}
				// A missing key from a local array too.
				var mk [16]byte
				copy(mk[:], fmt.Sprintf("no-such-%07d", it))
				if mv, ok, err := c.GetPinned(mk[:]); err != nil || ok || mv != nil {
					errs <- fmt.Errorf("GetPinned(missing) = %v, %v, %v", mv, ok, err)
					return
				}
				// And GetMany with keys from local arrays.
				if it%50 == 0 {
					var k1, k2 [20]byte
					copy(k1[:], fmt.Sprintf("local-key-%05d", (i+1)%nkeys))
					copy(k2[:], fmt.Sprintf("local-key-%05d", (i+2)%nkeys))
					got, err := c.GetMany([][]byte{k1[:], k2[:]})
					if err != nil || !bytes.Equal(got[0], valueOf((i+1)%nkeys)) || !bytes.Equal(got[1], valueOf((i+2)%nkeys)) {
						errs <- fmt.Errorf("GetMany(local keys) = %q, %v", got, err)
						return
					}
				}
			}
			for _, hv := range held {
				hv.Release()
			}
		}(g)
	}
	wg.Wait()
	close(stop)
	gcWG.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
