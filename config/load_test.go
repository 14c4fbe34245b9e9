package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/floodgate/floodgate/examples"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func limitOf(t *testing.T, s *Snapshot, domain string, es []Entry) uint64 {
	t.Helper()
	r, ok := s.Match(domain, es)
	if !ok || len(r.Limits) == 0 {
		t.Fatalf("Match(%s, %v): got no limit, want one", domain, es)
	}
	return r.Limits[0].Requests
}

const apiV1 = `domain: api
descriptors:
  - key: path
    value: /productpage
    rate_limit: {unit: minute, requests_per_unit: 3}
`

// TestLoadConfigMapLayout mounts limits the way Kubernetes does: a timestamped real directory, a "..data"
// symlink to it and one symlink per file; an update swaps "..data" atomically.
func TestLoadConfigMapLayout(t *testing.T) {
	dir := t.TempDir()
	v1 := filepath.Join(dir, "..2026_12_03_10_00_00.000000001")
	writeFile(t, filepath.Join(v1, "api.yaml"), apiV1)
	writeFile(t, filepath.Join(v1, "other.yml"), "domain: other\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	writeFile(t, filepath.Join(v1, "notes.txt"), "not: [valid yaml")
	symlink(t, filepath.Base(v1), filepath.Join(dir, "..data"))
	for _, name := range []string{"api.yaml", "other.yml", "notes.txt"} {
		symlink(t, filepath.Join("..data", name), filepath.Join(dir, name))
	}
	writeFile(t, filepath.Join(dir, ".hidden.yaml"), "this: is: not valid")
	writeFile(t, filepath.Join(dir, "README.md"), "# limits\n")
	if err := os.Mkdir(filepath.Join(dir, "subdir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}

	s, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if diff := cmp.Diff([]string{"api", "other"}, s.Domains()); diff != "" {
		t.Errorf("domains (-want +got):\n%s", diff)
	}
	wantSources := []string{filepath.Join(dir, "api.yaml"), filepath.Join(dir, "other.yml")}
	if diff := cmp.Diff(wantSources, s.Info().Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	if got := limitOf(t, s, "api", entries("path", "/productpage")); got != 3 {
		t.Errorf("got limit %d, want 3", got)
	}

	// The kubelet writes a new timestamped directory and renames a new "..data" link over the old one.
	v2 := filepath.Join(dir, "..2026_12_03_10_05_00.000000002")
	writeFile(t, filepath.Join(v2, "api.yaml"), strings.Replace(apiV1, "requests_per_unit: 3", "requests_per_unit: 1", 1))
	symlink(t, filepath.Base(v2), filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(v1); err != nil {
		t.Fatal(err)
	}
	// other.yml now dangles (its file was deleted from the ConfigMap); the kubelet removes the link.
	if err := os.Remove(filepath.Join(dir, "other.yml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatal(err)
	}
	s2, err := Load(dir)
	if err != nil {
		t.Fatalf("Load after swap: %v", err)
	}
	if diff := cmp.Diff([]string{"api"}, s2.Domains()); diff != "" {
		t.Errorf("domains after swap (-want +got):\n%s", diff)
	}
	if got := limitOf(t, s2, "api", entries("path", "/productpage")); got != 1 {
		t.Errorf("after swap: got limit %d, want 1", got)
	}
	if s.Info().Digest == s2.Info().Digest {
		t.Errorf("got equal digests %s for different contents, want different", s.Info().Digest)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), apiV1)
	writeFile(t, filepath.Join(dir, "b.yaml"), strings.Replace(apiV1, "/productpage", "/other", 1))
	writeFile(t, filepath.Join(dir, "c.yaml"), "domain: c\ndescriptors:\n  - key: k\n    rate_limit: {unit: minutes, requests_per_unit: 1}\n")
	single := filepath.Join(t.TempDir(), "one.yaml")
	writeFile(t, single, apiV1)
	empty := t.TempDir()
	writeFile(t, filepath.Join(empty, "notes.txt"), "x")

	t.Run("single file", func(t *testing.T) {
		s, err := Load(single)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if got := limitOf(t, s, "api", entries("path", "/productpage")); got != 3 {
			t.Errorf("got limit %d, want 3", got)
		}
		again, err := Load(single)
		if err != nil {
			t.Fatal(err)
		}
		if again.Info().Digest != s.Info().Digest {
			t.Errorf("got digests %s and %s for the same file, want equal", s.Info().Digest, again.Info().Digest)
		}
		if since := time.Since(s.Info().LoadedAt); since < 0 || since > time.Minute {
			t.Errorf("got LoadedAt %s ago, want just now", since)
		}
	})
	t.Run("errors of every file, duplicate domain", func(t *testing.T) {
		_, err := Load(dir)
		want := filepath.Join(dir, "b.yaml") + `:1: domain: domain "api" is already defined in ` + filepath.Join(dir, "a.yaml") + "\n" +
			filepath.Join(dir, "c.yaml") + `:4: descriptors[0].rate_limit.unit: unknown unit "minutes" (want second, minute, hour, day, week, month or year)`
		if err == nil || err.Error() != want {
			t.Fatalf("got error\n%v\nwant\n%s", err, want)
		}
	})
	t.Run("missing path", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "nope"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v, want an error wrapping fs.ErrNotExist", err)
		}
	})
	t.Run("directory without yaml", func(t *testing.T) {
		_, err := Load(empty)
		if err == nil || !strings.Contains(err.Error(), "no *.yaml or *.yml files") {
			t.Fatalf("got %v, want a no-files error", err)
		}
	})
}

// TestB38DuplicateDescriptors: a config with two identical (user, vip) entries is rejected as a whole,
// naming the path; so are a domain defined twice and a repeated map key (no last-one-wins).
func TestB38DuplicateDescriptors(t *testing.T) {
	v1 := doc(
		"domain: api",
		"descriptors:",
		"  - key: user",
		"    rate_limit: {unit: minute, requests_per_unit: 5}",
	)
	s, err := Parse("v1.yaml", []byte(v1))
	if err != nil {
		t.Fatalf("v1: %v", err)
	}
	for _, user := range []string{"u1", "vip"} {
		if got := limitOf(t, s, "api", entries("user", user)); got != 5 {
			t.Errorf("v1 user=%s: got %d per minute, want 5", user, got)
		}
	}

	v2 := v1 + doc(
		"  - key: user",
		"    value: vip",
		"    rate_limit: {unit: minute, requests_per_unit: 10}",
		"  - key: user",
		"    value: vip",
		"    rate_limit: {unit: minute, requests_per_unit: 20}",
	)
	s2, err := Parse("v2.yaml", []byte(v2))
	if s2 != nil {
		t.Errorf("v2: got a snapshot, want none")
	}
	if want := "v2.yaml:8: descriptors[2]: duplicate descriptor api.user_vip (first at line 5)"; err == nil || err.Error() != want {
		t.Errorf("v2: got %v, want %s", err, want)
	}

	repeated := doc(
		"domain: api",
		"descriptors:",
		"  - key: user",
		"    rate_limit:",
		"      unit: minute",
		"      requests_per_unit: 5",
		"      requests_per_unit: 500",
	)
	_, err = Parse("v3.yaml", []byte(repeated))
	if want := `v3.yaml:7: descriptors[0].rate_limit.requests_per_unit: duplicate key "requests_per_unit" (first at line 6)`; err == nil || err.Error() != want {
		t.Errorf("repeated key: got %v, want %s", err, want)
	}

	_, err = ParseFiles(File{Name: "a.yaml", Data: []byte(v1)}, File{Name: "b.yaml", Data: []byte(v1)})
	if want := `b.yaml:1: domain: domain "api" is already defined in a.yaml`; err == nil || err.Error() != want {
		t.Errorf("duplicate domain: got %v, want %s", err, want)
	}
}

func TestParseFilesCollectsAllErrors(t *testing.T) {
	bad := "domain: x\ndescriptors:\n" + strings.Repeat("  - key: ''\n", 80)
	_, err := Parse("bad.yaml", []byte(bad))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %T, want Errors", err)
	}
	if len(es) != maxErrorsPerFile+1 {
		t.Errorf("got %d errors, want %d (capped, plus the cap notice)", len(es), maxErrorsPerFile+1)
	}
	if last := es[len(es)-1]; last.Reason != "too many errors; stopped here" {
		t.Errorf("got last error %q, want the cap notice", last.Reason)
	}
}

func TestAliasBombIsBounded(t *testing.T) {
	// Each level lists ten descriptors whose children are the previous level: 10^29 nodes once expanded.
	level := "&a0 [{key: k}]"
	for i := 1; i < 30; i++ {
		var b strings.Builder
		b.WriteString("&a" + strconv.Itoa(i) + " [{key: k0, descriptors: " + level + "}")
		for j := 1; j < 10; j++ {
			b.WriteString(", {key: k" + strconv.Itoa(j) + ", descriptors: *a" + strconv.Itoa(i-1) + "}")
		}
		b.WriteString("]")
		level = b.String()
	}
	var b strings.Builder
	b.WriteString("domain: x\ndescriptors: " + level + "\n")
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "document too large") {
		t.Fatalf("got %v, want a document-too-large error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("got %s to reject an alias bomb, want well under 5s", d)
	}
}

func TestAliasesResolve(t *testing.T) {
	s, err := Parse("alias.yaml", []byte(doc(
		"domain: api",
		"descriptors:",
		"  - key: a",
		"    rate_limit: &rl {unit: minute, requests_per_unit: 5}",
		"  - key: b",
		"    rate_limit: *rl",
	)))
	if err != nil {
		t.Fatal(err)
	}
	if got := limitOf(t, s, "api", entries("b", "x")); got != 5 {
		t.Errorf("got %d, want 5", got)
	}
}

// TestDefault proves the bundled examples load and give the limits examples/README.md documents.
func TestDefault(t *testing.T) {
	s := Default()
	if diff := cmp.Diff([]string{"api", "edge"}, s.Domains()); diff != "" {
		t.Fatalf("domains (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"examples/floodgate.yaml", "examples/ratelimit.yaml"}, s.Info().Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	// Each example also loads on its own, through the same API as a user's file.
	names, err := fs.Glob(examples.FS, "*.yaml")
	if err != nil || len(names) != 2 {
		t.Fatalf("got example files %v (%v), want 2", names, err)
	}
	for _, n := range names {
		data, _ := fs.ReadFile(examples.FS, n)
		if _, err := Parse(n, data); err != nil {
			t.Errorf("example %s: %v", n, err)
		}
	}

	type want struct {
		name      string
		requests  uint64
		window    time.Duration
		unlimited bool
		shadow    bool
	}
	tests := []struct {
		domain string
		give   []Entry
		want   want // name "" = no match
	}{
		{"api", entries("remote_address", "198.51.100.1"), want{name: "api.remote_address", requests: 5, window: time.Minute}},
		{"api", entries("user", "alice"), want{name: "api.user", requests: 10, window: time.Minute}},
		{"api", entries("user", "vip"), want{name: "api.user_vip", requests: 100, window: time.Minute}},
		{"api", entries("path", "/api/v1/export"), want{name: "api.path_/api/*/export", requests: 2, window: time.Minute}},
		{"api", entries("path", "/api/v1/items"), want{name: "api.path_/api/*", requests: 50, window: time.Minute}},
		{"api", entries("path", "/healthz"), want{}},
		{"api", entries("path", "/"), want{}},
		{"api", entries("client_id", "internal-batch"), want{name: "api.client_id_internal-batch", unlimited: true}},
		{"api", entries("client_id", "app"), want{name: "api.client_id", requests: 30, window: time.Minute}},
		{"api", entries("plan", "free"), want{name: "api.plan_free", requests: 10, window: time.Minute, shadow: true}},
		{"api", entries("plan", "pro"), want{}},
		{"api", entries("category", "read"), want{name: "read", requests: 20, window: time.Minute}},
		{"api", entries("endpoint", "/reports"), want{name: "reports", requests: 40, window: time.Minute}},
		{"api", entries("tenant", "t1"), want{}},
		{"api", entries("tenant", "t1", "method", "POST"), want{name: "api.tenant.method_POST", requests: 2, window: time.Second}},
		{"api", entries("tenant", "t1", "method", "GET"), want{name: "api.tenant.method", requests: 10, window: time.Second}},
		{"api", entries("remote_address", "x", "user", "y"), want{}},
		{"edge", entries("remote_address", "198.51.100.1"), want{name: "edge.remote_address", requests: 60, window: time.Minute}},
		{"edge", entries("remote_address", "203.0.113.66"), want{name: "edge.remote_address_203.0.113.66", requests: 0, window: time.Minute}},
		{"edge", entries("api_key", "k"), want{name: "edge.api_key", requests: 10, window: time.Second}},
		{"edge", entries("user", "u"), want{name: "edge.user", requests: 10, window: time.Second}},
		{"edge", entries("path", "/search?q=x"), want{name: "edge.path_/search*", requests: 15, window: 30 * time.Second}},
	}
	for _, tt := range tests {
		r, ok := s.Match(tt.domain, tt.give)
		var got want
		if ok {
			got = want{name: r.Name, unlimited: r.Unlimited, shadow: r.Shadow}
			if len(r.Limits) > 0 {
				got.requests, got.window = r.Limits[0].Requests, r.Limits[0].Window
			}
		}
		if got != tt.want {
			t.Errorf("Match(%s, %v): got %+v, want %+v", tt.domain, tt.give, got, tt.want)
		}
	}
	if r, _ := s.Match("api", entries("endpoint", "/reports")); !cmp.Equal(r.Replaces, []string{"read"}) {
		t.Errorf("reports: got replaces %v, want [read]", r.Replaces)
	}
	r, _ := s.Match("edge", entries("user", "u"))
	if len(r.Limits) != 2 || r.Limits[0].Name != "edge.user#1" || r.Limits[1].Name != "user_daily" || r.Limits[1].Requests != 1000 || r.Limits[1].Window != 24*time.Hour {
		t.Errorf("edge.user: got limits %+v, want 10/s edge.user#1 and 1000/day user_daily", r.Limits)
	}
	r, _ = s.Match("edge", entries("api_key", "k"))
	if r.Limits[0].Burst != 20 || r.Limits[0].Algorithm.String() != "token_bucket" {
		t.Errorf("edge.api_key: got %+v, want token_bucket burst 20", r.Limits[0])
	}

	var ruleNames []string
	for _, r := range s.Rules("api") {
		ruleNames = append(ruleNames, r.Name)
	}
	wantRules := []string{"api.remote_address", "api.user", "api.user_vip", "api.path_/api/*/export", "api.path_/api/*",
		"api.client_id_internal-batch", "api.client_id", "api.plan_free", "read", "reports", "api.tenant.method_POST", "api.tenant.method"}
	if diff := cmp.Diff(wantRules, ruleNames); diff != "" {
		t.Errorf("api rules (-want +got):\n%s", diff)
	}

	var names2 []string
	for _, hr := range s.HTTPRules("edge") {
		names2 = append(names2, hr.Name)
	}
	if diff := cmp.Diff([]string{"per_ip", "login", "api_key", "account_user", "uploads"}, names2); diff != "" {
		t.Errorf("edge http rules (-want +got):\n%s", diff)
	}
	if got := s.HTTPRules("api"); len(got) != 0 {
		t.Errorf("api: got %d http rules, want 0", len(got))
	}
}
