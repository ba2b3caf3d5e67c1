package smartcache

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"time"
	"unsafe"
)

// Stats are the counters of a cache (sz_stats). Hits and Misses count gets answered by any
// tier / by none; the per-tier fields say which tier answered.
type Stats struct {
	Hits    uint64 // gets answered by some tier
	Misses  uint64 // gets answered by no tier
	Sets    uint64 // values stored by Set and GetOrCompute (promotions are not counted)
	Deletes uint64 // live memory entries removed by Delete
	// Evictions: entries dropped from memory to stay within memory_capacity / memory_max_bytes.
	Evictions uint64
	// Expirations: entries reclaimed from memory because their TTL passed.
	Expirations uint64
	Size        uint64 // live entries in memory
	Capacity    uint64 // memory_capacity
	// MemoryBytes is what memory entries occupy (allocator sizes); MemoryMaxBytes is
	// memory_max_bytes (0 = unbounded).
	MemoryBytes    uint64 // bytes held by memory entries
	MemoryMaxBytes uint64 // memory_max_bytes (0 = unbounded)
	// HitRatio is Hits / (Hits + Misses), 0 before the first get.
	HitRatio float64
	// OpsPerSecond is measured over the last few seconds, not over the cache's lifetime.
	OpsPerSecond float64
	// CompressionRatio is bytes before compression / bytes stored (1.0 = nothing compressed).
	CompressionRatio float64
	// Jemalloc is true when memory entries come from the dedicated jemalloc arena.
	Jemalloc     bool
	MemoryHits   uint64        // gets answered by memory (L1)
	MemoryMisses uint64        // gets memory could not answer
	RedisHits    uint64        // gets answered by Redis (L2)
	RedisMisses  uint64        // gets that reached Redis and missed
	RedisErrors  uint64        // failed Redis operations (each degraded to a miss or skipped write)
	DiskHits     uint64        // gets answered by the disk tier (L3)
	DiskMisses   uint64        // gets that reached the disk tier and missed
	DiskErrors   uint64        // failed disk operations
	Uptime       time.Duration // since Open (millisecond resolution)
	// MemoryErrors counts compressed values that would not decode (served as misses).
	MemoryErrors uint64
	// Latency percentiles of gets and sets per tier (zero until the tier saw such an
	// operation; memory operations are sampled about 1 in 64).
	MemoryGet, MemorySet, RedisGet, RedisSet, DiskGet, DiskSet Latency
	// RedisTampered and DiskTampered count values refused (served as misses) because
	// ValueSecret is set and their signature was missing or did not verify.
	RedisTampered, DiskTampered uint64
}

// Latency holds the median and 99th percentile of one kind of operation in one tier.
type Latency struct {
	P50, P99 time.Duration
}

func latency(p50, p99 C.uint64_t) Latency {
	return Latency{P50: time.Duration(p50), P99: time.Duration(p99)}
}

// Stats returns the cache's counters.
func (c *Cache) Stats() (Stats, error) {
	var s C.sz_stats // Go memory holding no Go pointers: C may fill it during the call
	c.mu.RLock()
	if c.h == 0 {
		c.mu.RUnlock()
		return Stats{}, closedError("Stats")
	}
	err := statusError("Stats", C.sc_stats(c.h, &s))
	c.mu.RUnlock()
	if err != nil {
		return Stats{}, err
	}
	return Stats{
		Hits: uint64(s.hits), Misses: uint64(s.misses), Sets: uint64(s.sets),
		Deletes: uint64(s.deletes), Evictions: uint64(s.evictions),
		Expirations: uint64(s.expirations), Size: uint64(s.size), Capacity: uint64(s.capacity),
		MemoryBytes: uint64(s.memory_bytes), MemoryMaxBytes: uint64(s.memory_max_bytes),
		HitRatio: float64(s.hit_ratio), OpsPerSecond: float64(s.ops_per_second),
		CompressionRatio: float64(s.compression_ratio), Jemalloc: s.jemalloc != 0,
		MemoryHits: uint64(s.memory_hits), MemoryMisses: uint64(s.memory_misses),
		RedisHits: uint64(s.redis_hits), RedisMisses: uint64(s.redis_misses),
		RedisErrors: uint64(s.redis_errors), DiskHits: uint64(s.disk_hits),
		DiskMisses: uint64(s.disk_misses), DiskErrors: uint64(s.disk_errors),
		RedisTampered: uint64(s.redis_tampered), DiskTampered: uint64(s.disk_tampered),
		Uptime:       time.Duration(s.uptime_ms) * time.Millisecond,
		MemoryErrors: uint64(s.memory_errors),
		MemoryGet:    latency(s.memory_get_p50_ns, s.memory_get_p99_ns),
		MemorySet:    latency(s.memory_set_p50_ns, s.memory_set_p99_ns),
		RedisGet:     latency(s.redis_get_p50_ns, s.redis_get_p99_ns),
		RedisSet:     latency(s.redis_set_p50_ns, s.redis_set_p99_ns),
		DiskGet:      latency(s.disk_get_p50_ns, s.disk_get_p99_ns),
		DiskSet:      latency(s.disk_set_p50_ns, s.disk_set_p99_ns),
	}, nil
}

