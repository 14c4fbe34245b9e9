package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/audit"
	"github.com/floodgate/floodgate/auth"
	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

// Telemetry is what the dashboard reads from the telemetry sampler.
type Telemetry interface {
	Latest() metrics.Snapshot
	History() []metrics.Snapshot
	// Subscribe returns a bounded feed of new snapshots; the feed is closed if its reader falls behind.
	Subscribe() (<-chan metrics.Snapshot, func())
}

// Audit is what the dashboard reads from the audit trail.
type Audit interface {
	Recent(n int) []audit.Event
	// Subscribe returns a bounded feed of new events; the feed is closed if its reader falls behind.
	Subscribe(buf int) (<-chan audit.Event, func())
	TopOffenders(window time.Duration, n int) audit.Offenders
	Dropped() uint64
	Replica() string
}

// LimitsSource gives the limits in force.
type LimitsSource interface {
	Limits() *config.Snapshot
}

// Options configures New.
type Options struct {
	Telemetry Telemetry
	Audit     Audit
	Limits    LimitsSource
	// Assets holds index.html and the files served under /assets/ (default: the embedded web UI).
	Assets fs.FS
	// OriginPatterns are extra Origin host patterns allowed to open /ws (the page's own origin always is).
	OriginPatterns []string
	// Registry, if set, receives floodgate_dashboard_sessions.
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// Timing knobs (defaults: 250 ms event batches, 5 s offender updates, 15 s pings, 5 s write timeout).
	EventBatch, OffendersEvery, PingEvery, WriteTimeout time.Duration
	// RecentEvents is how many past events a new connection receives (default 500).
	RecentEvents int

	// The admin API (/api/v1, see api.go and API.md). Admin nil: its limits routes answer 503.
	Admin LimitsAdmin
	// Usage inspects and resets counters (POST /api/v1/usage); nil: 503.
	Usage UsageInspector
	// Changes receives every stored change of the limits (the audit trail); may be nil.
	Changes ChangeRecorder
	// AuditQuery searches the stored audit trail (GET /api/v1/audit); nil: Audit.Recent is searched.
	AuditQuery AuditQuerier
	// Auth authenticates API callers; nil means no authentication (auth.Anonymous: everyone is admin).
	Auth auth.Authenticator
	// AuthInfo tells the dashboard how to sign in; Mode defaults to "none" without Auth, else "token".
	AuthInfo AuthInfo
	// AdminRate and AdminLimit rate limit the admin API per principal, and per client address for failed
	// authentications (default: a private in-memory store; DefaultAdminLimit).
	AdminRate  limiter.Store
	AdminLimit limiter.Limit
}

// Dashboard serves the operations UI and its WebSocket feed.
type Dashboard struct {
	o        Options
	sessions atomic.Int64
	mux      *http.ServeMux

	mu    sync.Mutex
	peers map[chan []byte]struct{} // one per session: the encoded messages Run fans out
}

// StatusTokenExpired is the WebSocket close code of a session whose token expired (4000–4999 are the
// application's).
const StatusTokenExpired websocket.StatusCode = 4001

// peerBuffer bounds the messages waiting for one session; a session that falls further behind is dropped.
const peerBuffer = 64

// New returns the dashboard; mount Handler on the HTTP server.
func New(o Options) (*Dashboard, error) {
	if o.Telemetry == nil || o.Audit == nil || o.Limits == nil {
		return nil, errors.New("dashboard: telemetry, audit and limits are required")
	}
	if o.Assets == nil {
		o.Assets = webAssets()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.EventBatch, 250*time.Millisecond)
	def(&o.OffendersEvery, 5*time.Second)
	def(&o.PingEvery, 15*time.Second)
	def(&o.WriteTimeout, 5*time.Second)
	if o.RecentEvents <= 0 {
		o.RecentEvents = 500
	}
	d := &Dashboard{o: o, mux: http.NewServeMux(), peers: map[chan []byte]struct{}{}}
	if o.Registry != nil {
		if err := o.Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "floodgate_dashboard_sessions",
			Help: "Open dashboard WebSocket sessions.",
		}, func() float64 { return float64(d.sessions.Load()) })); err != nil {
			return nil, err
		}
	}
	api, err := newAPI(&d.o)
	if err != nil {
		return nil, err
	}
	api.mount(d.mux)
	// The feed carries the same data as the read APIs: viewers and admins only.
	wsAuth := o.Auth
	if wsAuth == nil {
		wsAuth = auth.Anonymous
	}
	d.mux.Handle("GET /ws", auth.Require(wsAuth, auth.RoleViewer, http.HandlerFunc(d.serveWS)))
	d.mux.HandleFunc("GET /{$}", d.serveIndex)
	d.mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(o.Assets)))
	return d, nil
}

