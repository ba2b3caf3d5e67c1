package smartcache

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const goSecret = "go-fleet-secret-000001"

// A value signed with ValueSecret is read by a cache holding the same secret (or holding it as
// ValueSecretPrevious); one with an unrelated secret gets a miss counted in DiskTampered.
func TestValueSecretSignsDiskValuesAndRotates(t *testing.T) {
	dir := t.TempDir()
	disk := func(secret, previous Secret) Config {
		return Config{DiskEnabled: true, DiskPath: dir, DiskMaxSize: 1 << 20,
			ValueSecret: secret, ValueSecretPrevious: previous}
	}
	w := open(t, disk(goSecret, ""))
	mustSet(t, w, "k", "signed")

	rotated := open(t, disk("go-fleet-secret-000002", goSecret))
	wantValue(t, rotated, "k", []byte("signed"))

	other := open(t, disk("an-unrelated-secret-00", ""))
	if v, found, err := other.Get([]byte("k")); err != nil || found {
		t.Fatalf("unrelated secret read %q, %v; want a miss", v, err)
	}
	s, err := other.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.DiskTampered != 1 || s.DiskHits != 0 {
		t.Fatalf("DiskTampered %d DiskHits %d; want 1, 0", s.DiskTampered, s.DiskHits)
	}
	h, err := other.Health()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.Disk.LastError, "MAC does not verify") {
		t.Fatalf("disk last error %q", h.Disk.LastError)
	}
}

// Out-of-bounds secrets are refused with CodeConfig; no message, option read-back or printed
// Config shows a secret.
func TestValueSecretIsBoundedAndNeverShown(t *testing.T) {
	for _, bad := range []Secret{"too-short", Secret(strings.Repeat("x", 4097)), "with\x00a-nul-byte-inside"} {
		_, err := Open(Config{ValueSecret: bad})
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeConfig {
			t.Fatalf("secret of %d bytes: %v; want CodeConfig", len(bad), err)
		}
		if strings.Contains(e.Error(), string(bad)) {
			t.Fatalf("the error shows the secret: %v", e)
		}
	}
	cfg := Config{ValueSecret: goSecret, ValueSecretPrevious: goSecret + "-old"}
	for _, text := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg),
		fmt.Sprintf("%s %q %x", cfg.ValueSecret, cfg.ValueSecret, cfg.ValueSecret)} {
		if strings.Contains(text, goSecret) {
			t.Fatalf("printed config shows the secret: %s", text)
		}
	}
	if _, err := Open(Config{ValueSecretPrevious: goSecret}); err == nil {
		t.Fatal("a previous secret without a current one was accepted")
	}
	c := open(t, cfg)
	js, err := c.StatsJSON()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(js, goSecret) {
		t.Fatal("stats JSON shows the secret")
	}
}
