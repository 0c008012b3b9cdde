package gateway

import (
	"net/http"
	"strings"
)

// access says which permission a route needs.
type access int

const (
	accessPublic        access = iota // no key needed (probes, the OpenAPI document)
	accessTopic                       // the route's action on the {topic}
	accessChannel                     // the route's action on channel:{channel}
	accessAnyAdmin                    // any admin grant (results are filtered by the grants)
	accessGlobalAdmin                 // the admin grant "*"
	accessAnyPubSub                   // any publish or subscribe grant (WebSocket: each operation is checked)
	accessAuthenticated               // any valid key (the handler checks each destination)
	accessGroup                       // subscribe on the {topic} and its {group} (a "TOPICS#GROUPS" grant)
)

// routeDef is one endpoint: docs/http-api.md and openapi.json list the same.
type routeDef struct {
	method, path string
	pattern      string // "METHOD PATH" as registered in the mux
	access       access
	action       action
	handler      func(w http.ResponseWriter, r *http.Request, p *principal) error
	streaming    bool // SSE or WebSocket: no body limit, long-lived
}

// Routes lists the endpoints as "METHOD PATH" (for documentation checks).
func (g *Gateway) Routes() []string {
	out := make([]string, len(g.routes))
	for i, r := range g.routes {
		out[i] = r.pattern
	}
	return out
}

func (g *Gateway) registerRoutes() {
	add := func(method, path string, acc access, act action, h func(http.ResponseWriter, *http.Request, *principal) error, streaming bool) {
		rd := &routeDef{method: method, path: path, pattern: method + " " + path, access: acc, action: act, handler: h, streaming: streaming}
		g.routes = append(g.routes, rd)
		g.mux.Handle(rd.pattern, g.wrap(rd))
	}
	// Publish and subscribe.
	add("POST", "/v1/topics/{topic}/events", accessTopic, actPublish, g.handlePublish, false)
	add("GET", "/v1/topics/{topic}/events", accessTopic, actSubscribe, g.handleTopicEvents, true)
	add("POST", "/v1/topics/{topic}/groups/{group}/ack", accessGroup, actSubscribe, g.handleAck, false)
	add("POST", "/v1/events", accessAuthenticated, actPublish, g.handleRouted, false)
	add("POST", "/v1/channels/{channel}/messages", accessChannel, actPublish, g.handleBroadcast, false)
	add("GET", "/v1/channels/{channel}", accessChannel, actSubscribe, g.handleChannelStream, true)
	add("GET", "/v1/ws", accessAnyPubSub, actSubscribe, g.handleWebSocket, true)
	// Admin.
	add("GET", "/v1/topics", accessAnyAdmin, actAdmin, g.handleTopics, false)
	add("GET", "/v1/topics/{topic}", accessTopic, actAdmin, g.handleTopicInfo, false)
	add("PUT", "/v1/topics/{topic}", accessTopic, actAdmin, g.handleCreateTopic, false)
	add("DELETE", "/v1/topics/{topic}", accessTopic, actAdmin, g.handleDeleteTopic, false)
	add("GET", "/v1/topics/{topic}/groups", accessTopic, actAdmin, g.handleGroups, false)
	add("DELETE", "/v1/topics/{topic}/groups/{group}", accessTopic, actAdmin, g.handleDeleteGroup, false)
	add("GET", "/v1/topics/{topic}/deadletters", accessTopic, actAdmin, g.handleDeadLetters, false)
	add("POST", "/v1/topics/{topic}/deadletters/redrive", accessTopic, actAdmin, g.handleRedrive, false)
	add("DELETE", "/v1/topics/{topic}/deadletters", accessTopic, actAdmin, g.handleDeleteDeadLetters, false)
	// Time (admin_time.go): scheduled events, group seek, per-group losses.
	add("GET", "/v1/topics/{topic}/scheduled", accessTopic, actAdmin, g.handleScheduled, false)
	add("DELETE", "/v1/topics/{topic}/scheduled/{id}", accessTopic, actAdmin, g.handleCancelScheduled, false)
	add("POST", "/v1/topics/{topic}/groups/{group}/seek", accessTopic, actAdmin, g.handleSeek, false)
	add("GET", "/v1/topics/{topic}/losses", accessTopic, actAdmin, g.handleLosses, false)
	add("GET", "/v1/channels", accessGlobalAdmin, actAdmin, g.handleChannels, false)
	add("GET", "/v1/monitor", accessAnyAdmin, actAdmin, g.handleMonitor, true)
	add("GET", "/v1/health", accessGlobalAdmin, actAdmin, g.handleHealth, false)
	add("GET", "/metrics", accessGlobalAdmin, actAdmin, g.handleMetrics, false)
	// Public.
	add("GET", "/healthz", accessPublic, actAdmin, g.handleHealthz, false)
	add("GET", "/readyz", accessPublic, actAdmin, g.handleReadyz, false)
	add("GET", "/v1/openapi.json", accessPublic, actAdmin, g.handleOpenAPI, false)
}

