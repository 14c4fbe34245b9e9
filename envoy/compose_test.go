package envoy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The deployment files, by their path from the repository root. Mutations edit these by name.
const (
	fileCompose      = "docker-compose.yaml"
	fileDockerfile   = "Dockerfile"
	fileDockerignore = ".dockerignore"
	filePrometheus   = "deploy/prometheus/prometheus.yml"
	fileEnvoy        = "envoy/envoy.yaml"
	fileGoMod        = "go.mod"
)

// composeFile is the part of the Compose specification this project uses. Decoding is strict: an unknown
// field (a typo such as "volume:") or a repeated key is an error.
type composeFile struct {
	Name     string                     `yaml:"name"`
	Services map[string]*composeService `yaml:"services"`
	Volumes  map[string]struct{}        `yaml:"volumes"`
}

type composeService struct {
	Image       string                   `yaml:"image"`
	Build       string                   `yaml:"build"`
	Command     []string                 `yaml:"command"`
	Environment map[string]string        `yaml:"environment"`
	Volumes     []string                 `yaml:"volumes"`
	Expose      []string                 `yaml:"expose"`
	Ports       []string                 `yaml:"ports"`
	ReadOnly    bool                     `yaml:"read_only"`
	DependsOn   map[string]composeDepend `yaml:"depends_on"`
	Healthcheck *composeHealthcheck      `yaml:"healthcheck"`
	Restart     string                   `yaml:"restart"`
}

type composeDepend struct {
	Condition string `yaml:"condition"`
}

type composeHealthcheck struct {
	Test     []string `yaml:"test"`
	Interval string   `yaml:"interval"`
	Timeout  string   `yaml:"timeout"`
	Retries  int      `yaml:"retries"`
}

