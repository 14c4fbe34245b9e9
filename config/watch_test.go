package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const otherDoc = `domain: other
descriptors:
  - key: k
    rate_limit: {unit: second, requests_per_unit: 1}
`

func newFileRuntime(t *testing.T, path string, poll time.Duration) (*Runtime, *runtimeRecorder, *logBuffer) {
	t.Helper()
	logger, logs := captureLog(t)
	obs := &runtimeRecorder{}
	r, err := NewRuntime(context.Background(), RuntimeOptions{Source: SourceFile, Path: path, FilePoll: poll,
		Observer: obs, Logger: logger, Replica: "r1"})
	if err != nil {
		t.Fatalf("NewRuntime(file %s): %v", path, err)
	}
	runRuntime(t, r)
	return r, obs, logs
}

// TestRuntimeFileEdits: with the default 1 s poll, an in-place write and an editor's write-and-rename of a
// single file are each applied within 2 s, as new local versions with history.
func TestRuntimeFileEdits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "limits.yaml")
	writeFile(t, path, userDoc(3))
	r, obs, _ := newFileRuntime(t, path, 0)
	if st := r.Status(); st.Source != SourceFile || st.Version != 1 || userLimit(r.Snapshot()) != 3 {
		t.Fatalf("first load: got %+v limit %d, want version 1 of the file source, limit 3", st, userLimit(r.Snapshot()))
	}

	writeFile(t, path, userDoc(1)) // in place
	took := waitUntil(t, 2*time.Second, "in-place edit applied", func() bool { return userLimit(r.Snapshot()) == 1 })
	t.Logf("in-place edit applied after %v", took)

	tmp := path + ".swp"
	writeFile(t, tmp, userDoc(2))
	if err := os.Rename(tmp, path); err != nil { // an editor's atomic save
		t.Fatal(err)
	}
	took = waitUntil(t, 2*time.Second, "renamed file applied", func() bool { return userLimit(r.Snapshot()) == 2 })
	t.Logf("rename applied after %v", took)

	if st := r.Status(); st.Version != 3 || st.Reloads != 2 || !st.LastLoadOK {
		t.Errorf("status: got %+v, want version 3 after 2 reloads", st)
	}
	h, err := r.Store().History(context.Background(), 10)
	if err != nil || len(h) != 3 {
		t.Fatalf("history: got %d revisions, %v; want 3", len(h), err)
	}
	if h[0].Source != SourceFile || h[0].Author != SourceFile || h[0].Files[0].Name != path || string(h[2].Files[0].Data) != userDoc(3) {
		t.Errorf("history: got newest source %q author %q, want file revisions of %s", h[0].Source, h[0].Author, path)
	}
	if applied, failed := obs.counts(); applied != 3 || failed != 0 {
		t.Errorf("observer: got %d applied, %d failed; want 3, 0", applied, failed)
	}
}

// TestRuntimeFileConfigMap (B37): a ConfigMap mount, updated the way the kubelet does it — a new
// "..2026_…" directory, a new symlink renamed over "..data", then stale per-file symlinks removed — is
// applied within 2 s with the default poll, and the domain of a key removed from the ConfigMap goes.
func TestRuntimeFileConfigMap(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "..2026_x", "limits.yaml"), userDoc(3))
	writeFile(t, filepath.Join(dir, "..2026_x", "other.yaml"), otherDoc)
	symlink(t, "..2026_x", filepath.Join(dir, "..data"))
	symlink(t, "..data/limits.yaml", filepath.Join(dir, "limits.yaml"))
	symlink(t, "..data/other.yaml", filepath.Join(dir, "other.yaml"))
	r, _, _ := newFileRuntime(t, dir, 0)
	s := r.Snapshot()
	if userLimit(s) != 3 || !s.HasDomain("other") {
		t.Fatalf("first load: got limit %d, domains %v; want 3 and other", userLimit(s), s.Domains())
	}
	if got, want := strings.Join(s.Info().Sources, ","), filepath.Join(dir, "limits.yaml")+","+filepath.Join(dir, "other.yaml"); got != want {
		t.Errorf("sources: got %s, want %s", got, want)
	}

	writeFile(t, filepath.Join(dir, "..2026_y", "limits.yaml"), userDoc(1))
	symlink(t, "..2026_y", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "other.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_x")); err != nil {
		t.Fatal(err)
	}
	took := waitUntil(t, 2*time.Second, "ConfigMap swap applied", func() bool { return userLimit(r.Snapshot()) == 1 })
	t.Logf("ConfigMap swap applied after %v", took)
	if s := r.Snapshot(); s.HasDomain("other") || s.Info().Version != 2 {
		t.Errorf("after the swap: got version %d, domains %v; want version 2 without other", s.Info().Version, s.Domains())
	}
	if st := r.Status(); st.Reloads != 1 || !st.LastLoadOK {
		t.Errorf("status: got %+v, want 1 reload, last load OK", st)
	}
}

