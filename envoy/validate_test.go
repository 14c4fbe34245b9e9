package envoy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// extensionTypes is the resolver for every google.protobuf.Any in envoy.yaml: exactly the extensions the
// file may name. A typed_config of any other type fails to unmarshal ("unable to resolve"), so adding an
// extension to envoy.yaml means adding it here, where its validation rules get linked in too.
func extensionTypes() (*protoregistry.Types, error) {
	var r protoregistry.Types
	for _, m := range []proto.Message{
		&hcmv3.HttpConnectionManager{},
		&extauthzv3.ExtAuthz{},
		&extauthzv3.ExtAuthzPerRoute{},
		&ratelimitv3.RateLimit{},
		&ratelimitv3.RateLimitPerRoute{},
		&routerv3.Router{},
		&upstreamhttpv3.HttpProtocolOptions{},
		&streamv3.StdoutAccessLog{},
		&streamv3.StderrAccessLog{},
	} {
		if err := r.RegisterMessage(m.ProtoReflect().Type()); err != nil {
			return nil, fmt.Errorf("register %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
	}
	return &r, nil
}

// Canonical names of the extensions whose names carry meaning: per-route configs and protocol options are
// looked up by these names, not by type.
const (
	nameExtAuthz        = "envoy.filters.http.ext_authz"
	nameRateLimit       = "envoy.filters.http.ratelimit"
	nameRouter          = "envoy.filters.http.router"
	nameHTTPProtocolOpt = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// envoyFacts is what the deployment checks need to know about a valid envoy.yaml.
type envoyFacts struct {
	ListenerPorts    []uint32
	AdminAddress     string
	AdminPort        uint32
	Clusters         map[string][]hostPort // cluster name → endpoints
	XFFTrustedHops   uint32
	ExtAuthzTimeout  time.Duration // 0 when unset (Envoy's default 200ms applies)
	RateLimitTimeout time.Duration // 0 when unset (Envoy's default 20ms applies)
	// Descriptors are the ones the rate_limits actions can produce, with the domain they go to.
	Descriptors []domainDescriptor
	// AuthzDomains are the ext_authz context extension "domain" values.
	AuthzDomains []string
}

type domainDescriptor struct {
	Path       string
	Domain     string
	Descriptor descriptor
}

type hostPort struct {
	Host string
	Port uint32
}

func (h hostPort) String() string { return fmt.Sprintf("%s:%d", h.Host, h.Port) }

// validateEnvoy checks an envoy.yaml: syntax and schema first (any error there ends the check), then all
// semantic rules, whose violations are reported together.
func validateEnvoy(data []byte, limits limitDomains) (*envoyFacts, error) {
	js, err := sigsyaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	types, err := extensionTypes()
	if err != nil {
		return nil, err
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal(js, &b); err != nil {
		return nil, schemaError(js, err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	c := &collector{types: types, filterTypes: map[string]string{}}
	if err := c.walk("", b.ProtoReflect()); err != nil {
		return nil, err
	}
	return c.check(&b, limits)
}

// schemaError names the field where protojson stopped: its own message gives only an offset into the
// JSON rendering of the YAML.
func schemaError(js []byte, err error) error {
	m := jsonPosition.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Errorf("schema: %w", err)
	}
	col, _ := strconv.Atoi(m[2])
	hint := ""
	if unquotedNumber.MatchString(err.Error()) {
		hint = ` (durations are quoted strings such as "0.25s")`
	}
	return fmt.Errorf("schema: at %s: %w%s", jsonPathAt(js, int64(col-1)), err, hint)
}

var (
	jsonPosition   = regexp.MustCompile(`\(line (\d+):(\d+)\)`)
	unquotedNumber = regexp.MustCompile(`unexpected token -?[0-9.]+$`)
)

// jsonPathAt returns the path (a.b[2].c) of the value at offset in the single-line JSON document js.
func jsonPathAt(js []byte, offset int64) string {
	type frame struct {
		array bool
		index int
		key   string
		isKey bool // in an object, the next string token is a key
	}
	var stack []frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.array {
				fmt.Fprintf(&b, "[%d]", f.index)
			} else if f.key != "" {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			}
		}
		return b.String()
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	// valueDone advances the enclosing container after a complete value.
	valueDone := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].index++
			} else {
				stack[n-1].isKey = true
			}
		}
	}
	for {
		before := path()
		tok, err := dec.Token()
		if err != nil || dec.InputOffset() > offset {
			return before
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{':
				stack = append(stack, frame{isKey: true})
			case '[':
				stack = append(stack, frame{array: true})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case string:
			if n := len(stack); n > 0 && !stack[n-1].array && stack[n-1].isKey {
				stack[n-1].key, stack[n-1].isKey = tok, false
				continue
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

// collector walks the bootstrap, unpacking and validating every Any, and gathers what the semantic
// checks need, each with its path for messages.
type collector struct {
	types *protoregistry.Types

	grpcRefs      []ref // envoy_grpc cluster names
	routeRefs     []ref // route cluster names
	hcms          []at[*hcmv3.HttpConnectionManager]
	extAuthz      []at[*extauthzv3.ExtAuthz]
	rateLimit     []at[*ratelimitv3.RateLimit]
	perFilter     []ref             // typed_per_filter_config keys, with the Any's type in ref.detail
	filterTypes   map[string]string // HTTP filter name → typed_config type
	authzDomains  []ref             // ext_authz context_extensions "domain"
	rateLimitSets []rateLimitSet    // route-side rate_limits lists
}

type ref struct {
	path, name, detail string
}

type at[T any] struct {
	path string
	msg  T
}

// rateLimitSet is a list of route rate_limits and the domain that receives its descriptors ("" = the
// ratelimit filter's).
type rateLimitSet struct {
	path   string
	domain string
	limits []*routev3.RateLimit
}

func (c *collector) walk(path string, m protoreflect.Message) error {
	if m.Descriptor().FullName() == "google.protobuf.Any" {
		a, ok := m.Interface().(*anypb.Any)
		if !ok {
			return fmt.Errorf("%s: Any of Go type %T", path, m.Interface())
		}
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: c.types})
		if err != nil {
			return fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err)
		}
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				return fmt.Errorf("%s (%s): validate: %w", path, inner.ProtoReflect().Descriptor().Name(), err)
			}
		}
		return c.walk(path+"<"+string(inner.ProtoReflect().Descriptor().Name())+">", inner.ProtoReflect())
	}
	c.visit(path, m.Interface())
	var errs []error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := join(path, string(fd.Name()))
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				errs = append(errs, c.walk(fmt.Sprintf("%s[%d]", name, i), l.Get(i).Message()))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			var keys []protoreflect.MapKey
			v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
			for _, k := range keys {
				errs = append(errs, c.walk(fmt.Sprintf("%s[%s]", name, k.String()), v.Map().Get(k).Message()))
			}
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			errs = append(errs, c.walk(name, v.Message()))
		}
		return true
	})
	return errors.Join(errs...)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// visit records the messages the semantic checks look at. Messages inside an Any arrive unpacked.
