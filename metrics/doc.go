// Package metrics holds Floodgate's Prometheus collectors, registered on a registry owned by the caller
// (never the global one).
//
// Invariants: every label value comes from a fixed set (service, outcome, failure mode, store kind) or from the
// limits configuration (domain, rule name); descriptor values, client addresses and header values never become
// labels, so the number of series does not grow with traffic. A request naming a domain the configuration
// lacks is counted under domain="unknown". Latency histograms are in seconds with buckets from 25 µs to 1 s.
package metrics
