package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// Revision is one version of the whole limits document: every domain, one YAML file each.
type Revision struct {
	// Version increases by one with every stored change, starting at 1. 0 means "nothing stored yet".
	Version uint64 `json:"version,string"`
	// Digest is the hex SHA-256 of the files (see DigestFiles); equal documents have equal digests.
	Digest string `json:"digest"`
	// Files hold one domain each, sorted by name; Name is a file path (file source) or "api/<domain>.yaml".
	Files []File `json:"files"`
	// Author is the token subject of an API change, "file" for a file reload, "seed" for the first load.
	Author string `json:"author,omitempty"`
	// Remote is the client address of an API change.
	Remote string `json:"remote,omitempty"`
	// Source says how the revision came to be: "file", "api", "rollback" or "seed".
	Source string `json:"source"`
	// Message is free text given with the change (e.g. "rollback to 3").
	Message string `json:"message,omitempty"`
	// CreatedAt is when the store accepted the revision (the Redis server's clock with Redis).
	CreatedAt time.Time `json:"created_at"`
}

// DigestFiles returns the hex SHA-256 of files in name order (name and data, length-prefixed).
func DigestFiles(files []File) string {
	fs := slices.Clone(files)
	slices.SortFunc(fs, func(a, b File) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	h := sha256.New()
	var n [8]byte
	put := func(b []byte) {
		l := uint64(len(b))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(b)
	}
	for _, f := range fs {
		put([]byte(f.Name))
		put(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Store errors callers branch on.
var (
	// ErrConflict: Put's expected version is not the current one.
	ErrConflict = errors.New("version conflict")
	// ErrNotFound: no such version (never stored, or trimmed from the history).
	ErrNotFound = errors.New("version not found")
)

// Store keeps the versioned limits document: in process (NewMemoryStore) or in Redis (NewRedisStore),
// where every replica shares it. Implementations are safe for concurrent use.
type Store interface {
	// Current returns the newest revision; a zero Revision (Version 0) when nothing was stored yet.
	Current(ctx context.Context) (Revision, error)
	// Put stores rev.Files as version expect+1 when the current version is expect, else returns an error
	// wrapping ErrConflict. The store fills in Version, Digest and CreatedAt and returns the stored revision.
	Put(ctx context.Context, expect uint64, rev Revision) (Revision, error)
	// Get returns one stored version, or an error wrapping ErrNotFound.
	Get(ctx context.Context, version uint64) (Revision, error)
	// History returns up to n revisions, newest first (the store keeps at least the last 100).
	History(ctx context.Context, n int) ([]Revision, error)
	// Changes delivers the version of each revision stored from now on, by any replica, as it is stored
	// (best effort: pub/sub can miss a message; poll Current as the fallback). Closed when ctx ends.
	Changes(ctx context.Context) <-chan uint64
}

// ReplicaStatus is what one replica reports about the limits it runs.
type ReplicaStatus struct {
	Replica string `json:"replica"`
	Version uint64 `json:"version,string"`
	Digest  string `json:"digest"`
	Source  string `json:"source"` // "file" or "api"
	// AppliedAt is when the replica started enforcing Version; LagSeconds how long after the revision's
	// CreatedAt that was (clock differences between hosts included).
	AppliedAt  time.Time `json:"applied_at"`
	LagSeconds float64   `json:"lag_seconds"`
	// LastError is the last failed load (empty after a good one); LastErrorAt when it happened.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastSeen is when the replica last reported (it reports every few seconds while alive).
	LastSeen time.Time `json:"last_seen"`
}

// Replicas is the registry of live replicas: in process, or in Redis for the whole fleet.
type Replicas interface {
	Report(ctx context.Context, s ReplicaStatus) error
	// List returns the replicas seen within the registry's liveness window, sorted by name.
	List(ctx context.Context) ([]ReplicaStatus, error)
}

// fileJSON is File in JSON: the data as text (limits files are YAML, UTF-8).
type fileJSON struct {
	Name string `json:"name"`
	Data string `json:"data"`
}

// MarshalJSON encodes f as {"name": ..., "data": "<YAML text>"}.
func (f File) MarshalJSON() ([]byte, error) { return json.Marshal(fileJSON{f.Name, string(f.Data)}) }

// UnmarshalJSON decodes what MarshalJSON encodes.
func (f *File) UnmarshalJSON(b []byte) error {
	var j fileJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	f.Name, f.Data = j.Name, []byte(j.Data)
	return nil
}
