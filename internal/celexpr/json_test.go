package celexpr

import (
	"encoding/json"
	"reflect"
	"testing"
)

func FuzzParseJSONMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`{"id":7,"category":"tech","tags":["a","b"],"n":null,"ok":true}`, `[1,-2.5e3,0.1]`,
		`"\u00e9\ud83d\ude00\n"`, `{"a":{"b":{"c":[{}]}}}`, ` 12 `, `{"x":"\ud800"}`, `"\xff"`, `01`, `{"a":1,}`, `1e999`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want any
		werr := json.Unmarshal(b, &want)
		got, gerr := parseJSON(b)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%q: encoding/json error %v, parseJSON error %v", b, werr, gerr)
		}
		if werr == nil && !reflect.DeepEqual(want, got) {
			t.Fatalf("%q: encoding/json %#v, parseJSON %#v", b, want, got)
		}
	})
}

func BenchmarkParseJSON(b *testing.B) {
	d := []byte(`{"id":7,"category":"money","title":"Redis streams","tags":["a","b"]}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := parseJSON(d); err != nil {
			b.Fatal(err)
		}
	}
}
