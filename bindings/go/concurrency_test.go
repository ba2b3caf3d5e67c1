package smartcache

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"
)

// valueFor makes a value that names its key and version, so a reader can tell a torn or
// foreign value from a legitimately newer one.
func valueFor(key []byte, version int) []byte {
	return []byte(fmt.Sprintf("%s|%d|%s", key, version, bytes.Repeat([]byte{'.'}, version%300)))
}

func checkValue(t *testing.T, key, v []byte) {
	if !bytes.HasPrefix(v, append(append([]byte(nil), key...), '|')) {
		t.Errorf("value %q under key %q", v, key)
	}
}

// Goroutines mix every operation on overlapping keys; run under -race by make test-go.
func TestConcurrentMixedOperations(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 200})
	const workers, ops = 8, 3000
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			var held []*Value
			for i := 0; i < ops; i++ {
				key := []byte(fmt.Sprintf("key:%d", r.Intn(300)))
				switch op := r.Intn(100); {
				case op < 35:
					if err := c.Set(key, valueFor(key, i), time.Duration(r.Intn(3))*time.Second); err != nil {
						t.Error(err)
					}
				case op < 55:
					v, ok, err := c.Get(key)
					if err != nil {
						t.Error(err)
					} else if ok {
						checkValue(t, key, v)
					}
				case op < 80:
					v, ok, err := c.GetPinned(key)
					if err != nil {
						t.Error(err)
					} else if ok {
						checkValue(t, key, v.Bytes())
						held = append(held, v)
					}
				case op < 90:
					if _, err := c.Delete(key); err != nil {
						t.Error(err)
					}
				case op < 95:
					if _, err := c.Exists(key); err != nil {
						t.Error(err)
					}
				case op < 97:
					if err := c.Clear(); err != nil {
						t.Error(err)
					}
				default:
					if _, err := c.Stats(); err != nil {
						t.Error(err)
					}
				}
				// Pins are held across other goroutines' writes, then checked and released.
				if len(held) > 16 {
					for _, v := range held {
						if len(v.Bytes()) == 0 || v.Bytes()[len(v.Bytes())-1] == 0 {
							t.Errorf("pinned value damaged: %q", v.Bytes())
						}
						v.Release()
					}
					held = held[:0]
				}
			}
			for _, v := range held {
				v.Release()
			}
		}(int64(w))
	}
	wg.Wait()
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Size > 200 || s.Sets == 0 || s.Hits+s.Misses == 0 {
		t.Fatalf("stats after the run: %+v", s)
	}
}

// Close may race with calls in other goroutines: each call either completes or reports
// ErrClosed; none touches a freed handle.
func TestCloseWhileInUse(t *testing.T) {
	c, err := Open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var closedSeen sync.Map
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			key := []byte(fmt.Sprint("k", w))
			for {
				err := c.Set(key, key, 0)
				if err == nil {
					var v *Value
					v, _, err = c.GetPinned(key)
					if v != nil {
						v.Release()
					}
				}
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("error other than ErrClosed: %v", err)
					}
					closedSeen.Store(w, true)
					return
				}
			}
		}(w)
	}
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for w := 0; w < 4; w++ {
		if _, ok := closedSeen.Load(w); !ok {
			t.Fatalf("worker %d never saw ErrClosed", w)
		}
	}
}
