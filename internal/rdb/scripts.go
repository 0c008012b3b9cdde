package rdb

import (
	"crypto/sha1"
	"embed"
	"encoding/hex"

	"github.com/redis/rueidis"
)

//go:embed lua/*.lua
var luaFS embed.FS

// scriptSrc and scriptSHA hold each script's source and SHA1 by name, for
// the calls that send EVALSHA/EVAL themselves (on a dedicated connection).
var (
	scriptSrc = map[string]string{}
	scriptSHA = map[string]string{}
)

func mustScript(name string) *rueidis.Lua {
	b, err := luaFS.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	sum := sha1.Sum(b)
	scriptSrc[name], scriptSHA[name] = string(b), hex.EncodeToString(sum[:])
	// Exec sends EVALSHA and falls back to EVAL on NOSCRIPT (the script cache
	// is per node and lost on failover and restart).
	return rueidis.NewLuaScript(string(b))
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
