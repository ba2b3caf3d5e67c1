package smartcache

// Tests of the Context variants: a done context costs no call, and a deadline bounds the wait
// on a Redis that stopped answering to the deadline, not to redis_timeout_ms.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestDoneContextsReturnTheirErrorWithoutCalling(t *testing.T) {
	c := open(t, Config{})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, tc := range []struct {
		ctx  context.Context
		want error
	}{{cancelled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		if err := c.SetContext(tc.ctx, []byte("k"), []byte("v"), 0); !errors.Is(err, tc.want) {
			t.Fatalf("SetContext = %v, want %v", err, tc.want)
		}
		if _, _, err := c.GetContext(tc.ctx, []byte("k")); !errors.Is(err, tc.want) {
			t.Fatalf("GetContext = %v, want %v", err, tc.want)
		}
		if _, err := c.DeleteContext(tc.ctx, []byte("k")); !errors.Is(err, tc.want) {
			t.Fatalf("DeleteContext = %v, want %v", err, tc.want)
		}
		if _, err := c.ExistsContext(tc.ctx, []byte("k")); !errors.Is(err, tc.want) {
			t.Fatalf("ExistsContext = %v, want %v", err, tc.want)
		}
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Sets != 0 || s.MemoryHits+s.MemoryMisses != 0 {
		t.Fatalf("a done context reached the library: %+v", s)
	}
	// A live context calls as usual.
	ctx, cancel3 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel3()
	if err := c.SetContext(ctx, []byte("k"), []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c.GetContext(ctx, []byte("k")); err != nil || !ok || string(v) != "v" {
		t.Fatalf("GetContext = %q, %v, %v", v, ok, err)
	}
	if ok, err := c.ExistsContext(ctx, []byte("k")); err != nil || !ok {
		t.Fatalf("ExistsContext = %v, %v", ok, err)
	}
	if ok, err := c.DeleteContext(ctx, []byte("k")); err != nil || !ok {
		t.Fatalf("DeleteContext = %v, %v", ok, err)
	}
}

// startRedis runs a private redis-server on a free loopback port until the test ends.
func startRedis(t *testing.T) (*exec.Cmd, string) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (scripts/ensure-deps.sh installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s never listened", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, "redis://" + addr + "/0"
}

func TestAContextDeadlineShortensTheRedisTimeout(t *testing.T) {
	server, url := startRedis(t)
	const configured = 20 * time.Second
	c := open(t, Config{RedisEnabled: true, RedisURL: url, RedisKeyPrefix: uniquePrefix(t),
		RedisTimeout: configured})
	if _, _, err := c.Get([]byte("warm")); err != nil {
		t.Fatal(err)
	}
	// The server stops answering (stopped, not gone: connections stay open and silent).
	if err := server.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, ok, err := c.GetContext(ctx, []byte("absent"))
	took := time.Since(start)
	if err != nil || ok {
		t.Fatalf("GetContext on a silent Redis = %v, %v; want a miss", ok, err)
	}
	// Bounded by the context (200 ms), far below redis_timeout_ms; the margin is for a busy
	// machine, not a measurement.
	if took > configured/4 {
		t.Fatalf("GetContext took %v with a 200ms deadline (redis_timeout_ms %v)", took, configured)
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.RedisErrors == 0 {
		t.Fatalf("the timed-out Redis call was not counted: %+v", s)
	}
}
