package rdb

// Keys of Herald's time features: delayed events, retention bookkeeping.
// They extend keys.go and follow its rule: every key of a partition carries
// the partition's hash tag, so each script touches one cluster slot.

// Delay is the sorted set of the partition's delayed events: member = event
// id, score = due time in unix ms.
func (p PartKeys) Delay() string { return p.Base + "delay" }

// DelayData is the hash of the delayed events' payloads: field = event id,
// value = the entry's field/value pairs as a JSON array (cjson).
func (p PartKeys) DelayData() string { return p.Base + "delay:d" }

// Losses is the hash of events a hard retention cap removed before a group
// handled them: field = group, value = count.
func (p PartKeys) Losses() string { return p.Base + "lost" }
