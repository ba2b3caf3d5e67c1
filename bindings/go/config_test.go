package smartcache

import (
	"sort"
	"testing"
	"time"
)

func TestDefaultOptionsCoverEveryOption(t *testing.T) {
	d, err := DefaultOptions()
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != len(OptionNames) {
		t.Fatalf("%d defaults for %d names", len(d), len(OptionNames))
	}
	for name, want := range map[string]string{
		"memory_capacity": "1000", "memory_ttl": "300", "redis_ttl": "1800",
		"redis_timeout_ms": "100", "disk_ttl": "3600", "auto_expire_interval": "60",
		"max_value_size": "16777216", "compression_enabled": "true", "disk_enabled": "false",
	} {
		if d[name] != want {
			t.Errorf("default %s = %q; want %q", name, d[name], want)
		}
	}
}

// Every option of the library is reachable through Options: setting each to its default text
// opens a cache (with the tiers this build may lack left off).
func TestEveryOptionSettableByName(t *testing.T) {
	d, err := DefaultOptions()
	if err != nil {
		t.Fatal(err)
	}
	d["redis_enabled"], d["disk_enabled"] = "false", "false"
	d["disk_path"] = t.TempDir()
	d["redis_key_prefix"] = "go-test:"
	c := open(t, Config{Options: d})
	mustSet(t, c, "k", "v")
	wantValue(t, c, "k", []byte("v"))
}

func TestFieldsReachTheLibrary(t *testing.T) {
	c := open(t, Config{
		MemoryCapacity: 123, MemoryMaxBytes: 8192, JemallocEnabled: Bool(false),
		CompressionEnabled: Bool(false), CompressionMinSize: 64, MemoryTTL: Never,
		AutoExpireInterval: Never, MaxValueSize: 4096,
		RedisURL: "redis://127.0.0.1:1/0", RedisTTL: time.Minute, RedisTimeout: 250 * time.Millisecond,
		RedisPoolSize: 2, RedisKeyPrefix: "p:", DiskPath: t.TempDir(), DiskMaxSize: 1 << 20,
		DiskTTL: time.Hour,
	})
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Capacity != 123 || s.MemoryMaxBytes != 8192 || s.Jemalloc {
		t.Fatalf("Capacity %d MemoryMaxBytes %d Jemalloc %v", s.Capacity, s.MemoryMaxBytes, s.Jemalloc)
	}
	wantCode(t, c.Set([]byte("k"), make([]byte, 4097), 0), ErrTooLarge, "max_value_size")
}

func TestJemallocDefaultOn(t *testing.T) {
	s, err := open(t, Config{}).Stats()
	if err != nil {
		t.Fatal(err)
	}
	if !s.Jemalloc {
		t.Fatal("jemalloc_enabled defaults to true, but Stats.Jemalloc is false")
	}
}

func TestEnableStatsFalseStopsCounting(t *testing.T) {
	c := open(t, Config{EnableStats: Bool(false)})
	mustSet(t, c, "k", "v")
	wantValue(t, c, "k", []byte("v"))
	s, _ := c.Stats()
	if s.Hits != 0 || s.Sets != 0 {
		t.Fatalf("counted with enable_stats=false: hits %d sets %d", s.Hits, s.Sets)
	}
}

func TestOptionsOverrideFields(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 10, Options: map[string]string{"memory_capacity": "20"}})
	if s, _ := c.Stats(); s.Capacity != 20 {
		t.Fatalf("Capacity %d; Options should win over the field", s.Capacity)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"unknown name", Config{Options: map[string]string{"memry_ttl": "1"}}, "memry_ttl"},
		{"bad number", Config{Options: map[string]string{"memory_capacity": "lots"}}, "memory_capacity"},
		{"zero capacity", Config{Options: map[string]string{"memory_capacity": "0"}}, "memory_capacity"},
		{"negative capacity", Config{MemoryCapacity: -3}, "memory_capacity"},
		{"bad boolean", Config{Options: map[string]string{"disk_enabled": "maybe"}}, "maybe"},
		{"bad size", Config{Options: map[string]string{"disk_max_size": "12X"}}, "12X"},
		{"bad url", Config{RedisURL: "http://x"}, "redis_url"},
		{"pool too big", Config{RedisPoolSize: 100000}, "redis_pool_size"},
		{"fractional ttl", Config{MemoryTTL: 1500 * time.Millisecond}, "memory_ttl"},
		{"negative ttl", Config{DiskTTL: -2 * time.Second}, "disk_ttl"},
		{"fractional timeout", Config{RedisTimeout: 1500 * time.Microsecond}, "redis_timeout_ms"},
		{"tiny byte bound", Config{MemoryMaxBytes: 100}, "memory_max_bytes"},
		{"NUL in a value", Config{DiskPath: "/tmp/a\x00b"}, "NUL"},
		{"NUL in a name", Config{Options: map[string]string{"disk_path\x00x": "/tmp"}}, "NUL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(tc.cfg)
			if err == nil {
				c.Close()
			}
			wantCode(t, err, ErrConfig, tc.msg)
		})
	}
}

func TestOptionNamesUnique(t *testing.T) {
	// OptionNames is a copy of the library's list; a duplicate would hide a missing name.
	seen := append([]string(nil), OptionNames...)
	sort.Strings(seen)
	for i := 1; i < len(seen); i++ {
		if seen[i] == seen[i-1] {
			t.Fatalf("duplicate option %q", seen[i])
		}
	}
}
