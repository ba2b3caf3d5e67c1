package smartcache

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// The worker side of TestWorkerProcessesSeeEachOthersWrites: this test binary run again with
// SMARTCACHE_GO_WORKER_DIR set. It opens its own cache on that directory and answers one key
// per stdin line with a JSON line: the value (null on a miss) and its memory-tier hits so far.
func TestMain(m *testing.M) {
	if dir := os.Getenv("SMARTCACHE_GO_WORKER_DIR"); dir != "" {
		os.Exit(runWorker(dir))
	}
	os.Exit(m.Run())
}

type workerAnswer struct {
	Value       *string `json:"value"`
	MemoryHits  uint64  `json:"memory_hits"`
	Invalidated uint64  `json:"invalidations"`
}

func runWorker(dir string) int {
	c, err := Open(Config{DiskEnabled: true, DiskPath: dir, DiskMaxSize: 8 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker: open:", err)
		return 2
	}
	defer c.Close()
	out := json.NewEncoder(os.Stdout)
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		var a workerAnswer
		if v, ok, err := c.Get(lines.Bytes()); err != nil {
			fmt.Fprintln(os.Stderr, "worker: get:", err)
			return 2
		} else if ok {
			s := string(v)
			a.Value = &s
		}
		var stats struct {
			Tiers struct {
				Memory struct {
					Hits          uint64 `json:"hits"`
					Invalidations uint64 `json:"invalidations"`
				} `json:"memory"`
			} `json:"tiers"`
		}
		text, err := c.StatsJSON()
		if err == nil {
			err = json.Unmarshal([]byte(text), &stats)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "worker: stats:", err)
			return 2
		}
		a.MemoryHits, a.Invalidated = stats.Tiers.Memory.Hits, stats.Tiers.Memory.Invalidations
		if out.Encode(a) != nil {
			return 2
		}
	}
	return 0
}

// Worker processes of one host sharing a disk_path, as a pre-fork server runs them: each has
// its own memory tier, and a set, delete or clear in one is seen by the next get in the
// others, never the value it replaced.
func TestWorkerProcessesSeeEachOthersWrites(t *testing.T) {
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "SMARTCACHE_GO_WORKER_DIR="+dir)
	cmd.Stderr = os.Stderr
	toWorker, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	fromWorker, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	answers := json.NewDecoder(fromWorker)
	ask := func(key string) workerAnswer {
		t.Helper()
		var a workerAnswer
		if _, err := fmt.Fprintln(toWorker, key); err != nil {
			t.Fatalf("worker gone: %v", err)
		}
		if err := answers.Decode(&a); err != nil {
			t.Fatalf("worker answer: %v", err)
		}
		return a
	}
	sees := func(key string, want *string) {
		t.Helper()
		got := ask(key).Value
		switch {
		case want == nil && got != nil:
			t.Fatalf("worker get(%q) = %q, want a miss", key, *got)
		case want != nil && (got == nil || *got != *want):
			t.Fatalf("worker get(%q) = %v, want %q", key, got, *want)
		}
	}
	str := func(s string) *string { return &s }

	c := open(t, Config{DiskEnabled: true, DiskPath: dir, DiskMaxSize: 8 << 20})
	set := func(k, v string) {
		t.Helper()
		if err := c.Set([]byte(k), []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}

	set("user:1", "alice")
	sees("user:1", str("alice"))
	before := ask("user:1").MemoryHits
	if after := ask("user:1").MemoryHits; after <= before {
		t.Fatalf("memory hits %d -> %d: not kept in the worker's memory", before, after)
	}
	set("user:1", "alicia")
	sees("user:1", str("alicia"))
	if n := ask("user:1").Invalidated; n != 1 {
		t.Fatalf("worker invalidations = %d, want 1", n)
	}
	if _, err := c.Delete([]byte("user:1")); err != nil {
		t.Fatal(err)
	}
	sees("user:1", nil)
	set("a", "1")
	set("b", "2")
	sees("a", str("1"))
	sees("b", str("2"))
	if err := c.Clear(); err != nil {
		t.Fatal(err)
	}
	sees("a", nil)
	sees("b", nil)
	for v := 1; v <= 50; v++ {
		value := fmt.Sprintf("v%d", v)
		set("counter", value)
		sees("counter", &value)
	}

	toWorker.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker: %v", err)
	}
}