func (g *Gateway) routeByPattern(p string) *routeDef {
	if p == "" {
		return nil
	}
	for _, r := range g.routes {
		if r.pattern == p {
			return r
		}
	}
	return nil
}

// wrap authenticates, authorizes, limits the body, and turns a returned
// error into a JSON error response (when nothing was written yet).
func (g *Gateway) wrap(rd *routeDef) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := g.authorize(rd, r)
		if rw, ok := w.(*respWriter); ok && p != nil {
			rw.key = p.name
		}
		if err == nil && rd.streaming {
			var release func()
			if release, err = g.acquireStream(r, p.keyName()); err == nil {
				defer release()
			}
		}
		if err == nil {
			if !rd.streaming {
				r.Body = http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes)
			}
			err = rd.handler(w, r, p)
		}
		if err != nil {
			if rw, ok := w.(*respWriter); ok && rw.wrote {
				g.log.Debug("error after the response started", "route", rd.pattern, "err", err)
				return
			}
			g.writeError(w, r, err)
		}
	})
}

// authorize checks the request's key: 401 without a valid key, 403 when the
// key lacks the permission.
func (g *Gateway) authorize(rd *routeDef, r *http.Request) (*principal, error) {
	if rd.access == accessPublic || g.keys == nil {
		return nil, nil
	}
	cred := credential(r)
	if cred == "" {
		return nil, errorf(http.StatusUnauthorized, CodeUnauthorized,
			"no API key; send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (access_token=KEY for SSE and WebSocket GETs)")
	}
	p := g.keys.lookup(cred)
	if p == nil {
		return nil, errorf(http.StatusUnauthorized, CodeUnauthorized, "the API key is not valid; check the key, or ask for one to be added to the server config")
	}
	forbid := func(what string) error {
		return errorf(http.StatusForbidden, CodeForbidden, "API key %q may not %s; add a matching pattern to its %s list in the server config", p.name, what, rd.action)
	}
	switch rd.access {
	case accessTopic:
		t := r.PathValue("topic")
		if !p.can(rd.action, t) {
			return nil, forbid(rd.action.String() + " on topic " + quote(t))
		}
	case accessGroup:
		t, grp := r.PathValue("topic"), r.PathValue("group")
		if !p.canGroup(t, grp) {
			return nil, forbidGroup(p, t, grp)
		}
	case accessChannel:
		ch := r.PathValue("channel")
		if !p.can(rd.action, "channel:"+ch) {
			return nil, forbid(rd.action.String() + " on channel " + quote(ch))
		}
	case accessAnyAdmin:
		if len(p.perms[actAdmin]) == 0 {
			return nil, forbid("use the admin API")
		}
	case accessGlobalAdmin:
		if !p.global() {
			return nil, errorf(http.StatusForbidden, CodeForbidden, "API key %q may not read server-wide data; it needs the admin pattern \"*\" in the server config", p.name)
		}
	case accessAnyPubSub:
		if len(p.perms[actPublish]) == 0 && len(p.perms[actSubscribe]) == 0 {
			return nil, forbid("publish or subscribe")
		}
	}
	return p, nil
}

// forbidGroup is the 403 of a key that may not join a group.
func forbidGroup(p *principal, topic, group string) error {
	return errorf(http.StatusForbidden, CodeForbidden,
		"API key %q may not join group %q of topic %q; add a subscribe pattern naming both, e.g. %q, to the key in the server config",
		p.keyName(), group, topic, topic+"#"+group)
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
