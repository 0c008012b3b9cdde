package herald

import (
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"sync"
	"time"
)

// ids generates UUIDv7 event ids (RFC 9562): 48 bits of Unix milliseconds,
// then 12 bits that count up within a millisecond (so ids from one process
// sort in generation order) from a random start, then 62 random bits. The
// random bits come from a ChaCha8 stream seeded from crypto/rand once,
// instead of a crypto/rand read per id (a system call each).
var ids = newIDGen()

type idGen struct {
	mu     sync.Mutex
	rnd    *rand.ChaCha8
	lastMS int64
	seq    uint16
}

func newIDGen() *idGen {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	}
	return &idGen{rnd: rand.NewChaCha8(seed)}
}

func (g *idGen) next() string {
	var b [16]byte
	g.mu.Lock()
	ms := time.Now().UnixMilli()
	if ms <= g.lastMS {
		ms = g.lastMS // the clock went back or stands still: keep order
		g.seq++
		if g.seq > 0x0fff { // 4096 ids in one millisecond: borrow the next one
			ms++
			g.seq = uint16(g.rnd.Uint64() & 0x01ff)
		}
	} else {
		g.seq = uint16(g.rnd.Uint64() & 0x01ff) // random start, room to count up
	}
	g.lastMS = ms
	seq := g.seq
	r := g.rnd.Uint64()
	g.mu.Unlock()
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = 0x70 | byte(seq>>8)&0x0f
	b[7] = byte(seq)
	binary.BigEndian.PutUint64(b[8:], r)
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
