package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/floodgate/floodgate/internal/redistest"
)

// api is a small client of the admin API of one server.
type api struct {
	t     *testing.T
	base  string
	token string
}

type apiResp struct {
	code   int
	header http.Header
	body   []byte
}

func (r apiResp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (a api) do(method, path string, body any, header ...string) apiResp {
	a.t.Helper()
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case string: // YAML
		rd, ctype = strings.NewReader(b), "application/yaml"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return apiResp{resp.StatusCode, resp.Header, b}
}

// version returns the running version a replica reports on /api/v1/status.
func (a api) version() uint64 {
	a.t.Helper()
	r := a.do("GET", "/api/v1/status", nil)
	if r.code != 200 {
		a.t.Fatalf("status: %d %s", r.code, r.body)
	}
	var st struct {
		Version string `json:"version"`
	}
	r.json(a.t, &st)
	v, _ := strconv.ParseUint(st.Version, 10, 64)
	return v
}

func etag(v uint64) string { return fmt.Sprintf("%q", strconv.FormatUint(v, 10)) }

// shouldLimit sends one RLS request and returns its overall code.
func shouldLimit(t *testing.T, s *server, req *rlsv3.RateLimitRequest) rlsv3.RateLimitResponse_Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := rlsv3.NewRateLimitServiceClient(s.conn).ShouldRateLimit(ctx, req)
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp.GetOverallCode()
}

// admitted sends n requests and counts the OK answers, which must all come before the first OVER_LIMIT.
func admitted(t *testing.T, s *server, n int, req *rlsv3.RateLimitRequest) int {
	t.Helper()
	ok, over := 0, false
	for range n {
		switch shouldLimit(t, s, req) {
		case rlsv3.RateLimitResponse_OK:
			if over {
				t.Fatalf("an OK after an OVER_LIMIT")
			}
			ok++
		default:
			over = true
		}
	}
	return ok
}

