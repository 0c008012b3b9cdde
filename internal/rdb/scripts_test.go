package rdb

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// luaLiteral matches a single- or double-quoted Lua string literal (the
// scripts use no long brackets [[...]]).
var luaLiteral = regexp.MustCompile(`'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"`)

// luaCode strips "--" comments from Lua source (none of the scripts puts
// "--" inside a string literal).
func luaCode(src string) string {
	var b strings.Builder
	for _, line := range strings.Split(src, "\n") {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// codecFieldConstants reads internal/codec's source and returns every
// constant named Field* or *Prefix with its value: the stream-entry
// vocabulary, found without trusting streamFields to list it all.
func codecFieldConstants(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "../codec/codec.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, "Field") && !strings.HasSuffix(n.Name, "Prefix") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out[n.Name] = v
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d field constants in internal/codec: %v", len(out), out)
	}
	return out
}

// layoutLetters are literals of stream_append.lua that compare its batch
// layout argument ("g", "s", "u"), not field names; "s" and "u" happen to
// equal codec.FieldSource and codec.FieldSubject.
var layoutLetters = map[string]bool{"'g'": true, "'s'": true, "'u'": true}

// TestLuaFieldNamesComeFromCodec: no script spells a stream field name
// itself; each writes '$Name' for a codec constant, and every such name is
// one (so renaming e.g. codec.FieldAttempt changes the scripts with it).
func TestLuaFieldNamesComeFromCodec(t *testing.T) {
	consts := codecFieldConstants(t)
	for name, v := range consts {
		if streamFields[name] != v {
			t.Errorf("codec.%s = %q is not in streamFields (got %q): scripts cannot name it", name, v, streamFields[name])
		}
	}
	values := map[string]string{}
	for name, v := range consts {
		values[v] = name
	}
	files, err := fs.Glob(luaFS, "lua/*.lua")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	placeholders := 0
	for _, file := range files {
		b, _ := luaFS.ReadFile(file)
		for _, lit := range luaLiteral.FindAllString(luaCode(string(b)), -1) {
			body := lit[1 : len(lit)-1]
			if strings.HasPrefix(body, "$") {
				placeholders++
				if _, ok := consts[body[1:]]; !ok {
					t.Errorf("%s: %s names no codec constant", file, lit)
				}
				continue
			}
			if strings.HasSuffix(file, "/stream_append.lua") && layoutLetters[lit] {
				continue
			}
			if name, ok := values[body]; ok {
				t.Errorf("%s: literal %s is codec.%s; write '$%s'", file, lit, name, name)
			}
			for _, p := range []string{consts["DeadPrefix"], consts["HeaderPrefix"]} {
				if strings.HasPrefix(body, p) {
					t.Errorf("%s: literal %s starts with the field prefix %q; use a codec constant", file, lit, p)
				}
			}
		}
		if _, err := renderScript(string(b), streamFields); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
	if placeholders < 10 {
		t.Fatalf("only %d field placeholders in the scripts: the scan is broken", placeholders)
	}
}

// TestRenamedFieldReachesScripts: with a renamed attempt field, the
// rendered retry and dead-letter scripts use the new name and no longer the
// old one; an unknown placeholder is refused.
func TestRenamedFieldReachesScripts(t *testing.T) {
	renamed := map[string]string{}
	for k, v := range streamFields {
		renamed[k] = v
	}
	renamed["FieldAttempt"] = "att"
	renamed["DeadPrefix"] = "dl."
	for _, name := range []string{"delivery_fail", "deadletter_redrive"} {
		b, _ := luaFS.ReadFile("lua/" + name + ".lua")
		src, err := renderScript(string(b), renamed)
		if err != nil {
			t.Fatal(err)
		}
		code := luaCode(src)
		if !strings.Contains(code, "'att'") || strings.Contains(code, "'"+streamFields["FieldAttempt"]+"'") {
			t.Errorf("%s: renamed attempt field not applied:\n%s", name, code)
		}
		if !strings.Contains(code, "'dl.'") || strings.Contains(code, "$") {
			t.Errorf("%s: dead-letter prefix not applied or placeholder left", name)
		}
		if got := luaCode(scriptSrc[name]); !strings.Contains(got, "'"+streamFields["FieldAttempt"]+"'") || strings.Contains(got, "$Field") {
			t.Errorf("%s: loaded script does not carry codec.FieldAttempt", name)
		}
	}
	if _, err := renderScript("local x = '$FieldNope'", streamFields); err == nil {
		t.Fatal("unknown placeholder accepted")
	}
	if got, _ := renderScript(`x = '$FieldData'`, map[string]string{"FieldData": `it's\`}); got != `x = 'it\'s\\'` {
		t.Fatalf("quoting: %s", got)
	}
}
