package envoy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var metricName = regexp.MustCompile(`floodgate_[a-z0-9_]+`)

// exportedMetrics are the metric names Floodgate's code registers (the Name of its collectors).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	decl := regexp.MustCompile(`"(floodgate_[a-z0-9_]+)"`)
	err := filepath.WalkDir("..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && p != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestGrafanaDashboard: the provisioned dashboard parses, queries the provisioned datasource, and every
// Floodgate metric it uses is one Floodgate exports (histograms through their _bucket series).
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "dashboards", "floodgate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("floodgate.json: %v", err)
	}
	ds, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "provisioning", "datasources", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	if len(exported) < 10 {
		t.Fatalf("found only %d exported metric names: the scan is broken", len(exported))
	}
	var unknown []string
	for _, p := range d.Panels {
		if !strings.Contains(string(ds), "uid: "+p.Datasource.UID) {
			t.Errorf("panel %q uses datasource %q, which is not provisioned", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if strings.HasSuffix(m, suffix) && exported[strings.TrimSuffix(m, suffix)] {
						base = strings.TrimSuffix(m, suffix)
					}
				}
				if !exported[base] {
					unknown = append(unknown, p.Title+": "+m)
				}
			}
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("the dashboard queries metrics Floodgate does not export:\n%s", strings.Join(unknown, "\n"))
	}
	if len(d.Panels) < 8 {
		t.Errorf("got %d panels, want the signals of the operations view (at least 8)", len(d.Panels))
	}
}
