// The Go side of the value-format interop test (tests/interop/test_value_format.py): reads
// what Python wrote, then writes its own values for Python to read.
//
//	interop_go WRITER_PREFIX [option=value ...]
//
// Opens a cache with the given options (Config.Options), then prints
//
//	json <text>          "py:json" decoded by GetJSON, encoded again by encoding/json
//	raw <hex>            the bytes of "py:raw", through Get
//	raw-as-json <error>  GetJSON on "py:raw" (not JSON-tagged: an ErrInvalid error)
//
// and stores WRITER_PREFIX:json (SetJSON) and WRITER_PREFIX:raw (Set).
package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	smartcache "github.com/smartcache/smartcache-go"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "interop_go: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: interop_go WRITER_PREFIX [option=value ...]")
		os.Exit(2)
	}
	opts := map[string]string{}
	for _, kv := range os.Args[2:] {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			fail("%s is not option=value", kv)
		}
		opts[name] = value
	}
	c, err := smartcache.Open(smartcache.Config{Options: opts})
	if err != nil {
		fail("Open: %v", err)
	}
	defer c.Close()

	var fromPython any
	if found, err := c.GetJSON([]byte("py:json"), &fromPython); err != nil || !found {
		fail("GetJSON py:json: found=%v err=%v", found, err)
	}
	text, err := json.Marshal(fromPython)
	if err != nil {
		fail("re-encoding py:json: %v", err)
	}
	fmt.Printf("json %s\n", text)

	raw, found, err := c.Get([]byte("py:raw"))
	if err != nil || !found {
		fail("Get py:raw: found=%v err=%v", found, err)
	}
	fmt.Printf("raw %s\n", hex.EncodeToString(raw))
	var ignored any
	_, err = c.GetJSON([]byte("py:raw"), &ignored)
	fmt.Printf("raw-as-json %v\n", errors.Is(err, smartcache.ErrInvalid))

	prefix := os.Args[1]
	value := map[string]any{"from": "go", "n": []any{1, 2.5, nil}, "u": "é"}
	if err := c.SetJSON([]byte(prefix+":json"), value, 0); err != nil {
		fail("SetJSON: %v", err)
	}
	if err := c.Set([]byte(prefix+":raw"), []byte("go\x00raw\xff"), 0); err != nil {
		fail("Set: %v", err)
	}
}
