package smartcache

import (
	"bytes"
	"reflect"
	"testing"
)

type jsonUser struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
	Age  int      `json:"age"`
}

func TestSetJSONStoresTheTaggedFormAndGetJSONDecodesIt(t *testing.T) {
	c := open(t, Config{})
	want := jsonUser{Name: "Ada", Tags: []string{"x", "é"}, Age: 36}
	if err := c.SetJSON([]byte("u"), want, 0); err != nil {
		t.Fatal(err)
	}
	stored, _, err := c.Get([]byte("u"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, []byte(`J{"name":"Ada","tags":["x","é"],"age":36}`)) {
		t.Fatalf("stored %q", stored)
	}
	var got jsonUser
	found, err := c.GetJSON([]byte("u"), &got)
	if err != nil || !found || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetJSON = %v, %v, %+v", found, err, got)
	}
	untouched := jsonUser{Name: "kept"}
	found, err = c.GetJSON([]byte("missing"), &untouched)
	if err != nil || found || untouched.Name != "kept" {
		t.Fatalf("GetJSON on a miss = %v, %v, %+v", found, err, untouched)
	}
}

func TestGetJSONRefusesValuesInOtherForms(t *testing.T) {
	c := open(t, Config{})
	for key, stored := range map[string]string{
		"raw": "plain bytes", "py-bytes": "Bbytes", "pickle": "\x80\x05K\x01.", "empty": "",
	} {
		mustSet(t, c, key, stored)
		var v any
		found, err := c.GetJSON([]byte(key), &v)
		if !found {
			t.Fatalf("%s: not found", key)
		}
		wantCode(t, err, ErrInvalid, "not in the JSON-tagged form")
	}
	mustSet(t, c, "broken", "J{not json")
	var v any
	if _, err := c.GetJSON([]byte("broken"), &v); err == nil {
		t.Fatal("GetJSON decoded broken JSON text")
	}
}

func TestMarshalJSONReportsValuesJSONCannotEncode(t *testing.T) {
	if _, err := MarshalJSON(make(chan int)); err == nil {
		t.Fatal("MarshalJSON encoded a channel")
	}
	data, err := MarshalJSON(map[string]int{"a": 1})
	if err != nil || string(data) != `J{"a":1}` {
		t.Fatalf("MarshalJSON = %q, %v", data, err)
	}
	var m map[string]int
	if err := UnmarshalJSON(data, &m); err != nil || m["a"] != 1 {
		t.Fatalf("UnmarshalJSON = %v, %v", m, err)
	}
}
