package smartcache

import (
	"fmt"
	"sync"
	"testing"
)

// The benchmarks compare, in one run, the cache calls with (a) the bare cost of a cgo call
// (cgoIdentity: a C function returning its argument) and (b) a Go map behind a
// sync.RWMutex, the baseline of a process-local cache with no tiers. The target is
// GetPinned (including Release) <= cgo call + 100 ns; docs/BENCHMARKS-go.md has the figures.

const benchKeys = 1024

func benchCache(b *testing.B) (*Cache, [][]byte, []byte) {
	b.Helper()
	c, err := Open(Config{MemoryCapacity: 4 * benchKeys, MemoryTTL: Never})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	keys := make([][]byte, benchKeys)
	value := make([]byte, 100)
	for i := range value {
		value[i] = byte(i)
	}
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("bench:key:%06d", i))
		if err := c.Set(keys[i], value, 0); err != nil {
			b.Fatal(err)
		}
	}
	return c, keys, value
}

// BenchmarkCgoCall is the floor every cache call pays: one cgo transition and back.
func BenchmarkCgoCall(b *testing.B) {
	var sum uint64
	for i := 0; i < b.N; i++ {
		sum += cgoIdentity(uint64(i))
	}
	if sum == 1 {
		b.Log(sum) // keeps the loop from being optimised away
	}
}

func BenchmarkGetPinned(b *testing.B) {
	c, keys, _ := benchCache(b)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		v, ok, err := c.GetPinned(keys[i%benchKeys])
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		n += len(v.Bytes())
		v.Release()
	}
	if n != 100*b.N {
		b.Fatal("short values")
	}
}

func BenchmarkGet(b *testing.B) {
	c, keys, _ := benchCache(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v, ok, err := c.Get(keys[i%benchKeys])
		if err != nil || !ok || len(v) != 100 {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkSet(b *testing.B) {
	c, keys, value := benchCache(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Set(keys[i%benchKeys], value, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// rwMap is the baseline: what a Go program would write without a cache library.
type rwMap struct {
	mu sync.RWMutex
	m  map[string][]byte
}

func newRWMap(keys [][]byte, value []byte) *rwMap {
	r := &rwMap{m: make(map[string][]byte, len(keys))}
	for _, k := range keys {
		r.m[string(k)] = append([]byte(nil), value...)
	}
	return r
}

func benchKeysAndValue() ([][]byte, []byte) {
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("bench:key:%06d", i))
	}
	return keys, make([]byte, 100)
}

// BenchmarkMapGet reads the stored slice itself (no copy), the analogue of GetPinned.
func BenchmarkMapGet(b *testing.B) {
	keys, value := benchKeysAndValue()
	m := newRWMap(keys, value)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		m.mu.RLock()
		v := m.m[string(keys[i%benchKeys])]
		m.mu.RUnlock()
		n += len(v)
	}
	if n != 100*b.N {
		b.Fatal("short values")
	}
}

// BenchmarkMapGetCopy copies the value out, the analogue of Get.
func BenchmarkMapGetCopy(b *testing.B) {
	keys, value := benchKeysAndValue()
	m := newRWMap(keys, value)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.mu.RLock()
		v := append([]byte(nil), m.m[string(keys[i%benchKeys])]...)
		m.mu.RUnlock()
		if len(v) != 100 {
			b.Fatal("short value")
		}
	}
}

// BenchmarkMapSet stores a copy (the cache copies too), the analogue of Set.
func BenchmarkMapSet(b *testing.B) {
	keys, value := benchKeysAndValue()
	m := newRWMap(keys, value)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v := append([]byte(nil), value...)
		m.mu.Lock()
		m.m[string(keys[i%benchKeys])] = v
		m.mu.Unlock()
	}
}
