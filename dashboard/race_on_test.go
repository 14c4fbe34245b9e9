//go:build race

package dashboard

// raceEnabled scales the 1,000-session test down under the race detector (Makefile runs it without -race too).
const raceEnabled = true
