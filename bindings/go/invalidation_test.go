package smartcache

import (
	"strings"
	"testing"
	"time"
)

// Two "hosts" (caches with their own memory tiers and Redis connections, one key prefix) with
// RedisInvalidation on: a delete and a set on one reach the other's memory, which would
// otherwise serve the old value for its whole memory_ttl.
func TestRedisInvalidationReachesAnotherCachesMemory(t *testing.T) {
	cfg := privateRedisConfig(t)
	cfg.RedisInvalidation = true
	cfg.DiskPath = t.TempDir()
	a := open(t, cfg)
	b := open(t, cfg)

	for _, c := range []*Cache{a, b} {
		waitFor(t, "the listener subscribed", func() bool {
			js, err := c.StatsJSON()
			return err == nil && strings.Contains(js, `"invalidation":{"listening":true`)
		})
	}

	mustSet(t, a, "k", "v1")
	wantValue(t, b, "k", []byte("v1")) // now in b's memory
	if _, err := a.Delete([]byte("k")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delete reaches b", func() bool {
		_, ok, err := b.Get([]byte("k"))
		return err == nil && !ok
	})
	mustSet(t, a, "k", "v2")
	wantValue(t, b, "k", []byte("v2"))
	mustSet(t, a, "k", "v3")
	waitFor(t, "the set reaches b", func() bool {
		v, ok, err := b.Get([]byte("k"))
		return err == nil && ok && string(v) == "v3"
	})
}

// Off by default: the option reads back false, and the stats say there is no listener.
func TestRedisInvalidationIsOffByDefault(t *testing.T) {
	d, err := DefaultOptions()
	if err != nil {
		t.Fatal(err)
	}
	if d["redis_invalidation"] != "false" {
		t.Fatalf("default redis_invalidation = %q", d["redis_invalidation"])
	}
	c := open(t, privateRedisConfig(t))
	js, err := c.StatsJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js, `"invalidation":null`) {
		t.Fatalf("stats without the option: %s", js)
	}
}

// Without RedisEnabled the option has nothing to listen to: Open says so.
func TestRedisInvalidationWithoutRedisIsAConfigError(t *testing.T) {
	_, err := Open(Config{RedisInvalidation: true, DiskPath: t.TempDir()})
	wantCode(t, err, ErrConfig, "redis_invalidation")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 2s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
