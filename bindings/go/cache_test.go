package smartcache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	if v := Version(); !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("Version() = %q; want MAJOR.MINOR.PATCH", v)
	}
}

func TestSetGetBinaryKeysAndValues(t *testing.T) {
	c := open(t, Config{})
	key := []byte("k\x00\xff\x01 binary")
	value := []byte("v\x00alue\xfe")
	if err := c.Set(key, value, 0); err != nil {
		t.Fatal(err)
	}
	// The cache keeps its own copy: changing the caller's slices afterwards changes nothing.
	key[0], value[0] = 'X', 'X'
	wantMissing(t, c, string(key))
	key[0] = 'k'
	wantValue(t, c, string(key), []byte("v\x00alue\xfe"))

	// Get returns a copy the caller owns.
	got, _, _ := c.Get(key)
	got[0] = 'Z'
	wantValue(t, c, string(key), []byte("v\x00alue\xfe"))
}

func TestGetMissing(t *testing.T) {
	c := open(t, Config{})
	wantMissing(t, c, "nothing here")
}

func TestOverwrite(t *testing.T) {
	c := open(t, Config{})
	mustSet(t, c, "k", "one")
	mustSet(t, c, "k", "two, longer")
	wantValue(t, c, "k", []byte("two, longer"))
}

func TestEmptyValueIsValid(t *testing.T) {
	c := open(t, Config{})
	for _, v := range [][]byte{nil, {}} {
		if err := c.Set([]byte("empty"), v, 0); err != nil {
			t.Fatalf("Set(empty value %#v): %v", v, err)
		}
		got, ok, err := c.Get([]byte("empty"))
		if err != nil || !ok || len(got) != 0 {
			t.Fatalf("Get = %q, %v, %v; want an empty hit", got, ok, err)
		}
		p, ok, err := c.GetPinned([]byte("empty"))
		if err != nil || !ok || p.Len() != 0 || len(p.Bytes()) != 0 {
			t.Fatalf("GetPinned = %v, %v; want an empty hit", ok, err)
		}
		p.Release()
	}
}

// Values around and far above Get's scratch buffer take both of its copy paths.
func TestGetSizesAroundScratchBuffer(t *testing.T) {
	c := open(t, Config{})
	for _, n := range []int{1, copyScratch - 1, copyScratch, copyScratch + 1, 1 << 20} {
		v := bytes.Repeat([]byte{byte(n)}, n)
		v[n-1] = 0xEE
		key := fmt.Sprintf("size:%d", n)
		if err := c.Set([]byte(key), v, 0); err != nil {
			t.Fatalf("Set %d bytes: %v", n, err)
		}
		wantValue(t, c, key, v)
	}
}

func TestEmptyKeyIsInvalid(t *testing.T) {
	c := open(t, Config{})
	for _, key := range [][]byte{nil, {}} {
		wantCode(t, c.Set(key, []byte("v"), 0), ErrInvalid, "key is empty")
		_, _, err := c.Get(key)
		wantCode(t, err, ErrInvalid, "key is empty")
		_, _, err = c.GetPinned(key)
		wantCode(t, err, ErrInvalid, "key is empty")
		_, err = c.Delete(key)
		wantCode(t, err, ErrInvalid, "key is empty")
		_, err = c.Exists(key)
		wantCode(t, err, ErrInvalid, "key is empty")
		_, err = c.GetOrCompute(key, 0, func() ([]byte, error) { return []byte("v"), nil })
		wantCode(t, err, ErrInvalid, "key is empty")
	}
}

func TestKeyLengthLimit(t *testing.T) {
	c := open(t, Config{})
	longest := bytes.Repeat([]byte("k"), 65535)
	if err := c.Set(longest, []byte("v"), 0); err != nil {
		t.Fatalf("65535-byte key: %v", err)
	}
	wantValue(t, c, string(longest), []byte("v"))

	tooLong := bytes.Repeat([]byte("k"), 65536)
	wantCode(t, c.Set(tooLong, []byte("v"), 0), ErrTooLarge, "65535")
	_, _, err := c.Get(tooLong)
	wantCode(t, err, ErrTooLarge, "65535")
	_, _, err = c.GetPinned(tooLong)
	wantCode(t, err, ErrTooLarge, "65535")
	_, err = c.Delete(tooLong)
	wantCode(t, err, ErrTooLarge, "65535")
	_, err = c.Exists(tooLong)
	wantCode(t, err, ErrTooLarge, "65535")
}

