//go:build race

package limiter_test

// raceEnabled scales the million-key tests down under the race detector (about 10x slower).
const raceEnabled = true
