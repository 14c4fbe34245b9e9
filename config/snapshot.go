package config

// API CONTRACT (the config helper fills in the bodies; other packages code against these signatures).

// Snapshot is an immutable, compiled set of limits for every domain. Safe for concurrent use.
type Snapshot struct {
	info Info
	// compiled domains, HTTP rules ... (owned by the config package)
}

// Parse compiles one YAML document (envoyproxy/ratelimit format plus Floodgate's additions). name is used
// in error messages (a file path or "api").
func Parse(name string, data []byte) (*Snapshot, error) { panic("todo") }

// Load compiles a file, or every *.yaml / *.yml file of a directory (Kubernetes ConfigMap "..data" layouts
// included; hidden entries skipped), into one Snapshot. A domain defined twice is an error.
func Load(path string) (*Snapshot, error) { panic("todo") }

// Default is the bundled example configuration (examples/), served when no --config is given.
func Default() *Snapshot { panic("todo") }

// Match returns the rule for a descriptor of domain, following envoyproxy/ratelimit: exact value beats
// wildcard beats key-only default at each level, depth must match exactly. ok is false when nothing
// matches (the descriptor is not limited).
func (s *Snapshot) Match(domain string, entries []Entry) (rule *Rule, ok bool) { panic("todo") }

// HTTPRules returns the ext_authz rules of domain in file order.
func (s *Snapshot) HTTPRules(domain string) []*HTTPRule { panic("todo") }

// Domains lists the configured domains, sorted.
func (s *Snapshot) Domains() []string { panic("todo") }

// Info describes the snapshot.
func (s *Snapshot) Info() Info { return s.info }