// StatsJSON returns the stats and per-tier details as one JSON object (sz_cache_stats_json),
// the form to hand to a monitoring endpoint.
func (c *Cache) StatsJSON() (string, error) {
	return c.libraryString("StatsJSON", func(h C.uintptr_t) C.sc_string { return C.sc_stats_json(h) })
}

// StatsPrometheus returns the same snapshot as StatsJSON in the Prometheus text exposition
// format, version 0.0.4 (sz_cache_stats_prometheus): metrics prefixed smartcache_, ready to
// serve as is on a /metrics endpoint (Content-Type "text/plain; version=0.0.4").
func (c *Cache) StatsPrometheus() (string, error) {
	return c.libraryString("StatsPrometheus", func(h C.uintptr_t) C.sc_string {
		return C.sc_stats_prometheus(h)
	})
}

// libraryString calls get, a shim helper returning a library-owned string, on the cache's
// handle, and returns a Go copy of the string, which it frees (sz_string_free).
func (c *Cache) libraryString(op string, get func(C.uintptr_t) C.sc_string) (string, error) {
	c.mu.RLock()
	if c.h == 0 {
		c.mu.RUnlock()
		return "", closedError(op)
	}
	r := get(c.h)
	c.mu.RUnlock()
	if r.s == nil {
		return "", codeError(op, r.rc, r.err)
	}
	defer C.sz_string_free(r.s)
	return C.GoString(r.s), nil
}

// TierHealth is the state of one tier (sz_tier_health).
type TierHealth struct {
	Enabled   bool   // the tier is configured on
	Up        bool   // its last use succeeded (always true for memory)
	Errors    uint64 // failures so far
	LastError string // "" when there was none
}

// Health is the state of every tier (sz_health).
type Health struct {
	Healthy bool       // every enabled tier is up
	Memory  TierHealth // L1
	Redis   TierHealth // L2
	Disk    TierHealth // L3
	// DiskFill is the fraction of disk_max_size in use (0 when the disk tier is off).
	DiskFill float64
	// DiskPath is the disk tier's file ("" when off).
	DiskPath string
}

// Health reports each tier's up/down state and last error. A failing Redis or disk tier does
// not fail gets and sets (they degrade to misses and skipped writes); this is where it shows.
func (c *Cache) Health() (Health, error) {
	h := new(C.sz_health) // ~1.8 KB: keep it off the goroutine stack
	c.mu.RLock()
	if c.h == 0 {
		c.mu.RUnlock()
		return Health{}, closedError("Health")
	}
	err := statusError("Health", C.sc_health(c.h, h))
	c.mu.RUnlock()
	if err != nil {
		return Health{}, err
	}
	return Health{
		Healthy:  h.healthy != 0,
		Memory:   tierHealth(&h.memory),
		Redis:    tierHealth(&h.redis),
		Disk:     tierHealth(&h.disk),
		DiskFill: float64(h.disk_fill),
		DiskPath: C.GoString(&h.disk_path[0]),
	}, nil
}

func tierHealth(t *C.sz_tier_health) TierHealth {
	return TierHealth{
		Enabled:   t.enabled != 0,
		Up:        t.up != 0,
		Errors:    uint64(t.errors),
		LastError: C.GoString((*C.char)(unsafe.Pointer(&t.last_error[0]))),
	}
}