func (c *collector) visit(path string, m proto.Message) {
	switch m := m.(type) {
	case *corev3.GrpcService_EnvoyGrpc:
		c.grpcRefs = append(c.grpcRefs, ref{path: path, name: m.GetClusterName()})
	case *routev3.RouteAction:
		if n := m.GetCluster(); n != "" {
			c.routeRefs = append(c.routeRefs, ref{path: path, name: n})
		}
		for i, w := range m.GetWeightedClusters().GetClusters() {
			c.routeRefs = append(c.routeRefs, ref{path: fmt.Sprintf("%s.weighted_clusters[%d]", path, i), name: w.GetName()})
		}
		if len(m.GetRateLimits()) > 0 {
			c.rateLimitSets = append(c.rateLimitSets, rateLimitSet{path: path + ".rate_limits", limits: m.GetRateLimits()})
		}
	case *routev3.VirtualHost:
		c.addPerFilter(path, m.GetTypedPerFilterConfig())
		if len(m.GetRateLimits()) > 0 {
			c.rateLimitSets = append(c.rateLimitSets, rateLimitSet{path: path + ".rate_limits", limits: m.GetRateLimits()})
		}
	case *routev3.Route:
		c.addPerFilter(path, m.GetTypedPerFilterConfig())
	case *routev3.WeightedCluster_ClusterWeight:
		c.addPerFilter(path, m.GetTypedPerFilterConfig())
	case *hcmv3.HttpConnectionManager:
		c.hcms = append(c.hcms, at[*hcmv3.HttpConnectionManager]{path, m})
		for _, f := range m.GetHttpFilters() {
			c.filterTypes[f.GetName()] = typeName(f.GetTypedConfig())
		}
	case *extauthzv3.ExtAuthz:
		c.extAuthz = append(c.extAuthz, at[*extauthzv3.ExtAuthz]{path, m})
	case *extauthzv3.ExtAuthzPerRoute:
		if d, ok := m.GetCheckSettings().GetContextExtensions()["domain"]; ok {
			c.authzDomains = append(c.authzDomains, ref{path: path + ".check_settings.context_extensions[domain]", name: d})
		}
	case *ratelimitv3.RateLimit:
		c.rateLimit = append(c.rateLimit, at[*ratelimitv3.RateLimit]{path, m})
		if len(m.GetRateLimits()) > 0 {
			c.rateLimitSets = append(c.rateLimitSets, rateLimitSet{path: path + ".rate_limits", limits: m.GetRateLimits()})
		}
	case *ratelimitv3.RateLimitPerRoute:
		if len(m.GetRateLimits()) > 0 {
			c.rateLimitSets = append(c.rateLimitSets, rateLimitSet{path: path + ".rate_limits", domain: m.GetDomain(), limits: m.GetRateLimits()})
		}
	}
}

