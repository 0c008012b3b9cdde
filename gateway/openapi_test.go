package gateway_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/heraldbus/herald/gateway"
)

// TestOpenAPIDocument walks the served OpenAPI document: every operation
// has a unique camelCase operationId, every route of Gateway.Routes() is
// documented and every documented operation is a route, every $ref
// resolves, every "required" names properties the schema has, and every
// component schema marks its required fields (the ones whose fields are all
// optional are listed here).
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	code, b := e.do("GET", "/v1/openapi.json", nil, nil)
	if code != 200 {
		t.Fatalf("GET /v1/openapi.json: %d", code)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}

	camel := regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)
	methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true}
	ids := map[string]string{}
	documented := map[string]bool{}
	paths, _ := doc["paths"].(map[string]any)
	for path, v := range paths {
		ops, _ := v.(map[string]any)
		for m, o := range ops {
			if !methods[m] {
				continue
			}
			op := strings.ToUpper(m) + " " + path
			documented[op] = true
			id, _ := o.(map[string]any)["operationId"].(string)
			switch {
			case id == "":
				t.Errorf("%s has no operationId", op)
			case !camel.MatchString(id):
				t.Errorf("%s: operationId %q is not camelCase", op, id)
			case ids[id] != "":
				t.Errorf("operationId %q of %s is also %s's", id, op, ids[id])
			}
			ids[id] = op
		}
	}
	routes := map[string]bool{}
	for _, r := range e.g.Routes() {
		routes[r] = true
		if !documented[r] {
			t.Errorf("route %s is not in the OpenAPI document", r)
		}
	}
	for op := range documented {
		if !routes[op] {
			t.Errorf("the OpenAPI document has %s, which is no route", op)
		}
	}
	if len(routes) < 20 {
		t.Fatalf("only %d routes", len(routes))
	}

	// Every schema object anywhere: required ⊆ properties; $refs resolve.
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok && !resolves(doc, ref) {
				t.Errorf("%s: $ref %q does not resolve", where, ref)
			}
			if req, ok := x["required"].([]any); ok {
				props, _ := x["properties"].(map[string]any)
				for _, r := range req {
					name, _ := r.(string)
					if _, ok := props[name]; !ok && x["in"] == nil { // a parameter's "required" is a boolean
						t.Errorf("%s: required %q is not among its properties", where, name)
					}
				}
			}
			for k, c := range x {
				walk(where+"/"+k, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s/%d", where, i), c)
			}
		}
	}
	walk("#", doc)

	allOptional := map[string]bool{"Event": true, "TopicConfig": true, "Selection": true}
	schemas, _ := doc["components"].(map[string]any)["schemas"].(map[string]any)
	var missing []string
	for name, s := range schemas {
		sm, _ := s.(map[string]any)
		if _, hasProps := sm["properties"]; hasProps && sm["required"] == nil && !allOptional[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("component schemas without required fields: %v", missing)
	}
}

// resolves reports whether a local $ref ("#/components/schemas/Event") names something in doc.
func resolves(doc map[string]any, ref string) bool {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	var cur any = doc
	for _, part := range strings.Split(rest, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}