// Handler serves "/", "/assets/" and "/ws".
func (d *Dashboard) Handler() http.Handler { return d.mux }

// Sessions is the number of open WebSocket sessions.
func (d *Dashboard) Sessions() int { return int(d.sessions.Load()) }

// connectOrigins lists, with a leading space, the origins besides the page's own that the page may fetch
// from: the OIDC token endpoint (the sign-in's code exchange), when OIDC sign-in is configured.
func (d *Dashboard) connectOrigins() string {
	o := d.o.AuthInfo.OIDC
	if d.o.AuthInfo.Mode != "oidc" || o == nil {
		return ""
	}
	u, err := url.Parse(o.TokenEndpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return " " + u.Scheme + "://" + u.Host
}

func (d *Dashboard) serveIndex(w http.ResponseWriter, r *http.Request) {
	b, err := fs.ReadFile(d.o.Assets, "index.html")
	if err != nil {
		http.Error(w, "dashboard assets missing", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'"+d.connectOrigins()+
		"; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(b)
}

// The messages of /ws (server to client, JSON text frames).
type (
	helloMsg struct {
		Type          string                     `json:"type"` // "hello"
		Replica       string                     `json:"replica"`
		Snapshot      metrics.Snapshot           `json:"snapshot"`
		History       []metrics.Snapshot         `json:"history"`
		Events        []audit.Event              `json:"events"`
		Limits        Limits                     `json:"limits"`
		Offenders     map[string]audit.Offenders `json:"offenders"`
		DroppedEvents uint64                     `json:"dropped_events"`
	}
	snapshotMsg struct {
		Type     string           `json:"type"` // "snapshot"
		Snapshot metrics.Snapshot `json:"snapshot"`
	}
	eventsMsg struct {
		Type          string        `json:"type"` // "events"
		Events        []audit.Event `json:"events"`
		DroppedEvents uint64        `json:"dropped_events"`
	}
	offendersMsg struct {
		Type      string                     `json:"type"` // "offenders"
		Offenders map[string]audit.Offenders `json:"offenders"`
	}
	// limitsMsg is sent when the limits in force change (a new version or a file reload).
	limitsMsg struct {
		Type   string `json:"type"` // "limits"
		Limits Limits `json:"limits"`
	}
)

// maxBatch bounds one events message; the rest waits for the next batch.
const maxBatch = 500

func (d *Dashboard) offenders() map[string]audit.Offenders {
	return map[string]audit.Offenders{
		"1m":  d.o.Audit.TopOffenders(time.Minute, 10),
		"5m":  d.o.Audit.TopOffenders(5*time.Minute, 10),
		"15m": d.o.Audit.TopOffenders(15*time.Minute, 10),
	}
}

// Run feeds every session until ctx ends: it subscribes once to the telemetry and the audit trail, encodes
// each snapshot, events batch (every EventBatch) and offenders update (every OffendersEvery) once, and hands
// the same bytes to every session without waiting: a session whose buffer is full is dropped.
func (d *Dashboard) Run(ctx context.Context) {
	running := d.o.Limits.Limits() // the limits the sessions were last told about (read before subscribing)
	snaps, stopSnaps := d.o.Telemetry.Subscribe()
	events, stopEvents := d.o.Audit.Subscribe(8192)
	defer func() { stopSnaps(); stopEvents() }() // the latest subscriptions (they are renewed when dropped)
	offTick := time.NewTicker(d.o.OffendersEvery)
	defer offTick.Stop()
	flush := time.NewTicker(d.o.EventBatch)
	defer flush.Stop()
	var batch []audit.Event
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			for ch := range d.peers {
				delete(d.peers, ch)
				close(ch)
			}
			d.mu.Unlock()
			return
		case sn, ok := <-snaps:
			if !ok {
				snaps, stopSnaps = d.o.Telemetry.Subscribe() // dropped as too slow: subscribe again
				continue
			}
			d.broadcast(snapshotMsg{Type: "snapshot", Snapshot: sn})
			// Once a second, also look for new limits (the runtime swaps the snapshot pointer).
			if cur := d.o.Limits.Limits(); cur != running {
				running = cur
				d.broadcast(limitsMsg{Type: "limits", Limits: limitsView(cur)})
			}
		case e, ok := <-events:
			if !ok {
				events, stopEvents = d.o.Audit.Subscribe(8192)
				continue
			}
			batch = append(batch, e)
		case <-flush.C:
			for len(batch) > 0 {
				n := min(len(batch), maxBatch)
				d.broadcast(eventsMsg{Type: "events", Events: batch[:n], DroppedEvents: d.o.Audit.Dropped()})
				batch = batch[n:]
			}
			batch = nil
		case <-offTick.C:
			d.broadcast(offendersMsg{Type: "offenders", Offenders: d.offenders()})
		}
	}
}

// broadcast encodes v once and queues it for every session.
func (d *Dashboard) broadcast(v any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.peers) == 0 {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		d.o.Logger.Error("encode dashboard message", "err", err)
		return
	}
	for ch := range d.peers {
		select {
		case ch <- b:
		default: // too slow: its session ends when it sees the channel closed
			delete(d.peers, ch)
			close(ch)
		}
	}
}

