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
	f.suspect, f.lostSeq, f.scan = connID{id: id, addr: addr}, seq, nil
}
