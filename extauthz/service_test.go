package extauthz

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/floodgate/floodgate/limiter"
)

func TestNewValidates(t *testing.T) {
	limits := staticLimits{mustParse(t, edgePerIP)}
	store := limiter.NewMemory(limiter.MemoryOptions{})
	tests := []struct {
		name   string
		mutate func(*Options)
		want   string // "" = valid
	}{
		{"defaults", func(*Options) {}, ""},
		{"no limits", func(o *Options) { o.Limits = nil }, "no limits source"},
		{"no store", func(o *Options) { o.Store = nil }, "no store"},
		{"local without fallback", func(o *Options) { o.OnStoreError = FailLocal }, "needs a fallback"},
		{"unknown failure mode", func(o *Options) { o.OnStoreError = "maybe" }, "unknown on-store-error"},
		{"share above 1", func(o *Options) { o.LocalShare = 1.5 }, "local share"},
		{"negative share", func(o *Options) { o.LocalShare = -0.1 }, "local share"},
		{"negative timeout", func(o *Options) { o.StoreTimeout = -time.Second }, "negative store timeout"},
		{"unknown headers", func(o *Options) { o.Headers = "rfc" }, "unknown headers mode"},
		{"negative hops", func(o *Options) { o.TrustedProxyHops = -1 }, "negative trusted proxy hops"},
		{"v6 prefix", func(o *Options) { o.IPv6Prefix = 129 }, "IPv6 prefix"},
		{"v4 prefix", func(o *Options) { o.IPv4Prefix = 33 }, "IPv4 prefix"},
		{"invalid trusted prefix", func(o *Options) { o.TrustedProxies = []netip.Prefix{{}} }, "trusted proxy 0"},
		{"local with fallback", func(o *Options) { o.OnStoreError = FailLocal; o.Fallback = store; o.LocalShare = 0.25 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Limits: limits, Store: store}
			tt.mutate(&o)
			_, err := New(o)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestRegisterAndHealthNames(t *testing.T) {
	svc, err := New(Options{Limits: staticLimits{mustParse(t, edgePerIP)}, Store: limiter.NewMemory(limiter.MemoryOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	svc.Register(srv)
	var got []string
	for name := range srv.GetServiceInfo() {
		got = append(got, name)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(svc.HealthServiceNames()))
	if !slices.Equal(got, want) {
		t.Errorf("registered %v, health names %v", got, want)
	}
}

func TestScaleQuota(t *testing.T) {
	tests := []struct {
		n     uint64
		share float64
		want  uint64
	}{
		{10, 0.5, 5}, {10, 0.33, 4}, {1, 0.1, 1}, {0, 0.5, 0}, {7, 1, 7}, {limiter.MaxRequests, 0.5, limiter.MaxRequests / 2},
	}
	for _, tt := range tests {
		if got := scaleQuota(tt.n, tt.share); got != tt.want {
			t.Errorf("scaleQuota(%d, %v): got %d, want %d", tt.n, tt.share, got, tt.want)
		}
	}
}

// Shadow on ext_authz: a shadow rule never denies; its would-be denials are observed.
func TestCheckShadow(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, `
domain: edge
http_rules:
  - name: uploads
    key: [client_ip]
    shadow_mode: true
    rate_limit:
      unit: minute
      requests_per_unit: 2
`, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		wouldDeny := 0
		for i := range 4 {
			c := h.callCheck(t, checkReq{source: "192.0.2.77"})
			if !allowed(t, c) {
				t.Errorf("call %d denied by a shadow rule", i)
			}
			if r := h.obs.last(t).Rules[0]; r.Shadow && !r.Result.Allowed {
				wouldDeny++
			}
		}
		if wouldDeny != 2 {
			t.Errorf("got %d would-be denials, want 2", wouldDeny)
		}
	})
}
