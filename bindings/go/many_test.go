package smartcache

// Tests of GetMany / SetMany (one library call per batch, one Redis round trip) and of
// StatsPrometheus.

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func byteSlices(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// wantMany checks that GetMany(keys) returns want, where a nil entry of want means "missing"
// and must come back nil, while an empty non-nil entry must come back non-nil and empty.
func wantMany(t testing.TB, c *Cache, keys, want [][]byte) {
	t.Helper()
	got, err := c.GetMany(keys)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	if len(got) != len(keys) {
		t.Fatalf("GetMany returned %d entries for %d keys", len(got), len(keys))
	}
	for i := range keys {
		if (got[i] == nil) != (want[i] == nil) || !bytes.Equal(got[i], want[i]) {
			t.Fatalf("GetMany[%d] (key %q) = %#v; want %#v", i, keys[i], got[i], want[i])
		}
	}
}

func TestGetManySetManyRoundTrip(t *testing.T) {
	c := open(t, Config{})
	keys := byteSlices("a", "b\x00in", "empty", "text", "big")
	values := byteSlices("1", "v\x00\xff", "", "hello", strings.Repeat("x", 5000))
	if err := c.SetMany(keys, values, 0); err != nil {
		t.Fatal(err)
	}
	// SetMany stores them as Set would.
	for i, k := range keys {
		wantValue(t, c, string(k), values[i])
	}
	// Order follows the keys; missing keys (also between found ones) are nil; a key asked for
	// twice is answered twice; the empty value is an empty non-nil slice.
	ask := byteSlices("text", "missing", "a", "empty", "b\x00in", "a", "big", "also missing")
	want := [][]byte{values[3], nil, values[0], {}, values[1], values[0], values[4], nil}
	wantMany(t, c, ask, want)

	// The results are copies the caller owns.
	got, err := c.GetMany(byteSlices("a"))
	if err != nil {
		t.Fatal(err)
	}
	got[0][0] = 'Z'
	wantValue(t, c, "a", []byte("1"))
}

// Keys that differ only after a NUL byte are different keys, in both directions.
func TestManyBinaryKeys(t *testing.T) {
	c := open(t, Config{})
	keys := [][]byte{{'k'}, {'k', 0}, {'k', 0, 'a'}, {'k', 0, 'b'}, {0}, {0, 0}, {0xff, 0, 0xfe}}
	values := make([][]byte, len(keys))
	for i := range keys {
		values[i] = []byte{byte(i), 0, byte(i)}
	}
	if err := c.SetMany(keys, values, 0); err != nil {
		t.Fatal(err)
	}
	wantMany(t, c, keys, values)
	for i, k := range keys {
		wantValue(t, c, string(k), values[i])
	}
	wantMany(t, c, [][]byte{{'k', 0, 'c'}, {0, 0, 0}}, [][]byte{nil, nil})
}

func TestManyNoKeys(t *testing.T) {
	c := open(t, Config{})
	for _, keys := range [][][]byte{nil, {}} {
		got, err := c.GetMany(keys)
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("GetMany(%#v) = %#v, %v; want an empty result", keys, got, err)
		}
		if err := c.SetMany(keys, keys, 0); err != nil {
			t.Fatalf("SetMany(%#v): %v", keys, err)
		}
	}
}

// An empty key anywhere fails the whole call with ErrInvalid naming its index, before anything
// is looked up or stored.
func TestManyEmptyKeyIsInvalid(t *testing.T) {
	c := open(t, Config{})
	mustSet(t, c, "a", "1")
	for _, empty := range [][]byte{nil, {}} {
		keys := [][]byte{[]byte("a"), []byte("b"), empty, []byte("c")}
		got, err := c.GetMany(keys)
		wantCode(t, err, ErrInvalid, "keys[2]")
		wantCode(t, err, ErrInvalid, "key is empty")
		if got != nil {
			t.Fatalf("GetMany failed but returned %q", got)
		}
		err = c.SetMany(keys, byteSlices("new a", "b", "x", "c"), 0)
		wantCode(t, err, ErrInvalid, "keys[2]")
		wantValue(t, c, "a", []byte("1")) // nothing stored
		wantMissing(t, c, "b")
	}
	// Every key empty: the packed buffer is empty too.
	_, err := c.GetMany([][]byte{nil, {}})
	wantCode(t, err, ErrInvalid, "keys[0]")
	wantCode(t, c.SetMany([][]byte{{}}, [][]byte{{}}, 0), ErrInvalid, "keys[0]")
}

