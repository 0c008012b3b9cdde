package rdb_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// TestDoorMethods: the methods that replaced the exported client answer
// against a real server, and bad input is an error, not a panic.
func TestDoorMethods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := redistest.Shared(t)
	db, err := rdb.Open(ctx, rdb.Options{URL: srv.URL(), Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if addrs := db.NodeAddrs(); len(addrs) != 1 || addrs[0] != srv.Addr() {
		t.Fatalf("NodeAddrs = %v, want [%s]", addrs, srv.Addr())
	}
	roles := db.NodeRoles(ctx, 2*time.Second)
	if len(roles) != 1 || roles[0].Role != "master" || roles[0].Err != nil || roles[0].Latency <= 0 {
		t.Fatalf("NodeRoles = %+v", roles)
	}
	for _, start := range []int{0, 1, 7, -3} {
		if a, err := db.PickNode(ctx, start); err != nil || a != srv.Addr() {
			t.Fatalf("PickNode(%d) = %q, %v", start, a, err)
		}
	}
	key := db.Keys.NS + ":door"
	if v, err := db.Do(ctx, "SET", key, "v"); err != nil || v != "OK" {
		t.Fatalf("SET = %v, %v", v, err)
	}
	if v, err := db.Do(ctx, "GET", key); err != nil || v != "v" {
		t.Fatalf("GET = %v, %v", v, err)
	}
	if v, err := db.Do(ctx, "GET", key+":none"); err != nil || v != nil {
		t.Fatalf("GET missing = %v, %v", v, err)
	}
	if v, err := db.Do(ctx, "DEL", key); err != nil || v != int64(1) {
		t.Fatalf("DEL = %v, %v", v, err)
	}
	if _, err := db.Do(ctx, "NOSUCHCOMMAND"); err == nil {
		t.Fatal("unknown command gave no error")
	}
	if _, err := db.Do(ctx); err == nil {
		t.Fatal("empty command accepted")
	}
	all, err := db.EachNode(ctx, "PING")
	if err != nil || len(all) != 1 || all[srv.Addr()] != "PONG" {
		t.Fatalf("EachNode(PING) = %v, %v", all, err)
	}
	info, err := rdb.CommandText(ctx, srv.Addr(), "INFO", "server")
	if err != nil || rdb.ParseInfo(info)["redis_version"] == "" || strings.HasPrefix(info, "txt:") {
		t.Fatalf("Command INFO = %.80q, %v", info, err)
	}
	if _, err := rdb.Command(ctx, "127.0.0.1:1", "PING"); err == nil {
		t.Fatal("Command to a closed port gave no error")
	}
	got := make(chan string, 1)
	conn, err := db.DialPubSub(srv.Addr(), rdb.PubSubHandlers{OnMessage: func(ch, _ string, data []byte) { got <- ch + "=" + string(data) }})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch := db.Keys.NS + ":ch"
	if err := conn.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Publish(ctx, ch, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != ch+"=hi" {
			t.Fatalf("message %q", m)
		}
	case <-ctx.Done():
		t.Fatal("no message")
	}
	if _, err := db.DialPubSub("127.0.0.1:1", rdb.PubSubHandlers{}); err == nil {
		t.Fatal("DialPubSub to an unknown node accepted")
	}
}