// TestRuntimeFileRejected (B38): a rejected document is logged once at ERROR and reported once however
// many polls see it, the running version keeps serving, Status shows the failure with the time of the
// last good load; fixing the files applies them and clears the failure.
func TestRuntimeFileRejected(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // written over the valid start; "" deletes
		want  string            // in the error
	}{
		{name: "duplicate descriptors", files: map[string]string{"api.yaml": dupDoc}, want: "duplicate descriptor api.user_vip"},
		{name: "domain in two files", files: map[string]string{"split.yaml": userDoc(9)}, want: "is already defined in"},
		{name: "repeated map key", files: map[string]string{"api.yaml": strings.Replace(userDoc(5),
			"requests_per_unit: 5}", "requests_per_unit: 5, requests_per_unit: 50}", 1)}, want: "requests_per_unit"},
		{name: "not YAML", files: map[string]string{"other.yaml": "domain: [\n"}, want: "other.yaml"},
		{name: "every file deleted", files: map[string]string{"api.yaml": "", "other.yaml": ""}, want: "no *.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "api.yaml"), userDoc(5))
			writeFile(t, filepath.Join(dir, "other.yaml"), otherDoc)
			const poll = 50 * time.Millisecond
			r, obs, logs := newFileRuntime(t, dir, poll)
			good := r.Status()

			for name, data := range tt.files {
				if data == "" {
					if err := os.Remove(filepath.Join(dir, name)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				writeFile(t, filepath.Join(dir, name), data)
			}
			waitUntil(t, 2*time.Second, "failure reported", func() bool { return !r.Status().LastLoadOK })
			time.Sleep(10 * poll) // ≥ 5 more polls of the same files

			if n := logs.count("level=ERROR"); n != 1 {
				t.Errorf("got %d ERROR lines over ≥ 5 polls, want 1", n)
			}
			if logs.count("level=ERROR", tt.want) != 1 {
				t.Errorf("the ERROR line does not contain %q", tt.want)
			}
			if _, failed := obs.counts(); failed != 1 {
				t.Errorf("LoadFailed: got %d calls, want 1", failed)
			}
			st := r.Status()
			if st.Version != 1 || st.LastLoadOK || !strings.Contains(st.LastError, tt.want) ||
				st.LastErrorAt.IsZero() || !st.LastGoodAt.Equal(good.LastGoodAt) {
				t.Errorf("status: got %+v, want version 1, last load failed with %q, last good at %v",
					st, tt.want, good.LastGoodAt)
			}
			if s := r.Snapshot(); userLimit(s) != 5 || !s.HasDomain("other") || s.Info().Version != 1 {
				t.Errorf("serving: got version %d limit %d, want version 1 limit 5 with other", s.Info().Version, userLimit(s))
			}

			// Fixed: a new valid document applies and the failure clears.
			_ = os.Remove(filepath.Join(dir, "split.yaml"))
			writeFile(t, filepath.Join(dir, "api.yaml"), userDoc(6))
			writeFile(t, filepath.Join(dir, "other.yaml"), otherDoc)
			waitUntil(t, 2*time.Second, "fixed files applied", func() bool { return userLimit(r.Snapshot()) == 6 })
			if st := r.Status(); st.Version != 2 || !st.LastLoadOK || st.LastError != "" || !st.LastGoodAt.After(good.LastGoodAt) {
				t.Errorf("status after the fix: got %+v, want version 2, last load OK", st)
			}
		})
	}
}

