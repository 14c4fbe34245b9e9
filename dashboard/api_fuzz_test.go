package dashboard

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/examples"
)

// FuzzAPIWrites sends arbitrary bodies to every endpoint that decodes one (dry runs: nothing is stored, so
// the runtime stays small): the answer is always a success or a client-error problem in JSON, never a
// server error or a panic.
func FuzzAPIWrites(f *testing.F) {
	names, _ := fs.Glob(examples.FS, "*.yaml")
	for _, n := range names {
		data, _ := fs.ReadFile(examples.FS, n)
		f.Add(uint8(0), string(data))
		f.Add(uint8(1), string(data))
	}
	for _, s := range []string{
		`{"requests_per_unit": 20, "unit": "hour", "algorithm": "token_bucket", "burst": 40}`,
		`{"unlimited": true, "name": ""}`,
		`{"domains": {"api": "domain: api\ndescriptors: []\n", "b": {"domain": "b"}}}`,
		`{"domain": "api", "entries": [{"key": "user", "value": "u1"}]}`,
		`{"version": "1"}`,
		"domain: a\n---\ndomain: b\n---\n--- {domain: c}\n",
		"domain: api\ndescriptors:\n  - key: k\n    rate_limit: &x {unit: second, requests_per_unit: 1}\n  - key: j\n    rate_limit: *x\n",
		`null`, `[]`, `{"requests_per_unit": 1e99}`, "\xff\xfe", "",
	} {
		for op := range uint8(len(fuzzOps)) {
			f.Add(op, s)
		}
	}
	a := newAPIRig(f, config.RuntimeOptions{}, nil)
	f.Fuzz(func(t *testing.T, op uint8, body string) {
		o := fuzzOps[int(op)%len(fuzzOps)]
		r := a.call(t, o.method, o.path, "admin", body, "Content-Type", o.ct)
		if r.status >= 500 || r.status < 200 || (r.status >= 300 && r.status < 400) {
			t.Fatalf("%s %s: got %d %s", o.method, o.path, r.status, r.body)
		}
		if !json.Valid(r.body) {
			t.Fatalf("%s %s: body is not JSON: %q", o.method, o.path, r.body)
		}
		if r.status != http.StatusOK && !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
			t.Fatalf("%s %s: got %d without a problem", o.method, o.path, r.status)
		}
	})
}

var fuzzOps = []struct{ method, path, ct string }{
	{"PUT", "/api/v1/limits?dry_run=true", "application/yaml"},
	{"PUT", "/api/v1/limits/api?dry_run=true", "application/yaml"},
	{"PUT", "/api/v1/limits?dry_run=true", "application/json"},
	{"PUT", "/api/v1/limits/api?dry_run=true", "application/json"},
	{"PATCH", "/api/v1/limits/api/rules/api.user_vip?dry_run=true", "application/json"},
	{"PATCH", "/api/v1/limits/edge/rules/login?dry_run=true", "application/merge-patch+json"},
	{"POST", "/api/v1/usage", "application/json"},
	{"POST", "/api/v1/limits/rollback?dry_run=true", "application/json"},
}
