package herald

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// ids generates UUIDv7 event ids (RFC 9562): 48 bits of Unix milliseconds,
// then 12 bits that count up within a millisecond (so ids from one process
// sort in generation order) from a random start, then 62 random bits. The
// random bits come from math/rand/v2's runtime generator (ChaCha8 per
// thread, seeded by the OS), not a crypto/rand read per id (a system call
// each); the millisecond and the counter advance together with one
// compare-and-swap, so publishers on many goroutines never wait on a lock.
var ids idGen

type idGen struct {
	state atomic.Uint64 // last millisecond << 16 | counter
}

func (g *idGen) next() string {
	now := time.Now().UnixMilli()
	var ms int64
	var seq uint16
	for {
		old := g.state.Load()
		lastMS, lastSeq := int64(old>>16), uint16(old)
		ms, seq = now, uint16(rand.Uint32()&0x01ff) // a new millisecond: random start, room to count up
		if ms <= lastMS {
			ms, seq = lastMS, lastSeq+1 // the clock went back or stands still: keep order
			if seq > 0x0fff {           // 4096 ids in one millisecond: borrow the next one
				ms, seq = lastMS+1, uint16(rand.Uint32()&0x01ff)
			}
		}
		if g.state.CompareAndSwap(old, uint64(ms)<<16|uint64(seq)) {
			break
		}
	}
	var b [16]byte
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = 0x70 | byte(seq>>8)&0x0f
	b[7] = byte(seq)
	binary.BigEndian.PutUint64(b[8:], rand.Uint64())
	b[8] = b[8]&0x3f | 0x80 // variant 10
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
