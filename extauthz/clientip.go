package extauthz

import (
	"net/netip"
	"strings"
)

// ipResolver finds the client address of an ext_authz request and turns it into the key part used for
// counting. It is immutable after New.
type ipResolver struct {
	hops    int            // trusted X-Forwarded-For hops, the calling Envoy included (0 = source address only)
	trusted []netip.Prefix // trusted proxy networks; when set they decide instead of hops
	v4Bits  int            // IPv4 prefix length of the key (32 = the address)
	v6Bits  int            // IPv6 prefix length of the key (128 = the address)
}

// clientAddr returns the client address and the proxy (peer) address of a request. source is
// attributes.source.address.socket_address.address, xff the x-forwarded-for header (entries joined by ",").
// ok is false when no valid address is known.
//
// Rules (see doc.go): with trusted networks, the source must itself be trusted for X-Forwarded-For to be
// read; the entries are then walked from the right, skipping trusted addresses, and the first untrusted one
// is the client (all trusted: the leftmost). Otherwise, with hops = N >= 1, the client is the N-th entry from
// the right (Envoy appended the peer as the rightmost one, so N = 1 is the peer itself). Fewer entries than
// needed, or an entry that is not an IP address, fall back to the source address.
func (r *ipResolver) clientAddr(source, xff string) (client, proxy netip.Addr, ok bool) {
	src, srcOK := parseIP(source)
	if srcOK {
		proxy = src
	}
	switch {
	case len(r.trusted) > 0:
		if !srcOK || !r.isTrusted(src) || xff == "" {
			return src, proxy, srcOK
		}
		last := src
		for rest := xff; ; {
			entry, more := lastEntry(rest)
			a, valid := parseIP(entry)
			if !valid {
				return src, proxy, srcOK
			}
			if !r.isTrusted(a) {
				return a, proxy, true
			}
			last = a
			if !more {
				return last, proxy, true
			}
			rest = rest[:len(rest)-len(entry)-1]
		}
	case r.hops > 0 && xff != "":
		rest := xff
		for i := 1; ; i++ {
			entry, more := lastEntry(rest)
			if i == r.hops {
				if a, valid := parseIP(entry); valid {
					return a, proxy, true
				}
				return src, proxy, srcOK
			}
			if !more {
				return src, proxy, srcOK
			}
			rest = rest[:len(rest)-len(entry)-1]
		}
	}
	return src, proxy, srcOK
}

// lastEntry returns the raw (untrimmed) text after the last comma of s and whether a comma exists.
func lastEntry(s string) (entry string, more bool) {
	i := strings.LastIndexByte(s, ',')
	if i < 0 {
		return s, false
	}
	return s[i+1:], true
}

func (r *ipResolver) isTrusted(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseIP parses one address as Envoy or a proxy writes it: surrounding blanks, IPv6 in brackets and an
// optional port are accepted; IPv4-mapped IPv6 becomes IPv4 and zones are dropped.
func parseIP(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
				a, err = netip.ParseAddr(s[1 : len(s)-1])
			}
			if err != nil {
				return netip.Addr{}, false
			}
		} else {
			a = ap.Addr()
		}
	}
	return a.Unmap().WithZone(""), true
}

// keyOf renders a as the counting key: IPv4 masked to v4Bits, IPv6 masked to v6Bits; a full-length prefix
// is written as the plain address ("198.51.100.7"), a shorter one in CIDR form ("2001:db8:1:2::/64").
func (r *ipResolver) keyOf(a netip.Addr) string {
	bits := r.v6Bits
	if a.Is4() {
		bits = r.v4Bits
	}
	if bits >= a.BitLen() {
		return a.String()
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a.String()
	}
	return p.String()
}
