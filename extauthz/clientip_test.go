package extauthz

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClientAddr(t *testing.T) {
	tenNet := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name      string
		hops      int
		trusted   []netip.Prefix
		source    string
		xff       string
		want      string // "" = not ok
		wantProxy string
	}{
		{name: "edge ignores xff", source: "203.0.113.7", xff: "1.2.3.4", want: "203.0.113.7", wantProxy: "203.0.113.7"},
		{name: "B28 hops 1 is the calling envoy's peer", hops: 1, source: "203.0.113.7",
			xff: "198.51.100.9, 203.0.113.7", want: "203.0.113.7", wantProxy: "203.0.113.7"},
		{name: "hops 2 skips one proxy", hops: 2, source: "203.0.113.7", xff: "198.51.100.9, 203.0.113.7",
			want: "198.51.100.9", wantProxy: "203.0.113.7"},
		{name: "hops 2 no spaces", hops: 2, source: "203.0.113.7", xff: "198.51.100.9,203.0.113.7",
			want: "198.51.100.9", wantProxy: "203.0.113.7"},
		{name: "too few entries fall back to source", hops: 3, source: "203.0.113.7",
			xff: "198.51.100.9, 203.0.113.7", want: "203.0.113.7", wantProxy: "203.0.113.7"},
		{name: "invalid entry falls back to source", hops: 2, source: "203.0.113.7", xff: "evil, 203.0.113.7",
			want: "203.0.113.7", wantProxy: "203.0.113.7"},
		{name: "no xff with hops", hops: 2, source: "203.0.113.7", want: "203.0.113.7", wantProxy: "203.0.113.7"},
		{name: "B47 trusted cidr", trusted: tenNet, source: "10.0.0.5", xff: "198.51.100.1, 10.0.0.5",
			want: "198.51.100.1", wantProxy: "10.0.0.5"},
		{name: "trusted cidr skips several proxies", trusted: tenNet, source: "10.0.0.5",
			xff: "192.0.2.1, 198.51.100.1, 10.9.9.9, 10.0.0.5", want: "198.51.100.1", wantProxy: "10.0.0.5"},
		{name: "untrusted source ignores xff", trusted: tenNet, source: "203.0.113.9", xff: "198.51.100.1",
			want: "203.0.113.9", wantProxy: "203.0.113.9"},
		{name: "all trusted gives leftmost", trusted: tenNet, source: "10.0.0.5", xff: "10.0.0.1, 10.0.0.5",
			want: "10.0.0.1", wantProxy: "10.0.0.5"},
		{name: "trusted invalid entry falls back", trusted: tenNet, source: "10.0.0.5", xff: "x, 10.0.0.5",
			want: "10.0.0.5", wantProxy: "10.0.0.5"},
		{name: "mapped source", source: "::ffff:198.51.100.7", want: "198.51.100.7", wantProxy: "198.51.100.7"},
		{name: "bracketed v6 with port in xff", hops: 2, source: "203.0.113.7", xff: "[2001:db8::1]:443, 203.0.113.7",
			want: "2001:db8::1", wantProxy: "203.0.113.7"},
		{name: "v4 with port in xff", hops: 2, source: "203.0.113.7", xff: "198.51.100.2:5555,203.0.113.7",
			want: "198.51.100.2", wantProxy: "203.0.113.7"},
		{name: "zone dropped", source: "fe80::1%eth0", want: "fe80::1", wantProxy: "fe80::1"},
		{name: "no source no xff", want: ""},
		{name: "no source, hops, xff used", hops: 1, xff: "198.51.100.3", want: "198.51.100.3"},
		{name: "garbage source", source: "not-an-ip", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ipResolver{hops: tt.hops, trusted: tt.trusted, v4Bits: 32, v6Bits: 128}
			got, proxy, ok := r.clientAddr(tt.source, tt.xff)
			if tt.want == "" {
				if ok {
					t.Fatalf("got %v ok, want no address", got)
				}
				return
			}
			if !ok || got.String() != tt.want {
				t.Errorf("got client %v (ok %v), want %s", got, ok, tt.want)
			}
			gotProxy := ""
			if proxy.IsValid() {
				gotProxy = proxy.String()
			}
			if gotProxy != tt.wantProxy {
				t.Errorf("got proxy %q, want %q", gotProxy, tt.wantProxy)
			}
		})
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct {
		name         string
		v4, v6       int
		give, wanted string
	}{
		{name: "v4 full", v4: 32, v6: 64, give: "198.51.100.7", wanted: "198.51.100.7"},
		{name: "v4 mapped", v4: 32, v6: 64, give: "::ffff:198.51.100.7", wanted: "198.51.100.7"},
		{name: "v4 /24", v4: 24, v6: 64, give: "198.51.100.7", wanted: "198.51.100.0/24"},
		{name: "v6 /64", v4: 32, v6: 64, give: "2001:db8:1:2::20", wanted: "2001:db8:1:2::/64"},
		{name: "v6 long spelling", v4: 32, v6: 64, give: "2001:0db8:000a:0000:0000:0000:0000:0001", wanted: "2001:db8:a::/64"},
		{name: "v6 short spelling", v4: 32, v6: 64, give: "2001:db8:a::1", wanted: "2001:db8:a::/64"},
		{name: "v6 /128", v4: 32, v6: 128, give: "2001:db8:a::1", wanted: "2001:db8:a::1"},
		{name: "v6 /48", v4: 32, v6: 48, give: "2001:db8:a:b:c::1", wanted: "2001:db8:a::/48"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ipResolver{v4Bits: tt.v4, v6Bits: tt.v6}
			a, ok := parseIP(tt.give)
			if !ok {
				t.Fatalf("parseIP(%q) failed", tt.give)
			}
			if got := r.keyOf(a); got != tt.wanted {
				t.Errorf("got %q, want %q", got, tt.wanted)
			}
		})
	}
}