func (c *collector) addPerFilter(path string, cfg map[string]*anypb.Any) {
	for name, a := range cfg {
		c.perFilter = append(c.perFilter, ref{path: path + ".typed_per_filter_config", name: name, detail: typeName(a)})
	}
}

// typeName is the full message name an Any carries ("" for nil).
func typeName(a *anypb.Any) string {
	u := a.GetTypeUrl()
	return u[strings.LastIndexByte(u, '/')+1:]
}

func fullName(m proto.Message) string { return string(m.ProtoReflect().Descriptor().FullName()) }

// perRouteTypeOf maps a filter's config type to the per-route config type it accepts ("" if none).
func perRouteTypeOf(filterType string) string {
	switch filterType {
	case fullName(&extauthzv3.ExtAuthz{}):
		return fullName(&extauthzv3.ExtAuthzPerRoute{})
	case fullName(&ratelimitv3.RateLimit{}):
		return fullName(&ratelimitv3.RateLimitPerRoute{})
	}
	return ""
}

// check applies the semantic rules; every violation is reported.
func (c *collector) check(b *bootstrapv3.Bootstrap, limits limitDomains) (*envoyFacts, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	facts := &envoyFacts{Clusters: map[string][]hostPort{}}

	if sa := b.GetAdmin().GetAddress().GetSocketAddress(); sa != nil {
		facts.AdminAddress, facts.AdminPort = sa.GetAddress(), sa.GetPortValue()
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		facts.ListenerPorts = append(facts.ListenerPorts, l.GetAddress().GetSocketAddress().GetPortValue())
	}

	// Clusters: unique names, endpoints, gRPC ones over HTTP/2 with a gRPC health check.
	clusters := map[string]*clusterv3.Cluster{}
	for i, cl := range b.GetStaticResources().GetClusters() {
		if _, dup := clusters[cl.GetName()]; dup {
			fail("static_resources.clusters[%d]: cluster %q defined twice", i, cl.GetName())
		}
		clusters[cl.GetName()] = cl
		for _, le := range cl.GetLoadAssignment().GetEndpoints() {
			for _, e := range le.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				facts.Clusters[cl.GetName()] = append(facts.Clusters[cl.GetName()], hostPort{sa.GetAddress(), sa.GetPortValue()})
			}
		}
	}
	grpcClusters := map[string]bool{}
	for _, r := range c.grpcRefs {
		if clusters[r.name] == nil {
			fail("%s: envoy_grpc cluster %q is not defined in static_resources.clusters", r.path, r.name)
			continue
		}
		grpcClusters[r.name] = true
	}
	for _, r := range c.routeRefs {
		if clusters[r.name] == nil {
			fail("%s: route cluster %q is not defined in static_resources.clusters", r.path, r.name)
		}
	}
	for _, name := range sortedKeys(grpcClusters) {
		if err := c.checkGRPCCluster(clusters[name]); err != nil {
			errs = append(errs, err)
		}
	}

	// HTTP connection managers: the edge, router last, each filter once.
	for _, h := range c.hcms {
		if !h.msg.GetUseRemoteAddress().GetValue() {
			fail("%s: use_remote_address must be true: Envoy is the edge and Floodgate keys on the client address it reports", h.path)
		}
		facts.XFFTrustedHops = h.msg.GetXffNumTrustedHops()
		filters := h.msg.GetHttpFilters()
		seen := map[string]bool{}
		for i, f := range filters {
			if seen[f.GetName()] {
				fail("%s.http_filters[%d]: filter name %q used twice", h.path, i, f.GetName())
			}
			seen[f.GetName()] = true
			isRouter := typeName(f.GetTypedConfig()) == fullName(&routerv3.Router{})
			if isRouter && i != len(filters)-1 {
				fail("%s.http_filters[%d]: the router (%s) must be the last HTTP filter, it is at %d of %d", h.path, i, f.GetName(), i+1, len(filters))
			}
			if !isRouter && i == len(filters)-1 {
				fail("%s.http_filters[%d]: the last HTTP filter must be the router, got %s", h.path, i, typeName(f.GetTypedConfig()))
			}
		}
		if len(filters) == 0 {
			fail("%s: no http_filters (the router is required)", h.path)
		}
	}

	// ext_authz and ratelimit: gRPC, v3 transport.
	if len(c.extAuthz) == 0 {
		fail("no ext_authz HTTP filter (%s)", fullName(&extauthzv3.ExtAuthz{}))
	}
	for _, a := range c.extAuthz {
		if a.msg.GetTransportApiVersion() != corev3.ApiVersion_V3 {
			fail("%s: transport_api_version is %s, must be V3 (Floodgate serves envoy.service.auth.v3 only)", a.path, a.msg.GetTransportApiVersion())
		}
		if a.msg.GetGrpcService().GetEnvoyGrpc() == nil {
			fail("%s: grpc_service.envoy_grpc must name the Floodgate cluster (Floodgate speaks gRPC)", a.path)
		}
		facts.ExtAuthzTimeout = a.msg.GetGrpcService().GetTimeout().AsDuration()
	}
	var rlDomain string
	var rlStage uint32
	if len(c.rateLimit) == 0 {
		fail("no ratelimit HTTP filter (%s)", fullName(&ratelimitv3.RateLimit{}))
	}
	for _, r := range c.rateLimit {
		rls := r.msg.GetRateLimitService()
		if rls.GetTransportApiVersion() != corev3.ApiVersion_V3 {
			fail("%s: rate_limit_service.transport_api_version is %s, must be V3", r.path, rls.GetTransportApiVersion())
		}
		if rls.GetGrpcService().GetEnvoyGrpc() == nil {
			fail("%s: rate_limit_service.grpc_service.envoy_grpc must name the Floodgate cluster", r.path)
		}
		rlDomain, rlStage = r.msg.GetDomain(), r.msg.GetStage()
		if limits[rlDomain] == nil {
			fail("%s: domain %q is not a domain of the example limits (%s)", r.path, rlDomain, strings.Join(limits.names(), ", "))
		}
		facts.RateLimitTimeout = r.msg.GetTimeout().AsDuration()
	}

	// Per-route configs belong to a filter of that name and are of its per-route type.
	for _, p := range c.perFilter {
		ft, ok := c.filterTypes[p.name]
		if !ok {
			fail("%s[%s]: no HTTP filter is named %q (filters: %s)", p.path, p.name, p.name, strings.Join(sortedKeys(c.filterTypes), ", "))
			continue
		}
		if want := perRouteTypeOf(ft); p.detail != want {
			fail("%s[%s]: per-route config is %s, the %s filter takes %q", p.path, p.name, p.detail, ft, want)
		}
	}
	for _, d := range c.authzDomains {
		facts.AuthzDomains = append(facts.AuthzDomains, d.name)
		dom := limits[d.name]
		switch {
		case dom == nil:
			fail("%s: ext_authz domain %q is not a domain of the example limits (%s)", d.path, d.name, strings.Join(limits.names(), ", "))
		case dom.httpRules == 0:
			fail("%s: ext_authz domain %q has no http_rules", d.path, d.name)
		}
	}

	// Descriptors: each rate_limits entry must reach a limited node of its domain, at the filter's stage.
	for _, set := range c.rateLimitSets {
		domain := set.domain
		if domain == "" {
			domain = rlDomain
		}
		dom := limits[domain]
		for i, rl := range set.limits {
			path := fmt.Sprintf("%s[%d]", set.path, i)
			if s := rl.GetStage(); s != nil && s.GetValue() != rlStage {
				fail("%s: stage %d, but the ratelimit filter runs stage %d: this descriptor is never sent", path, s.GetValue(), rlStage)
			}
			entries, err := descriptorOf(rl)
			if err != nil {
				fail("%s: %v", path, err)
				continue
			}
			if dom == nil {
				continue // reported above
			}
			facts.Descriptors = append(facts.Descriptors, domainDescriptor{Path: path, Domain: domain, Descriptor: entries})
			if !dom.limits(entries) {
				fail("%s: descriptor %s matches no limited descriptor of domain %q in the example limits", path, entries, domain)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return facts, nil
}

func (c *collector) checkGRPCCluster(cl *clusterv3.Cluster) error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("cluster %q: "+format, append([]any{cl.GetName()}, args...)...))
	}
	//lint:ignore SA1019 the deprecated field still selects HTTP/2 in Envoy
	http2 := cl.GetHttp2ProtocolOptions() != nil
	for key, a := range cl.GetTypedExtensionProtocolOptions() {
		if key != nameHTTPProtocolOpt {
			continue
		}
		var o upstreamhttpv3.HttpProtocolOptions
		if err := a.UnmarshalTo(&o); err != nil {
			fail("typed_extension_protocol_options[%s]: %v", key, err)
			continue
		}
		if o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil {
			http2 = true
		}
	}
	if !http2 {
		fail("used by envoy_grpc but not HTTP/2: set typed_extension_protocol_options[%s].explicit_http_config.http2_protocol_options (gRPC needs HTTP/2)", nameHTTPProtocolOpt)
	}
	hasGRPCHealth := slices.ContainsFunc(cl.GetHealthChecks(), func(h *corev3.HealthCheck) bool { return h.GetGrpcHealthCheck() != nil })
	if !hasGRPCHealth {
		fail("used by envoy_grpc but has no grpc_health_check: Envoy would keep sending to a draining Floodgate")
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// entry is one descriptor entry an action produces: a fixed value or one taken from the request.
type entry struct {
	key, value string
	dynamic    bool
}

type descriptor []entry

func (d descriptor) String() string {
	parts := make([]string, len(d))
	for i, e := range d {
		v := e.value
		if e.dynamic {
			v = "<from request>"
		}
		parts[i] = e.key + "=" + v
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// descriptorOf is the descriptor a route rate_limits entry yields, with Envoy's default keys.
func descriptorOf(rl *routev3.RateLimit) (descriptor, error) {
	if len(rl.GetActions()) == 0 {
		return nil, errors.New("no actions")
	}
	or := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	var d descriptor
	for i, a := range rl.GetActions() {
		var e entry
		switch s := a.GetActionSpecifier().(type) {
		case *routev3.RateLimit_Action_RemoteAddress_:
			e = entry{key: "remote_address", dynamic: true}
		case *routev3.RateLimit_Action_MaskedRemoteAddress_:
			e = entry{key: "masked_remote_address", dynamic: true}
		case *routev3.RateLimit_Action_RequestHeaders_:
			e = entry{key: s.RequestHeaders.GetDescriptorKey(), dynamic: true}
		case *routev3.RateLimit_Action_QueryParameters_:
			e = entry{key: s.QueryParameters.GetDescriptorKey(), dynamic: true}
		case *routev3.RateLimit_Action_GenericKey_:
			e = entry{key: or(s.GenericKey.GetDescriptorKey(), "generic_key"), value: s.GenericKey.GetDescriptorValue()}
		case *routev3.RateLimit_Action_HeaderValueMatch_:
			e = entry{key: or(s.HeaderValueMatch.GetDescriptorKey(), "header_match"), value: s.HeaderValueMatch.GetDescriptorValue()}
		case *routev3.RateLimit_Action_QueryParameterValueMatch_:
			e = entry{key: or(s.QueryParameterValueMatch.GetDescriptorKey(), "query_match"), value: s.QueryParameterValueMatch.GetDescriptorValue()}
		case *routev3.RateLimit_Action_RemoteAddressMatch_:
			e = entry{key: or(s.RemoteAddressMatch.GetDescriptorKey(), "remote_address_match"), value: s.RemoteAddressMatch.GetDescriptorValue()}
		case *routev3.RateLimit_Action_DestinationCluster_:
			e = entry{key: "destination_cluster", dynamic: true}
		case *routev3.RateLimit_Action_SourceCluster_:
			e = entry{key: "source_cluster", dynamic: true}
		case *routev3.RateLimit_Action_Metadata:
			e = entry{key: s.Metadata.GetDescriptorKey(), dynamic: true}
		default:
			return nil, fmt.Errorf("actions[%d]: action %T: its descriptor key cannot be checked; add it to descriptorOf", i, s)
		}
		d = append(d, e)
	}
	return d, nil
}

// limitDomains is the example limits configuration as this test reads it: per domain, the descriptor tree
// and the number of http_rules. It is read with yaml.v3 directly (not the config package) so that this
// test depends only on the file format.
type limitDomains map[string]*limitDomain

type limitDomain struct {
	descriptors []*descNode
	httpRules   int
}

type descNode struct {
	Key         string      `yaml:"key"`
	Value       string      `yaml:"value"`
	RateLimit   any         `yaml:"rate_limit"`
	RateLimits  any         `yaml:"rate_limits"`
	Descriptors []*descNode `yaml:"descriptors"`
}

func (l limitDomains) names() []string { return sortedKeys(l) }

// loadLimitDomains reads every *.yaml file of dir (one domain per file).
func loadLimitDomains(dir string) (limitDomains, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml in %s", dir)
	}
	out := limitDomains{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Domain      string      `yaml:"domain"`
			Descriptors []*descNode `yaml:"descriptors"`
			HTTPRules   []any       `yaml:"http_rules"`
		}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("read limits %s: %w", f, err)
		}
		if doc.Domain == "" || out[doc.Domain] != nil {
			return nil, fmt.Errorf("read limits %s: missing or repeated domain %q", f, doc.Domain)
		}
		out[doc.Domain] = &limitDomain{descriptors: doc.Descriptors, httpRules: len(doc.HTTPRules)}
	}
	return out, nil
}

