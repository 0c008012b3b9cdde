package rdb

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The one-door rule: internal/rdb is the only package that talks to Redis.
// archViolations scans every Go file under root (the repository: the
// module, bench/, _examples/, contrib/) and reports
//   - an import of rueidis outside internal/rdb (root config.go's public
//     Config.Redis field and the raw-client baselines and kill test listed
//     in rueidisAllowed excepted);
//   - an import of go-redis outside bench/ (the peer libraries' baselines);
//   - a hand-made connection (net.Dial*, net.Dialer, tls.Dial*) outside
//     internal/rdb and the HTTP packages in dialAllowed;
//   - RESP framing in a string literal ("*%d\r\n", "$%d\r\n"...) outside
//     internal/rdb;
//   - an import of internal/redisproc by internal/rdb (the arrow points
//     from redisproc to rdb).
func archViolations(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		dir := filepath.ToSlash(filepath.Dir(rel))
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		inRDB := dir == "internal/rdb"
		if pendingMove[rel] {
			return nil
		}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			switch {
			case (p == "github.com/redis/rueidis" || strings.HasPrefix(p, "github.com/redis/rueidis/")) && !inRDB && !rueidisAllowed[rel]:
				out = append(out, rel+": imports "+p+" (only internal/rdb talks to Redis; add an rdb method)")
			case strings.HasPrefix(p, "github.com/redis/go-redis") && !strings.HasPrefix(rel, "bench/"):
				out = append(out, rel+": imports "+p+" (only bench/'s peer baselines may)")
			case inRDB && !strings.HasSuffix(rel, "_test.go") && p == "github.com/heraldbus/herald/internal/redisproc":
				out = append(out, rel+": internal/rdb imports internal/redisproc (redisproc uses rdb, not the other way)")
			}
		}
		dialOK := inRDB || dialAllowed[dir] || httpDialers[rel] || byteProxies[rel] || strings.HasPrefix(dir, "gateway/")
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr:
				id, ok := x.X.(*ast.Ident)
				if !ok || dialOK {
					return true
				}
				if (id.Name == "net" || id.Name == "tls") && strings.HasPrefix(x.Sel.Name, "Dial") {
					out = append(out, rel+": "+fset.Position(x.Pos()).String()+": "+id.Name+"."+x.Sel.Name+" (connections to Redis go through internal/rdb)")
				}
			case *ast.BasicLit:
				if x.Kind == token.STRING && !inRDB && respFraming.MatchString(x.Value) {
					out = append(out, rel+": "+fset.Position(x.Pos()).String()+": RESP framing "+x.Value+" (only internal/rdb speaks RESP)")
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// rueidisAllowed are the files outside internal/rdb that may import
// rueidis, each for a reason.
var rueidisAllowed = map[string]bool{
	"config.go":                    true, // Config.Redis: the caller's own client, part of the public API
	"bench_test.go":                true, // raw rueidis baseline beside Herald in the same benchmark run
	"channel_bench_test.go":        true, // raw PUBLISH/SUBSCRIBE baseline beside Broadcast/Listen
	"idempotency_internal_test.go": true, // builds a named client for Config.Redis, to kill its connections
}

// pendingMove are files known to break the rule that are still to move onto
// internal/redisproc and rdb; the list may only shrink.
var pendingMove = map[string]bool{
	// contrib/watermill (its own module) starts redis-server and sends
	// DEBUG RESTART / INFO with a RESP client of its own in its tests.
	"contrib/watermill/redis_test.go": true,
}

// httpDialers are files outside those directories that dial HTTP, never
// Redis: the gateway benchmark's SSE clients and a test that checks what
// the default listener answers on.
var httpDialers = map[string]bool{
	"internal/benchrun/gateway_client.go": true,
	"internal/cli/serve_test.go":          true,
}

// byteProxies are test files that put a TCP proxy between a client and
// Redis to inject faults (a server that stops answering after the client
// connected): they copy bytes, look at the client's commands only to choose
// when to stop forwarding, and never send a command of their own.
var byteProxies = map[string]bool{
	"internal/cli/stall_test.go": true,
}

// dialAllowed are the directories (besides gateway/...) whose code may dial:
// HTTP servers and their tests, never Redis.
var dialAllowed = map[string]bool{
	"gateway":         true,
	"internal/server": true,
}

// respFraming matches a Go string literal that frames RESP by hand: an
// array or bulk header ("*%d\r\n", "$4\r\n", "*2\r\n$4\r\nINFO...").
var respFraming = regexp.MustCompile(`[*$](%d|[0-9]+)\\r\\n`)

func TestOnlyRDBTalksToRedis(t *testing.T) {
	if v := archViolations(t, filepath.Join("..", "..")); len(v) > 0 {
		t.Fatalf("%d violation(s) of the one-door rule:\n%s", len(v), strings.Join(v, "\n"))
	}
}

// TestArchCheckCatches: the scan finds each kind of violation in a small
// tree made for it, and passes a clean one.
func TestArchCheckCatches(t *testing.T) {
	root := t.TempDir()
	write := func(rel, src string) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("internal/rdb/ok.go", "package rdb\nimport (\n\t\"net\"\n\t_ \"github.com/redis/rueidis\"\n)\nvar _ = net.Dial\nconst f = \"*%d\\r\\n\"\n")
	write("gateway/http.go", "package gateway\nimport \"net\"\nvar _ = net.Dial\n")
	write("config.go", "package herald\nimport _ \"github.com/redis/rueidis\"\n")
	if v := archViolations(t, root); len(v) != 0 {
		t.Fatalf("clean tree reported: %v", v)
	}
	write("health.go", "package herald\nimport _ \"github.com/redis/rueidis/rueidiscompat\"\n")
	write("internal/redisproc/p.go", "package redisproc\nimport \"net\"\nvar _, _ = net.DialTimeout, net.Dialer{}\n")
	write("internal/cli/x.go", "package cli\nconst ping = \"*1\\r\\n$4\\r\\nPING\\r\\n\"\n")
	write("internal/rdb/bad.go", "package rdb\nimport _ \"github.com/heraldbus/herald/internal/redisproc\"\n")
	write("internal/benchrun/b.go", "package benchrun\nimport _ \"github.com/redis/go-redis/v9\"\n")
	v := archViolations(t, root)
	joined := strings.Join(v, "\n")
	for _, want := range []string{"health.go: imports github.com/redis/rueidis/rueidiscompat", "net.DialTimeout", "net.Dialer", "internal/cli/x.go", "internal/rdb imports internal/redisproc", "internal/benchrun/b.go: imports github.com/redis/go-redis"} {
		if !strings.Contains(joined, want) {
			t.Errorf("violation %q not reported; got:\n%s", want, joined)
		}
	}
}
