package smartcache

// Third audit, written from bindings/go/README.md and docs/guide.md ("Go", "Prometheus") only:
// GetMany / SetMany / StatsPrometheus, and GetPinned with keys built in local arrays while the
// collector runs. Each test quotes the promise it checks.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func a3payload(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func a3keys(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// a3redis is the private test Redis under a fresh prefix, or a skip when there is none.
func a3redis(t *testing.T) Config {
	url := os.Getenv("SMARTCACHE_TEST_REDIS_URL")
	if url == "" {
		t.Fatal("SMARTCACHE_TEST_REDIS_URL is not set (run through make test-go)")
	}
	prefix := fmt.Sprintf("go-audit3-%d-%d:", os.Getpid(), time.Now().UnixNano())
	return Config{RedisEnabled: true, RedisURL: url, RedisKeyPrefix: prefix, RedisTimeout: time.Second}
}

// ---------------------------------------------------------------------------------------------
// GetMany / SetMany. README: "err = cache.SetMany(keys, values, time.Minute) // one library
// call; Redis: one pipelined round trip"; "vals, err := cache.GetMany(keys) // copies in key
// order, nil = missing; Redis: one MGET". Header, sz_cache_set_many: "Every key and value is
// checked before anything is stored."

func TestAudit3GetManyNilEmptyOrder(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 1000})
	sizes := []int{0, 1, 4095, 4096, 4097, 1 << 20, 3 << 20}
	var keys, vals [][]byte
	for i, n := range sizes {
		keys = append(keys, []byte(fmt.Sprintf("size-%d", n)))
		vals = append(vals, a3payload(n, int64(i)))
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
	e, err := c.GetMany(a3keys("size-0"))
	if err != nil || len(e) != 1 || e[0] == nil || len(e[0]) != 0 {
		t.Fatalf("GetMany(stored empty value) = %#v, %v; want [[]byte{}]", e, err)
	}
	// Copies: changing a result, or the keys slice, changes nothing in the cache.
	one, _ := c.GetMany(a3keys("size-1"))
	one[0][0] ^= 0xff
	k := []byte("size-1")
	r, _ := c.GetMany([][]byte{k})
	k[0] = 'X'
	if !bytes.Equal(r[0], vals[1]) {
		t.Fatalf("GetMany result aliases the cache or an earlier result")
	}
	wantValue(t, c, "size-1", vals[1])
	// All missing: every entry nil, no error.
	none, err := c.GetMany(a3keys("n1", "n2", "n3"))
	if err != nil || len(none) != 3 || none[0] != nil || none[1] != nil || none[2] != nil {
		t.Fatalf("GetMany(all missing) = %#v, %v", none, err)
	}
}