func TestManyTooLarge(t *testing.T) {
	c := open(t, Config{MaxValueSize: 1000})
	longest := bytes.Repeat([]byte("k"), 65535)
	tooLong := bytes.Repeat([]byte("k"), 65536)
	if err := c.SetMany([][]byte{longest}, [][]byte{[]byte("v")}, 0); err != nil {
		t.Fatalf("65535-byte key: %v", err)
	}
	wantMany(t, c, [][]byte{longest}, byteSlices("v"))

	_, err := c.GetMany([][]byte{[]byte("a"), tooLong})
	wantCode(t, err, ErrTooLarge, "keys[1]")
	wantCode(t, err, ErrTooLarge, "65535")
	err = c.SetMany([][]byte{[]byte("a"), tooLong}, byteSlices("1", "2"), 0)
	wantCode(t, err, ErrTooLarge, "keys[1]")
	wantMissing(t, c, "a")

	// A value over max_value_size: nothing of the batch is stored.
	err = c.SetMany(byteSlices("a", "b"), [][]byte{[]byte("1"), make([]byte, 1001)}, 0)
	wantCode(t, err, ErrTooLarge, "vals[1]")
	wantMissing(t, c, "a")
	wantMissing(t, c, "b")
}

func TestSetManyLengthMismatch(t *testing.T) {
	c := open(t, Config{})
	err := c.SetMany(byteSlices("a", "b"), byteSlices("1"), 0)
	wantCode(t, err, ErrInvalid, "2 keys but 1 values")
	if !strings.Contains(err.Error(), "SetMany") {
		t.Fatalf("%q does not name the operation", err)
	}
	wantCode(t, c.SetMany(nil, byteSlices("1"), 0), ErrInvalid, "0 keys but 1 values")
	wantMissing(t, c, "a")
}

