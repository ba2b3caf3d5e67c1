// Command redis shows the Redis tier (L2): two caches with the same RedisURL and
// RedisKeyPrefix (two processes, typically) see each other's writes. Uses
// SMARTCACHE_TEST_REDIS_URL; without it, or without a Redis tier in this build, it exits 0
// with a note.
package main

import (
	"fmt"
	"log"
	"os"
	"time"

	"github.com/smartcache/smartcache-go"
)

func main() {
	url := os.Getenv("SMARTCACHE_TEST_REDIS_URL")
	if url == "" {
		fmt.Println("note: SMARTCACHE_TEST_REDIS_URL is not set -- skipping the Redis example")
		return
	}
	cfg := smartcache.Config{
		RedisEnabled:   true,
		RedisURL:       url,
		RedisKeyPrefix: fmt.Sprintf("example:%d:", os.Getpid()), // same prefix = shared entries
		RedisTimeout:   200 * time.Millisecond,                  // bound on every Redis call
		RedisTTL:       time.Minute,
	}
	a, err := smartcache.Open(cfg)
	if smartcache.IsNotAvailable(err) {
		fmt.Println("note:", err, "-- skipping the Redis example")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := smartcache.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	if err := a.Set([]byte("greeting"), []byte("hello from a"), 0); err != nil {
		log.Fatal(err)
	}
	v, ok, err := b.Get([]byte("greeting")) // b's memory misses; Redis answers
	if err != nil || !ok {
		log.Fatal("b did not see a's write: ", ok, err)
	}
	stats, _ := b.Stats()
	health, _ := b.Health()
	fmt.Printf("b read a's write: %s (redis hits %d, redis up %v)\n", v, stats.RedisHits, health.Redis.Up)
	if err := a.Clear(); err != nil { // only keys under this prefix
		log.Fatal(err)
	}
}
