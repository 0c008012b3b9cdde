// Package dashboard is Herald's web UI: static assets embedded with go:embed
// and served by Handler. The page holds no data of its own: its scripts call
// the documented HTTP API of the gateway (docs/http-api.md) from the same
// origin, with the API key the user typed (kept in the tab's sessionStorage).
// No build step: the assets are plain JavaScript modules and CSS, and nothing
// is loaded from another origin (no CDN, no web font). docs/dashboard.md
// describes the pages.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// Prefix is the path the assets are served under; "/" serves the page too.
const Prefix = "/ui/"

// ContentSecurityPolicy is sent with every asset: scripts, styles and
// connections only to the page's own origin.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type file struct {
	body []byte
	typ  string
	etag string
}

type handler struct {
	files map[string]file // by path under Prefix ("index.html", "js/app.js")
	start time.Time
}

// Handler serves the dashboard: GET or HEAD of "/", "/ui" and "/ui/" answer
// the page, "/ui/<asset>" the asset; anything else is 404 and any other
// method 405. It is safe for concurrent use.
func Handler() http.Handler {
	h := &handler{files: map[string]file{}, start: time.Now()}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		typ := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) { // not every system's mime table knows these
		case ".js":
			typ = "text/javascript; charset=utf-8"
		case ".css":
			typ = "text/css; charset=utf-8"
		case ".svg":
			typ = "image/svg+xml"
		case ".html":
			typ = "text/html; charset=utf-8"
		}
		h.files[p] = file{body: b, typ: typ, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return h
}

// Serves reports whether a request's path belongs to the dashboard ("/",
// "/ui", or under "/ui/").
func Serves(urlPath string) bool {
	return urlPath == "/" || urlPath == "/ui" || strings.HasPrefix(urlPath, Prefix)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on the dashboard; use GET")
		return
	}
	name := strings.TrimPrefix(r.URL.Path, Prefix)
	if r.URL.Path == "/" || r.URL.Path == "/ui" || name == "" {
		name = "index.html"
	}
	f, ok := h.files[name]
	if !ok || !Serves(r.URL.Path) {
		writeError(w, http.StatusNotFound, "not_found", "no dashboard file "+r.URL.Path+"; open / for the dashboard, the API is under /v1")
		return
	}
	hd.Set("Content-Type", f.typ)
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-cache") // revalidate with the ETag: a new binary serves new assets
	hd.Set("ETag", f.etag)
	http.ServeContent(w, r, name, h.start, bytes.NewReader(f.body))
}

func writeError(w http.ResponseWriter, code int, c, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]map[string]string{"error": {"code": c, "message": msg}}) // the client went away: nothing to do
}
