// Command memory shows the memory tier (L1) from Go: Set, the copying Get, the zero-copy
// GetPinned, GetContext, TTLs, Delete, GetOrCompute and error values.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/smartcache/smartcache-go"
)

func main() {
	fmt.Println("libsmartcache", smartcache.Version())
	cache, err := smartcache.Open(smartcache.Config{
		MemoryCapacity: 1000,            // items
		MemoryTTL:      5 * time.Minute, // whole seconds; smartcache.Never = no expiry
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	key := []byte("user:42")
	if err := cache.Set(key, []byte(`{"name":"Ada"}`), 0); err != nil { // 0 = MemoryTTL
		log.Fatal(err)
	}

	// GetPinned: no copy; the bytes stay valid until Release even if the entry changes.
	v, ok, err := cache.GetPinned(key)
	if err != nil || !ok {
		log.Fatal("GetPinned: ", ok, err)
	}
	if err := cache.Set(key, []byte("replaced"), 0); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("pinned get (after an overwrite): %s\n", v.Bytes())
	v.Release()

	// Get: a copy the program owns.
	copied, _, err := cache.Get(key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("copied get: %s\n", copied)

	// GetContext: a request's context bounds the call (a done context costs no call, and its
	// deadline shortens the Redis wait when Redis is enabled).
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, ok, err := cache.GetContext(ctx, key); err != nil || !ok {
		log.Fatal("GetContext: ", ok, err)
	}

	// An explicit TTL; expired entries are never returned.
	if err := cache.Set([]byte("session"), []byte("token"), 100*time.Millisecond); err != nil {
		log.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	present, _ := cache.Exists([]byte("session"))
	fmt.Println("session present after its TTL:", present)

	deleted, _ := cache.Delete(key)
	fmt.Println("deleted:", deleted)

	// GetOrCompute: fn runs once per miss, however many goroutines ask at once.
	calls := 0
	for i := 0; i < 3; i++ {
		v, err := cache.GetOrCompute([]byte("greeting"), time.Minute, func() ([]byte, error) {
			calls++
			return []byte("computed once"), nil
		})
		if err != nil {
			log.Fatal(err)
		}
		if i == 2 {
			fmt.Printf("GetOrCompute: %s (fn ran %d time)\n", v.Bytes(), calls)
		}
		v.Release()
	}

	// Errors carry the status code and message; test them with errors.Is.
	err = cache.Set(nil, []byte("v"), 0)
	fmt.Println("empty key:", err, "| errors.Is(err, ErrInvalid):", errors.Is(err, smartcache.ErrInvalid))
	if present || !deleted || calls != 1 {
		log.Fatal("unexpected result")
	}
}
