// Package config compiles limits files into an immutable Snapshot that answers "which rule applies to
// this descriptor / this HTTP request" without allocating.
//
// # Format
//
// One YAML document per file, one domain per file. An envoyproxy/ratelimit file loads unchanged:
//
//	domain: api
//	descriptors:
//	  - key: user                 # required, non-empty
//	    value: vip                # optional; may contain '*' wildcards
//	    rate_limit:               # optional
//	      unit: minute            # second, minute, hour, day, week, month (30 d), year (365 d); any case
//	      requests_per_unit: 100  # 0 blocks every request; at most limiter.MaxRequests
//	      name: vip               # optional; replaces: [{name: other}] drops rule "other" when both match
//	      # unlimited: true       # always OK, no store call; excludes every other limit field
//	    shadow_mode: false        # evaluate and count, never block
//	    detailed_metric: false    # recorded on the Rule
//	    quota_mode: false         # over limit blocks only when every quota descriptor of the request is over
//	    share_threshold: false    # wildcard values only: all matching values share one counter (RLS keys)
//	    value_to_metric: false    # accepted, ignored: metric labels never carry request values
//	    metadata: {}              # accepted, ignored
//	    descriptors: [...]        # nested entries of the same descriptor
//
// Floodgate additions in the same files: in a rate_limit, algorithm (fixed_window (default),
// sliding_window, token_bucket or its alias gcra), burst (token_bucket only: capacity, default
// requests_per_unit), unit_multiplier (window = N units) and window (a Go duration, whole milliseconds,
// 1ms to 10 years, instead of unit: requests_per_unit is then per window). rate_limits: [...] lists
// several limits of that shape on one node (exclusive with rate_limit; no two with the same algorithm and
// window; unlimited is not allowed there). A top-level http_rules list holds ext_authz rules, compiled
// to HTTPRule (see examples/floodgate.yaml).
//
// # Matching (Snapshot.Match), as envoyproxy/ratelimit's GetLimit
//
//   - The entries of a descriptor are matched level by level from the domain's top list. At each level:
//     an exact key+value node wins; otherwise the first node (in file order) of that key whose value
//     pattern matches; otherwise the key-only node (no value), the default for any value of that key.
//     There is no backtracking: once an exact node is chosen, a missing child is not looked up under the
//     wildcard or default sibling.
//   - A wildcard value is anchored at both ends; each '*' matches any run of bytes, including an empty one;
//     several are allowed ("/api/*/items/*"). A value of "*" alone matches every value (the empty one
//     too) and, being a wildcard, wins over the key-only node of the same key.
//   - Depth must match: the node reached by the last entry must itself carry rate_limit(s); a request with
//     more entries than the tree is deep, or fewer than the depth where the limit sits, matches nothing
//     (no fallback to a parent's limit).
//   - A node without rate_limit matches nothing: with no children it is allow-listed.
//   - Unlimited: ok is true and Rule.Unlimited is set, with no Limits.
//
// Deliberate differences from envoyproxy/ratelimit (stricter, never looser):
//   - Nodes are keyed by (key, value), not by the string key+"_"+value, so key "a_b" with value "c" and
//     key "a" with value "b_c" are different nodes, and a wildcard only matches values of its own key.
//   - Unknown keys are errors per level (upstream accepts any known key anywhere), duplicate YAML map
//     keys are errors (upstream keeps the last), requests_per_unit is required (upstream defaults to 0,
//     which blocks everything), and unlimited excludes requests_per_unit too (upstream: only unit).
//   - A domain in two files is always an error (upstream can merge with MERGE_DOMAIN_CONFIG).
//   - Rule names default to the descriptor path, so a replaces entry may name a rule without name:.
//
// # Names
//
// Rule.Path is the envoyproxy-style path of the node: domain, then key or key_value per level, joined
// with '.', wildcards as written ("api.user_vip", "api.user", "api.path_/foo*"). Rule.Name is the
// rate_limit name when given, otherwise Rule.Path; with rate_limits it is always Rule.Path. Limit.Name is
// the limit's own name, else the rule name, else (several limits) the rule name plus "#1", "#2", ...
// For an HTTP rule, Rule.Name is its name and Rule.Path is "domain.http_rules.name".
//
// Custom windows: Envoy's current_limit has only a unit, so Limit.Unit is the largest unit that divides
// the window, with UnitMultiplier the count (30s → second ×30, 2h → hour ×2). A window that is not a
// whole number of seconds reports UnitSecond with UnitMultiplier 0; Limit.Window is always exact.
//
// # Files and errors
//
// Load reads one file, or every *.yaml and *.yml entry directly inside a directory, following symlinks
// and skipping names that start with '.', so a Kubernetes ConfigMap mount (a "..2026_…" directory, a
// "..data" symlink to it and one symlink per file) loads as its visible files. Other files and
// subdirectories are ignored. ParseFiles compiles documents held in memory (e.g. from the admin API).
//
// A load is accepted whole or not at all. Every problem found is reported as an Error
// ("file:line: field.path: reason"), all of them together as Errors, sorted by file and line, at most
// 50 per file. YAML anchors and aliases work; merge keys (<<) are rejected; a file may hold one
// document; descriptors nest at most 32 levels; a file expands to at most 200,000 YAML nodes (aliases
// counted at each use), so an alias bomb is an error rather than a hang.
//
// Info.Digest is a SHA-256 of the file names and contents (equal inputs give equal digests); Info.Version
// is the number of the stored Revision the snapshot runs (see Store).
//
// # Versions, sources and propagation (Runtime, Store, Replicas)
//
// A Runtime holds the Snapshot this replica enforces (Runtime.Snapshot: one atomic load) and keeps it
// current from one of two sources:
//
//   - api (--config-source=api, the default without --config): the Store is the truth. The admin API
//     writes through Runtime.Update, which compiles the document first (invalid: Errors, nothing stored),
//     stores it with a compare-and-set on the version (a stale version is ErrConflict) and applies it
//     locally before returning. The store is a MemoryStore (one process) or a RedisStore shared by every
//     replica. At start an empty store is seeded with the --config files or the bundled examples as
//     version 1 (Source "seed"); a store that already holds a version wins over the seed.
//   - file (the default with --config): the files are the truth on each replica. Every FilePoll (1 s)
//     the runtime reads and digests them, so a Kubernetes ConfigMap "..data" symlink swap (read through
//     the generation "..data" points to, never a mix of two), a subPath mount, a deleted file (its domain
//     goes) or an editor's rename are all seen by the next poll. A changed, valid document becomes a new
//     version of a local MemoryStore (Source and Author "file"), so history and diffs work as with the
//     api source; Update returns ErrReadOnly. An invalid document (or an unreadable path) is logged once
//     at ERROR per distinct content, reported once to RuntimeObserver.LoadFailed and in Status
//     (LastLoadOK false, LastError, LastGoodAt), and the running version keeps serving; a failure is
//     reported when two polls in a row see it, so a file caught half-written is not.
//
// Propagation (api source with Redis): a Put publishes the new version on the change channel; every
// replica's Run receives it (pub/sub on a dedicated connection that reconnects and resubscribes by itself,
// then re-reads the version since messages were lost meanwhile) and applies the store's current revision,
// typically within milliseconds. A poll of the version key every Poll (500 ms) is the fallback, so a
// change reaches every replica within about 1 s even when pub/sub is down. A version lower than the
// running one is never applied from a notification; a store that stays behind on two polls in a row has
// gone back (Redis restarted without persistence): an empty one is seeded again with the running
// document as version 1, an older one is followed. A stored version that does not compile is reported
// once and the running one keeps serving. Applying creates no goroutine, timer or connection: the
// subscription and tickers are Run's, made once.
//
// Every replica reports to the Replicas registry (version, digest, applied at, lag, last error) every
// ReportEvery (5 s) and at once after each apply; a replica not seen for the liveness window (15 s) is
// dropped from the list.
//
// # Redis layout
//
// Every key has the hash tag {config}, so the store's Lua scripts work in Redis Cluster (all keys in one
// slot). With Prefix "fg:":
//
//	fg:{config}:version     integer, the current version (absent: nothing stored)
//	fg:{config}:rev:<n>     JSON of Revision n (files as text; created_at is the Redis server's TIME)
//	fg:{config}:history     list of versions, newest first, trimmed to Keep (100); trimmed revs deleted
//	fg:{config}:changes     pub/sub channel carrying each new version number (in Cluster, broadcast)
//	fg:{config}:replicas    hash: replica name → ReplicaStatus JSON (last_seen by the Redis clock)
//
// Put is one Lua script (lua/put.lua): compare the version with the expected one (else the current
// version is returned and Put fails with ErrConflict naming it), INCR, SET the revision, LPUSH the
// history, delete and LTRIM what falls off, PUBLISH. The replicas hash expires after 10 liveness windows
// without a report; List deletes entries older than the window.
//
// # Diffs and edits
//
// Diff compares two snapshots rule by rule (descriptor rules by path, HTTP rules by name, domains) for the
// admin API's previews, the history and the audit trail. PatchRule, ReplaceDomain and RemoveDomain edit the
// YAML documents themselves (yaml.v3 nodes: comments, order and formatting survive); the caller compiles
// the result, so an edit is validated exactly like a file.
//
// # Invariants
//
//   - A Snapshot never changes after it is returned; Match, HTTPRules and Domains are safe for concurrent
//     use, and Match and HTTPRule.Matches do not allocate.
//   - Every Limit of a Snapshot passes limiter.Limit.Validate; the Limit names of one Rule are distinct.
//   - Rule names come from the configuration only, never from a request, so they are safe metric labels.
//   - Default always returns a usable Snapshot built from the embedded examples (a test proves they load).
package config
