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
	if err := c.Set([]byte("k"), []byte("short-lived"), 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	v, ok, err := c.GetPinned([]byte("k"))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	defer v.Release()
	time.Sleep(300 * time.Millisecond)
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
