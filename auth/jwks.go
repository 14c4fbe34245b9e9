package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// jwksMinRefetch is the least time between two JWKS fetches: a token with an unknown kid can make
	// Floodgate fetch the JWKS at most this often.
	jwksMinRefetch = 10 * time.Second
	// jwksMaxAge is how old a fetched JWKS may get before the next verification fetches it again.
	jwksMaxAge = 5 * time.Minute
	// jwksFetchTimeout bounds one fetch even with an HTTP client without a timeout.
	jwksFetchTimeout = 10 * time.Second
	// maxDocumentBytes bounds a JWKS or discovery document.
	maxDocumentBytes = 1 << 20
	// minRSABits is the smallest RSA modulus accepted from a JWKS.
	minRSABits = 2048
)

// publicKey is one usable key of a JWKS.
type publicKey struct {
	kid string
	alg string // the JWK's alg, "" when it has none
	key crypto.PublicKey
}

// usableWith reports whether k may verify a token signed with alg: the key type and curve must fit the
// algorithm, and the JWK's own alg (when present) must equal it.
func (k publicKey) usableWith(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch key := k.key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return key.Curve == elliptic.P256()
		case "ES384":
			return key.Curve == elliptic.P384()
		case "ES512":
			return key.Curve == elliptic.P521()
		}
	}
	return false
}

// keySet is one fetched JWKS; it is never modified after it is stored.
type keySet struct {
	fetched time.Time
	keys    []publicKey
}

// find returns the key for kid usable with alg. A token without kid matches only when exactly one key of
// the set is usable with alg.
func (s *keySet) find(kid, alg string) (crypto.PublicKey, bool) {
	var found crypto.PublicKey
	n := 0
	for _, k := range s.keys {
		if (kid == "" || k.kid == kid) && k.usableWith(alg) {
			if kid != "" {
				return k.key, true
			}
			found = k.key
			n++
		}
	}
	return found, n == 1
}

// jwksCache holds the keys of one JWKS URL. Keys are replaced, never merged, on each successful fetch, so a
// key removed from the document stops verifying after the next fetch. There is no background goroutine:
// verifications fetch when the set is older than jwksMaxAge or lacks the token's kid, at most once per
// jwksMinRefetch.
type jwksCache struct {
	url    string
	client *http.Client
	now    func() time.Time
	log    *slog.Logger

	set atomic.Pointer[keySet]

	mu          sync.Mutex // serialises fetches; guards lastAttempt
	lastAttempt time.Time
}

// load fetches the document for the first time; an error or a document without usable keys is an error.
// It does not start the refetch interval: a key rotated soon after start is picked up by the first token
// that names it.
func (c *jwksCache) load(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	set, err := c.fetch(ctx)
	if err != nil {
		return err
	}
	if len(set.keys) == 0 {
		return fmt.Errorf("jwks %s: no usable RSA or EC key", c.url)
	}
	c.set.Store(set)
	return nil
}

// key returns the public key for kid usable with alg, refetching the JWKS when it is stale or lacks kid.
func (c *jwksCache) key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	set := c.set.Load()
	if c.now().Sub(set.fetched) >= jwksMaxAge && c.mu.TryLock() {
		// Stale: refresh unless another verification is already fetching (then the current keys serve).
		c.refreshLocked(ctx)
		c.mu.Unlock()
		set = c.set.Load()
	}
	if k, ok := set.find(kid, alg); ok {
		return k, nil
	}
	c.mu.Lock()
	c.refreshLocked(ctx)
	c.mu.Unlock()
	if k, ok := c.set.Load().find(kid, alg); ok {
		return k, nil
	}
	return nil, &Error{Reason: ReasonUnknownKey, Err: fmt.Errorf("no %s key with kid %q in %s", alg, kid, c.url)}
}

