package config

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed lua/put.lua
	putLua    string
	putScript = redis.NewScript(putLua)

	//go:embed lua/current.lua
	currentLua    string
	currentScript = redis.NewScript(currentLua)
)

// redisKeep is the default number of revisions a RedisStore keeps.
const redisKeep = 100

// RedisStoreOptions configure NewRedisStore.
type RedisStoreOptions struct {
	// Client is shared with the caller, who closes it; the store only borrows connections (plus one
	// dedicated pub/sub connection per Changes call, released when its ctx ends).
	Client redis.UniversalClient
	// Prefix starts every key, e.g. "fg:". Keys are Prefix+"{config}:…" (see the package doc).
	Prefix string
	// Keep is how many revisions the history keeps; older ones are deleted. Default 100.
	Keep int
	// Logger receives pub/sub reconnection notes at debug level; nil discards them.
	Logger *slog.Logger
}

// RedisStore is a Store in Redis (standalone, Sentinel or Cluster) shared by every replica. Every key
// has the hash tag {config}, so one Lua script can update them all in Cluster. Safe for concurrent use.
type RedisStore struct {
	client  redis.UniversalClient
	version string // Prefix{config}:version
	history string // Prefix{config}:history
	revKey  string // Prefix{config}:rev: + version
	channel string // Prefix{config}:changes
	keep    int
	logger  *slog.Logger
}

// NewRedisStore returns a RedisStore on o.Client. It does not contact Redis.
func NewRedisStore(o RedisStoreOptions) *RedisStore {
	if o.Keep <= 0 {
		o.Keep = redisKeep
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	base := o.Prefix + "{config}:"
	return &RedisStore{
		client:  o.Client,
		version: base + "version",
		history: base + "history",
		revKey:  base + "rev:",
		channel: base + "changes",
		keep:    o.Keep,
		logger:  o.Logger,
	}
}

// Current returns the newest revision, or a zero Revision when nothing was stored.
func (s *RedisStore) Current(ctx context.Context) (Revision, error) {
	v, err := currentScript.Run(ctx, s.client, []string{s.version}, s.revKey).Text()
	if errors.Is(err, redis.Nil) {
		return Revision{}, nil
	}
	if err != nil {
		return Revision{}, fmt.Errorf("read current limits from redis: %w", err)
	}
	return decodeRevision(v)
}

// currentVersion is the cheap check of the runtime's poll: one GET.
func (s *RedisStore) currentVersion(ctx context.Context) (uint64, error) {
	v, err := s.client.Get(ctx, s.version).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read limits version from redis: %w", err)
	}
	return v, nil
}

// revisionEnds are the JSON members of a zero Revision that the Put script replaces.
const (
	revisionHead = `{"version":"0",`
	revisionTail = `,"created_at":"0001-01-01T00:00:00Z"}`
)

// Put stores rev as version expect+1 if expect is the current version, in one Lua script that also
// stamps CreatedAt with the Redis clock, trims the history and publishes the version (see Store).
func (s *RedisStore) Put(ctx context.Context, expect uint64, rev Revision) (Revision, error) {
	rev.Files = copyFiles(rev.Files)
	rev.Digest = DigestFiles(rev.Files)
	rev.Version, rev.CreatedAt = 0, time.Time{}
	b, err := json.Marshal(rev)
	if err != nil {
		return Revision{}, fmt.Errorf("put limits: %w", err)
	}
	members, ok := strings.CutPrefix(string(b), revisionHead)
	if ok {
		members, ok = strings.CutSuffix(members, revisionTail)
	}
	if !ok { // Revision's first or last field changed: the script's JSON assembly must follow.
		return Revision{}, fmt.Errorf("put limits: unexpected revision encoding %.60q", b)
	}
	res, err := putScript.Run(ctx, s.client, []string{s.version, s.history},
		strconv.FormatUint(expect, 10), members, s.keep, s.revKey, s.channel).Slice()
	if err != nil {
		return Revision{}, fmt.Errorf("put limits into redis: %w", err)
	}
	if len(res) != 2 {
		return Revision{}, fmt.Errorf("put limits into redis: unexpected reply %v", res)
	}
	stored, _ := res[0].(int64)
	body, _ := res[1].(string)
	if stored == 0 {
		return Revision{}, fmt.Errorf("put limits: expected version %d, current is %s: %w", expect, body, ErrConflict)
	}
	return decodeRevision(body)
}

