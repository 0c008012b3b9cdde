package rdb

import (
	"embed"

	"github.com/redis/rueidis"
)

//go:embed lua/*.lua
var luaFS embed.FS

func mustScript(name string) *rueidis.Lua {
	b, err := luaFS.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
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
)