func FuzzClientIP(f *testing.F) {
	f.Add("203.0.113.7", "198.51.100.1, 203.0.113.7", 1, true)
	f.Add("10.0.0.5", "198.51.100.1, 10.0.0.5", 0, true)
	f.Add("::ffff:1.2.3.4", "[::1]:80,, ,x", 3, false)
	f.Add("", ",,,,", 2, false)
	f.Add("fe80::1%eth0", "\x00\xff, 1.2.3.4:99999", 5, false)
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	f.Fuzz(func(t *testing.T, source, xff string, hops int, useTrusted bool) {
		if hops < 0 {
			hops = -hops
		}
		hops %= 64
		r := ipResolver{hops: hops, v4Bits: 24, v6Bits: 64}
		if useTrusted {
			r.trusted = trusted
		}
		client, proxy, ok := r.clientAddr(source, xff)
		if !ok {
			if client.IsValid() {
				t.Fatalf("not ok but client %v", client)
			}
			return
		}
		if !client.IsValid() || client.Is4In6() || client.Zone() != "" {
			t.Fatalf("client %v not normalised", client)
		}
		if proxy.IsValid() && proxy.Is4In6() {
			t.Fatalf("proxy %v not normalised", proxy)
		}
		key := r.keyOf(client)
		if strings.Contains(key, "/") {
			if _, err := netip.ParsePrefix(key); err != nil {
				t.Fatalf("key %q: %v", key, err)
			}
		} else if _, err := netip.ParseAddr(key); err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
		// The client is the source or one of the XFF entries, never invented.
		if client != proxy && !strings.Contains(xff, strings.TrimPrefix(client.String(), "::ffff:")) {
			// Spellings may differ (e.g. leading zeros); compare parsed entries instead.
			found := false
			for _, e := range strings.Split(xff, ",") {
				if a, ok := parseIP(e); ok && a == client {
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("client %v is neither the source %q nor in xff %q", client, source, xff)
			}
		}
	})
}
