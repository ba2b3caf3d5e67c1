package smartcache

// StatsPrometheus: the guide's metric names and types, counts that match the operations made,
// and the per-tier lines of the disk and Redis tiers.

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

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

func TestStatsPrometheusMemory(t *testing.T) {
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
	if err := c.SetMany(byteSlices("m1", "m2", "m3"), byteSlices("1", "2", "3"), 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if _, ok, _ := c.Get([]byte(fmt.Sprintf("k%d", i))); !ok {
			t.Fatal("miss")
		}
	}
	if _, err := c.GetMany(byteSlices("m1", "m2", "nope")); err != nil {
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

func TestStatsPrometheusDiskAndRedis(t *testing.T) {
	cfg := privateRedisConfig(t)
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
