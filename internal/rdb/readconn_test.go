package rdb_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// readAll reads pk for group g through ReadBatch until n entries came back,
// acknowledging each read's entries with the next read.
func readAll(t *testing.T, ctx context.Context, db *rdb.DB, pk rdb.PartKeys, consumer string, n int) []rdb.Entry {
	t.Helper()
	rc := db.NewReadConn(pk.Stream)
	defer rc.Close()
	var out []rdb.Entry
	var acks rdb.Acks
	for tries := 0; len(out) < n && tries < 100; tries++ {
		es, others, ackErr, err := db.ReadBatch(ctx, rc, pk, "g", consumer, 7, 100, true, acks)
		if err != nil || ackErr != nil {
			t.Fatalf("ReadBatch: %v, acks: %v", err, ackErr)
		}
		if others {
			t.Fatalf("ReadBatch reports entries of other consumers; there are none")
		}
		acks = rdb.Acks{}
		for _, e := range es {
			acks.Main = append(acks.Main, e.ID)
		}
		out = append(out, es...)
	}
	if _, _, _, err := db.ReadBatch(ctx, rc, pk, "g", consumer, 1, 1, false, acks); err != nil {
		t.Fatal(err)
	}
	return out
}

// fill appends events of every shape the reader must carry: empty data,
// binary data with CR LF inside, a value longer than the reader's buffer,
// many fields.
func fill(t *testing.T, ctx context.Context, db *rdb.DB, pk rdb.PartKeys) [][]string {
	t.Helper()
	shapes := [][]string{
		{"i", "a", "d", ""},
		{"i", "b", "k", "key", "d", "line\r\nbreak\x00\xff"},
		{"i", "c", "d", strings.Repeat("x", 100_000)},
		{"i", "e", "t", "type", "k", "k", "s", "src", "u", "sub", "tm", "1", "ct", "text/plain", "h.a", "1", "d", "data"},
	}
	var want [][]string
	for i := 0; i < 30; i++ {
		f := shapes[i%len(shapes)]
		args := append([]string{"XADD", pk.Stream, "*"}, f...)
		if _, err := db.Do(ctx, args...); err != nil {
			t.Fatal(err)
		}
		want = append(want, f)
	}
	if err := db.EnsureGroup(ctx, pk, "g", "0"); err != nil {
		t.Fatal(err)
	}
	return want
}

