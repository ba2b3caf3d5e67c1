package smartcache

// Tests of the disk (L3) and Redis (L2) tiers against the contract of docs/guide.md. While a tier
// is not in the library yet, Open refuses it with ErrConfig "... not available in this build"
// and these tests skip; they run as soon as the tier lands.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func diskConfig(dir string) Config {
	return Config{DiskEnabled: true, DiskPath: dir, DiskMaxSize: 8 << 20}
}

func TestDiskPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	c := openTier(t, diskConfig(dir))
	mustSet(t, c, "persist", "on disk")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c2 := openTier(t, diskConfig(dir))
	wantValue(t, c2, "persist", []byte("on disk"))
	s, err := c2.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// The new cache's memory started empty, so the first get was answered by the disk.
	if s.DiskHits == 0 {
		t.Fatalf("DiskHits = 0 after reading a value only the disk had: %+v", s)
	}
	h, err := c2.Health()
	if err != nil {
		t.Fatal(err)
	}
	if !h.Healthy || !h.Disk.Enabled || !h.Disk.Up || !strings.HasPrefix(h.DiskPath, dir) {
		t.Fatalf("Health = %+v; want a healthy disk tier under %s", h, dir)
	}
	if h.DiskFill <= 0 || h.DiskFill > 1 {
		t.Fatalf("DiskFill = %v with one record", h.DiskFill)
	}
}

// The tier's file may hold secrets: it is created readable by its owner only.
func TestDiskFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	c := openTier(t, diskConfig(dir))
	mustSet(t, c, "k", "v")
	c.Close()
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("disk_path holds no file: %v", err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().IsRegular() && info.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s has mode %v; want 0600", filepath.Join(dir, e.Name()), info.Mode().Perm())
		}
	}
}

// A value promoted from disk keeps its remaining lifetime, not a fresh memory TTL.
func TestDiskPromotionKeepsRemainingTTL(t *testing.T) {
	dir := t.TempDir()
	cfg := diskConfig(dir)
	cfg.MemoryTTL = time.Hour
	// 1.5 s; should a loaded machine (or -race) stall the close, reopen and read past it (the
	// entry then rightly expired), again under a new key with a longer ttl.
	var c2 *Cache
	var key string
	var set time.Time
	ttl := 1500 * time.Millisecond
	for ; ; ttl *= 4 {
		key = fmt.Sprint("k", ttl)
		c := openTier(t, cfg)
		before := time.Now()
		if err := c.Set([]byte(key), []byte("v"), ttl); err != nil {
			t.Fatal(err)
		}
		set = time.Now()
		c.Close()
		c2 = openTier(t, cfg)
		if wantValueWhileLive(t, c2, key, []byte("v"), before, ttl) { // promoted into memory here
			break
		}
		c2.Close()
		if ttl > time.Minute {
			t.Fatal("never read back within the ttl")
		}
	}
	// The promoted copy keeps what was left of the ttl, so it is gone shortly after the
	// deadline set on disk, long before the memory tier's hour.
	time.Sleep(time.Until(set.Add(ttl + 200*time.Millisecond)))
	wantMissing(t, c2, key)
}

func TestDiskDeleteAndClearReachTheDisk(t *testing.T) {
	dir := t.TempDir()
	c := openTier(t, diskConfig(dir))
	mustSet(t, c, "deleted", "v")
	mustSet(t, c, "cleared", "v")
	if ok, err := c.Delete([]byte("deleted")); err != nil || !ok {
		t.Fatal(ok, err)
	}
	c.Close()
	c2 := openTier(t, diskConfig(dir))
	wantMissing(t, c2, "deleted")
	wantValue(t, c2, "cleared", []byte("v"))
	if err := c2.Clear(); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	c3 := openTier(t, diskConfig(dir))
	wantMissing(t, c3, "cleared")
}

// redisConfig is a Redis-backed cache on the test server (scripts/with-redis.sh exports
// SMARTCACHE_TEST_REDIS_URL) under prefix.
func redisConfig(t *testing.T, prefix string) Config {
	url := os.Getenv("SMARTCACHE_TEST_REDIS_URL")
	if url == "" {
		// Without a server there is nothing to test against; make test-go always sets it.
		t.Skip("SMARTCACHE_TEST_REDIS_URL is not set (run through scripts/with-redis.sh)")
	}
	return Config{RedisEnabled: true, RedisURL: url, RedisKeyPrefix: prefix, RedisTimeout: time.Second}
}

func uniquePrefix(t *testing.T) string {
	return fmt.Sprintf("gotest:%s:%d:%d:", t.Name(), os.Getpid(), time.Now().UnixNano())
}

func TestRedisSharedBetweenCaches(t *testing.T) {
	prefix := uniquePrefix(t)
	a := openTier(t, redisConfig(t, prefix))
	b := openTier(t, redisConfig(t, prefix))
	mustSet(t, a, "shared", "written by a")
	wantValue(t, b, "shared", []byte("written by a"))
	s, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.RedisHits == 0 {
		t.Fatalf("b found a's value but RedisHits = 0: %+v", s)
	}
	h, err := b.Health()
	if err != nil {
		t.Fatal(err)
	}
	if !h.Healthy || !h.Redis.Enabled || !h.Redis.Up {
		t.Fatalf("Health = %+v", h)
	}
}

// Clear removes only this cache's keys: another prefix on the same server keeps its data.
func TestRedisClearKeepsOtherPrefixes(t *testing.T) {
	mine, theirs := uniquePrefix(t)+"mine:", uniquePrefix(t)+"theirs:"
	a := openTier(t, redisConfig(t, mine))
	other := openTier(t, redisConfig(t, theirs))
	mustSet(t, a, "k", "mine")
	mustSet(t, other, "k", "theirs")
	if err := a.Clear(); err != nil {
		t.Fatal(err)
	}
	fresh := openTier(t, redisConfig(t, theirs)) // empty memory: must read Redis
	wantValue(t, fresh, "k", []byte("theirs"))
	freshMine := openTier(t, redisConfig(t, mine))
	wantMissing(t, freshMine, "k")
}

// With Redis unreachable, calls degrade to misses within redis_timeout_ms and health says so.
func TestRedisDownDegradesToMisses(t *testing.T) {
	cfg := Config{RedisEnabled: true, RedisURL: "redis://127.0.0.1:1/0", RedisTimeout: 50 * time.Millisecond}
	c, err := Open(cfg)
	if err != nil {
		if IsNotAvailable(err) {
			t.Skipf("tier not in this build yet: %v", err)
		}
		// Refusing a server that is down at open time is acceptable, as a backend error.
		if !errors.Is(err, ErrBackend) {
			t.Fatalf("Open with Redis down: %v; want success or ErrBackend", err)
		}
		return
	}
	defer c.Close()
	start := time.Now()
	mustSet(t, c, "k", "v") // memory still takes it
	wantValue(t, c, "k", []byte("v"))
	wantMissing(t, c, "absent")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("calls with Redis down took %v", d)
	}
	h, err := c.Health()
	if err != nil {
		t.Fatal(err)
	}
	if h.Healthy || !h.Redis.Enabled || h.Redis.Up || h.Redis.LastError == "" {
		t.Fatalf("Health with Redis down = %+v", h)
	}
	if s, _ := c.Stats(); s.RedisErrors == 0 {
		t.Fatalf("RedisErrors = 0 with Redis down")
	}
}