// Get returns one stored version, or an error wrapping ErrNotFound.
func (s *RedisStore) Get(ctx context.Context, version uint64) (Revision, error) {
	v, err := s.client.Get(ctx, s.revKey+strconv.FormatUint(version, 10)).Result()
	if errors.Is(err, redis.Nil) {
		return Revision{}, fmt.Errorf("get limits version %d: %w", version, ErrNotFound)
	}
	if err != nil {
		return Revision{}, fmt.Errorf("get limits version %d from redis: %w", version, err)
	}
	return decodeRevision(v)
}

// History returns up to n revisions, newest first.
func (s *RedisStore) History(ctx context.Context, n int) ([]Revision, error) {
	if n <= 0 {
		return nil, nil
	}
	versions, err := s.client.LRange(ctx, s.history, 0, int64(n-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("read limits history from redis: %w", err)
	}
	if len(versions) == 0 {
		return nil, nil
	}
	keys := make([]string, len(versions))
	for i, v := range versions {
		keys[i] = s.revKey + v
	}
	vals, err := s.client.MGet(ctx, keys...).Result() // one slot: the keys share the {config} tag
	if err != nil {
		return nil, fmt.Errorf("read limits history from redis: %w", err)
	}
	out := make([]Revision, 0, len(vals))
	for _, v := range vals {
		text, ok := v.(string)
		if !ok {
			continue // trimmed by a Put between LRANGE and MGET
		}
		r, err := decodeRevision(text)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Changes subscribes to the change channel on a dedicated connection and delivers every version
// published from now on. It returns once Redis has confirmed the subscription (or after 2 s, or when ctx
// ends, whichever is first), so a Put that follows is seen. The connection reconnects and resubscribes
// by itself; after a reconnection the current version is delivered too, since messages published
// meanwhile are lost. The channel holds one value, the newest version when the reader is behind, and
// is closed (and the connection released) when ctx ends.
func (s *RedisStore) Changes(ctx context.Context) <-chan uint64 {
	out := make(chan uint64, 1)
	ps := s.client.Subscribe(ctx, s.channel)
	msgs := ps.ChannelWithSubscriptions(redis.WithChannelSize(16))
	pending := s.awaitSubscription(ctx, msgs)
	// Ends when ctx ends (or go-redis closes msgs); closing ps ends go-redis's own pub/sub goroutines.
	go func() {
		defer close(out)
		defer ps.Close()
		for _, m := range pending {
			s.deliver(ctx, out, m, false)
		}
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				s.deliver(ctx, out, m, true)
			}
		}
	}()
	return out
}

// awaitSubscription waits (2 s at most) for Redis to confirm the subscription; it returns any change
// message that arrived first.
func (s *RedisStore) awaitSubscription(ctx context.Context, msgs <-chan any) []any {
	timer := time.NewTimer(2 * time.Second)
	defer timer.Stop()
	var pending []any
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return pending
			}
			if _, sub := m.(*redis.Subscription); sub {
				return pending
			}
			pending = append(pending, m)
		case <-timer.C:
			s.logger.Debug("limits change subscription not confirmed yet; relying on the poll", "channel", s.channel)
			return pending
		case <-ctx.Done():
			return pending
		}
	}
}

// deliver turns one pub/sub message into a version on out. A (re)subscription confirmation after the
// first (resubscribed) means messages may have been lost: the current version is delivered instead.
func (s *RedisStore) deliver(ctx context.Context, out chan uint64, m any, resubscribed bool) {
	switch m := m.(type) {
	case *redis.Message:
		v, err := strconv.ParseUint(m.Payload, 10, 64)
		if err != nil {
			s.logger.Debug("ignored limits change message", "channel", s.channel, "payload", m.Payload)
			return
		}
		offerVersion(out, v)
	case *redis.Subscription:
		if !resubscribed || m.Kind != "subscribe" {
			return
		}
		s.logger.Debug("limits change subscription renewed", "channel", s.channel)
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		v, err := s.currentVersion(cctx)
		cancel()
		if err == nil && v > 0 {
			offerVersion(out, v)
		}
	}
}

func decodeRevision(text string) (Revision, error) {
	var r Revision
	if err := json.Unmarshal([]byte(text), &r); err != nil {
		return Revision{}, fmt.Errorf("decode stored limits revision: %w", err)
	}
	return r, nil
}
