package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The file source: Run polls the files every FilePoll by reading and digesting them. Reading (not
// watching inodes or directory events) is what survives every way files get replaced: a Kubernetes
// ConfigMap "..data" symlink swap, a subPath mount, an editor that writes a new file and renames it
// over the old one, a deleted file.

// fileWatch is the file source's memory between polls. Owned by the goroutine running Run.
type fileWatch struct {
	// suspect is a failed candidate (a digest, or "read: <error>") seen once; it is reported when the
	// next poll sees it again, so a file caught half-written is not reported.
	suspect string
	// rejected is the failed candidate already reported: it is not logged again until the files change.
	rejected string
}

// readLimitFiles reads path as Load does, without compiling: one file, or the *.yaml/*.yml files of a
// directory. In a ConfigMap mount the files are read from the directory "..data" points to, resolved
// once, so one read never mixes two generations of the ConfigMap. Files are named as Load names them
// (path/name) and sorted by name.
func readLimitFiles(path string) ([]File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		return []File{{Name: path, Data: data}}, nil
	}
	dir := path
	if target, err := filepath.EvalSymlinks(filepath.Join(path, "..data")); err == nil {
		if st, err := os.Stat(target); err == nil && st.IsDir() {
			dir = target
		}
	}
	files, err := readDir(os.DirFS(dir), ".", path)
	if err != nil {
		return nil, err
	}
	sortFiles(files)
	return files, nil
}

// checkFiles is one poll of the file source: read and digest the files; nothing happens when the digest
// is the running one (or a candidate already rejected). A changed, valid document is stored as a new
// local version and applied; an invalid one (or a read failure) is logged once at ERROR and reported once
// to the observer, and the running version keeps serving.
func (r *Runtime) checkFiles(ctx context.Context) {
	w := &r.watch
	files, err := readLimitFiles(r.path)
	var key string
	var snap *Snapshot
	if err != nil {
		err = fmt.Errorf("read limits %s: %w", r.path, err)
		key = "read: " + err.Error()
	} else {
		key = DigestFiles(files)
		if key == r.Snapshot().Info().Digest {
			w.suspect, w.rejected = "", ""
			r.filesValidAgain()
			return
		}
		if key == w.rejected {
			return
		}
		snap, err = ParseFiles(files...)
	}
	if err != nil {
		if key == w.rejected {
			return
		}
		if key != w.suspect {
			w.suspect = key
			return
		}
		w.suspect, w.rejected = "", key
		r.loadFailed(err, "limits files rejected; the running version keeps serving", "path", r.path)
		return
	}
	w.suspect, w.rejected = "", ""
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := r.putAndApply(cctx, Revision{Files: files, Source: SourceFile, Author: SourceFile}, snap); err != nil {
		// The MemoryStore fails only when ctx ends; the next poll tries again.
		r.logger.Warn("store limits files", "path", r.path, "error", err)
	}
}

// putAndApply stores rev in the file source's MemoryStore as the next version and applies snap, its
// compiled form.
func (r *Runtime) putAndApply(ctx context.Context, rev Revision, snap *Snapshot) (Revision, error) {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	stored, err := r.store.Put(ctx, r.runningVersion(), rev)
	if err != nil {
		return Revision{}, err
	}
	r.swap(stored, snap)
	return stored, nil
}

// filesValidAgain clears a file load failure once the files are back to the running version's content.
func (r *Runtime) filesValidAgain() {
	r.stMu.Lock()
	failed := !r.status.LastLoadOK
	if failed {
		r.status.LastLoadOK, r.status.LastError, r.status.LastErrorAt = true, "", time.Time{}
		r.status.LastGoodAt = time.Now()
	}
	r.stMu.Unlock()
	if failed {
		r.logger.Info("limits files are valid again; the running version is unchanged",
			"path", r.path, "version", r.runningVersion())
		if r.observer != nil {
			r.observer.LoadRecovered()
		}
		r.kickReport()
	}
}