type prometheusFile struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
		ScrapeTimeout  string `yaml:"scrape_timeout"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// exposed lists the container ports a service declares with expose.
func (s *composeService) exposed() []uint32 {
	var out []uint32
	for _, p := range s.Expose {
		if n, err := strconv.ParseUint(p, 10, 16); err == nil {
			out = append(out, uint32(n))
		}
	}
	return out
}

// published maps each published container port to the host IP it is bound to ("" = all interfaces).
func (s *composeService) published() (map[uint32]string, error) {
	out := map[uint32]string{}
	for _, p := range s.Ports {
		parts := strings.Split(p, ":")
		var ip, container string
		switch len(parts) {
		case 2:
			container = parts[1]
		case 3:
			ip, container = parts[0], parts[2]
		default:
			return nil, fmt.Errorf("port %q: want [IP:]HOST:CONTAINER", p)
		}
		n, err := strconv.ParseUint(container, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("port %q: %w", p, err)
		}
		out[uint32(n)] = ip
	}
	return out, nil
}

// mounts maps each bind mount's container path to its host path.
func (s *composeService) mounts() map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			out[parts[1]] = parts[0]
		}
	}
	return out
}

// flags reads "--name=value" and "--name value" arguments.
func flags(args []string) (map[string]string, error) {
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return nil, fmt.Errorf("argument %q is not a flag", a)
		}
		name := strings.TrimLeft(a, "-")
		if k, v, ok := strings.Cut(name, "="); ok {
			out[k] = v
			continue
		}
		if i+1 == len(args) {
			return nil, fmt.Errorf("flag %q has no value", a)
		}
		out[name] = args[i+1]
		i++
	}
	return out, nil
}

func splitHostPort(s string) (string, uint32, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port of %q: %w", s, err)
	}
	return host, uint32(n), nil
}

// goModVersions returns go.mod's go directive and the go-control-plane envoy module version.
func goModVersions(goMod string) (goVersion, envoyModule string) {
	for _, line := range strings.Split(goMod, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "go":
			goVersion = f[1]
		case len(f) >= 2 && f[0] == "github.com/envoyproxy/go-control-plane/envoy":
			envoyModule = f[1]
		case len(f) >= 3 && f[0] == "require" && f[1] == "github.com/envoyproxy/go-control-plane/envoy":
			envoyModule = f[2]
		}
	}
	return goVersion, envoyModule
}

// minor returns "1.40" for "v1.40.0", "1.40", "1.40.3-foo".
func minor(v string) string {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

var (
	dockerfileFrom   = regexp.MustCompile(`(?m)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$`)
	dockerfileExpose = regexp.MustCompile(`(?m)^EXPOSE\s+(.+)$`)
	dockerfileEntry  = regexp.MustCompile(`(?m)^ENTRYPOINT\s+(.+)$`)
)

// checkDeployment checks that the deployment files agree with each other and with envoy.yaml. files maps
// repository paths to contents; root is where mounted host paths must exist.
func checkDeployment(files map[string]string, root string, limits limitDomains) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	env, err := validateEnvoy([]byte(files[fileEnvoy]), limits)
	if err != nil {
		return fmt.Errorf("%s: %w", fileEnvoy, err)
	}
	var compose composeFile
	if err := decodeStrict([]byte(files[fileCompose]), &compose); err != nil {
		return fmt.Errorf("%s: %w", fileCompose, err)
	}
	var prom prometheusFile
	if err := decodeStrict([]byte(files[filePrometheus]), &prom); err != nil {
		return fmt.Errorf("%s: %w", filePrometheus, err)
	}
	svc := compose.Services
	for _, name := range []string{"envoy", "floodgate", "redis", "upstream", "prometheus", "postgres", "grafana"} {
		if svc[name] == nil {
			fail("%s: service %q is missing", fileCompose, name)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	goVersion, envoyModule := goModVersions(files[fileGoMod])

	// Every bind-mounted host path exists; depends_on names services.
	for _, name := range sortedKeys(svc) {
		for target, src := range svc[name].mounts() {
			if !strings.HasPrefix(src, ".") {
				if _, ok := compose.Volumes[src]; !ok {
					fail("%s: service %s mounts the volume %q, which is not declared under volumes", fileCompose, name, src)
				}
				continue // a named volume
			}
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(src))); err != nil {
				fail("%s: service %s mounts %s at %s, which does not exist in the repository", fileCompose, name, src, target)
			}
		}
		for dep := range svc[name].DependsOn {
			if svc[dep] == nil {
				fail("%s: service %s depends on %q, which is not a service", fileCompose, name, dep)
			}
		}
	}

	// Envoy: the image is the release of the envoy module the config is validated with; it runs the
	// mounted envoy.yaml; its listener and admin ports are declared and published (admin on loopback).
	e := svc["envoy"]
	if want := "envoyproxy/envoy:v" + minor(envoyModule) + "."; !strings.HasPrefix(e.Image, want) {
		fail("%s: envoy image %q is not a v%s.x release (go.mod has github.com/envoyproxy/go-control-plane/envoy %s, which envoy.yaml is validated against)", fileCompose, e.Image, minor(envoyModule), envoyModule)
	}
	if i := slices.Index(e.Command, "-c"); i < 0 || i+1 >= len(e.Command) {
		fail("%s: envoy command %q has no -c CONFIG", fileCompose, e.Command)
	} else if src, ok := e.mounts()[e.Command[i+1]]; !ok || path.Clean(src) != path.Clean("./"+fileEnvoy) {
		fail("%s: envoy runs -c %s, but ./%s is not mounted there (mounts %v)", fileCompose, e.Command[i+1], fileEnvoy, e.Volumes)
	}
	envoyPublished, err := e.published()
	if err != nil {
		fail("%s: envoy: %v", fileCompose, err)
	}
	for _, p := range env.ListenerPorts {
		if !slices.Contains(e.exposed(), p) {
			fail("%s: envoy does not expose its listener port %d", fileCompose, p)
		}
		if _, ok := envoyPublished[p]; !ok {
			fail("%s: envoy does not publish its listener port %d", fileCompose, p)
		}
	}
	if !slices.Contains(e.exposed(), env.AdminPort) {
		fail("%s: envoy does not expose its admin port %d", fileCompose, env.AdminPort)
	}
	if ip, ok := envoyPublished[env.AdminPort]; ok && ip != "127.0.0.1" {
		fail("%s: envoy's admin port %d is published on %q: bind it to 127.0.0.1 (the admin interface can stop Envoy)", fileCompose, env.AdminPort, ip)
	}
	if env.AdminAddress == "127.0.0.1" {
		fail("%s: admin listens on 127.0.0.1 inside the container: Prometheus cannot scrape it", fileEnvoy)
	}

	// Every Envoy cluster endpoint is a compose service listening on that port.
	for _, cluster := range sortedKeys(env.Clusters) {
		for _, hp := range env.Clusters[cluster] {
			s := svc[hp.Host]
			if s == nil {
				fail("%s: cluster %q points at %s, but %s has no service %q", fileEnvoy, cluster, hp, fileCompose, hp.Host)
				continue
			}
			if !slices.Contains(s.exposed(), hp.Port) {
				fail("%s: cluster %q points at %s, but service %s exposes %v", fileEnvoy, cluster, hp, hp.Host, s.Expose)
			}
		}
	}
	// The upstream echo server listens where it says it does.
	if up := svc["upstream"]; up.Environment["HTTP_PORT"] != "" {
		if p, err := strconv.ParseUint(up.Environment["HTTP_PORT"], 10, 16); err != nil || !slices.Contains(up.exposed(), uint32(p)) {
			fail("%s: upstream listens on HTTP_PORT=%s but exposes %v", fileCompose, up.Environment["HTTP_PORT"], up.Expose)
		}
	}

	// Floodgate: its flags agree with Envoy (gRPC port, trusted hops, timeouts), Redis, Prometheus, the
	// Dockerfile and its mounted config.
	fg := svc["floodgate"]
	fl, err := flags(fg.Command)
	if err != nil {
		fail("%s: floodgate command: %v", fileCompose, err)
	}
	var grpcPort, httpPort uint32
	if _, p, err := splitHostPort(fl["grpc-addr"]); err != nil {
		fail("%s: floodgate --grpc-addr %q: %v", fileCompose, fl["grpc-addr"], err)
	} else {
		grpcPort = p
	}
	if h, p, err := splitHostPort(fl["http-addr"]); err != nil {
		fail("%s: floodgate --http-addr %q: %v", fileCompose, fl["http-addr"], err)
	} else {
		httpPort = p
		if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
			fail("%s: floodgate --http-addr %s is loopback: Prometheus (another container) cannot scrape /metrics", fileCompose, fl["http-addr"])
		} else {
			// Beyond loopback Floodgate refuses to start without authentication (or --insecure-no-auth).
			authed := fl["insecure-no-auth"] != ""
			for _, name := range []string{"auth-hs256-secret", "auth-hs256-secret-file", "auth-jwks-url", "auth-oidc-issuer"} {
				env := "FLOODGATE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
				if fl[name] != "" || fg.Environment[env] != "" {
					authed = true
				}
			}
			if !authed {
				fail("%s: floodgate --http-addr %s is beyond loopback but no authentication is configured (it would refuse to start)", fileCompose, fl["http-addr"])
			}
		}
	}
	for _, p := range []uint32{grpcPort, httpPort} {
		if p != 0 && !slices.Contains(fg.exposed(), p) {
			fail("%s: floodgate listens on %d (--grpc-addr %s, --http-addr %s) but exposes %v", fileCompose, p, fl["grpc-addr"], fl["http-addr"], fg.Expose)
		}
	}
	if eps := env.Clusters["floodgate"]; len(eps) == 0 {
		fail("%s: no cluster named floodgate", fileEnvoy)
	} else {
		for _, hp := range eps {
			if hp.Port != grpcPort {
				fail("%s: cluster floodgate points at %s, but floodgate's --grpc-addr is %s", fileEnvoy, hp, fl["grpc-addr"])
			}
		}
	}
	// Floodgate's hops count every proxy that appended to X-Forwarded-For, the calling Envoy included, so
	// behind k proxies (Envoy's xff_num_trusted_hops k) it is k+1; 0 (the source address) is right only at the edge.
	if hops, err := strconv.Atoi(fl["trusted-proxy-hops"]); err != nil || !(uint32(hops) == env.XFFTrustedHops+1 || (hops == 0 && env.XFFTrustedHops == 0)) {
		fail("%s: floodgate --trusted-proxy-hops=%s but envoy.yaml has xff_num_trusted_hops %d: want %d (the proxies in front of Envoy plus Envoy itself)", fileCompose, fl["trusted-proxy-hops"], env.XFFTrustedHops, env.XFFTrustedHops+1)
	}
	if st, err := time.ParseDuration(fl["store-timeout"]); err != nil {
		fail("%s: floodgate --store-timeout %q: %v", fileCompose, fl["store-timeout"], err)
	} else {
		for name, limit := range map[string]time.Duration{"ext_authz": or(env.ExtAuthzTimeout, 200*time.Millisecond), "ratelimit": or(env.RateLimitTimeout, 20*time.Millisecond)} {
			if st >= limit {
				fail("%s: floodgate --store-timeout %s is not below Envoy's %s timeout %s: Envoy would time out before Floodgate's failure mode answers", fileCompose, st, name, limit)
			}
		}
	}
	switch fl["on-store-error"] {
	case "", "allow", "deny", "local":
	default:
		fail("%s: floodgate --on-store-error %q is not allow, deny or local", fileCompose, fl["on-store-error"])
	}
	if u := fl["redis-url"]; u != "" {
		hostPort := strings.SplitN(strings.TrimPrefix(strings.TrimPrefix(u, "rediss://"), "redis://"), "/", 2)[0]
		if _, after, ok := strings.Cut(hostPort, "@"); ok {
			hostPort = after
		}
		h, p, err := splitHostPort(hostPort)
		switch {
		case err != nil:
			fail("%s: floodgate --redis-url %q: %v", fileCompose, u, err)
		case svc[h] == nil:
			fail("%s: floodgate --redis-url %q names host %q, which is not a service", fileCompose, u, h)
		case !slices.Contains(svc[h].exposed(), p):
			fail("%s: floodgate --redis-url %q uses port %d, but service %s exposes %v", fileCompose, u, p, h, svc[h].Expose)
		default:
			if _, ok := fg.DependsOn[h]; !ok {
				fail("%s: floodgate uses Redis service %s but does not depend on it", fileCompose, h)
			}
		}
	}
	if cfg := fl["config"]; cfg != "" {
		mounted := false
		for target, src := range fg.mounts() {
			if cfg != target && !strings.HasPrefix(cfg, strings.TrimSuffix(target, "/")+"/") {
				continue
			}
			mounted = true
			if path.Clean(src) != "examples" {
				fail("%s: floodgate --config %s serves %s, but envoy.yaml's domains and descriptors are checked against ./examples", fileCompose, cfg, src)
			}
		}
		if !mounted {
			fail("%s: floodgate --config %s is not inside a mounted volume (%v)", fileCompose, cfg, fg.Volumes)
		}
	}
	if fg.Build != "." {
		fail("%s: floodgate builds %q, want \".\" (the root Dockerfile)", fileCompose, fg.Build)
	}

	// Dockerfile: builder Go = go.mod's, EXPOSE = Floodgate's ports, the entrypoint is the binary.
	df := files[fileDockerfile]
	froms := dockerfileFrom.FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		fail("%s: want a multi-stage build (builder and final image), got %d FROM lines", fileDockerfile, len(froms))
	} else {
		builder := froms[0][1]
		if want := "golang:" + minor(goVersion); builder != want && !strings.HasPrefix(builder, want+".") && !strings.HasPrefix(builder, want+"-") {
			fail("%s: builder image %s does not match go.mod's go %s (want %s or a patch of it)", fileDockerfile, builder, goVersion, want)
		}
		if final := froms[len(froms)-1][1]; !strings.HasPrefix(final, "gcr.io/distroless/static") {
			fail("%s: final image %s is not distroless static (the binary is built with CGO_ENABLED=0)", fileDockerfile, final)
		}
	}
	var exposed []uint32
	for _, m := range dockerfileExpose.FindAllStringSubmatch(df, -1) {
		for _, p := range strings.Fields(m[1]) {
			n, err := strconv.ParseUint(strings.TrimSuffix(p, "/tcp"), 10, 16)
			if err != nil {
				fail("%s: EXPOSE %q: %v", fileDockerfile, p, err)
				continue
			}
			exposed = append(exposed, uint32(n))
		}
	}
	slices.Sort(exposed)
	want := []uint32{grpcPort, httpPort}
	slices.Sort(want)
	if !slices.Equal(exposed, want) {
		fail("%s: EXPOSE %v, but floodgate listens on %v (--grpc-addr %s, --http-addr %s)", fileDockerfile, exposed, want, fl["grpc-addr"], fl["http-addr"])
	}
	if m := dockerfileEntry.FindStringSubmatch(df); m == nil || strings.TrimSpace(m[1]) != `["/floodgate"]` {
		fail("%s: want ENTRYPOINT [\"/floodgate\"] (exec form: distroless has no shell), got %q", fileDockerfile, m)
	}
	if !strings.Contains(df, "CGO_ENABLED=0") {
		fail("%s: the build must set CGO_ENABLED=0 for the static distroless image", fileDockerfile)
	}

	// .dockerignore keeps every build input in the context.
	for _, p := range []string{"go.mod", "go.sum", "cmd/floodgate/main.go", "limiter/limiter.go", "examples/ratelimit.yaml", "examples/examples.go"} {
		if pat := dockerIgnored(files[fileDockerignore], p); pat != "" {
			fail("%s: pattern %q excludes %s, which the Docker build needs", fileDockerignore, pat, p)
		}
	}

	// Prometheus: its config is the mounted file, and its targets are Floodgate's /metrics and Envoy's admin.
	pr := svc["prometheus"]
	if src, ok := pr.mounts()["/etc/prometheus/prometheus.yml"]; !ok || path.Clean(src) != path.Clean("./"+filePrometheus) {
		fail("%s: prometheus must mount ./%s at /etc/prometheus/prometheus.yml (mounts %v)", fileCompose, filePrometheus, pr.Volumes)
	}
	wantTargets := map[string]string{
		fmt.Sprintf("floodgate:%d", httpPort):  "/metrics",
		fmt.Sprintf("envoy:%d", env.AdminPort): "/stats/prometheus",
	}
	found := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		mp := sc.MetricsPath
		if mp == "" {
			mp = "/metrics"
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				h, p, err := splitHostPort(target)
				if err != nil {
					fail("%s: job %s: target %q: %v", filePrometheus, sc.JobName, target, err)
					continue
				}
				if svc[h] == nil {
					fail("%s: job %s: target %s is not a compose service", filePrometheus, sc.JobName, target)
					continue
				}
				if !slices.Contains(svc[h].exposed(), p) {
					fail("%s: job %s: target %s, but service %s exposes %v", filePrometheus, sc.JobName, target, h, svc[h].Expose)
				}
				if wantPath, ok := wantTargets[target]; ok {
					found[target] = true
					if mp != wantPath {
						fail("%s: job %s scrapes %s%s, want %s", filePrometheus, sc.JobName, target, mp, wantPath)
					}
				}
			}
		}
	}
	for _, target := range sortedKeys(wantTargets) {
		if !found[target] {
			fail("%s: no job scrapes %s%s", filePrometheus, target, wantTargets[target])
		}
	}
	return errors.Join(errs...)
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// dockerIgnored returns the .dockerignore pattern that excludes p (a slash path from the context root),
// or "" when p stays in the build context. Patterns match a path or any of its parent directories; a
// later "!" pattern re-includes. "**" is not supported (the file must not use it).
func dockerIgnored(ignore, p string) string {
	excludedBy := ""
	for _, line := range strings.Split(ignore, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		pat := path.Clean(strings.TrimPrefix(strings.TrimPrefix(line, "!"), "/"))
		matched := false
		for q := p; q != "." && q != "/"; q = path.Dir(q) {
			if ok, _ := path.Match(pat, q); ok {
				matched = true
				break
			}
		}
		if matched {
			if neg {
				excludedBy = ""
			} else {
				excludedBy = line
			}
		}
	}
	return excludedBy
}

func readDeployment(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, f := range []string{fileCompose, fileDockerfile, fileDockerignore, filePrometheus, fileEnvoy, fileGoMod} {
		files[f] = readFile(t, filepath.Join("..", filepath.FromSlash(f)))
	}
	return files
}

func TestDeploymentFilesAgree(t *testing.T) {
	if err := checkDeployment(readDeployment(t), "..", exampleLimits(t)); err != nil {
		t.Fatalf("deployment files disagree:\n%v", err)
	}
}

func TestDeploymentRejectsDisagreement(t *testing.T) {
	valid := readDeployment(t)
	limits := exampleLimits(t)
	tests := []struct {
		name    string
		file    string
		give    mutation
		wantErr string
	}{
		{
			name:    "floodgate gRPC port differs from the envoy cluster",
			file:    fileCompose,
			give:    replace("--grpc-addr=:8081", "--grpc-addr=:9091"),
			wantErr: "cluster floodgate points at floodgate:8081, but floodgate's --grpc-addr is :9091",
		},
		{
			name:    "envoy cluster port differs from floodgate",
			file:    fileEnvoy,
			give:    replace("port_value: 8081", "port_value: 8082"),
			wantErr: "cluster \"floodgate\" points at floodgate:8082, but service floodgate exposes [8081 8000]",
		},
		{
			name:    "envoy cluster host is not a service",
			file:    fileEnvoy,
			give:    replace("address: upstream,", "address: echo,"),
			wantErr: `cluster "upstream" points at echo:8080, but docker-compose.yaml has no service "echo"`,
		},
		{
			name:    "upstream listens elsewhere",
			file:    fileCompose,
			give:    replace(`HTTP_PORT: "8080"`, `HTTP_PORT: "9000"`),
			wantErr: "upstream listens on HTTP_PORT=9000 but exposes [8080]",
		},
		{
			name:    "upstream service missing",
			file:    fileCompose,
			give:    replace("  upstream:\n    # Echoes", "  echo:\n    # Echoes"),
			wantErr: `service "upstream" is missing`,
		},
		{
			name:    "floodgate beyond loopback without authentication",
			file:    fileCompose,
			give:    replace("FLOODGATE_AUTH_HS256_SECRET: ${", "FLOODGATE_SECRET_UNUSED: ${"),
			wantErr: "no authentication is configured",
		},
		{
			name:    "prometheus scrapes the wrong floodgate port",
			file:    filePrometheus,
			give:    replace(`"floodgate:8000"`, `"floodgate:8001"`),
			wantErr: "no job scrapes floodgate:8000/metrics",
		},
		{
			name:    "prometheus scrapes the wrong path",
			file:    filePrometheus,
			give:    replace("metrics_path: /metrics", "metrics_path: /metric"),
			wantErr: "job floodgate scrapes floodgate:8000/metric, want /metrics",
		},
		{
			name:    "prometheus scrapes envoy's listener instead of admin",
			file:    filePrometheus,
			give:    replace(`"envoy:9901"`, `"envoy:10000"`),
			wantErr: "no job scrapes envoy:9901/stats/prometheus",
		},
		{
			name:    "floodgate HTTP on loopback",
			file:    fileCompose,
			give:    replace("--http-addr=0.0.0.0:8000", "--http-addr=127.0.0.1:8000"),
			wantErr: "floodgate --http-addr 127.0.0.1:8000 is loopback",
		},
		{
			name:    "Dockerfile exposes other ports",
			file:    fileDockerfile,
			give:    replace("EXPOSE 8081 8000", "EXPOSE 8081"),
			wantErr: "Dockerfile: EXPOSE [8081], but floodgate listens on [8000 8081]",
		},
		{
			name:    "Dockerfile builder Go differs from go.mod",
			file:    fileDockerfile,
			give:    replace("FROM golang:1.26 AS build", "FROM golang:1.25 AS build"),
			wantErr: "builder image golang:1.25 does not match go.mod's go 1.26",
		},
		{
			name:    "Dockerfile entrypoint in shell form",
			file:    fileDockerfile,
			give:    replace(`ENTRYPOINT ["/floodgate"]`, `ENTRYPOINT /floodgate`),
			wantErr: `want ENTRYPOINT ["/floodgate"]`,
		},
		{
			name:    "envoy image does not match the envoy module",
			file:    fileCompose,
			give:    replace("envoyproxy/envoy:v1.40.0", "envoyproxy/envoy:v1.37.2"),
			wantErr: `envoy image "envoyproxy/envoy:v1.37.2" is not a v1.40.x release`,
		},
		{
			name:    "mounted file missing",
			file:    fileCompose,
			give:    replace("./envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro", "./envoy/envoy.yml:/etc/envoy/envoy.yaml:ro"),
			wantErr: "service envoy mounts ./envoy/envoy.yml at /etc/envoy/envoy.yaml, which does not exist",
		},
		{
			name:    "envoy runs a config that is not mounted",
			file:    fileCompose,
			give:    replace(`"-c", "/etc/envoy/envoy.yaml"`, `"-c", "/etc/envoy/config.yaml"`),
			wantErr: "envoy runs -c /etc/envoy/config.yaml, but ./envoy/envoy.yaml is not mounted there",
		},
		{
			name:    "envoy admin published on all interfaces",
			file:    fileCompose,
			give:    replace(`"127.0.0.1:9901:9901"`, `"9901:9901"`),
			wantErr: "envoy's admin port 9901 is published on \"\"",
		},
		{
			name:    "trusted hops disagree",
			file:    fileCompose,
			give:    replace("--trusted-proxy-hops=0", "--trusted-proxy-hops=2"),
			wantErr: "floodgate --trusted-proxy-hops=2 but envoy.yaml has xff_num_trusted_hops 0: want 1",
		},
		{
			name:    "store timeout above Envoy's ratelimit timeout",
			file:    fileCompose,
			give:    replace("--store-timeout=10ms", "--store-timeout=25ms"),
			wantErr: "floodgate --store-timeout 25ms is not below Envoy's ratelimit timeout 20ms",
		},
		{
			name:    "redis URL names no service",
			file:    fileCompose,
			give:    replace("redis://redis:6379/0", "redis://cache:6379/0"),
			wantErr: `names host "cache", which is not a service`,
		},
		{
			name:    "config path not mounted",
			file:    fileCompose,
			give:    replace("--config=/etc/floodgate", "--config=/etc/limits"),
			wantErr: "floodgate --config /etc/limits is not inside a mounted volume",
		},
		{
			name:    "floodgate serves limits envoy.yaml was not checked against",
			file:    fileCompose,
			give:    replace("./examples:/etc/floodgate:ro", "./config/testdata:/etc/floodgate:ro"),
			wantErr: "floodgate --config /etc/floodgate serves ./config/testdata, but envoy.yaml's domains and descriptors are checked against ./examples",
		},
		{
			name:    "dockerignore drops embedded examples",
			file:    fileDockerignore,
			give:    replace("\n.git\n", "\n.git\nexamples\n"),
			wantErr: `pattern "examples" excludes examples/ratelimit.yaml`,
		},
		{
			name:    "unknown compose field",
			file:    fileCompose,
			give:    replace("    volumes:\n      - ./examples", "    volume:\n      - ./examples"),
			wantErr: "field volume not found in type envoy.composeService",
		},
		{
			name:    "duplicate compose key",
			file:    fileCompose,
			give:    replace("    image: floodgate:dev\n", "    image: floodgate:dev\n    image: floodgate:latest\n"),
			wantErr: `mapping key "image" already defined`,
		},
		{
			name:    "envoy.yaml broken",
			file:    fileEnvoy,
			give:    replace("use_remote_address: true", "use_remote_address: false"),
			wantErr: "envoy/envoy.yaml: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range valid {
				files[k] = v
			}
			files[tt.file] = tt.give(t, files[tt.file])
			err := checkDeployment(files, "..", limits)
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error\n%v\nwant it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestDockerIgnored(t *testing.T) {
	ignore := "# comment\n.git\n*.test\nbin\ndocs/*\n!docs/keep.md\n"
	tests := []struct {
		give string
		want string
	}{
		{"go.mod", ""},
		{".git/config", ".git"},
		{"envoy.test", "*.test"},
		{"bin/floodgate", "bin"},
		{"cmd/bin/x.go", ""},
		{"docs/a.md", "docs/*"},
		{"docs/keep.md", ""},
	}
	for _, tt := range tests {
		if got := dockerIgnored(ignore, tt.give); got != tt.want {
			t.Errorf("dockerIgnored(%q): got %q, want %q", tt.give, got, tt.want)
		}
	}
}