func TestSetManyTTL(t *testing.T) {
	c := open(t, Config{MemoryTTL: Never})
	start := time.Now()
	if err := c.SetMany(byteSlices("s1", "s2"), byteSlices("v", "v"), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := c.SetMany(byteSlices("forever"), byteSlices("v"), 0); err != nil {
		t.Fatal(err)
	}
	// The short entries must be there only while surely live: a loaded machine (or -race) can
	// stall the test past their 300 ms, and then they rightly expired.
	got, err := c.GetMany(byteSlices("s1", "s2", "forever"))
	live := surelyLive(start, 300*time.Millisecond)
	if err != nil || len(got) != 3 || !bytes.Equal(got[2], []byte("v")) {
		t.Fatalf("GetMany = %q, %v", got, err)
	}
	for i, v := range got[:2] {
		if (v == nil && live) || (v != nil && !bytes.Equal(v, []byte("v"))) {
			t.Fatalf("GetMany[%d] = %q %v after the set", i, v, time.Since(start))
		}
	}
	time.Sleep(500 * time.Millisecond)
	wantMany(t, c, byteSlices("s1", "s2", "forever"), [][]byte{nil, nil, []byte("v")})

	// Below a millisecond is 1 ms, not the default (an hour here).
	c2 := open(t, Config{MemoryTTL: time.Hour})
	if err := c2.SetMany(byteSlices("k"), byteSlices("v"), time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	wantMissing(t, c2, "k")

	wantCode(t, c.SetMany(byteSlices("k"), byteSlices("v"), -time.Second), ErrInvalid, "negative ttl")
}

// Values from 1 byte to 1 MiB, around Get's scratch buffer and far beyond, come back whole.
func TestGetManyLargeValues(t *testing.T) {
	c := open(t, Config{})
	var keys, values [][]byte
	for _, n := range []int{1, copyScratch - 1, copyScratch, copyScratch + 1, 1 << 20} {
		v := bytes.Repeat([]byte{byte(n)}, n)
		v[n-1] = 0xEE
		keys = append(keys, []byte(fmt.Sprintf("size:%d", n)))
		values = append(values, v)
	}
	if err := c.SetMany(keys, values, 0); err != nil {
		t.Fatal(err)
	}
	wantMany(t, c, keys, values)
}

// Entries stored by SetMany reach Redis, and GetMany reads them back from it when memory does
// not hold them (a memory tier of one entry, and a second cache whose memory starts empty).
func TestManyThroughRedis(t *testing.T) {
	prefix := uniquePrefix(t)
	cfg := redisConfig(t, prefix)
	cfg.MemoryCapacity = 1
	writer := openTier(t, cfg)
	const n = 40
	var keys, values [][]byte
	for i := 0; i < n; i++ {
		keys = append(keys, []byte(fmt.Sprintf("k\x00%d", i)))
		values = append(values, []byte(fmt.Sprintf("value %d", i)))
	}
	values[7] = []byte{} // an empty value survives the round trip through Redis
	if err := writer.SetMany(keys, values, time.Minute); err != nil {
		t.Fatal(err)
	}
	ask := append(append([][]byte(nil), keys...), []byte("absent"))
	want := append(append([][]byte(nil), values...), nil)

	for name, c := range map[string]*Cache{"writer": writer, "reader": openTier(t, cfg)} {
		wantMany(t, c, ask, want)
		s, err := c.Stats()
		if err != nil {
			t.Fatal(err)
		}
		// Memory holds at most one of the 40 entries: the rest came from Redis, and the absent
		// key reached Redis and missed there.
		if s.RedisHits < n-1 || s.RedisMisses != 1 {
			t.Fatalf("%s: RedisHits %d, RedisMisses %d after GetMany of %d stored keys and one absent",
				name, s.RedisHits, s.RedisMisses, n)
		}
	}
}

// GetMany falls through to the disk tier for what memory and Redis lack.
func TestGetManyFromDisk(t *testing.T) {
	dir := t.TempDir()
	c := openTier(t, diskConfig(dir))
	keys, values := byteSlices("d1", "d2", "d3"), byteSlices("one", "", "three")
	if err := c.SetMany(keys, values, 0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c2 := openTier(t, diskConfig(dir))
	wantMany(t, c2, append(keys, []byte("d4")), [][]byte{values[0], {}, values[2], nil})
	if s, _ := c2.Stats(); s.DiskHits != 3 {
		t.Fatalf("DiskHits = %d after reading 3 values only the disk had", s.DiskHits)
	}
}

func TestManyAfterClose(t *testing.T) {
	c, err := Open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, keys := range [][][]byte{nil, byteSlices("k")} {
		got, err := c.GetMany(keys)
		if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "GetMany") || got != nil {
			t.Errorf("GetMany(%d keys) after Close = %v, %v; want ErrClosed", len(keys), got, err)
		}
		if err := c.SetMany(keys, keys, 0); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "SetMany") {
			t.Errorf("SetMany(%d keys) after Close: %v; want ErrClosed", len(keys), err)
		}
	}
	if s, err := c.StatsPrometheus(); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "StatsPrometheus") || s != "" {
		t.Errorf("StatsPrometheus after Close = %q, %v; want ErrClosed", s, err)
	}
}