func TestAudit3SetManyStoresLikeSet(t *testing.T) {
	c := open(t, Config{})
	keys := a3keys("a", "b", "c", "empty")
	vals := [][]byte{[]byte("1"), []byte("two"), bytes.Repeat([]byte("c"), 10000), {}}
	if err := c.SetMany(keys, vals, 0); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		wantValue(t, c, string(k), vals[i])
	}
	// A nil value is an empty value (the Go zero value of a slice).
	if err := c.SetMany(a3keys("nilval"), [][]byte{nil}, 0); err != nil {
		t.Fatalf("SetMany with a nil value: %v", err)
	}
	wantValue(t, c, "nilval", []byte{})
	// Overwrites.
	if err := c.SetMany(a3keys("a", "b"), a3keys("new-a", "new-b"), 0); err != nil {
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

func TestAudit3SetManyMismatchedLengths(t *testing.T) {
	c := open(t, Config{})
	cases := []struct {
		keys, vals [][]byte
	}{
		{a3keys("a", "b"), a3keys("1")},
		{a3keys("a"), a3keys("1", "2")},
		{a3keys("a", "b"), nil},
		{nil, a3keys("1")},
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

func TestAudit3SetManyStoresNothingIfOneIsBad(t *testing.T) {
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
			keys := a3keys("keep", "g1", "g2", "g3")
			vals := a3keys("new", "1", "2", "3")
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

func TestAudit3GetManyBadKeys(t *testing.T) {
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

func TestAudit3ManyAfterClose(t *testing.T) {
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
	vals, err := c.GetMany(a3keys("k"))
	check("GetMany", err)
	if vals != nil {
		t.Errorf("GetMany after Close returned %q", vals)
	}
	check("SetMany", c.SetMany(a3keys("k"), a3keys("v"), 0))
	prom, err := c.StatsPrometheus()
	check("StatsPrometheus", err)
	if prom != "" {
		t.Errorf("StatsPrometheus after Close returned %d bytes", len(prom))
	}
	// Also with no keys at all.
	_, err = c.GetMany(nil)
	check("GetMany(nil)", err)
	check("SetMany(nil)", c.SetMany(nil, nil, 0))
	check("SetMany(mismatched)", c.SetMany(a3keys("a"), nil, 0))
}

func TestAudit3ManyThroughRedisAndDisk(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		cfg := a3redis(t)
		a := openTier(t, cfg)
		b := openTier(t, cfg) // another worker: empty memory, same prefix
		t.Cleanup(func() { a.Clear() })
		keys := a3keys("r1", "r2", "r3", "empty")
		vals := [][]byte{a3payload(100, 1), a3payload(5000, 2), a3payload(300000, 3), {}}
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
		keys := a3keys("d1", "d2", "empty")
		vals := [][]byte{a3payload(4097, 4), a3payload(3<<20, 5), {}}
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
func TestAudit3ManyConcurrent(t *testing.T) {
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

// ---------------------------------------------------------------------------------------------
// StatsPrometheus. Guide: "the same snapshot in the Prometheus text exposition format (0.0.4)
// ... Metrics, all prefixed smartcache_: hits_total, misses_total, sets_total, deletes_total,
// evictions_total, expirations_total (counters); hit_ratio, ops_per_second, size, capacity,
// memory_bytes, compression_ratio (gauges); per enabled tier, labelled {tier=...}: tier_up,
// tier_hits_total, tier_misses_total, tier_errors_total; latency_seconds{tier,op,quantile} ...;
// disk_fill_ratio when the disk tier is on."

type promText struct {
	types   map[string]string
	samples map[string]float64
}

func parseProm(t *testing.T, text string) promText {
	t.Helper()
	p := promText{types: map[string]string{}, samples: map[string]float64{}}
	if !strings.HasSuffix(text, "\n") {
		t.Errorf("Prometheus text does not end with a newline")
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "# TYPE ") {
			f := strings.Fields(line)
			if len(f) != 4 {
				t.Fatalf("bad TYPE line %q", line)
			}
			if _, dup := p.types[f[2]]; dup {
				t.Fatalf("duplicate TYPE for %s", f[2])
			}
			p.types[f[2]] = f[3]
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			t.Fatalf("bad sample line %q", line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		name := line[:sp]
		if _, dup := p.samples[name]; dup {
			t.Fatalf("duplicate sample %s", name)
		}
		p.samples[name] = v
		base := name
		if i := strings.IndexByte(name, '{'); i >= 0 {
			base = name[:i]
		}
		if _, ok := p.types[base]; !ok {
			t.Errorf("sample %s comes before or without a TYPE line", name)
		}
	}
	return p
}

func (p promText) want(t *testing.T, name string, v float64) {
	t.Helper()
	got, ok := p.samples[name]
	if !ok {
		t.Errorf("no sample %s", name)
	} else if got != v {
		t.Errorf("%s = %v, want %v", name, got, v)
	}
}

func TestAudit3StatsPrometheusMemory(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 500})
	text, err := c.StatsPrometheus()
	if err != nil {
		t.Fatal(err)
	}
	p := parseProm(t, text)
	for _, n := range []string{"hits_total", "misses_total", "sets_total", "deletes_total", "evictions_total", "expirations_total"} {
		if p.types["smartcache_"+n] != "counter" {
			t.Errorf("TYPE of smartcache_%s = %q, want counter", n, p.types["smartcache_"+n])
		}
		p.want(t, "smartcache_"+n, 0)
	}
	for _, n := range []string{"hit_ratio", "ops_per_second", "size", "capacity", "memory_bytes", "compression_ratio"} {
		if p.types["smartcache_"+n] != "gauge" {
			t.Errorf("TYPE of smartcache_%s = %q, want gauge", n, p.types["smartcache_"+n])
		}
	}
	// 5 Sets + a SetMany of 3 = 8 sets; 4 Get hits + GetMany 2 hits 1 miss + 2 Get misses;
	// 1 delete.
	for i := 0; i < 5; i++ {
		mustSet(t, c, fmt.Sprintf("k%d", i), "v")
	}
	if err := c.SetMany(a3keys("m1", "m2", "m3"), a3keys("1", "2", "3"), 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if _, ok, _ := c.Get([]byte(fmt.Sprintf("k%d", i))); !ok {
			t.Fatal("miss")
		}
	}
	if _, err := c.GetMany(a3keys("m1", "m2", "nope")); err != nil {
		t.Fatal(err)
	}
	c.Get([]byte("absent1"))
	c.Get([]byte("absent2"))
	if had, _ := c.Delete([]byte("k0")); !had {
		t.Fatal("Delete found nothing")
	}
	text, err = c.StatsPrometheus()
	if err != nil {
		t.Fatal(err)
	}
	p = parseProm(t, text)
	p.want(t, "smartcache_sets_total", 8)
	p.want(t, "smartcache_hits_total", 6)
	p.want(t, "smartcache_misses_total", 3)
	p.want(t, "smartcache_deletes_total", 1)
	p.want(t, "smartcache_size", 7)
	p.want(t, "smartcache_capacity", 500)
	p.want(t, "smartcache_hit_ratio", 6.0/9.0)
	p.want(t, `smartcache_tier_up{tier="memory"}`, 1)
	p.want(t, `smartcache_tier_hits_total{tier="memory"}`, 6)
	p.want(t, `smartcache_tier_misses_total{tier="memory"}`, 3)
	p.want(t, `smartcache_tier_errors_total{tier="memory"}`, 0)
	for name := range p.samples {
		if strings.Contains(name, `tier="redis"`) || strings.Contains(name, `tier="disk"`) {
			t.Errorf("sample %s for a tier that is not enabled", name)
		}
	}
	if _, ok := p.samples["smartcache_disk_fill_ratio"]; ok {
		t.Errorf("disk_fill_ratio without a disk tier")
	}
	// The same snapshot as Stats().
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Hits != 6 || s.Misses != 3 || s.Sets != 8 || s.Deletes != 1 {
		t.Errorf("Stats() = %+v disagrees with the operations", s)
	}
}

func TestAudit3StatsPrometheusDiskAndRedis(t *testing.T) {
	cfg := a3redis(t)
	cfg.DiskEnabled, cfg.DiskPath, cfg.DiskMaxSize = true, t.TempDir(), 16<<20
	a := openTier(t, cfg)
	t.Cleanup(func() { a.Clear() })
	mustSet(t, a, "k", "v")
	a.Close()
	// A second cache, same prefix and file: Redis answers "k" first; "absent" misses both.
	b := openTier(t, cfg)
	if _, ok, _ := b.Get([]byte("k")); !ok {
		t.Fatal("k not found through the lower tiers")
	}
	b.Get([]byte("absent"))
	text, err := b.StatsPrometheus()
	if err != nil {
		t.Fatal(err)
	}
	p := parseProm(t, text)
	p.want(t, "smartcache_hits_total", 1)
	p.want(t, "smartcache_misses_total", 1)
	for _, tier := range []string{"memory", "redis", "disk"} {
		p.want(t, `smartcache_tier_up{tier="`+tier+`"}`, 1)
		p.want(t, `smartcache_tier_errors_total{tier="`+tier+`"}`, 0)
	}
	p.want(t, `smartcache_tier_hits_total{tier="redis"}`, 1)
	p.want(t, `smartcache_tier_misses_total{tier="redis"}`, 1)
	p.want(t, `smartcache_tier_hits_total{tier="disk"}`, 0)
	p.want(t, `smartcache_tier_misses_total{tier="disk"}`, 1)
	if p.types["smartcache_disk_fill_ratio"] != "gauge" {
		t.Errorf("disk_fill_ratio TYPE = %q", p.types["smartcache_disk_fill_ratio"])
	}
	if f, ok := p.samples["smartcache_disk_fill_ratio"]; !ok || f <= 0 || f > 1 {
		t.Errorf("disk_fill_ratio = %v, %v", f, ok)
	}
	// Every Redis call is timed: a get latency for Redis at both quantiles, in seconds.
	n := 0
	for name, v := range p.samples {
		if strings.HasPrefix(name, "smartcache_latency_seconds{") && strings.Contains(name, `tier="redis"`) && strings.Contains(name, `op="get"`) {
			n++
			if v <= 0 || v > 5 {
				t.Errorf("%s = %v", name, v)
			}
		}
	}
	if n != 2 {
		t.Errorf("%d Redis get latency samples, want 2 (quantile 0.5 and 0.99):\n%s", n, text)
	}
}

// ---------------------------------------------------------------------------------------------
// GetPinned with keys built in local arrays under concurrent GC. Guide: "GetPinned returns a
// *Value whose Bytes() is valid until Release()"; "Keep the *Value alive until after the last use
// of Bytes()".

func TestAudit3GetPinnedLocalKeysUnderGC(t *testing.T) {
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

// Close while other goroutines are in GetMany / SetMany / StatsPrometheus: each call succeeds
// or returns ErrClosed ("after Close every call returns ErrClosed"), nothing crashes or hangs.
func TestAudit3ManyRacingClose(t *testing.T) {
	for round := 0; round < 5; round++ {
		c, err := Open(Config{MemoryCapacity: 1000})
		if err != nil {
			t.Fatal(err)
		}
		keys := a3keys("a", "b", "c", "d")
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
