package smartcache

/*
#include "shim.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"time"
)

// TagJSON is the first byte of a value in the JSON-tagged form, the form Python's
// SmartCache(serializer="json") stores and reads: TagJSON, then the JSON text in UTF-8 (see
// docs/value-format.md). Set and Get store and return plain bytes; SetJSON, GetJSON,
// MarshalJSON and UnmarshalJSON add and strip the tag.
const TagJSON byte = C.SZ_TAG_JSON

// MarshalJSON returns v in the JSON-tagged form: TagJSON followed by json.Marshal(v). Use it
// with Set or SetMany to store values that Python's json serializer and sz_cache_get_json read.
func MarshalJSON(v any) ([]byte, error) {
	text, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("smartcache: MarshalJSON: %w", err)
	}
	out := make([]byte, 0, 1+len(text))
	return append(append(out, TagJSON), text...), nil
}

// UnmarshalJSON decodes a value in the JSON-tagged form (as returned by Get) into v. A value in
// another form (empty, raw bytes, Python's bytes/str/pickle tags) is an error matching
// ErrInvalid that names the first byte found, so it is never misread as JSON.
func UnmarshalJSON(data []byte, v any) error {
	if err := checkJSONTag("UnmarshalJSON", data); err != nil {
		return err
	}
	if err := json.Unmarshal(data[1:], v); err != nil {
		return fmt.Errorf("smartcache: UnmarshalJSON: %w", err)
	}
	return nil
}

func checkJSONTag(op string, data []byte) error {
	if len(data) == 0 {
		return &Error{Op: op, Code: CodeInvalid,
			Message: "the value is not in the JSON-tagged form: it is empty"}
	}
	if data[0] != TagJSON {
		return &Error{Op: op, Code: CodeInvalid, Message: fmt.Sprintf(
			"the value is not in the JSON-tagged form: its first byte is %#02x, not 'J'", data[0])}
	}
	return nil
}

// SetJSON stores v, encoded by encoding/json, under key in the JSON-tagged form (MarshalJSON),
// for ttl as in Set.
func (c *Cache) SetJSON(key []byte, v any, ttl time.Duration) error {
	data, err := MarshalJSON(v)
	if err != nil {
		return err
	}
	return c.Set(key, data, ttl)
}

// GetJSON decodes the JSON-tagged value of key into v (UnmarshalJSON) and reports whether key
// was found; v is untouched on a miss.
func (c *Cache) GetJSON(key []byte, v any) (bool, error) {
	data, found, err := c.Get(key)
	if err != nil || !found {
		return found, err
	}
	if err := UnmarshalJSON(data, v); err != nil {
		return true, err
	}
	return true, nil
}