func (d *Dashboard) join() chan []byte {
	ch := make(chan []byte, peerBuffer)
	d.mu.Lock()
	d.peers[ch] = struct{}{}
	d.mu.Unlock()
	return ch
}

func (d *Dashboard) leave(ch chan []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.peers[ch]; ok {
		delete(d.peers, ch)
		close(ch)
	}
}

// serveWS streams telemetry and audit events to one dashboard: its own hello, then the messages Run encodes
// once for every session. The handler's goroutine is the only writer; coder/websocket's CloseRead reader ends
// ctx when the peer closes or the connection breaks, and a ping every PingEvery (answered within
// WriteTimeout) catches peers that vanished without a FIN. A peer that cannot keep up (a write exceeding
// WriteTimeout, or its buffer of peerBuffer messages full) is disconnected; Run never waits for it.
func (d *Dashboard) serveWS(w http.ResponseWriter, r *http.Request) {
	opts := &websocket.AcceptOptions{OriginPatterns: d.o.OriginPatterns}
	if p := auth.WebSocketProtocol(r); p != "" {
		// The browser sent its token as the subprotocol "bearer.<jwt>" next to "floodgate.v1": answer with
		// the latter (a WebSocket client closes the connection unless one offered protocol is selected).
		opts.Subprotocols = []string{p}
	}
	c, err := websocket.Accept(w, r, opts)
	if err != nil {
		return // Accept wrote the error response (e.g. 403 for a foreign Origin)
	}
	defer c.CloseNow()
	d.sessions.Add(1)
	defer d.sessions.Add(-1)
	c.SetReadLimit(1024) // clients send nothing but control frames
	ctx := c.CloseRead(r.Context())
	feed := d.join() // before the hello, so nothing between the two is missed
	defer d.leave(feed)

	write := func(v any) bool {
		wctx, cancel := context.WithTimeout(ctx, d.o.WriteTimeout)
		defer cancel()
		return wsjson.Write(wctx, c, v) == nil
	}
	hello := helloMsg{Type: "hello", Replica: d.o.Audit.Replica(), Snapshot: d.o.Telemetry.Latest(),
		History: d.o.Telemetry.History(), Events: d.o.Audit.Recent(d.o.RecentEvents),
		Limits: limitsView(d.o.Limits.Limits()), Offenders: d.offenders(), DroppedEvents: d.o.Audit.Dropped()}
	if hello.History == nil {
		hello.History = []metrics.Snapshot{}
	}
	if hello.Events == nil {
		hello.Events = []audit.Event{}
	}
	if !write(hello) {
		return
	}

	pingTick := time.NewTicker(d.o.PingEvery)
	defer pingTick.Stop()
	// The session lives as long as the token that opened it: at its expiry the feed closes (code 4001) and
	// the page must come back with a fresh token.
	var expired <-chan time.Time
	if p, ok := auth.FromContext(r.Context()); ok && !p.ExpiresAt.IsZero() {
		t := time.NewTimer(time.Until(p.ExpiresAt))
		defer t.Stop()
		expired = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-expired:
			c.Close(StatusTokenExpired, "token expired")
			return
		case b, ok := <-feed:
			if !ok {
				c.Close(websocket.StatusTryAgainLater, "too slow for the live feed")
				return
			}
			wctx, cancel := context.WithTimeout(ctx, d.o.WriteTimeout)
			err := c.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				return
			}
		case <-pingTick.C:
			pctx, cancel := context.WithTimeout(ctx, d.o.WriteTimeout)
			err := c.Ping(pctx)
			cancel()
			if err != nil {
				return
			}
		}
	}
}