// Goroutines run GetMany and SetMany over overlapping keys (built in local arrays) while the
// collector runs; run under -race by make test-go.
func TestManyConcurrent(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 100})
	stopCollecting := collectConstantly(time.Millisecond)
	const workers, rounds, batch = 8, 300, 16
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				var karr [batch][12]byte
				keys := make([][]byte, batch)
				values := make([][]byte, batch)
				for i := range keys {
					copy(karr[i][:], fmt.Sprintf("key:%03d", (w*7+r+i*13)%150))
					keys[i] = karr[i][:]
					values[i] = valueFor(keys[i], r)
				}
				if r%2 == 0 {
					if err := c.SetMany(keys, values, 0); err != nil {
						t.Error(err)
						return
					}
				}
				got, err := c.GetMany(keys)
				if err != nil || len(got) != batch {
					t.Errorf("GetMany = %d entries, %v", len(got), err)
					return
				}
				for i, v := range got {
					if v != nil {
						checkValue(t, keys[i], v)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	stopCollecting()
}

// promValue returns the value of the sample line "name value" (name with its labels, if any)
// in a Prometheus text document.
func promValue(t *testing.T, doc, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, name+" ") {
			f, err := strconv.ParseFloat(line[len(name)+1:], 64)
			if err != nil {
				t.Fatalf("sample %q: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no sample %s in:\n%s", name, doc)
	return 0
}

func TestStatsPrometheus(t *testing.T) {
	c := open(t, Config{})
	if err := c.SetMany(byteSlices("a", "b"), byteSlices("1", "2"), 0); err != nil {
		t.Fatal(err)
	}
	wantMany(t, c, byteSlices("a", "b", "missing"), [][]byte{[]byte("1"), []byte("2"), nil})
	doc, err := c.StatsPrometheus()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"# TYPE smartcache_hits_total counter",
		"# TYPE smartcache_misses_total counter",
		"# TYPE smartcache_hit_ratio gauge",
		"# HELP smartcache_sets_total ",
	} {
		if !strings.Contains(doc, line+"\n") && !strings.Contains(doc, "\n"+line) {
			t.Errorf("no line %q in:\n%s", line, doc)
		}
	}
	if !strings.HasSuffix(doc, "\n") {
		t.Errorf("document does not end with a newline")
	}
	want := map[string]float64{
		"smartcache_hits_total":                     2,
		"smartcache_misses_total":                   1,
		"smartcache_sets_total":                     2,
		"smartcache_size":                           2,
		`smartcache_tier_up{tier="memory"}`:         1,
		`smartcache_tier_hits_total{tier="memory"}`: 2,
	}
	for name, v := range want {
		if got := promValue(t, doc, name); got != v {
			t.Errorf("%s = %v; want %v", name, got, v)
		}
	}
	if strings.Contains(doc, `tier="redis"`) || strings.Contains(doc, `tier="disk"`) {
		t.Errorf("disabled tiers in:\n%s", doc)
	}

	// The counters follow the operations.
	for i := 0; i < 3; i++ {
		wantValue(t, c, "a", []byte("1")) // two hits each (Get and GetPinned)
	}
	wantMissing(t, c, "absent") // two misses
	doc, err = c.StatsPrometheus()
	if err != nil {
		t.Fatal(err)
	}
	if h, m := promValue(t, doc, "smartcache_hits_total"), promValue(t, doc, "smartcache_misses_total"); h != 8 || m != 3 {
		t.Fatalf("after more gets: hits %v, misses %v; want 8, 3", h, m)
	}
	// StatsJSON and StatsPrometheus share their plumbing: both still work.
	if _, err := c.StatsJSON(); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------------------------
// GetMany / SetMany. README: "err = cache.SetMany(keys, values, time.Minute) // one library
// call; Redis: one pipelined round trip"; "vals, err := cache.GetMany(keys) // copies in key
// order, nil = missing; Redis: one MGET". Header, sz_cache_set_many: "Every key and value is
// checked before anything is stored."

func TestGetManyNilEmptyOrder(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 1000})
	sizes := []int{0, 1, 4095, 4096, 4097, 1 << 20, 3 << 20}
	var keys, vals [][]byte
	for i, n := range sizes {
		keys = append(keys, []byte(fmt.Sprintf("size-%d", n)))
		vals = append(vals, randomPayload(n, int64(i)))
	}
	if err := c.SetMany(keys, vals, time.Minute); err != nil {
		t.Fatalf("SetMany: %v", err)
	}
	// Reversed, with missing keys between and around, and a key asked for twice.
	var ask, want [][]byte
	ask = append(ask, []byte("missing-first"))
	want = append(want, nil)
	for i := len(keys) - 1; i >= 0; i-- {
		ask = append(ask, keys[i], []byte(fmt.Sprintf("missing-%d", i)))
		want = append(want, vals[i], nil)
	}
	ask = append(ask, keys[2])
	want = append(want, vals[2])
	got, err := c.GetMany(ask)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	if len(got) != len(ask) {
		t.Fatalf("GetMany returned %d values for %d keys", len(got), len(ask))
	}
	for i := range ask {
		if want[i] == nil {
			if got[i] != nil {
				t.Errorf("GetMany[%d] (%q, missing) = %d bytes, want nil", i, ask[i], len(got[i]))
			}
			continue
		}
		if got[i] == nil {
			t.Errorf("GetMany[%d] (%q) = nil, want %d bytes (an empty value is an empty slice, "+
				"not nil)", i, ask[i], len(want[i]))
			continue
		}
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("GetMany[%d] (%q) = %d bytes, want %d", i, ask[i], len(got[i]), len(want[i]))
		}
	}
	// The stored empty value in particular: non-nil, length 0.
	e, err := c.GetMany(byteSlices("size-0"))
	if err != nil || len(e) != 1 || e[0] == nil || len(e[0]) != 0 {
		t.Fatalf("GetMany(stored empty value) = %#v, %v; want [[]byte{}]", e, err)
	}
	// Copies: changing a result, or the keys slice, changes nothing in the cache.
	one, _ := c.GetMany(byteSlices("size-1"))
	one[0][0] ^= 0xff
	k := []byte("size-1")
	r, _ := c.GetMany([][]byte{k})
	k[0] = 'X'
	if !bytes.Equal(r[0], vals[1]) {
		t.Fatalf("GetMany result aliases the cache or an earlier result")
	}
	wantValue(t, c, "size-1", vals[1])
	// All missing: every entry nil, no error.
	none, err := c.GetMany(byteSlices("n1", "n2", "n3"))
	if err != nil || len(none) != 3 || none[0] != nil || none[1] != nil || none[2] != nil {
		t.Fatalf("GetMany(all missing) = %#v, %v", none, err)
	}
}