// TestRuntimeFileDeleteDomain (B37): deleting one file of a directory removes its domain at the next poll.
func TestRuntimeFileDeleteDomain(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "api.yaml"), userDoc(5))
	writeFile(t, filepath.Join(dir, "other.yaml"), otherDoc)
	r, _, _ := newFileRuntime(t, dir, 100*time.Millisecond)
	if err := os.Remove(filepath.Join(dir, "other.yaml")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "domain other removed", func() bool { return !r.Snapshot().HasDomain("other") })
	if s := r.Snapshot(); userLimit(s) != 5 || s.Info().Version != 2 {
		t.Errorf("got version %d limit %d, want version 2 still limiting api at 5", s.Info().Version, userLimit(s))
	}
}

// TestRuntimeFileMissingPath: a path that disappears after start is a load failure logged once, not a
// crash; when the same files come back, the failure clears without a new version.
func TestRuntimeFileMissingPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "limits")
	writeFile(t, filepath.Join(dir, "api.yaml"), userDoc(5))
	r, obs, logs := newFileRuntime(t, dir, 50*time.Millisecond)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, "failure reported", func() bool { return !r.Status().LastLoadOK })
	time.Sleep(500 * time.Millisecond)
	if n := logs.count("level=ERROR", "no such file"); n != 1 {
		t.Errorf("got %d ERROR lines naming the missing path, want 1", n)
	}
	if _, failed := obs.counts(); failed != 1 {
		t.Errorf("LoadFailed: got %d calls, want 1", failed)
	}
	if userLimit(r.Snapshot()) != 5 {
		t.Error("the running version stopped serving")
	}
	writeFile(t, filepath.Join(dir, "api.yaml"), userDoc(5))
	waitUntil(t, 2*time.Second, "failure cleared", func() bool { return r.Status().LastLoadOK })
	if st := r.Status(); st.Version != 1 || st.Reloads != 0 || st.LastError != "" {
		t.Errorf("status: got %+v, want version 1, no reload, no error", st)
	}
	obs.mu.Lock()
	healed := obs.healed
	obs.mu.Unlock()
	if healed != 1 {
		t.Errorf("LoadRecovered: got %d calls, want 1 (the metrics' last-load gauge follows it)", healed)
	}
}

// TestRuntimeFileHalfWritten: a broken state seen by a single poll (a file caught mid-write) is not
// reported; the complete file that follows applies.
func TestRuntimeFileHalfWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "limits.yaml")
	writeFile(t, path, userDoc(5))
	const poll = 300 * time.Millisecond
	r, obs, logs := newFileRuntime(t, path, poll)
	writeFile(t, path, userDoc(6)[:20]) // "domain: api\ndescrip"
	time.Sleep(poll / 2)
	writeFile(t, path, userDoc(6))
	waitUntil(t, 2*time.Second, "complete file applied", func() bool { return userLimit(r.Snapshot()) == 6 })
	if _, failed := obs.counts(); failed != 0 || logs.count("level=ERROR") != 0 || !r.Status().LastLoadOK {
		t.Errorf("got %d LoadFailed calls and %d ERROR lines, want none", failed, logs.count("level=ERROR"))
	}
}

// TestRuntimeFileFirstLoadInvalid: invalid files at start fail NewRuntime with the Errors.
func TestRuntimeFileFirstLoadInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "limits.yaml")
	writeFile(t, path, dupDoc)
	_, err := NewRuntime(context.Background(), RuntimeOptions{Source: SourceFile, Path: path})
	if err == nil || !strings.Contains(err.Error(), "api.user_vip") {
		t.Errorf("got %v, want an error naming api.user_vip", err)
	}
}