// metric returns the value of the series named exactly by series on /metrics (-1 when absent).
func metric(t *testing.T, s *server, series string) float64 {
	t.Helper()
	_, body := httpGet(t, "http://"+s.httpAddr+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// Two Floodgate processes share Redis: a change on one is enforced by the other within 1 s; conflicting
// changes are refused; an invalid change changes nothing anywhere; a rollback restores the earlier limits
// on both.
func TestAdminTwoReplicas(t *testing.T) {
	bin := buildBinary(t)
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	seed := writeLimits(t, e2eLimits)
	args := []string{"--redis-url", url, "--redis-prefix", prefix, "--config-source", "api", "--config", seed,
		"--admin-rate", "1000", "--admin-burst", "1000"} // the test polls the API
	a := startProcess(t, bin, append(args, "--replica-id", "a")...)
	b := startProcess(t, bin, append(args, "--replica-id", "b")...)
	ca, cb := api{t: t, base: "http://" + a.httpAddr}, api{t: t, base: "http://" + b.httpAddr}

	v1 := ca.version()
	if v1 != 1 || cb.version() != 1 {
		t.Fatalf("got versions %d and %d at start, want the seed as version 1 on both", v1, cb.version())
	}
	user := rlsRequest("e2e", "user", "u1")
	if got := admitted(t, b, 5, user); got != 3 {
		t.Fatalf("seed limit on b: got %d admitted, want 3", got)
	}

	// Raise e2e.user 3 → 6 on a; b enforces it within 1 s.
	r := ca.do("PATCH", "/api/v1/limits/e2e/rules/"+url2("e2e.user"), map[string]any{"requests_per_unit": 6}, "If-Match", etag(v1))
	if r.code != 200 {
		t.Fatalf("PATCH: got %d %s, want 200", r.code, r.body)
	}
	applied := time.Now()
	for cb.version() != 2 {
		if time.Since(applied) > time.Second {
			t.Fatalf("b still runs version %d 1 s after the change, want 2", cb.version())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("b applied version 2 within %s", time.Since(applied))
	if got := admitted(t, b, 5, user); got != 3 {
		t.Errorf("after raising to 6 with 3 used: got %d more admitted on b, want 3", got)
	}
	if got := metric(t, b, "floodgate_config_version"); got != 2 {
		t.Errorf("b floodgate_config_version: got %v, want 2", got)
	}

	// Two conflicting changes based on version 2, one per replica: exactly one wins.
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, c := range []api{ca, cb} {
		wg.Go(func() {
			codes[i] = c.do("PATCH", "/api/v1/limits/e2e/rules/"+url2("e2e.user"),
				map[string]any{"requests_per_unit": 10 + i}, "If-Match", etag(2)).code
		})
	}
	wg.Wait()
	won := 0
	for _, c := range codes {
		switch c {
		case 200:
			won++
		case 409, 412:
		default:
			t.Errorf("conflicting change: got %d, want 200, 409 or 412", c)
		}
	}
	if won != 1 {
		t.Fatalf("conflicting changes: got codes %v, want exactly one 200", codes)
	}
	// A stale If-Match is refused with the current version.
	if r := ca.do("PATCH", "/api/v1/limits/e2e/rules/"+url2("e2e.user"), map[string]any{"requests_per_unit": 99}, "If-Match", etag(1)); r.code != 412 {
		t.Errorf("stale If-Match: got %d %s, want 412", r.code, r.body)
	}

	// An invalid change changes nothing anywhere.
	r = ca.do("PUT", "/api/v1/limits/e2e", "domain: e2e\ndescriptors:\n  - key: user\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n")
	if r.code != 400 || !strings.Contains(string(r.body), "unit") {
		t.Errorf("invalid change: got %d %s, want 400 naming unit", r.code, r.body)
	}
	time.Sleep(300 * time.Millisecond)
	if va, vb := ca.version(), cb.version(); va != 3 || vb != 3 {
		t.Errorf("after the invalid change: versions %d and %d, want 3 on both", va, vb)
	}

	// Roll back to version 1 on b: both enforce 3/hour again (as version 4).
	r = cb.do("POST", "/api/v1/limits/rollback", map[string]string{"version": "1"})
	if r.code != 200 {
		t.Fatalf("rollback: got %d %s", r.code, r.body)
	}
	deadline := time.Now().Add(time.Second)
	for ca.version() != 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, s := range []*server{a, b} {
		if got := admitted(t, s, 5, rlsRequest("e2e", "user", "fresh-"+s.httpAddr)); got != 3 {
			t.Errorf("after rollback on %s: got %d admitted, want 3", s.httpAddr, got)
		}
	}

	// Both replicas report the version they run.
	var reps struct {
		CurrentVersion string `json:"current_version"`
		Replicas       []struct {
			Replica string `json:"replica"`
			Version string `json:"version"`
			InSync  bool   `json:"in_sync"`
		} `json:"replicas"`
	}
	deadline = time.Now().Add(3 * time.Second)
	for {
		ca.do("GET", "/api/v1/replicas", nil).json(t, &reps)
		synced := 0
		for _, rp := range reps.Replicas {
			if rp.Version == "4" && rp.InSync {
				synced++
			}
		}
		if synced == 2 && len(reps.Replicas) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas: got %+v, want a and b in sync at version 4", reps)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Every change is in the audit trail with its author and versions (the fleet's, through the stream).
	var ev struct {
		Events []struct {
			Kind   string `json:"kind"`
			Change struct {
				Actor         string `json:"actor"`
				Action        string `json:"action"`
				VersionBefore string `json:"version_before"`
				VersionAfter  string `json:"version_after"`
			} `json:"change"`
		} `json:"events"`
	}
	deadline = time.Now().Add(3 * time.Second)
	for {
		ca.do("GET", "/api/v1/audit?kind=config_change", nil).json(t, &ev)
		if len(ev.Events) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(ev.Events) != 3 {
		t.Fatalf("got %d config_change events on a, want 3 (patch, patch, rollback): %+v", len(ev.Events), ev.Events)
	}
	if c := ev.Events[0].Change; c.Action != "rollback" || c.VersionBefore != "3" || c.VersionAfter != "4" || c.Actor != "anonymous" {
		t.Errorf("newest change: got %+v, want rollback 3 → 4 by anonymous", c)
	}
}

func url2(s string) string { return url.PathEscape(s) }

// Usage inspection through the real decision service: counters, a reset, and client errors as 4xx.
func TestAdminUsage(t *testing.T) {
	s := startInProcess(t, "--config", writeLimits(t, e2eLimits), "--admin-rate", "1000", "--admin-burst", "1000")
	c := api{t: t, base: "http://" + s.httpAddr}
	admitted(t, s, 2, rlsRequest("e2e", "user", "u9"))
	body := map[string]any{"domain": "e2e", "entries": []map[string]string{{"key": "user", "value": "u9"}}}
	var u struct {
		Usage []struct {
			Used, Remaining uint64
		} `json:"usage"`
	}
	c.do("POST", "/api/v1/usage", body).json(t, &u)
	if len(u.Usage) != 1 || u.Usage[0].Used != 2 || u.Usage[0].Remaining != 1 {
		t.Errorf("usage: got %+v, want 2 used and 1 left", u)
	}
	if r := c.do("POST", "/api/v1/usage/reset", body); r.code != 200 {
		t.Errorf("reset: %d %s", r.code, r.body)
	}
	if got := admitted(t, s, 4, rlsRequest("e2e", "user", "u9")); got != 3 {
		t.Errorf("after the reset: got %d admitted, want 3", got)
	}
	for name, tt := range map[string]struct {
		entries []map[string]string
		want    int
	}{
		"no rule":   {[]map[string]string{{"key": "nope", "value": "x"}}, 404},
		"too long":  {[]map[string]string{{"key": "user", "value": strings.Repeat("v", 70_000)}}, 400},
		"empty key": {[]map[string]string{{"key": "", "value": "x"}}, 400},
	} {
		if r := c.do("POST", "/api/v1/usage", map[string]any{"domain": "e2e", "entries": tt.entries}); r.code != tt.want {
			t.Errorf("%s: got %d %s, want %d", name, r.code, r.body, tt.want)
		}
	}
}

var _ = regexp.MustCompile
