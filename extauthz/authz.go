package extauthz

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/limiter"
)

// jwtFilter is the metadata namespace of Envoy's jwt_authn filter (payload_in_metadata).
const jwtFilter = "envoy.filters.http.jwt_authn"

// unknownClient is the client key when a request carries no usable address; such requests share one
// bucket instead of escaping the limit.
const unknownClient = "unknown"

// Check implements envoy.service.auth.v3.Authorization. Store errors never become gRPC errors: they are
// answered per OnStoreError inside a normal CheckResponse.
func (s *Service) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	w := s.getWork()
	defer s.putWork(w)
	w.obs.Service = "authz"

	attrs := req.GetAttributes()
	hreq := attrs.GetRequest().GetHttp()
	hv := headerView{m: hreq.GetHeaders(), raw: hreq.GetHeaderMap().GetHeaders()}
	domain := attrs.GetContextExtensions()["domain"]
	if domain == "" {
		domain = s.authzDomain
	}
	path := hreq.GetPath()
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	method, host := hreq.GetMethod(), hreq.GetHost()
	xff, _ := hv.get("x-forwarded-for")
	client, proxy, ok := s.ip.clientAddr(attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(), xff)
	clientKey := unknownClient
	if ok {
		clientKey = s.ip.keyOf(client)
	}
	w.obs.ClientIP = clientKey
	if proxy.IsValid() {
		w.obs.ProxyIP = proxy.String()
	}
	w.obs.Method, w.obs.Host, w.obs.Path = method, host, path

	snap := s.limits.Limits()
	w.obs.ConfigVersion = snap.Info().Version
	if !s.knownDomain(snap, domain) {
		w.obs.Code = OutcomeOK
		s.observe(&w.obs, start)
		return okResponse(nil), nil
	}
	w.obs.Domain = domain

	kctx := keyContext{hv: hv, clientKey: clientKey, path: path, method: method, host: host,
		meta: attrs.GetMetadataContext().GetFilterMetadata()[jwtFilter]}
	for _, rule := range snap.HTTPRules(domain) {
		if !rule.Matches(host, path, method) {
			continue
		}
		if rule.Unlimited || len(rule.Limits) == 0 {
			w.obs.Rules = append(w.obs.Rules, RuleResult{Rule: &rule.Rule,
				Result: limiter.Result{Allowed: true, Remaining: 1<<32 - 1}})
			continue
		}
		w.buf = appendPart(w.buf[:0], keyAuthz)
		w.buf = appendPart(w.buf, domain)
		w.buf = appendPart(w.buf, rule.Name)
		w.buf = appendPart(w.buf, rule.Path)
		prefix := len(w.buf)
		missing := -1
		for k, ks := range rule.Key {
			v, found := kctx.value(ks)
			if !found {
				missing = k
				break
			}
			w.buf = appendPart(w.buf, ks.Kind)
			w.buf = appendPart(w.buf, ks.Name)
			w.buf = appendPart(w.buf, v)
		}
		if missing >= 0 {
			switch rule.OnMissing {
			case config.OnMissingSkip:
				continue
			case config.OnMissingDeny:
				return s.denyMissing(w, rule, rule.Key[missing], start), nil
			}
			w.buf = appendPart(w.buf[:prefix], "missing:client_ip")
			w.buf = appendPart(w.buf, clientKey)
		}
		n := len(w.buf)
		for j := range rule.Limits {
			w.buf = appendIndex(w.buf[:n], j)
			w.addHit(limiter.Hit{
				Key:    finishKey(w.buf),
				Limit:  rule.Limits[j].Limit,
				Cost:   1,
				Shadow: rule.Shadow || s.shadow,
			}, hitRef{rule: &rule.Rule, limit: &rule.Limits[j]})
		}
	}

	allowed, failure := s.decide(ctx, w)
	w.collectResults()
	switch failure {
	case FailDeny:
		w.obs.Code, w.obs.FailureMode = OutcomeDegraded, FailDeny
		s.observe(&w.obs, start)
		return unavailableResponse(), nil
	case FailAllow:
		w.obs.Code, w.obs.FailureMode = OutcomeDegraded, FailAllow
		s.observe(&w.obs, start)
		return okResponse([]header{{HeaderDegraded, "1"}}), nil
	}

	best, never := -1, -1
	var retry time.Duration
	for i := range w.hits {
		if w.blocking(i) {
			retry = max(retry, w.results[i].RetryAfter)
			if never < 0 && w.neverFits(i) {
				never = i
			}
		}
		if !w.hits[i].Shadow && (best < 0 || w.constrains(i, best)) { // shadow limits stay invisible to clients
			best = i
		}
	}
	var q quota
	if best >= 0 {
		q = w.quotaOf(best)
		w.hdrs = appendQuotaHeaders(w.hdrs[:0], s.headers, q)
	}
	if failure == FailLocal {
		w.hdrs = append(w.hdrs, header{HeaderDegraded, "1"})
		w.obs.Code, w.obs.FailureMode = OutcomeDegraded, FailLocal
	}
	var resp *authv3.CheckResponse
	if allowed {
		if w.obs.Code == 0 {
			w.obs.Code = OutcomeOK
		}
		resp = okResponse(w.hdrs)
	} else {
		if w.obs.Code == 0 {
			w.obs.Code = OutcomeOverLimit
		}
		if never >= 0 { // waiting cannot help: no Retry-After
			resp = tooManyResponse(w.hdrs, neverBody(w.quotaOf(never), w.hits[never].Cost))
		} else {
			w.hdrs = append(w.hdrs, header{headerRetryAfter, retryAfterValue(retry)})
			resp = tooManyResponse(w.hdrs, problemBody(q, retry))
		}
	}
	s.observe(&w.obs, start)
	return resp, nil
}