func TestSetManyStoresLikeSet(t *testing.T) {
	c := open(t, Config{})
	keys := byteSlices("a", "b", "c", "empty")
	vals := [][]byte{[]byte("1"), []byte("two"), bytes.Repeat([]byte("c"), 10000), {}}
	if err := c.SetMany(keys, vals, 0); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		wantValue(t, c, string(k), vals[i])
	}
	// A nil value is an empty value (the Go zero value of a slice).
	if err := c.SetMany(byteSlices("nilval"), [][]byte{nil}, 0); err != nil {
		t.Fatalf("SetMany with a nil value: %v", err)
	}
	wantValue(t, c, "nilval", []byte{})
	// Overwrites.
	if err := c.SetMany(byteSlices("a", "b"), byteSlices("new-a", "new-b"), 0); err != nil {
		t.Fatal(err)
	}
	wantValue(t, c, "a", []byte("new-a"))
	wantValue(t, c, "b", []byte("new-b"))
	// The caller may reuse its slices after the call.
	kk, vv := []byte("reuse"), []byte("value")
	if err := c.SetMany([][]byte{kk}, [][]byte{vv}, 0); err != nil {
		t.Fatal(err)
	}
	kk[0], vv[0] = 'X', 'X'
	wantValue(t, c, "reuse", []byte("value"))
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Sets != 4+1+2+1 {
		t.Fatalf("Stats().Sets = %d after SetMany of 8 values in all", s.Sets)
	}
}

func TestSetManyMismatchedLengths(t *testing.T) {
	c := open(t, Config{})
	cases := []struct {
		keys, vals [][]byte
	}{
		{byteSlices("a", "b"), byteSlices("1")},
		{byteSlices("a"), byteSlices("1", "2")},
		{byteSlices("a", "b"), nil},
		{nil, byteSlices("1")},
	}
	for _, tc := range cases {
		err := c.SetMany(tc.keys, tc.vals, 0)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("SetMany(%d keys, %d values) = %v; want ErrInvalid", len(tc.keys), len(tc.vals), err)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("SetMany error %v (%T) is not an *Error", err, err)
		}
	}
	wantMissing(t, c, "a")
	wantMissing(t, c, "b")
	if s, _ := c.Stats(); s.Sets != 0 {
		t.Fatalf("Sets = %d after refused SetMany calls", s.Sets)
	}
}