// givenClientDB opens a DB on a rueidis client made here (Options.Client),
// as a program that brings its own client does: it dials nothing itself.
// Both are closed when the test ends.
func givenClientDB(ctx context.Context, t *testing.T, url, ns string) *rdb.DB {
	t.Helper()
	opt, err := rdb.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DisableCache = true
	cl, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	db, err := rdb.Open(ctx, rdb.Options{Client: cl, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// The reader's own RESP connection returns entries exactly as the client's
// dedicated connection does, its acks run, and it dials with the URL's
// password and database.
func TestReadConnMatchesClient(t *testing.T) {
	srv := redistest.Own(t, redisproc.Options{Password: "s3cret"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("redis://:s3cret@127.0.0.1:%d/3", srv.Port)
	raw, err := rdb.Open(ctx, rdb.Options{URL: url, Namespace: "own"})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	given := givenClientDB(ctx, t, url, "given")
	var got [2][]rdb.Entry
	var want [][]string
	for i, db := range []*rdb.DB{raw, given} {
		pk := db.Keys.Part("t/0")
		want = fill(t, ctx, db, pk)
		got[i] = readAll(t, ctx, db, pk, "c", len(want))
		if len(got[i]) != len(want) {
			t.Fatalf("db %d: read %d entries, want %d", i, len(got[i]), len(want))
		}
		for j, e := range got[i] {
			if e.Stream != pk.Stream || !reflect.DeepEqual(e.Pairs, want[j]) {
				t.Fatalf("db %d entry %d = %q %q, want %q %q", i, j, e.Stream, e.Pairs, pk.Stream, want[j])
			}
		}
		if n, err := db.Do(ctx, "XPENDING", pk.Stream, "g"); err != nil || n.([]any)[0] != int64(0) {
			t.Fatalf("db %d: pending after the acks = %v %v, want 0", i, n, err)
		}
	}
	for j := range got[0] {
		a, b := got[0][j], got[1][j]
		if !reflect.DeepEqual(a.Pairs, b.Pairs) {
			t.Fatalf("entry %d: own connection %q, client %q", j, a.Pairs, b.Pairs)
		}
	}
	// (The group exists in database 3 only: a reader that had not
	// selected it would have read NOGROUP.)
}

// Errors come back as replies the callers recognise (NOGROUP), and a read
// blocked on the own connection ends as soon as the connection is closed.
func TestReadConnErrorsAndClose(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	rc := db.NewReadConn(pk.Stream)
	defer rc.Close()
	_, _, _, err := db.ReadBatch(ctx, rc, pk, "nogroup", "c", 1, 10, false, rdb.Acks{})
	if !rdb.IsNoGroup(err) || rdb.Transient(err) {
		t.Fatalf("read of a missing group: %v (IsNoGroup %v), want NOGROUP", err, rdb.IsNoGroup(err))
	}
	rc.Close()
	rc = db.NewReadConn(pk.Stream)
	if err := db.EnsureGroup(ctx, pk, "g", "$"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, _, _, err := db.ReadBatch(ctx, rc, pk, "g", "c", 1, 60_000, false, rdb.Acks{})
		done <- err
	}()
	// Close once the read is blocked in Redis (CLIENT LIST shows it).
	for deadline := time.Now().Add(10 * time.Second); ; {
		v, err := db.Do(ctx, "CLIENT", "LIST")
		if err == nil && strings.Contains(fmt.Sprint(v), "cmd=xreadgroup") {
			break
		}
		if time.Now().After(deadline) {
			select {
			case err := <-done:
				t.Fatalf("the read ended: %v; clients %v", err, v)
			default:
			}
			t.Fatalf("the read never blocked: %v", v)
		}
		time.Sleep(5 * time.Millisecond)
	}
	rc.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a read on a closed connection succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the read was still blocked %v after Close", time.Since(start))
	}
	if _, _, _, err := db.ReadBatch(ctx, rc, pk, "g", "c", 1, 10, false, rdb.Acks{}); err == nil {
		t.Fatal("a read after Close succeeded")
	}
}

// The reader's own connection speaks TLS when the URL is rediss://.
func TestReadConnTLS(t *testing.T) {
	dir := t.TempDir()
	pool := writeCert(t, dir)
	tlsPort, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	redistest.Own(t, redisproc.Options{Args: []string{"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", filepath.Join(dir, "cert.pem"), "--tls-key-file", filepath.Join(dir, "key.pem"),
		"--tls-ca-cert-file", filepath.Join(dir, "cert.pem"), "--tls-auth-clients", "no"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Without a spin, and with readers and lanes that poll the socket
	// under TLS for every reply (spin.go).
	for _, spin := range []time.Duration{-1, 200 * time.Microsecond} {
		db, err := rdb.Open(ctx, rdb.Options{URL: fmt.Sprintf("rediss://127.0.0.1:%d", tlsPort), Namespace: "tls" + strconv.Itoa(int(spin)),
			TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, SpinWait: spin})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		pk := db.Keys.Part("t/0")
		want := fill(t, ctx, db, pk)
		got := readAll(t, ctx, db, pk, "c", len(want))
		if len(got) != len(want) {
			t.Fatalf("spin %v: read %d entries over TLS, want %d", spin, len(got), len(want))
		}
		for j, e := range got {
			if !reflect.DeepEqual(e.Pairs, want[j]) {
				t.Fatalf("spin %v: entry %d = %q, want %q", spin, j, e.Pairs, want[j])
			}
		}
		// A lane's append goes over its own TLS connection.
		lk := db.Keys.Part("t/1")
		var f rdb.Fence
		b := &rdb.AppendBatch{Keys: lk, Producer: "p", Seq: 1, StateTTL: 60000, DedupeIDs: make([]string, 2),
			Fields: [][]string{{"i", "a", "d", strings.Repeat("y", 100_000)}, {"i", "b", "d", "z"}}}
		res, err := db.AppendPlain(ctx, &f, b, 0, 0)
		f.Close()
		if err != nil || len(res.Positions) != 2 || res.Positions[1] == "" {
			t.Fatalf("spin %v: append over TLS: %+v, %v", spin, res, err)
		}
		if n, err := db.Do(ctx, "XLEN", lk.Stream); err != nil || n != int64(2) {
			t.Fatalf("spin %v: XLEN after the append: %v, %v; want 2", spin, n, err)
		}
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 (cert.pem,
// key.pem) into dir and returns a pool that trusts it.
func writeCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herald test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool
}

// On a cluster the reader dials the master of its partition's slot; a read
// sent to another master gets MOVED, whose address the next reader dials.
func TestReadConnFollowsMoved(t *testing.T) {
	ctx, db := clusterDB(t, "moved")
	pk := db.Keys.Part("t/0")
	want := fill(t, ctx, db, pk)
	ranges, err := db.SlotRanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	master := rdb.MasterOf(ranges, rdb.KeySlot(pk.Stream))
	other := ""
	for _, r := range ranges {
		if r.Master != master {
			other = r.Master
		}
	}
	if master == "" || other == "" {
		t.Fatalf("slot map %+v: no master for the stream, or no other", ranges)
	}
	db.SetMoved(pk.Stream, other)
	rc := db.NewReadConn(pk.Stream)
	_, _, _, err = db.ReadBatch(ctx, rc, pk, "g", "c", 10, 10, true, rdb.Acks{})
	rc.Close()
	if err == nil || !rdb.Transient(err) || !strings.HasPrefix(err.Error(), "MOVED") {
		t.Fatalf("read on the wrong master: %v, want a transient MOVED", err)
	}
	if got := db.Moved(pk.Stream); got != master {
		t.Fatalf("after MOVED the reader would dial %q, want %q", got, master)
	}
	if got := readAll(t, ctx, db, pk, "c", len(want)); len(got) != len(want) {
		t.Fatalf("read %d entries after MOVED, want %d", len(got), len(want))
	}

	// A node that a MOVED named and that then fails (here it takes the
	// connection and drops it, as a master cut off or paused behind a
	// live kernel may) is forgotten: the next read asks CLUSTER SLOTS.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	db.SetMoved(pk.Stream, ln.Addr().String())
	rc = db.NewReadConn(pk.Stream)
	_, _, _, err = db.ReadBatch(ctx, rc, pk, "g", "c2", 10, 10, true, rdb.Acks{})
	rc.Close()
	if err == nil {
		t.Fatal("a read from a node that drops the connection succeeded")
	}
	if got := db.Moved(pk.Stream); got != "" {
		t.Fatalf("after a failed read from %s the reader would dial %q again, want CLUSTER SLOTS", ln.Addr(), got)
	}
	if _, err := db.Do(ctx, "XADD", pk.Stream, "*", "d", "after"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, ctx, db, pk, "c2", 1); len(got) != 1 {
		t.Fatalf("read %d entries after the failed node was forgotten, want 1", len(got))
	}
}

func TestMovedAddr(t *testing.T) {
	c1, c2 := net.Pipe() // its RemoteAddr is "pipe", not a host: the empty host stays empty
	defer c1.Close()
	defer c2.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	for _, c := range []struct {
		moved string
		conn  net.Conn
		want  string
	}{
		{"127.0.0.1:7001", nil, "127.0.0.1:7001"},
		{"::1:7001", nil, "[::1]:7001"},
		{"[::1]:7001", nil, "[::1]:7001"},
		{"redis-2.example:6379", nil, "redis-2.example:6379"},
		{":7002", tc, "127.0.0.1:7002"},
		{":7002", nil, ""},
		{":7002", c1, ""},
		{"?:7003", nil, ""},
		{"7003", nil, ""},
		{"host:", nil, ""},
		{"", nil, ""},
	} {
		if got := rdb.MovedAddr(c.moved, c.conn); got != c.want {
			t.Errorf("MovedAddr(%q) = %q, want %q", c.moved, got, c.want)
		}
	}
}

// A reader of a given client whose pool has no connection free waits
// for one only as long as its context lasts.
func TestReadConnGivenClientPoolFull(t *testing.T) {
	db, cl, ctx := onePoolConnDB(t)
	var err error
	pk := db.Keys.Part("t/0")
	want := fill(t, ctx, db, pk)
	held, release := cl.Dedicate() // the pool's one connection
	if err := held.Do(ctx, held.B().Ping().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	rc := db.NewReadConn(pk.Stream)
	rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, _, _, err = db.ReadBatch(rctx, rc, pk, "g", "c", 10, 10, true, rdb.Acks{})
	rcancel()
	rc.Close()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with the pool taken: %v, want the context's deadline", err)
	}
	release()
	if got := readAll(t, ctx, db, pk, "c", len(want)); len(got) != len(want) {
		t.Fatalf("read %d entries once the pool had a connection again, want %d", len(got), len(want))
	}
}

// onePoolConnDB is a DB given a client (its own server) whose pool holds
// one connection.
func onePoolConnDB(t *testing.T) (*rdb.DB, rueidis.Client, context.Context) {
	t.Helper()
	srv := redistest.Own(t, redisproc.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	opt, err := rdb.ParseURL(fmt.Sprintf("redis://127.0.0.1:%d", srv.Port))
	if err != nil {
		t.Fatal(err)
	}
	opt.DisableCache, opt.BlockingPoolSize = true, 1
	cl, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	db, err := rdb.Open(ctx, rdb.Options{Client: cl, Namespace: "full"})
	if err != nil {
		t.Fatal(err)
	}
	return db, cl, ctx
}

// A partition reader spins after a read that came back short of its count
// and holds the spin after a full one (a backlog).
func TestReadConnHoldsSpinAfterFullRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := rdb.Open(ctx, rdb.Options{URL: redistest.URL(t), Namespace: redistest.Namespace(t), SpinWait: 100 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pk := db.Keys.Part("spin/0")
	for i := range 10 {
		if _, err := db.Do(ctx, "XADD", pk.Stream, "*", "i", strconv.Itoa(i), "d", "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.EnsureGroup(ctx, pk, "g", "0"); err != nil {
		t.Fatal(err)
	}
	rc := db.NewReadConn(pk.Stream)
	defer rc.Close()
	es, _, _, err := db.ReadBatch(ctx, rc, pk, "g", "c", 4, 10, false, rdb.Acks{})
	if err != nil || len(es) != 4 {
		t.Fatalf("first read: %d entries, %v; want 4", len(es), err)
	}
	spins, _, full := rc.SpinState()
	if !spins {
		t.Fatal("the reader's connection does not spin with SpinWait set")
	}
	if !full {
		t.Fatal("a read of its whole count is not taken for a backlog")
	}
	if es, _, _, err = db.ReadBatch(ctx, rc, pk, "g", "c", 100, 10, false, rdb.Acks{}); err != nil || len(es) != 6 {
		t.Fatalf("second read: %d entries, %v; want 6", len(es), err)
	}
	if _, held, full := rc.SpinState(); !held || full {
		t.Fatalf("after a full read then a short one: held %v (want true: the read after a full one must not spin), full %v (want false)", held, full)
	}
	if _, _, _, err = db.ReadBatch(ctx, rc, pk, "g", "c", 100, 10, false, rdb.Acks{}); err != nil {
		t.Fatal(err)
	}
	if _, held, _ := rc.SpinState(); held {
		t.Fatal("the read after a short one did not spin")
	}
}

// clusterDB starts a 3-master cluster for t (stopped by pid and purged at
// its end) and opens a DB on it under namespace ns.
func clusterDB(t *testing.T, ns string) (context.Context, *rdb.DB) {
	t.Helper()
	cl := redistest.OwnCluster(t, redisproc.ClusterOptions{Masters: 3})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	db, err := rdb.Open(ctx, rdb.Options{URL: cl.URL(), Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return ctx, db
}
