package dashboard_test

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/gateway/dashboard"
	"github.com/heraldbus/herald/internal/redistest"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// TestHandler: the page, its assets with their types and security headers,
// 404 and 405 as JSON errors, and ETag revalidation.
func TestHandler(t *testing.T) {
	h := dashboard.Handler()
	for _, p := range []string{"/", "/ui", "/ui/", "/ui/index.html"} {
		resp := get(t, h, "GET", p, nil)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(b), `src="/ui/js/app.js"`) {
			t.Fatalf("GET %s: %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: CSP %q", p, csp)
		}
	}
	resp := get(t, h, "GET", "/ui/js/app.js", nil)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("app.js: %d %s", resp.StatusCode, ct)
	}
	if resp := get(t, h, "GET", "/ui/js/app.js", map[string]string{"If-None-Match": resp.Header.Get("ETag")}); resp.StatusCode != 304 {
		t.Errorf("revalidation: %d, want 304", resp.StatusCode)
	}
	if resp := get(t, h, "GET", "/ui/nope.js", nil); resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("missing asset: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp := get(t, h, "POST", "/", nil); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	for p, want := range map[string]bool{"/": true, "/ui": true, "/ui/x.js": true, "/v1/topics": false, "/uix": false, "/metrics": false} {
		if dashboard.Serves(p) != want {
			t.Errorf("Serves(%q) = %v", p, !want)
		}
	}
}

// TestAssetsStayOnTheOrigin: no asset names another origin (no CDN, no web
// font), and every module import, script, stylesheet and icon resolves to an
// embedded file.
func TestAssetsStayOnTheOrigin(t *testing.T) {
	h := dashboard.Handler()
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	imp := regexp.MustCompile(`(?:from|import)\s+'([^']+)'|(?:src|href)="(/ui/[^"]+)"`)
	n := 0
	err := fs.WalkDir(os.DirFS("assets"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := os.ReadFile(filepath.Join("assets", p))
		if err != nil {
			return err
		}
		for _, m := range url.FindAllString(string(b), -1) {
			if !strings.Contains(m, "www.w3.org") { // the SVG namespace, not a request
				t.Errorf("%s names another origin: %s", p, m)
			}
		}
		for _, m := range imp.FindAllStringSubmatch(string(b), -1) {
			ref := m[2]
			if m[1] != "" {
				ref = "/ui/" + filepath.ToSlash(filepath.Join(filepath.Dir(p), m[1]))
			}
			if resp := get(t, h, "GET", ref, nil); resp.StatusCode != 200 {
				t.Errorf("%s refers to %s: %d", p, ref, resp.StatusCode)
			}
		}
		if resp := get(t, h, "GET", "/ui/"+p, nil); resp.StatusCode != 200 {
			t.Errorf("/ui/%s: %d", p, resp.StatusCode)
		}
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("walked %d assets: %v", n, err)
	}
}

// TestGatewayServesDashboard: the gateway answers / with the page and keeps
// answering unknown API paths with JSON 404; the page needs no key.
func TestGatewayServesDashboard(t *testing.T) {
	c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := withKeys()
	cfg.Client = c
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if resp := get(t, g, "GET", "/", nil); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET / without a key: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp := get(t, g, "GET", "/ui/style.css", nil); resp.StatusCode != 200 {
		t.Errorf("GET /ui/style.css: %d", resp.StatusCode)
	}
	if resp := get(t, g, "GET", "/v1/nope", nil); resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /v1/nope: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp := get(t, g, "GET", "/v1/topics", nil); resp.StatusCode != 401 {
		t.Errorf("GET /v1/topics without a key: %d, want 401", resp.StatusCode)
	}
}
