package rdb

import "context"

// LastID returns the id of a stream's newest entry, or "0-0" when it has none.
func (db *DB) LastID(ctx context.Context, stream string) (string, error) {
	es, err := db.RevRange(ctx, stream, "+", "-", 1)
	if err != nil || len(es) == 0 {
		return "0-0", err
	}
	return es[0].ID, nil
}

// Tail reads entries after id from one stream without a consumer group
// (XREAD), waiting up to blockMS. It costs publishers nothing.
func (db *DB) Tail(ctx context.Context, stream, after string, count, blockMS int64) ([]Entry, error) {
	return parseXRead(db.c.Do(ctx, db.c.B().Xread().Count(count).Block(blockMS).Streams().Key(stream).Id(after).Build()))
}