// limits reports whether some request can make d match a node that carries a limit (rate_limit or
// rate_limits, unlimited included) at exactly d's depth. A fixed value must match the node's value
// (exact, or the node's "*" wildcard, or a node without value); a value from the request may be anything.
func (dom *limitDomain) limits(d descriptor) bool {
	var match func(nodes []*descNode, d descriptor) bool
	match = func(nodes []*descNode, d descriptor) bool {
		for _, n := range nodes {
			if n.Key != d[0].key {
				continue
			}
			if !d[0].dynamic && n.Value != "" && !wildcardMatch(n.Value, d[0].value) {
				continue
			}
			if len(d) == 1 {
				if n.RateLimit != nil || n.RateLimits != nil {
					return true
				}
				continue
			}
			if match(n.Descriptors, d[1:]) {
				return true
			}
		}
		return false
	}
	return len(d) > 0 && match(dom.descriptors, d)
}

// samples returns request values worth trying for d against the real matcher: fixed values as they are;
// for a value from the request, the values of the config nodes at that position (a wildcard's "*" made
// "x") and one arbitrary value. Each result is one full descriptor.
func (dom *limitDomain) samples(d descriptor) [][]string {
	var out [][]string
	var walk func(nodes []*descNode, i int, prefix []string)
	walk = func(nodes []*descNode, i int, prefix []string) {
		if i == len(d) {
			out = append(out, slices.Clone(prefix))
			return
		}
		values := []string{d[i].value}
		if d[i].dynamic {
			values = []string{"198.51.100.7"}
			for _, n := range nodes {
				if n.Key == d[i].key && n.Value != "" {
					values = append(values, strings.ReplaceAll(n.Value, "*", "x"))
				}
			}
		}
		for _, v := range values {
			var children []*descNode
			for _, n := range nodes {
				if n.Key == d[i].key && (n.Value == "" || wildcardMatch(n.Value, v)) {
					children = append(children, n.Descriptors...)
				}
			}
			walk(children, i+1, append(prefix, v))
		}
	}
	walk(dom.descriptors, 0, nil)
	return out
}

// wildcardMatch reports whether s matches pattern, where each "*" matches any run of characters.
func wildcardMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}