// refreshLocked fetches the JWKS unless the last attempt was less than jwksMinRefetch ago. A failed fetch
// keeps the current keys. c.mu must be held.
func (c *jwksCache) refreshLocked(ctx context.Context) {
	now := c.now()
	if now.Sub(c.lastAttempt) < jwksMinRefetch {
		return
	}
	c.lastAttempt = now
	set, err := c.fetch(ctx)
	if err != nil {
		c.log.Warn("jwks refresh failed, keeping the current keys", "url", c.url, "err", err)
		return
	}
	c.set.Store(set)
	c.log.Debug("jwks refreshed", "url", c.url, "keys", len(set.keys))
}

// fetch downloads and parses the JWKS. It does not depend on ctx's cancellation (one client that goes away
// must not spoil a fetch other verifications wait for), only on its values and on jwksFetchTimeout.
func (c *jwksCache) fetch(ctx context.Context) (*keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := getJSON(ctx, c.client, c.url, &doc); err != nil {
		return nil, err
	}
	if doc.Keys == nil {
		return nil, fmt.Errorf("jwks %s: no keys array", c.url)
	}
	set := &keySet{fetched: c.now()}
	for i, raw := range doc.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			c.log.Debug("jwks key skipped", "url", c.url, "index", i, "err", err)
			continue
		}
		set.keys = append(set.keys, k)
	}
	return set, nil
}

// getJSON GETs url and decodes its JSON body (at most maxDocumentBytes) into v.
func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: status %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", url, err)
	}
	if len(body) > maxDocumentBytes {
		return fmt.Errorf("read %s: document larger than %d bytes", url, maxDocumentBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode %s: %w", url, err)
	}
	return nil
}

// jwk is the part of a JSON Web Key (RFC 7517, 7518) Floodgate reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWK turns one RSA or EC signing key into a publicKey; other key types and encryption keys are errors.
func parseJWK(raw []byte) (publicKey, error) {
	var j jwk
	if err := json.Unmarshal(raw, &j); err != nil {
		return publicKey{}, fmt.Errorf("decode jwk: %w", err)
	}
	if j.Use != "" && j.Use != "sig" {
		return publicKey{}, fmt.Errorf("jwk %q: use %q is not sig", j.Kid, j.Use)
	}
	pk := publicKey{kid: j.Kid, alg: j.Alg}
	switch j.Kty {
	case "RSA":
		n, err := decodeB64(j.N)
		if err != nil {
			return publicKey{}, fmt.Errorf("jwk %q: n: %w", j.Kid, err)
		}
		e, err := decodeB64(j.E)
		if err != nil {
			return publicKey{}, fmt.Errorf("jwk %q: e: %w", j.Kid, err)
		}
		if len(e) == 0 || len(e) > 4 {
			return publicKey{}, fmt.Errorf("jwk %q: exponent of %d bytes", j.Kid, len(e))
		}
		exp := 0
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		if exp < 3 || exp%2 == 0 {
			return publicKey{}, fmt.Errorf("jwk %q: bad exponent %d", j.Kid, exp)
		}
		key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
		if key.N.BitLen() < minRSABits {
			return publicKey{}, fmt.Errorf("jwk %q: RSA key of %d bits, want at least %d", j.Kid, key.N.BitLen(), minRSABits)
		}
		pk.key = key
	case "EC":
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return publicKey{}, fmt.Errorf("jwk %q: unsupported curve %q", j.Kid, j.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err := decodeB64(j.X)
		if err != nil {
			return publicKey{}, fmt.Errorf("jwk %q: x: %w", j.Kid, err)
		}
		y, err := decodeB64(j.Y)
		if err != nil {
			return publicKey{}, fmt.Errorf("jwk %q: y: %w", j.Kid, err)
		}
		if len(x) != size || len(y) != size {
			return publicKey{}, fmt.Errorf("jwk %q: coordinates of %d and %d bytes, want %d", j.Kid, len(x), len(y), size)
		}
		point := make([]byte, 0, 1+2*size)
		point = append(append(append(point, 4), x...), y...)
		key, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return publicKey{}, fmt.Errorf("jwk %q: %w", j.Kid, err)
		}
		pk.key = key
	default:
		return publicKey{}, fmt.Errorf("jwk %q: unsupported kty %q", j.Kid, j.Kty)
	}
	return pk, nil
}

func decodeB64(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
