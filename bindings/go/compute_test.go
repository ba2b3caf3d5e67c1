package smartcache

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGetOrComputeComputesOnceThenHits(t *testing.T) {
	c := open(t, Config{})
	calls := 0
	fn := func() ([]byte, error) { calls++; return []byte("computed"), nil }
	for i := 0; i < 3; i++ {
		v, err := c.GetOrCompute([]byte("k"), 0, fn)
		if err != nil || string(v.Bytes()) != "computed" {
			t.Fatalf("GetOrCompute = %v, %v", v, err)
		}
		v.Release()
	}
	if calls != 1 {
		t.Fatalf("fn ran %d times; want 1", calls)
	}
	wantValue(t, c, "k", []byte("computed"))
}

func TestGetOrComputeUsesExistingValue(t *testing.T) {
	c := open(t, Config{})
	mustSet(t, c, "k", "stored")
	v, err := c.GetOrCompute([]byte("k"), 0, func() ([]byte, error) {
		t.Error("fn ran on a hit")
		return nil, nil
	})
	if err != nil || string(v.Bytes()) != "stored" {
		t.Fatal(v, err)
	}
	v.Release()
}

func TestGetOrComputeTTL(t *testing.T) {
	c := open(t, Config{MemoryTTL: Never})
	v, err := c.GetOrCompute([]byte("k"), 30*time.Millisecond, func() ([]byte, error) { return []byte("v"), nil })
	if err != nil {
		t.Fatal(err)
	}
	v.Release()
	time.Sleep(80 * time.Millisecond)
	wantMissing(t, c, "k")
}

func TestGetOrComputeEmptyValue(t *testing.T) {
	c := open(t, Config{})
	v, err := c.GetOrCompute([]byte("k"), 0, func() ([]byte, error) { return nil, nil })
	if err != nil || v.Len() != 0 {
		t.Fatal(v, err)
	}
	v.Release()
	wantValue(t, c, "k", nil)
}

func TestGetOrComputeError(t *testing.T) {
	c := open(t, Config{})
	boom := errors.New("database down")
	_, err := c.GetOrCompute([]byte("k"), 0, func() ([]byte, error) { return nil, boom })
	if !errors.Is(err, boom) || !errors.Is(err, ErrBackend) {
		t.Fatalf("err = %v; want one matching both fn's error and ErrBackend", err)
	}
	wantMissing(t, c, "k")
}

func TestGetOrComputeTooLarge(t *testing.T) {
	c := open(t, Config{MaxValueSize: 100})
	_, err := c.GetOrCompute([]byte("k"), 0, func() ([]byte, error) { return make([]byte, 101), nil })
	wantCode(t, err, ErrTooLarge, "max_value_size")
	wantMissing(t, c, "k")
}

func TestGetOrComputeNilFn(t *testing.T) {
	c := open(t, Config{})
	_, err := c.GetOrCompute([]byte("k"), 0, nil)
	wantCode(t, err, ErrInvalid, "fn is nil")
}

// A panic in fn reaches the caller, and neither the library nor the key is left stuck.
func TestGetOrComputePanicPropagates(t *testing.T) {
	c := open(t, Config{})
	func() {
		defer func() {
			if p := recover(); p != "kaboom" {
				t.Fatalf("recovered %v; want the panic of fn", p)
			}
		}()
		c.GetOrCompute([]byte("k"), 0, func() ([]byte, error) { panic("kaboom") })
		t.Fatal("GetOrCompute returned after fn panicked")
	}()
	wantMissing(t, c, "k")
	v, err := c.GetOrCompute([]byte("k"), 0, func() ([]byte, error) { return []byte("ok"), nil })
	if err != nil || string(v.Bytes()) != "ok" {
		t.Fatal(v, err)
	}
	v.Release()
}

// Concurrent misses on one key run fn once and all get its value (stampede protection).
func TestGetOrComputeSingleFlight(t *testing.T) {
	c := open(t, Config{})
	var calls int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v, err := c.GetOrCompute([]byte("hot"), 0, func() ([]byte, error) {
				atomic.AddInt32(&calls, 1)
				time.Sleep(100 * time.Millisecond)
				return []byte("expensive"), nil
			})
			if err != nil || string(v.Bytes()) != "expensive" {
				t.Errorf("GetOrCompute = %v, %v", v, err)
				return
			}
			v.Release()
		}()
	}
	close(start)
	wg.Wait()
	if calls != 1 {
		t.Fatalf("fn ran %d times for 8 concurrent callers; want 1", calls)
	}
}
