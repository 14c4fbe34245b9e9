package extauthz

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// rawCodec sends and receives wire bytes as they are, so a test can send what Envoy sends: proto3 string
// fields holding bytes that are not UTF-8 (which proto.Marshal would refuse to produce).
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// withInvalidUTF8 marshals m and replaces every "XX" in its wire form by the two bytes 0xff 0xfe.
func withInvalidUTF8(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.ReplaceAll(b, []byte("XX"), []byte{0xff, 0xfe})
	if bytes.Equal(out, b) {
		t.Fatal("no XX placeholder in the message")
	}
	return out
}

// B31's kind, over the wire: Envoy puts raw header bytes and descriptor values into string fields. The
// standard codec answers INTERNAL before any handler runs, and Envoy's failure_mode_allow then lets the
// request through unlimited. With Codec the request is decided, and different invalid values stay apart.
func TestInvalidUTF8OnTheWire(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits, nil)
		call := func(method string, req []byte) []byte {
			t.Helper()
			var resp []byte
			if err := h.conn.Invoke(ctxT(t), method, &req, &resp, grpc.ForceCodecV2(rawCodec{})); err != nil {
				t.Fatalf("%s: %v", method, err)
			}
			return resp
		}
		codes := func(value string) []rlsv3.RateLimitResponse_Code {
			var got []rlsv3.RateLimitResponse_Code
			for range 6 {
				raw := call("/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
					withInvalidUTF8(t, rlsReq("api", desc("five", value))))
				var resp rlsv3.RateLimitResponse
				if err := proto.Unmarshal(raw, &resp); err != nil {
					t.Fatal(err)
				}
				got = append(got, resp.GetOverallCode())
			}
			return got
		}
		for _, value := range []string{"bad-XX", "XX-other"} {
			got := codes(value)
			for i, c := range got {
				want := rlsv3.RateLimitResponse_OK
				if i == 5 {
					want = rlsv3.RateLimitResponse_OVER_LIMIT
				}
				if c != want {
					t.Errorf("value %q call %d: got %v, want %v (each invalid value is its own bucket of 5)", value, i+1, c, want)
				}
			}
		}

		// ext_authz: an invalid byte in a plain header value must not skip the per-IP rule.
		ha := serve(t, b, authzUTF8Limits, nil)
		var allowedN int
		for range 3 {
			check := checkReq{source: "198.51.100.77", headers: map[string]string{"x-junk": "XX"}, ext: map[string]string{"domain": "utf"}}.proto()
			var raw []byte
			req := withInvalidUTF8(t, check)
			if err := ha.conn.Invoke(ctxT(t), "/envoy.service.auth.v3.Authorization/Check", &req, &raw, grpc.ForceCodecV2(rawCodec{})); err != nil {
				t.Fatalf("Check: %v", err)
			}
			var resp authv3.CheckResponse
			if err := proto.Unmarshal(raw, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.GetStatus().GetCode() == 0 {
				allowedN++
			}
		}
		if allowedN != 2 {
			t.Errorf("Checks with an invalid header byte: got %d allowed, want 2 of 3", allowedN)
		}
	})
}

const authzUTF8Limits = `
domain: utf
http_rules:
  - name: per_ip
    key: [client_ip]
    rate_limit: {unit: hour, requests_per_unit: 2}
`

func TestEscapeInvalidUTF8(t *testing.T) {
	tests := []struct{ give, want string }{
		{"plain", "plain"},
		{"ключ-😀", "ключ-😀"},
		{"a\xffb", "a\ufffdffb"},
		{"\xc0\x80", "\ufffdc0\ufffd80"},
	}
	for _, tt := range tests {
		got := string(escapeInvalidUTF8([]byte(tt.give)))
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("escape(%q): got %q, want %q", tt.give, got, tt.want)
		}
	}
	if a, b := escapeInvalidUTF8([]byte("\xff")), escapeInvalidUTF8([]byte("\xfe")); bytes.Equal(a, b) {
		t.Errorf("different invalid bytes escape alike: %q", a)
	}
}

func TestSanitizeKeepsUnknownAndNested(t *testing.T) {
	m := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1XX"}}}},
		ContextExtensions: map[string]string{"kXX": "vXX"},
	}}
	b := withInvalidUTF8(t, m)
	b = append(b, 0xf8, 0x3e, 0x01) // unknown field 999, varint 1
	fixed, err := sanitizeStrings(b, m.ProtoReflect().Descriptor(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var got authv3.CheckRequest
	if err := proto.Unmarshal(fixed, &got); err != nil {
		t.Fatalf("unmarshal sanitized: %v", err)
	}
	if addr := got.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress(); addr != "10.0.0.1\ufffdff\ufffdfe" {
		t.Errorf("nested string: got %q", addr)
	}
	if v := got.GetAttributes().GetContextExtensions()["k\ufffdff\ufffdfe"]; v != "v\ufffdff\ufffdfe" {
		t.Errorf("map entry: got %v", got.GetAttributes().GetContextExtensions())
	}
	if u := got.ProtoReflect().GetUnknown(); !bytes.Equal(u, []byte{0xf8, 0x3e, 0x01}) {
		t.Errorf("unknown field: got %x, want f83e01", u)
	}
}

// The 64 KiB bound on a descriptor value counts the bytes Envoy sent, not their escaped form (5 bytes per
// invalid byte): a 60,000-byte value of invalid bytes is decided, not refused with INVALID_ARGUMENT (which a
// fail-open Envoy would let through unlimited); past 65,536 bytes on the wire it is refused, with the field.
func TestInvalidUTF8SizeCountsWireBytes(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, rlsLimits, nil)
		call := func(value string) (rlsv3.RateLimitResponse_Code, error) {
			req := withInvalidUTF8(t, rlsReq("api", desc("five", value)))
			var raw []byte
			err := h.conn.Invoke(ctxT(t), "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", &req, &raw,
				grpc.ForceCodecV2(rawCodec{}))
			if err != nil {
				return 0, err
			}
			var resp rlsv3.RateLimitResponse
			if err := proto.Unmarshal(raw, &resp); err != nil {
				t.Fatal(err)
			}
			return resp.GetOverallCode(), nil
		}
		long := strings.Repeat("XX", 30_000) // 60,000 invalid bytes on the wire
		for i := range 6 {
			code, err := call(long)
			if err != nil {
				t.Fatalf("call %d with 60,000 invalid bytes: %v", i+1, err)
			}
			if want := map[bool]rlsv3.RateLimitResponse_Code{true: rlsv3.RateLimitResponse_OVER_LIMIT, false: rlsv3.RateLimitResponse_OK}[i == 5]; code != want {
				t.Errorf("call %d with 60,000 invalid bytes: %v, want %v", i+1, code, want)
			}
		}
		_, err := call(strings.Repeat("XX", 33_000)) // 66,000 bytes on the wire
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "descriptors[0].entries[0]") {
			t.Errorf("66,000 invalid bytes: got %v, want INVALID_ARGUMENT naming descriptors[0].entries[0]", err)
		}
	})
}
