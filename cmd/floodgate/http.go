package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

// storeHealth publishes the store pings (once a second, run by the telemetry sampler) to gRPC health,
// /readyz and metrics.
//
// gRPC health: the Envoy services report SERVING while the store answers. When it does not, they report
// NOT_SERVING only with --on-store-error=deny (Envoy should then route around this replica); with allow or
// local this replica still gives the configured answer, so it stays SERVING. /readyz follows the store.
type storeHealth struct {
	store      limiter.Store
	timeout    time.Duration
	metrics    *metrics.Metrics
	logger     *slog.Logger
	health     *health.Server
	services   []string
	failClosed bool

	mu        sync.Mutex
	up        bool
	checked   bool
	lastErr   string
	lastCheck time.Time
	stopping  bool
}

// check pings the store once (at start-up, before the sampler's first ping) and publishes the result.
func (h *storeHealth) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	start := time.Now()
	err := h.store.Ping(ctx)
	cancel()
	h.observe(time.Since(start), err)
}

// observe publishes one ping result (metrics.SamplerOptions.OnPing) to the metrics, gRPC health and /readyz.
func (h *storeHealth) observe(d time.Duration, err error) {
	h.metrics.ObservePing(d, err)

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopping {
		return
	}
	up := err == nil
	if h.checked && up != h.up {
		if up {
			h.logger.Info("store reachable again")
		} else {
			h.logger.Warn("store unreachable", "err", err)
		}
	} else if !h.checked && !up {
		h.logger.Warn("store unreachable", "err", err)
	}
	h.up, h.checked, h.lastCheck = up, true, time.Now()
	h.lastErr = ""
	if err != nil {
		h.lastErr = err.Error()
	}
	status := healthpb.HealthCheckResponse_SERVING
	if !up && h.failClosed {
		status = healthpb.HealthCheckResponse_NOT_SERVING
	}
	h.health.SetServingStatus("", status)
	for _, s := range h.services {
		h.health.SetServingStatus(s, status)
	}
}

// shutdown reports NOT_SERVING for every service so Envoy drains this replica.
func (h *storeHealth) shutdown() {
	h.mu.Lock()
	h.stopping = true
	h.mu.Unlock()
	h.health.Shutdown()
}

type readiness struct {
	Status    string    `json:"status"`
	Store     string    `json:"store"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

func (h *storeHealth) readiness() (readiness, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := readiness{Status: "ready", Store: "up", CheckedAt: h.lastCheck, Error: h.lastErr}
	ok := h.up && !h.stopping
	if !h.up {
		r.Status, r.Store = "not ready", "down"
	}
	if h.stopping {
		r.Status = "shutting down"
	}
	return r, ok
}

func newHTTPHandler(reg *prometheus.Registry, h *storeHealth, dash http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		r, ok := h.readiness()
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, r)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	// The dashboard: "/" (the UI), "/assets/" and the WebSocket "/ws".
	mux.Handle("/", dash)
	return mux
}

// loopbackHostOnly answers 421 Misdirected Request unless the request names a loopback host (localhost,
// 127.0.0.0/8, ::1), with or without a port.
func loopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		ip, err := netip.ParseAddr(host)
		if !strings.EqualFold(host, "localhost") && (err != nil || !ip.IsLoopback()) {
			w.Header().Set("Connection", "close")
			http.Error(w, "this Floodgate serves loopback host names only (no authentication is configured)", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
