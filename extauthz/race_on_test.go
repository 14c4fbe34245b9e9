//go:build race

package extauthz

// raceEnabled widens the latency budgets of the outage tests under the race detector (several times slower).
const raceEnabled = true
