package smartcache_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/smartcache/smartcache-go"
)

func Example() {
	cache, err := smartcache.Open(smartcache.Config{MemoryCapacity: 1000, MemoryTTL: 5 * time.Minute})
	if err != nil {
		panic(err)
	}
	defer cache.Close()

	if err := cache.Set([]byte("user:1"), []byte("Ada"), time.Minute); err != nil {
		panic(err)
	}
	value, found, _ := cache.Get([]byte("user:1"))
	fmt.Printf("%s %v\n", value, found)
	_, found, _ = cache.Get([]byte("user:2"))
	fmt.Println(found)
	// Output:
	// Ada true
	// false
}

func ExampleCache_GetPinned() {
	cache, _ := smartcache.Open(smartcache.Config{})
	defer cache.Close()
	cache.Set([]byte("k"), []byte("original"), 0)

	v, found, err := cache.GetPinned([]byte("k"))
	if err != nil || !found {
		panic(err)
	}
	cache.Set([]byte("k"), []byte("replaced"), 0) // the pinned bytes do not change
	fmt.Println(string(v.Bytes()))
	v.Release() // exactly once, after the last use of v.Bytes()
	// Output: original
}

func ExampleCache_GetOrCompute() {
	cache, _ := smartcache.Open(smartcache.Config{})
	defer cache.Close()
	for i := 0; i < 2; i++ {
		v, err := cache.GetOrCompute([]byte("report"), time.Hour, func() ([]byte, error) {
			fmt.Println("computing")
			return []byte("42"), nil
		})
		if err != nil {
			panic(err)
		}
		fmt.Println(string(v.Bytes()))
		v.Release()
	}
	// Output:
	// computing
	// 42
	// 42
}

func ExampleOpen_errors() {
	_, err := smartcache.Open(smartcache.Config{Options: map[string]string{"memry_ttl": "1"}})
	fmt.Println(errors.Is(err, smartcache.ErrConfig))
	var e *smartcache.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code)
	}
	// Output:
	// true
	// configuration error
}
