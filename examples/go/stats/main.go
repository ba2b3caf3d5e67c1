// Command stats shows what a cache reports about itself: Stats, StatsJSON and Health.
package main

import (
	"fmt"
	"log"

	"github.com/smartcache/smartcache-go"
)

func main() {
	cache, err := smartcache.Open(smartcache.Config{MemoryCapacity: 100})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	// 200 sets into 100 slots (evictions), then gets of all 200 keys (hits and misses).
	for i := 0; i < 200; i++ {
		if err := cache.Set([]byte(fmt.Sprint("item:", i)), []byte("payload"), 0); err != nil {
			log.Fatal(err)
		}
	}
	for i := 0; i < 200; i++ {
		if _, _, err := cache.Get([]byte(fmt.Sprint("item:", i))); err != nil {
			log.Fatal(err)
		}
	}

	s, err := cache.Stats()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("hits %d misses %d hit ratio %.2f sets %d evictions %d\n",
		s.Hits, s.Misses, s.HitRatio, s.Sets, s.Evictions)
	fmt.Printf("size %d / capacity %d, memory %d bytes, jemalloc %v, %.0f ops/s, up %v\n",
		s.Size, s.Capacity, s.MemoryBytes, s.Jemalloc, s.OpsPerSecond, s.Uptime)

	js, err := cache.StatsJSON()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("json:", js)

	h, err := cache.Health()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("healthy:", h.Healthy)
	for _, t := range []struct {
		name string
		smartcache.TierHealth
	}{{"memory", h.Memory}, {"redis", h.Redis}, {"disk", h.Disk}} {
		fmt.Printf("  %-6s enabled=%v up=%v errors=%d last_error=%q\n", t.name, t.Enabled, t.Up, t.Errors, t.LastError)
	}
	if s.Hits+s.Misses != 200 || s.Evictions == 0 {
		log.Fatal("unexpected counters")
	}
}
