package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/floodgate/floodgate/examples"
)

// Snapshot is an immutable, compiled set of limits for every domain. Safe for concurrent use.
type Snapshot struct {
	info    Info
	domains map[string]*domain
	names   []string // sorted domain names
	files   []File   // the sources, as given
}

// File is one limits document to compile: Name is used in error messages (a path, or "api").
type File struct {
	Name string
	Data []byte
}

// Parse compiles one YAML document (envoyproxy/ratelimit format plus Floodgate's additions). name is used
// in error messages (a file path or "api"). A non-nil error is of type Errors.
func Parse(name string, data []byte) (*Snapshot, error) {
	return ParseFiles(File{Name: name, Data: data})
}

// ParseFiles compiles several documents, one domain each, into one Snapshot. Every error of every file is
// reported (as Errors); a domain defined twice is an error. Nothing is returned unless all files are valid.
func ParseFiles(files ...File) (*Snapshot, error) {
	s := &Snapshot{domains: make(map[string]*domain, len(files)), files: slices.Clone(files)}
	var errs Errors
	for _, f := range files {
		s.info.Sources = append(s.info.Sources, f.Name)
		d, ferrs := parseFile(f.Name, f.Data)
		if ferrs != nil {
			errs = append(errs, ferrs...)
			continue
		}
		if first, dup := s.domains[d.name]; dup {
			errs = append(errs, &Error{File: f.Name, Line: d.line, Path: "domain",
				Reason: fmt.Sprintf("domain %q is already defined in %s", d.name, first.file)})
			continue
		}
		s.domains[d.name] = d
		s.names = append(s.names, d.name)
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	slices.Sort(s.names)
	s.info.Digest = DigestFiles(files)
	s.info.LoadedAt = time.Now()
	return s, nil
}

// Load compiles a file, or every *.yaml / *.yml file of a directory (Kubernetes ConfigMap "..data" layouts
// included; hidden entries skipped), into one Snapshot. A domain defined twice is an error. Parse errors
// are returned as Errors, naming each file as path/name.
func Load(path string) (*Snapshot, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load limits %s: %w", path, err)
	}
	if !st.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("load limits %s: %w", path, err)
		}
		return ParseFiles(File{Name: path, Data: data})
	}
	files, err := readDir(os.DirFS(path), ".", path)
	if err != nil {
		return nil, fmt.Errorf("load limits %s: %w", path, err)
	}
	return ParseFiles(files...)
}

// readDir reads the YAML files directly inside dir of fsys, following symlinks, skipping hidden entries
// (ConfigMap "..data" and "..2026_…" directories), subdirectories and other extensions. prefix names the
// files in messages.
func readDir(fsys fs.FS, dir, prefix string) ([]File, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if ext := strings.ToLower(filepath.Ext(name)); ext != ".yaml" && ext != ".yml" {
			continue
		}
		p := name
		if dir != "." {
			p = dir + "/" + name
		}
		st, err := fs.Stat(fsys, p) // follows the ConfigMap symlink
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			continue
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Name: filepath.Join(prefix, name), Data: data})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml or *.yml files")
	}
	return files, nil
}

// Default is the bundled example configuration (examples/), served when no --config is given. The
// examples are tested to load; should they ever not, Default is an empty snapshot (nothing is limited)
// whose Info.Sources says so.
func Default() *Snapshot {
	files, err := readDir(examples.FS, ".", "examples")
	if err == nil {
		if s, err := ParseFiles(files...); err == nil {
			return s
		}
	}
	return &Snapshot{info: Info{LoadedAt: time.Now(), Sources: []string{"examples (invalid)"}}, domains: map[string]*domain{}}
}

// Match returns the rule for a descriptor of domain, following envoyproxy/ratelimit: exact value beats
// wildcard beats key-only default at each level, depth must match exactly. ok is false when nothing
// matches (the descriptor is not limited). The returned Rule is shared and must not be modified.
// Match does not allocate.
func (s *Snapshot) Match(domain string, entries []Entry) (rule *Rule, ok bool) {
	if s == nil || len(entries) == 0 {
		return nil, false
	}
	d := s.domains[domain]
	if d == nil {
		return nil, false
	}
	n := &d.root
	for _, e := range entries {
		if n = n.child(e); n == nil {
			return nil, false
		}
	}
	return n.rule, n.rule != nil
}

// HTTPRules returns the ext_authz rules of domain in file order. The slice and rules are shared and must
// not be modified.
func (s *Snapshot) HTTPRules(domain string) []*HTTPRule {
	if s == nil {
		return nil
	}
	if d := s.domains[domain]; d != nil {
		return d.http
	}
	return nil
}

// Rules returns the descriptor rules of domain in file order (a parent before its children), for status
// pages and the admin API. The slice and rules are shared and must not be modified.
func (s *Snapshot) Rules(domain string) []*Rule {
	if s == nil {
		return nil
	}
	if d := s.domains[domain]; d != nil {
		return d.rules
	}
	return nil
}

// Domains lists the configured domains, sorted.
func (s *Snapshot) Domains() []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s.names)
}

// HasDomain reports whether domain is configured.
func (s *Snapshot) HasDomain(domain string) bool {
	return s != nil && s.domains[domain] != nil
}

// Info describes the snapshot: Digest identifies the contents (equal inputs give equal digests), Version
// the stored revision it was built from (0 until WithRevision), LoadedAt when it was compiled.
func (s *Snapshot) Info() Info { return s.info }

// Files returns the documents the snapshot was compiled from, in the order given. Shared: do not modify.
func (s *Snapshot) Files() []File {
	if s == nil {
		return nil
	}
	return s.files
}

// WithRevision returns a copy of s labelled with rev's version, author, source and creation time.
func (s *Snapshot) WithRevision(rev Revision) *Snapshot {
	c := *s
	c.info.Version, c.info.Author, c.info.Source, c.info.CreatedAt = rev.Version, rev.Author, rev.Source, rev.CreatedAt
	return &c
}
