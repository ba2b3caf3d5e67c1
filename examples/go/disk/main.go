// Command disk shows the disk tier (L3): a value written by one cache is read by a cache
// opened later on the same DiskPath, as after a restart. Exits 0 with a note when this build
// of the library has no disk tier yet.
package main

import (
	"fmt"
	"log"
	"os"

	"github.com/smartcache/smartcache-go"
)

func main() {
	dir, err := os.MkdirTemp("", "smartcache-disk-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := smartcache.Config{
		DiskEnabled: true,
		DiskPath:    dir,      // a directory; the tier keeps one file in it
		DiskMaxSize: 64 << 20, // bytes
	}

	first, err := smartcache.Open(cfg)
	if smartcache.IsNotAvailable(err) {
		fmt.Println("note:", err, "-- skipping the disk example")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	if err := first.Set([]byte("report:2024"), []byte("expensive result"), 0); err != nil {
		log.Fatal(err)
	}
	first.Close() // flushes the disk tier

	second, err := smartcache.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer second.Close()
	v, ok, err := second.Get([]byte("report:2024"))
	if err != nil || !ok {
		log.Fatal("after reopen: ", ok, err)
	}
	stats, _ := second.Stats()
	health, _ := second.Health()
	fmt.Printf("after reopen: %s (disk hits %d, file %s, %.4f%% full)\n",
		v, stats.DiskHits, health.DiskPath, 100*health.DiskFill)
}