// denyMissing answers 400 for a rule whose key source ks is missing and whose OnMissing is "deny": a
// client error, not a rate, so no rate limit headers, no Retry-After, nothing counted and no store call.
func (s *Service) denyMissing(w *work, rule *config.HTTPRule, ks config.KeySource, start time.Time) *authv3.CheckResponse {
	w.obs.Rules = append(w.obs.Rules, RuleResult{Rule: &rule.Rule})
	w.obs.Code = OutcomeInvalid
	resp := badRequestResponse(missingBody(ks, rule.Name))
	s.observe(&w.obs, start)
	return resp
}

// keyContext holds what key sources read.
type keyContext struct {
	hv                            headerView
	clientKey, path, method, host string
	meta                          *structpb.Struct
}

// value returns the key part for ks and whether it is present (an empty value counts as missing).
func (k *keyContext) value(ks config.KeySource) (string, bool) {
	var v string
	switch ks.Kind {
	case "client_ip":
		v = k.clientKey
	case "header":
		v, _ = k.hv.get(ks.Name)
	case "path":
		v = k.path
	case "method":
		v = k.method
	case "host":
		v = k.host
	case "jwt_claim":
		v = jwtClaim(k.meta, ks.Name)
	}
	if v == "" {
		return "", false
	}
	if ks.Hash {
		v = hashHex(v)
	}
	return v, true
}

// jwtClaim finds claim in any payload struct jwt_authn stored under its namespace (the
// payload_in_metadata name varies per provider); with several providers the first name in sorted order
// that has the claim wins.
func jwtClaim(meta *structpb.Struct, claim string) string {
	fields := meta.GetFields()
	if len(fields) == 0 {
		return ""
	}
	if len(fields) == 1 {
		for _, v := range fields {
			return claimValue(v.GetStructValue().GetFields()[claim])
		}
	}
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if s := claimValue(fields[n].GetStructValue().GetFields()[claim]); s != "" {
			return s
		}
	}
	return ""
}

// claimValue renders a claim as a key part: strings as they are, numbers and booleans in canonical form,
// lists and objects as JSON. Null or absent gives "".
func claimValue(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(k.NumberValue, 'g', -1, 64)
	case *structpb.Value_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	case *structpb.Value_ListValue, *structpb.Value_StructValue:
		b, err := protojson.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	return ""
}

// headerView reads request headers from either form Envoy sends: the lower-case map (repeats joined with
// ",") or the raw header_map (one entry per header line), which wins when present.
type headerView struct {
	m   map[string]string
	raw []*corev3.HeaderValue
}

// get returns the value of header name (lower-case); repeated raw entries are joined with ",".
func (h headerView) get(name string) (string, bool) {
	if len(h.raw) == 0 {
		v, ok := h.m[name]
		return v, ok
	}
	var first string
	var joined []byte
	n := 0
	for _, e := range h.raw {
		if !strings.EqualFold(e.GetKey(), name) {
			continue
		}
		v := e.GetValue()
		if v == "" && len(e.GetRawValue()) > 0 {
			v = string(e.GetRawValue())
		}
		switch n {
		case 0:
			first = v
		case 1:
			joined = append(append(append(joined, first...), ','), v...)
		default:
			joined = append(append(joined, ','), v...)
		}
		n++
	}
	switch n {
	case 0:
		return "", false
	case 1:
		return first, true
	}
	return string(joined), true
}

// headerOptions renders hs as Envoy header options that replace any header of the same name.
func headerOptions(hs []header) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	opts := make([]corev3.HeaderValueOption, len(hs))
	vals := make([]corev3.HeaderValue, len(hs))
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		vals[i].Key, vals[i].Value = h.name, h.value
		opts[i].Header = &vals[i]
		opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		out[i] = &opts[i]
	}
	return out
}

// okResponse allows the request and adds hs to the client's response.
func okResponse(hs []header) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			ResponseHeadersToAdd: headerOptions(hs),
		}},
	}
}

// tooManyResponse denies with HTTP 429: status RESOURCE_EXHAUSTED, the headers hs (rate limit headers and
// Retry-After when waiting helps) and the problem+json body.
func tooManyResponse(hs []header, body []byte) *authv3.CheckResponse {
	hs = append(hs, header{headerContentType, problemJSON})
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.ResourceExhausted), Message: "rate limited"},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests},
			Headers: headerOptions(hs),
			Body:    string(body),
		}},
	}
}

// badRequestResponse denies with HTTP 400 (status INVALID_ARGUMENT, 3) and the problem+json body.
func badRequestResponse(body []byte) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "missing rate limit key"},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_BadRequest},
			Headers: headerOptions([]header{{headerContentType, problemJSON}}),
			Body:    string(body),
		}},
	}
}

// unavailableResponse is the fail-closed answer: status UNAVAILABLE (14) and HTTP 503, never 429.
func unavailableResponse() *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.Unavailable), Message: "rate limit store unavailable"},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
			Headers: headerOptions([]header{{headerContentType, problemJSON}}),
			Body:    unavailableBody,
		}},
	}
}
