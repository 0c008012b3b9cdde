package gateway

import (
	"net/http"

	"github.com/heraldbus/herald/gateway/dashboard"
)

// dashboardUI serves the web dashboard (package dashboard). The page and its
// assets are public: they hold no data, and every API call the page makes
// carries the key the user typed.
var dashboardUI = dashboard.Handler()

// serveDashboard answers a request no API route matched when its path is the
// dashboard's ("/", "/ui", "/ui/..."); it reports whether it did.
func (g *Gateway) serveDashboard(w http.ResponseWriter, r *http.Request) bool {
	if !dashboard.Serves(r.URL.Path) {
		return false
	}
	dashboardUI.ServeHTTP(w, r)
	return true
}
