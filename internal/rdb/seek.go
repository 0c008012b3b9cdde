package rdb

import (
	"context"
	"fmt"
)

var scriptGroupSeek = mustScript("group_seek")

// GroupSeek moves group on the partition stream so that its next read
// starts after lastID ("$": the end), and acknowledges its pending entries
// up to lastID (group_seek.lua). It returns how many pending entries were
// dropped and the new last-delivered id.
func (db *DB) GroupSeek(ctx context.Context, pk PartKeys, group, lastID string) (dropped int64, last string, err error) {
	end := "0"
	if lastID == "$" {
		end = "1"
	}
	arr, err := scriptGroupSeek.Exec(ctx, db.c, []string{pk.Stream}, []string{group, lastID, end}).ToArray()
	if err != nil {
		return 0, "", err
	}
	if len(arr) != 2 {
		return 0, "", fmt.Errorf("group_seek: %d replies, want 2", len(arr))
	}
	if dropped, err = arr[0].AsInt64(); err != nil {
		return 0, "", err
	}
	last, err = arr[1].ToString()
	return dropped, last, err
}
