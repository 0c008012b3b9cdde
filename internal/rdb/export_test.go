package rdb

// SetScanPageHook sets testHookScanPage for the external tests of this
// package and returns a function that removes it.
func SetScanPageHook(f func() error) func() {
	testHookScanPage = f
	return func() { testHookScanPage = nil }
}

// LoseOn records that batch seq was lost on the connection id/addr, as a
// failed append leaves a Fence.
func (f *Fence) LoseOn(id int64, addr string, seq int64) {
	f.suspect, f.lostSeq, f.scan, f.stops = connID{id: id, addr: addr}, seq, nil, nil
}

// SetMoved records addr as the node of key's slot, as a MOVED reply to a
// reader does; Moved returns what is recorded.
func (db *DB) SetMoved(key, addr string) { db.moved.Store(KeySlot(key), addr) }

func (db *DB) Moved(key string) string {
	v, _ := db.moved.Load(KeySlot(key))
	s, _ := v.(string)
	return s
}

// MovedAddr is movedAddr, for the external tests.
var MovedAddr = movedAddr

// SpinState says whether the reader's connection spins, whether its next
// read is held from spinning, and whether its last read was full.
func (r *ReadConn) SpinState() (spins, held, full bool) {
	return r.sc != nil, r.sc != nil && r.sc.held.Load(), r.full
}

// OwnConn says whether f has its own RESP connection (append_own.go), a
// rueidis dedicated connection, and the own connection's id on the server.
func (f *Fence) OwnConn() (own, dc bool, id int64) {
	return f.own != nil && f.own.conn != nil, f.dc != nil, f.conn.id
}

// Reordered is the batch sequence whose retry sent events out of the
// batch's order; SetReordered records one, as such a retry does.
func (f *Fence) Reordered() int64 { return f.reordered }

func (f *Fence) SetReordered(seq int64) { f.reordered = seq }
