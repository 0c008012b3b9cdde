package rdb

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	opt, err := ParseURL("redis://u:p@127.0.0.1:7001,127.0.0.1:7002/0")
	if err != nil || len(opt.InitAddress) != 2 || opt.Username != "u" || opt.Password != "p" {
		t.Fatalf("seeds: %+v %v", opt.InitAddress, err)
	}
	opt, err = ParseURL("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/2")
	if err != nil || opt.Sentinel.MasterSet != "mymaster" || opt.SelectDB != 2 || len(opt.InitAddress) != 2 {
		t.Fatalf("sentinel: %+v %v", opt, err)
	}
	opt, err = ParseURL("rediss://h:6380")
	if err != nil || opt.TLSConfig == nil {
		t.Fatalf("tls: %v", err)
	}
	for raw, want := range map[string]string{
		"":                       "empty",
		"http://x:1":             "scheme",
		"redis://":               "no host",
		"redis+sentinel://h:1":   "names no master",
		"redis://h:1/notanumber": "database",
		"redis://h:1,h2":         "port",
	} {
		_, err := ParseURL(raw)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", raw, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want it to mention %q", raw, err, want)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"redis://h:1", "redis+sentinel://a:1,b:2/m/3", "rediss://u:p@h:1/2?dial_timeout=1s", "redis://[::1]:6379"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		opt, err := ParseURL(raw)
		if err == nil && len(opt.InitAddress) == 0 {
			t.Fatalf("%q parsed with no address", raw)
		}
	})
}
