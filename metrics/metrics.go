package metrics

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/extauthz"
)

// Metrics holds Floodgate's Prometheus collectors. Labels are bounded: services and outcomes are fixed sets,
// domains and rule names come from the limits configuration (a domain a request names but the configuration
// lacks is counted as "unknown"), never from descriptor values.
type Metrics struct {
	decisions      *prometheus.CounterVec
	ruleDecisions  *prometheus.CounterVec
	degraded       *prometheus.CounterVec
	decisionTime   *prometheus.HistogramVec
	storeTime      prometheus.Histogram
	storeErrors    *prometheus.CounterVec
	storeUp        prometheus.Gauge
	pingTime       prometheus.Histogram
	configVersion  prometheus.Gauge
	configLoadedAt prometheus.Gauge
	configLag      prometheus.Gauge
	configLagHist  prometheus.Histogram
	configReloads  prometheus.Counter
	configErrors   prometheus.Counter
	configOK       prometheus.Gauge
	applied        atomic.Bool
	reg            prometheus.Registerer
}

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// latencyBuckets resolve the sub-millisecond decisions of the memory store and a local Redis (seconds).
var latencyBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3, 250e-3, 1}

// New registers Floodgate's collectors on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floodgate_decisions_total",
			Help: "Decisions by service (ratelimit, authz), domain and outcome (ok, over_limit, degraded, invalid).",
		}, []string{"service", "domain", "outcome"}),
		ruleDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floodgate_rule_decisions_total",
			Help: "Per-rule results by domain, rule name and outcome (ok, over_limit, shadow_over_limit, unlimited).",
		}, []string{"domain", "rule", "outcome"}),
		degraded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floodgate_degraded_decisions_total",
			Help: "Decisions made without the store (it failed or timed out), by service and failure mode (allow, deny, local).",
		}, []string{"service", "mode"}),
		decisionTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "floodgate_decision_duration_seconds",
			Help:    "Time to answer one Envoy call, by service.",
			Buckets: latencyBuckets,
		}, []string{"service"}),
		storeTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "floodgate_store_duration_seconds",
			Help:    "Time of one store call (one Lua script run on Redis) on the decision path.",
			Buckets: latencyBuckets,
		}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floodgate_store_errors_total",
			Help: "Store calls that failed, by kind (timeout, error).",
		}, []string{"kind"}),
		storeUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floodgate_store_up",
			Help: "1 when the last store health ping succeeded.",
		}),
		pingTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "floodgate_store_ping_duration_seconds",
			Help:    "Latency of the once-a-second store health ping.",
			Buckets: latencyBuckets,
		}),
		configVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floodgate_config_version",
			Help: "Version of the limits configuration in force.",
		}),
		configLoadedAt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floodgate_config_loaded_timestamp_seconds",
			Help: "Unix time at which the limits in force were loaded.",
		}),
		configLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floodgate_config_propagation_lag_seconds",
			Help: "For the limits in force: seconds between the version being stored and this replica enforcing it (host clocks included).",
		}),
		configLagHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "floodgate_config_propagation_seconds",
			Help:    "Seconds between a limits version being stored and this replica enforcing it, per applied version.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		configReloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floodgate_config_reloads_total",
			Help: "Limits versions applied after the first one (API changes, rollbacks, file reloads).",
		}),
		configErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floodgate_config_load_errors_total",
			Help: "Limits documents rejected (an invalid file or stored version); the running version kept serving.",
		}),
		configOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floodgate_config_last_load_success",
			Help: "1 when the last limits load succeeded, 0 when it was rejected (the previous version still serves).",
		}),
	}
	reg.MustRegister(m.decisions, m.ruleDecisions, m.degraded, m.decisionTime, m.storeTime, m.storeErrors,
		m.storeUp, m.pingTime, m.configVersion, m.configLoadedAt, m.configLag, m.configLagHist, m.configReloads,
		m.configErrors, m.configOK)
	// The error and outage counters exist at 0 from the start, so alerts on their rate work before the
	// first failure (a series that appears only then has no rate for its first scrape).
	for _, kind := range []string{"timeout", "error"} {
		m.storeErrors.WithLabelValues(kind)
	}
	for _, service := range []string{"ratelimit", "authz"} {
		for _, mode := range []string{"allow", "deny", "local"} {
			m.degraded.WithLabelValues(service, mode)
		}
	}
	return m
}

// TrackEntries exports the size of an in-process store (memory, fallback, over-limit cache) as a gauge.
func (m *Metrics) TrackEntries(store string, length func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "floodgate_local_entries",
		Help:        "Entries held by an in-process store.",
		ConstLabels: prometheus.Labels{"store": store},
	}, func() float64 { return float64(length()) }))
}

// SetConfig records the configuration in force.
func (m *Metrics) SetConfig(info config.Info) {
	m.configVersion.Set(float64(info.Version))
	m.configLoadedAt.Set(float64(info.LoadedAt.UnixNano()) / 1e9)
	m.configOK.Set(1)
}

// Applied records a limits version this replica now enforces (config.RuntimeObserver); lag is the time
// since the version was stored. The first call is the start-up load, not a reload.
func (m *Metrics) Applied(info config.Info, lag time.Duration) {
	if m.applied.Swap(true) {
		m.configReloads.Inc()
	}
	m.SetConfig(info)
	m.configLag.Set(lag.Seconds())
	m.configLagHist.Observe(lag.Seconds())
}

// LoadRecovered records that the limits files are valid again (config.RuntimeObserver).
func (m *Metrics) LoadRecovered() { m.configOK.Set(1) }

// LoadFailed records a rejected limits document (config.RuntimeObserver).
func (m *Metrics) LoadFailed(error) {
	m.configErrors.Inc()
	m.configOK.Set(0)
}

// ObservePing records one store health ping.
func (m *Metrics) ObservePing(d time.Duration, err error) {
	m.pingTime.Observe(d.Seconds())
	if err != nil {
		m.storeUp.Set(0)
		return
	}
	m.storeUp.Set(1)
}

// Observe implements extauthz.Observer. It does not retain o.
func (m *Metrics) Observe(o *extauthz.Observation) {
	service := o.Service
	domain := o.Domain
	if domain == "" {
		domain = "unknown"
	}
	m.decisionTime.WithLabelValues(service).Observe(o.Duration.Seconds())
	m.decisions.WithLabelValues(service, domain, o.Code.String()).Inc()
	if o.StoreDuration > 0 {
		m.storeTime.Observe(o.StoreDuration.Seconds())
	}
	if o.StoreErr != nil {
		kind := "error"
		var ne net.Error
		if errors.Is(o.StoreErr, context.DeadlineExceeded) || (errors.As(o.StoreErr, &ne) && ne.Timeout()) {
			kind = "timeout"
		}
		m.storeErrors.WithLabelValues(kind).Inc()
	}
	if o.Code == extauthz.OutcomeDegraded {
		m.degraded.WithLabelValues(service, o.FailureMode).Inc()
	}
	if o.Code == extauthz.OutcomeDegraded && o.FailureMode != "local" {
		return // no limit was evaluated; the degraded counter says what happened
	}
	for i := range o.Rules {
		r := &o.Rules[i]
		m.ruleDecisions.WithLabelValues(domain, r.Rule.Name, ruleOutcome(r)).Inc()
	}
}

func ruleOutcome(r *extauthz.RuleResult) string {
	switch {
	case r.Limit == nil && r.Rule.Unlimited:
		return "unlimited"
	case r.Result.Allowed:
		return "ok"
	case r.Shadow:
		return "shadow_over_limit"
	}
	return "over_limit"
}
