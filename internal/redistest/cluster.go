package redistest

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a throwaway Redis Cluster of redis-server processes owned by one test.
type Cluster struct {
	t       testing.TB
	Masters []*Server
	// Replicas holds the replica nodes in creation order (redis-cli assigns them to masters).
	Replicas []*Server
}

// StartCluster runs masters+masters*replicasPerMaster cluster-enabled redis-server processes, joins them
// with redis-cli --cluster create and waits until every node reports cluster_state:ok and knows every
// node. A missing redis-cli or redis-server fails the test under CI and skips it otherwise.
func StartCluster(t testing.TB, masters, replicasPerMaster int) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		unavailable(t, "redis-cli binary not found: %v", err)
	}
	args := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "2000", "--repl-diskless-sync-delay", "0"}
	c := &Cluster{t: t}
	var addrs []string
	for i := 0; i < masters*(1+replicasPerMaster); i++ {
		s := start(t, args...)
		addrs = append(addrs, s.Addr())
		if i < masters {
			c.Masters = append(c.Masters, s)
		} else {
			c.Replicas = append(c.Replicas, s)
		}
	}
	create := append([]string{"--cluster", "create"}, addrs...)
	create = append(create, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	if out, err := exec.Command(cli, create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.waitReady(addrs)
	return c
}

// waitReady polls every node until it reports cluster_state:ok and lists every node as connected.
func (c *Cluster) waitReady(addrs []string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range addrs {
		cl := redis.NewClient(&redis.Options{Addr: addr})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err1 := cl.ClusterInfo(ctx).Result()
			nodes, err2 := cl.ClusterNodes(ctx).Result()
			cancel()
			if err1 == nil && err2 == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Count(nodes, "connected") == len(addrs) {
				break
			}
			if time.Now().After(deadline) {
				_ = cl.Close()
				c.t.Fatalf("cluster node %s not ready: %v %v\n%s\n%s", addr, err1, err2, info, nodes)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = cl.Close()
	}
}

// Addrs lists every node's host:port, masters first.
func (c *Cluster) Addrs() []string {
	var addrs []string
	for _, s := range append(append([]*Server{}, c.Masters...), c.Replicas...) {
		addrs = append(addrs, s.Addr())
	}
	return addrs
}

// Client returns a cluster client of the nodes, closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}
