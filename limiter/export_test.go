package limiter

import (
	"time"
)

// MemoryExpiry is the time until h's counter expires in m, and whether it is present.
func MemoryExpiry(m *Memory, h Hit) (time.Duration, bool) {
	key := newMemKey(&h)
	sh := &m.shards[m.shardOf(h.Key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[key]
	now := nowMicros(m.now())
	if e == nil || e.exp <= now {
		return 0, false
	}
	return micros(e.exp - now), true
}

// KeySlot exposes keySlot.
var KeySlot = keySlot

// CRC16 exposes crc16.
var CRC16 = crc16
