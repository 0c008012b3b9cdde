package rdb

import (
	"crypto/sha1"
	"embed"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/redis/rueidis"

	"github.com/heraldbus/herald/internal/codec"
)

//go:embed lua/*.lua
var luaFS embed.FS

// scriptSrc and scriptSHA hold each script's source and SHA1 by name, for
// the calls that send EVALSHA/EVAL themselves (on a dedicated connection).
var (
	scriptSrc = map[string]string{}
	scriptSHA = map[string]string{}
)

// streamFields is the stream-entry vocabulary the scripts may name: a
// script writes '$FieldAttempt' where it means the field codec.FieldAttempt,
// and renderScript puts the constant's value there when the script is
// loaded. So the Lua scripts and the Go codec cannot disagree on a name;
// TestLuaFieldNamesComeFromCodec fails on a field name written in Lua.
var streamFields = map[string]string{
	"FieldID":          codec.FieldID,
	"FieldType":        codec.FieldType,
	"FieldKey":         codec.FieldKey,
	"FieldSource":      codec.FieldSource,
	"FieldSubject":     codec.FieldSubject,
	"FieldTime":        codec.FieldTime,
	"FieldContentType": codec.FieldContentType,
	"FieldData":        codec.FieldData,
	"FieldAttempt":     codec.FieldAttempt,
	"FieldOrigin":      codec.FieldOrigin,
	"HeaderPrefix":     codec.HeaderPrefix,
	"DeadPrefix":       codec.DeadPrefix,
	"FieldDeadGroup":   codec.FieldDeadGroup,
	"FieldDeadError":   codec.FieldDeadError,
	"FieldDeadAttempt": codec.FieldDeadAttempt,
	"FieldDeadPos":     codec.FieldDeadPos,
	"FieldDeadTime":    codec.FieldDeadTime,
}

// fieldRef is a field placeholder in a script: a Lua string literal '$Name'.
var fieldRef = regexp.MustCompile(`'\$([A-Za-z]+)'`)

// renderScript replaces every '$Name' in src by the Lua literal of
// fields[Name]; a name not in fields is an error.
func renderScript(src string, fields map[string]string) (string, error) {
	var bad []string
	out := fieldRef.ReplaceAllStringFunc(src, func(m string) string {
		name := fieldRef.FindStringSubmatch(m)[1]
		v, ok := fields[name]
		if !ok {
			bad = append(bad, name)
			return m
		}
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("unknown stream field placeholder(s) %v", bad)
	}
	return out, nil
}

func mustScript(name string) *rueidis.Lua {
	b, err := luaFS.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	src, err := renderScript(string(b), streamFields)
	if err != nil {
		panic(fmt.Sprintf("lua/%s.lua: %v", name, err))
	}
	sum := sha1.Sum([]byte(src))
	scriptSrc[name], scriptSHA[name] = src, hex.EncodeToString(sum[:])
	// Exec sends EVALSHA and falls back to EVAL on NOSCRIPT (the script cache
	// is per node and lost on failover and restart).
	return rueidis.NewLuaScript(src)
}

var (
	scriptAppend   = mustScript("stream_append")
	scriptFail     = mustScript("delivery_fail")
	scriptPromote  = mustScript("retry_promote")
	scriptRedrive  = mustScript("deadletter_redrive")
	scriptTopicNew = mustScript("topic_create")
)

var (
	scriptAppendAtomic = mustScript("stream_append_atomic")
	scriptEntityAppend = mustScript("entity_append")
	scriptForget       = mustScript("consumer_forget")
)
