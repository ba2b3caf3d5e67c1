package smartcache

// Tests of GetMany / SetMany (one library call per batch, one Redis round trip) and of
// StatsPrometheus.

import (
	"bytes"
	"errors"
	"fmt"
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
