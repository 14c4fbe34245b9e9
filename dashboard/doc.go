// Package dashboard serves the operations view on the HTTP server: the embedded web UI ("/", "/assets/"),
// its live feed, the WebSocket "/ws", and the admin API under "/api/v1" (API.md; the OpenAPI document is
// served at /api/v1/openapi.json).
//
// The feed (JSON text messages, server to client) starts with "hello" — the latest telemetry snapshot, the
// sampler's history (15 minutes), the recent audit events, the limits in force and the top offenders — then
// sends "snapshot" every second, "events" batched at most every 250 ms, "offenders" every 5 s, and
// "limits" when the running limits change (checked with every snapshot).
//
// Access: the page shell and /assets are public (they carry no data); /ws and every /api/v1 route but
// openapi.json and auth need a viewer's bearer token (the browser sends it on /ws as the subprotocol
// "bearer.<jwt>" next to "floodgate.v1"), writes an admin's. The admin API is rate limited per principal
// (and per client address for failed authentications) through a limiter.Store.
//
// Invariants: Run subscribes once to the telemetry and the audit trail and encodes each message once, whatever
// the number of dashboards; each connection is served by its HTTP handler goroutine alone (plus the library's
// reader that ends with the connection) from a bounded buffer that Run never waits on: a client that falls
// behind is disconnected. A peer that vanishes without closing is found by a ping every 15 s.
// /ws accepts only the page's own Origin (plus configured patterns). Nothing of the UI comes from a CDN.
package dashboard