func TestSetManyStoresNothingIfOneIsBad(t *testing.T) {
	c := open(t, Config{Options: map[string]string{"max_value_size": "64K"}})
	mustSet(t, c, "keep", "old")
	for _, pos := range []int{0, 2, 4} {
		// An empty key, a key over 65535 bytes, a value over max_value_size, at pos.
		bads := []struct {
			name     string
			key, val []byte
			sentinel error
		}{
			{"empty key", []byte{}, []byte("v"), ErrInvalid},
			{"nil key", nil, []byte("v"), ErrInvalid},
			{"long key", bytes.Repeat([]byte("k"), 65536), []byte("v"), ErrTooLarge},
			{"big value", []byte("bigval"), make([]byte, 65*1024), ErrTooLarge},
		}
		for _, bad := range bads {
			keys := byteSlices("keep", "g1", "g2", "g3")
			vals := byteSlices("new", "1", "2", "3")
			keys = append(keys[:pos:pos], append([][]byte{bad.key}, keys[pos:]...)...)
			vals = append(vals[:pos:pos], append([][]byte{bad.val}, vals[pos:]...)...)
			err := c.SetMany(keys, vals, 0)
			if !errors.Is(err, bad.sentinel) {
				t.Errorf("SetMany with a %s at %d = %v; want %v", bad.name, pos, err, bad.sentinel)
			}
			if bad.sentinel == ErrInvalid && err != nil && !strings.Contains(err.Error(), strconv.Itoa(pos)) {
				t.Errorf("SetMany error %q does not name index %d", err, pos)
			}
			wantValue(t, c, "keep", []byte("old"))
			for _, k := range []string{"g1", "g2", "g3", "bigval"} {
				if ok, _ := c.Exists([]byte(k)); ok {
					t.Errorf("SetMany with a %s at %d stored %q", bad.name, pos, k)
				}
			}
		}
	}
}

func TestGetManyBadKeys(t *testing.T) {
	c := open(t, Config{})
	mustSet(t, c, "a", "1")
	got, err := c.GetMany([][]byte{[]byte("a"), {}})
	if !errors.Is(err, ErrInvalid) || got != nil {
		t.Fatalf("GetMany with an empty key = %v, %v; want nil, ErrInvalid", got, err)
	}
	got, err = c.GetMany([][]byte{[]byte("a"), bytes.Repeat([]byte("k"), 65536)})
	if !errors.Is(err, ErrTooLarge) || got != nil {
		t.Fatalf("GetMany with a 65536-byte key = %v, %v; want nil, ErrTooLarge", got, err)
	}
	// 65535 bytes is a valid (missing) key.
	got, err = c.GetMany([][]byte{[]byte("a"), bytes.Repeat([]byte("k"), 65535)})
	if err != nil || len(got) != 2 || string(got[0]) != "1" || got[1] != nil {
		t.Fatalf("GetMany with a 65535-byte key = %q, %v", got, err)
	}
}

func TestManyAfterCloseReturnsErrClosed(t *testing.T) {
	c, err := Open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, c, "k", "v")
	p, ok, err := c.GetPinned([]byte("k"))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// "Pinned values handed out earlier stay valid until released."
	if string(p.Bytes()) != "v" {
		t.Fatalf("pinned value after Close = %q", p.Bytes())
	}
	p.Release()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s after Close = %v; want ErrClosed (matching ErrInvalid too)", op, err)
		}
	}
	vals, err := c.GetMany(byteSlices("k"))
	check("GetMany", err)
	if vals != nil {
		t.Errorf("GetMany after Close returned %q", vals)
	}
	check("SetMany", c.SetMany(byteSlices("k"), byteSlices("v"), 0))
	prom, err := c.StatsPrometheus()
	check("StatsPrometheus", err)
	if prom != "" {
		t.Errorf("StatsPrometheus after Close returned %d bytes", len(prom))
	}
	// Also with no keys at all.
	_, err = c.GetMany(nil)
	check("GetMany(nil)", err)
	check("SetMany(nil)", c.SetMany(nil, nil, 0))
	check("SetMany(mismatched)", c.SetMany(byteSlices("a"), nil, 0))
}