func TestMaxValueSize(t *testing.T) {
	c := open(t, Config{MaxValueSize: 1000})
	if err := c.Set([]byte("k"), make([]byte, 1000), 0); err != nil {
		t.Fatalf("value of exactly max_value_size: %v", err)
	}
	wantCode(t, c.Set([]byte("k2"), make([]byte, 1001), 0), ErrTooLarge, "max_value_size")
	wantMissing(t, c, "k2")
}

func TestDeleteAndExists(t *testing.T) {
	c := open(t, Config{})
	mustSet(t, c, "k", "v")
	if ok, err := c.Exists([]byte("k")); err != nil || !ok {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	if ok, err := c.Delete([]byte("k")); err != nil || !ok {
		t.Fatalf("Delete = %v, %v; want true", ok, err)
	}
	if ok, err := c.Delete([]byte("k")); err != nil || ok {
		t.Fatalf("second Delete = %v, %v; want false", ok, err)
	}
	if ok, err := c.Exists([]byte("k")); err != nil || ok {
		t.Fatalf("Exists after Delete = %v, %v", ok, err)
	}
	wantMissing(t, c, "k")
}

func TestExistsDoesNotCountAsAccess(t *testing.T) {
	c := open(t, Config{})
	mustSet(t, c, "k", "v")
	for i := 0; i < 5; i++ {
		if _, err := c.Exists([]byte("k")); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Hits != 0 || s.Misses != 0 {
		t.Fatalf("Exists counted as gets: hits %d misses %d", s.Hits, s.Misses)
	}
}

func TestClear(t *testing.T) {
	c := open(t, Config{})
	for i := 0; i < 50; i++ {
		mustSet(t, c, fmt.Sprint("k", i), "v")
	}
	if err := c.Clear(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		wantMissing(t, c, fmt.Sprint("k", i))
	}
	s, _ := c.Stats()
	if s.Size != 0 {
		t.Fatalf("Size after Clear = %d", s.Size)
	}
	mustSet(t, c, "after", "clear")
	wantValue(t, c, "after", []byte("clear"))
}

func TestExplicitTTLExpires(t *testing.T) {
	c := open(t, Config{MemoryTTL: Never})
	// The first read may race the deadline on a loaded machine: it must hit only while the
	// entry is surely live.
	start := time.Now()
	if err := c.Set([]byte("short"), []byte("v"), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	mustSet(t, c, "forever", "v")
	wantValueWhileLive(t, c, "short", []byte("v"), start, 300*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	wantMissing(t, c, "short")
	if ok, _ := c.Exists([]byte("short")); ok {
		t.Fatal("Exists reports an expired entry")
	}
	wantValue(t, c, "forever", []byte("v"))
}

// A TTL below a millisecond must not turn into 0, which would mean "the tier's default".
func TestSubMillisecondTTLIsNotDefault(t *testing.T) {
	c := open(t, Config{MemoryTTL: time.Hour})
	if err := c.Set([]byte("k"), []byte("v"), time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	wantMissing(t, c, "k")
}

func TestDefaultTTLFromConfig(t *testing.T) {
	c := open(t, Config{MemoryTTL: time.Second})
	start := time.Now()
	mustSet(t, c, "k", "v")
	wantValueWhileLive(t, c, "k", []byte("v"), start, time.Second)
	time.Sleep(1100 * time.Millisecond)
	wantMissing(t, c, "k")
}

func TestHugeTTLIsAccepted(t *testing.T) {
	c := open(t, Config{})
	if err := c.Set([]byte("k"), []byte("v"), time.Duration(1<<63-1)); err != nil {
		t.Fatal(err)
	}
	wantValue(t, c, "k", []byte("v"))
}

func TestNegativeTTLIsInvalid(t *testing.T) {
	c := open(t, Config{})
	wantCode(t, c.Set([]byte("k"), []byte("v"), -time.Second), ErrInvalid, "negative ttl")
	_, err := c.GetOrCompute([]byte("k"), -1, func() ([]byte, error) { return nil, nil })
	wantCode(t, err, ErrInvalid, "negative ttl")
}

func TestExpireNowReclaims(t *testing.T) {
	c := open(t, Config{AutoExpireInterval: Never, MemoryTTL: Never})
	for i := 0; i < 20; i++ {
		if err := c.Set([]byte(fmt.Sprint("k", i)), []byte("v"), 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	mustSet(t, c, "keep", "v")
	time.Sleep(40 * time.Millisecond)
	n, err := c.ExpireNow()
	if err != nil || n != 20 {
		t.Fatalf("ExpireNow = %d, %v; want 20", n, err)
	}
	s, _ := c.Stats()
	if s.Expirations != 20 || s.Size != 1 {
		t.Fatalf("Expirations %d Size %d; want 20 and 1", s.Expirations, s.Size)
	}
}

func TestStats(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 5000, MemoryMaxBytes: 1 << 20})
	mustSet(t, c, "a", "1")
	mustSet(t, c, "b", "2")
	wantValue(t, c, "a", []byte("1")) // 2 hits: Get and GetPinned
	wantMissing(t, c, "zzz")          // 2 misses
	if _, err := c.Delete([]byte("b")); err != nil {
		t.Fatal(err)
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Hits != 2 || s.Misses != 2 || s.Sets != 2 || s.Deletes != 1 {
		t.Fatalf("hits %d misses %d sets %d deletes %d; want 2 2 2 1", s.Hits, s.Misses, s.Sets, s.Deletes)
	}
	if s.MemoryHits != 2 || s.MemoryMisses != 2 {
		t.Fatalf("memory hits/misses %d/%d; want 2/2", s.MemoryHits, s.MemoryMisses)
	}
	if s.HitRatio != 0.5 {
		t.Fatalf("HitRatio %v; want 0.5", s.HitRatio)
	}
	if s.Size != 1 || s.Capacity != 5000 || s.MemoryMaxBytes != 1<<20 {
		t.Fatalf("Size %d Capacity %d MemoryMaxBytes %d", s.Size, s.Capacity, s.MemoryMaxBytes)
	}
	if s.MemoryBytes == 0 {
		t.Fatal("MemoryBytes is 0 with an entry resident")
	}
	if s.CompressionRatio < 1 {
		t.Fatalf("CompressionRatio %v < 1", s.CompressionRatio)
	}
	if s.OpsPerSecond < 0 || s.Uptime < 0 {
		t.Fatalf("OpsPerSecond %v Uptime %v", s.OpsPerSecond, s.Uptime)
	}
	if s.RedisHits+s.RedisMisses+s.RedisErrors+s.DiskHits+s.DiskMisses+s.DiskErrors != 0 {
		t.Fatalf("lower-tier counters move with those tiers off: %+v", s)
	}
	time.Sleep(20 * time.Millisecond)
	if s2, _ := c.Stats(); s2.Uptime <= s.Uptime-time.Millisecond || s2.Uptime == 0 {
		t.Fatalf("Uptime did not advance: %v then %v", s.Uptime, s2.Uptime)
	}
}

func TestStatsLatency(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 5000})
	mustSet(t, c, "k", "v")
	// Memory gets are sampled about 1 in 64: enough of them gives percentiles.
	for i := 0; i < 20000; i++ {
		if _, _, err := c.Get([]byte("k")); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.MemoryGet.P50 <= 0 || s.MemoryGet.P99 < s.MemoryGet.P50 {
		t.Fatalf("memory get latency %+v", s.MemoryGet)
	}
	if s.DiskGet != (Latency{}) || s.RedisGet != (Latency{}) || s.MemoryErrors != 0 {
		t.Fatalf("tiers that are off report latency or errors: %+v", s)
	}
}

func TestStatsEvictionsAndCapacity(t *testing.T) {
	c := open(t, Config{MemoryCapacity: 64})
	for i := 0; i < 1000; i++ {
		mustSet(t, c, fmt.Sprint("k", i), "v")
	}
	s, _ := c.Stats()
	if s.Evictions == 0 || s.Size > 64 {
		t.Fatalf("Evictions %d Size %d with capacity 64", s.Evictions, s.Size)
	}
}

func TestHealthMemoryOnly(t *testing.T) {
	c := open(t, Config{})
	h, err := c.Health()
	if err != nil {
		t.Fatal(err)
	}
	want := Health{Healthy: true, Memory: TierHealth{Enabled: true, Up: true}}
	if h != want {
		t.Fatalf("Health = %+v; want %+v", h, want)
	}
}

func TestStatsJSON(t *testing.T) {
	c := open(t, Config{})
	mustSet(t, c, "k", "v")
	wantValue(t, c, "k", []byte("v"))
	js, err := c.StatsJSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Hits  uint64 `json:"hits"`
		Sets  uint64 `json:"sets"`
		Size  uint64 `json:"size"`
		Tiers map[string]struct {
			Enabled bool `json:"enabled"`
		} `json:"tiers"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		t.Fatalf("StatsJSON is not JSON: %v\n%s", err, js)
	}
	if doc.Hits != 2 || doc.Sets != 1 || doc.Size != 1 {
		t.Fatalf("JSON hits %d sets %d size %d; want 2 1 1", doc.Hits, doc.Sets, doc.Size)
	}
	if !doc.Tiers["memory"].Enabled || doc.Tiers["redis"].Enabled || doc.Tiers["disk"].Enabled {
		t.Fatalf("tiers: %+v", doc.Tiers)
	}
}

func TestUseAfterClose(t *testing.T) {
	c, err := Open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, c, "k", "pinned across close")
	v, ok, err := c.GetPinned([]byte("k"))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// A value pinned before Close stays valid until released.
	if string(v.Bytes()) != "pinned across close" {
		t.Fatalf("pinned value after Close = %q", v.Bytes())
	}
	v.Release()

	k := []byte("k")
	errs := map[string]error{"Set": c.Set(k, k, 0), "Clear": c.Clear()}
	_, _, errs["Get"] = c.Get(k)
	_, _, errs["GetPinned"] = c.GetPinned(k)
	_, errs["Delete"] = c.Delete(k)
	_, errs["Exists"] = c.Exists(k)
	_, errs["ExpireNow"] = c.ExpireNow()
	_, errs["Stats"] = c.Stats()
	_, errs["Health"] = c.Health()
	_, errs["StatsJSON"] = c.StatsJSON()
	_, errs["StatsPrometheus"] = c.StatsPrometheus()
	_, errs["GetMany"] = c.GetMany([][]byte{k})
	errs["SetMany"] = c.SetMany([][]byte{k}, [][]byte{k}, 0)
	_, errs["GetOrCompute"] = c.GetOrCompute(k, 0, func() ([]byte, error) {
		t.Error("compute ran on a closed cache")
		return nil, nil
	})
	// A closed cache says so before it looks at the arguments.
	badArgs := map[string]error{"Set": c.Set(k, k, -time.Second),
		"SetMany": c.SetMany([][]byte{k}, nil, -time.Second)}
	_, badArgs["GetOrCompute"] = c.GetOrCompute(k, -time.Second, nil)
	for _, m := range []map[string]error{errs, badArgs} {
		for op, err := range m {
			if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrInvalid) {
				t.Errorf("%s after Close: %v; want ErrClosed (and ErrInvalid)", op, err)
			} else if !strings.Contains(err.Error(), op) {
				t.Errorf("%s after Close: %q does not name the operation", op, err)
			}
		}
	}
}

func TestErrorValues(t *testing.T) {
	c := open(t, Config{})
	err := c.Set(nil, nil, 0)
	var e *Error
	if !errors.As(err, &e) || e.Op != "Set" || e.Code != CodeInvalid || e.Message == "" {
		t.Fatalf("Set(nil) = %#v", err)
	}
	if got := err.Error(); got != "smartcache: Set: "+e.Message+" (invalid argument)" {
		t.Fatalf("Error() = %q", got)
	}
	for _, other := range []error{ErrConfig, ErrTooLarge, ErrClosed, ErrBackend} {
		if errors.Is(err, other) {
			t.Fatalf("an invalid-argument error matches %v", other)
		}
	}
	// Two ordinary errors with one code are not "the same error".
	if errors.Is(err, &Error{Op: "Get", Code: CodeInvalid, Message: "x"}) {
		t.Fatal("errors.Is matched a non-sentinel")
	}
	if CodeConfig.String() != "configuration error" || Code(42).String() != "status 42" {
		t.Fatal("Code.String")
	}
}