func TestManyThroughRedisAndDisk(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		cfg := privateRedisConfig(t)
		a := openTier(t, cfg)
		b := openTier(t, cfg) // another worker: empty memory, same prefix
		t.Cleanup(func() { a.Clear() })
		keys := byteSlices("r1", "r2", "r3", "empty")
		vals := [][]byte{randomPayload(100, 1), randomPayload(5000, 2), randomPayload(300000, 3), {}}
		if err := a.SetMany(keys, vals, time.Minute); err != nil {
			t.Fatal(err)
		}
		got, err := b.GetMany(append(keys, []byte("absent")))
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if got[i] == nil || !bytes.Equal(got[i], vals[i]) {
				t.Errorf("GetMany via Redis [%d] = %d bytes (nil %v), want %d", i, len(got[i]), got[i] == nil, len(vals[i]))
			}
		}
		if got[4] != nil {
			t.Errorf("absent key = %q", got[4])
		}
		s, _ := b.Stats()
		if s.RedisHits != 4 || s.Hits != 4 || s.Misses != 1 {
			t.Errorf("stats after GetMany via Redis: %+v", s)
		}
	})
	t.Run("disk", func(t *testing.T) {
		dir := t.TempDir()
		cfg := Config{DiskEnabled: true, DiskPath: dir, DiskMaxSize: 64 << 20}
		a := openTier(t, cfg)
		keys := byteSlices("d1", "d2", "empty")
		vals := [][]byte{randomPayload(4097, 4), randomPayload(3<<20, 5), {}}
		if err := a.SetMany(keys, vals, 0); err != nil {
			t.Fatal(err)
		}
		a.Close()
		b := openTier(t, cfg)
		got, err := b.GetMany(append([][]byte{[]byte("absent")}, keys...))
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != nil {
			t.Errorf("absent = %q", got[0])
		}
		for i := range keys {
			if got[i+1] == nil || !bytes.Equal(got[i+1], vals[i]) {
				t.Errorf("GetMany via disk [%d] = %d bytes, want %d", i, len(got[i+1]), len(vals[i]))
			}
		}
		if s, _ := b.Stats(); s.DiskHits != 3 {
			t.Errorf("DiskHits = %d, want 3", s.DiskHits)
		}
	})
}

// Many goroutines batch-reading and batch-writing one cache; every value read is one that was
// written for its key, whole.
func TestManyConcurrentValuesWhole(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 200})
	value := func(k, ver int) []byte {
		n := (k*131 + ver*977) % 9000
		b := make([]byte, n+10)
		copy(b, fmt.Sprintf("%03d:%05d:", k, ver))
		for i := 10; i < len(b); i++ {
			b[i] = byte(k + ver + i)
		}
		return b
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(g)))
			for it := 0; it < 300; it++ {
				n := 1 + r.Intn(20)
				keys := make([][]byte, n)
				ids := make([]int, n)
				for i := range keys {
					ids[i] = r.Intn(100)
					keys[i] = []byte(fmt.Sprintf("key-%d", ids[i]))
				}
				if g%2 == 0 {
					vals := make([][]byte, n)
					for i := range vals {
						vals[i] = value(ids[i], it*8+g)
					}
					if err := c.SetMany(keys, vals, 0); err != nil {
						errs <- err
						return
					}
					continue
				}
				got, err := c.GetMany(keys)
				if err != nil || len(got) != n {
					errs <- fmt.Errorf("GetMany: %d results, %v", len(got), err)
					return
				}
				for i, v := range got {
					if v == nil {
						continue
					}
					var k, ver int
					if _, err := fmt.Sscanf(string(v[:10]), "%03d:%05d:", &k, &ver); err != nil || k != ids[i] {
						errs <- fmt.Errorf("key-%d holds a value of key %d (%v)", ids[i], k, err)
						return
					}
					if !bytes.Equal(v, value(k, ver)) {
						errs <- fmt.Errorf("key-%d version %d torn", k, ver)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Close while other goroutines are in GetMany / SetMany / StatsPrometheus: each call succeeds
// or returns ErrClosed ("after Close every call returns ErrClosed"), nothing crashes or hangs.
func TestManyRacingClose(t *testing.T) {
	for round := 0; round < 5; round++ {
		c, err := Open(Config{MemoryCapacity: 1000})
		if err != nil {
			t.Fatal(err)
		}
		keys := byteSlices("a", "b", "c", "d")
		if err := c.SetMany(keys, keys, 0); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, 8)
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				<-start
				for i := 0; ; i++ {
					var err error
					switch g % 3 {
					case 0:
						var got [][]byte
						got, err = c.GetMany(append(keys, []byte("missing")))
						if err == nil && (len(got) != 5 || string(got[2]) != "c" || got[4] != nil) {
							errs <- fmt.Errorf("GetMany during Close = %q", got)
							return
						}
					case 1:
						err = c.SetMany(keys, keys, 0)
					default:
						_, err = c.StatsPrometheus()
					}
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							errs <- fmt.Errorf("goroutine %d: %v; want ErrClosed", g, err)
						}
						return
					}
					if i > 50_000_000 {
						errs <- fmt.Errorf("goroutine %d never saw ErrClosed", g)
						return
					}
				}
			}(g)
		}
		close(start)
		time.Sleep(time.Duration(5+10*round) * time.Millisecond)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("goroutines still running 30 s after Close")
		}
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}
