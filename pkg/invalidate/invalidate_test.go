package invalidate_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/invalidate"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
)

// cache records what its watcher told it to forget.
type cache struct {
	mu     sync.Mutex
	forgot []string
}

func (c *cache) forget(key string) {
	c.mu.Lock()
	c.forgot = append(c.forgot, key)
	c.mu.Unlock()
}

func (c *cache) has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.forgot {
		if k == key {
			return true
		}
	}
	return false
}

func connect(t *testing.T, ns *natstest.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

var cfg = invalidate.Config{Bucket: "TEST_INVALIDATE", Prefix: "test-", Description: "test"}

// Announce returns once every watcher (a replica each, with a connection of
// its own) has forgotten the key; a watcher is current only while its watch
// is established and its connection up.
func TestAnnounceIsConfirmedByEveryWatcher(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		caches   []*cache
		watchers []*invalidate.Watcher
		done     = make(chan error, 2)
	)
	for range 2 {
		c := &cache{}
		w := invalidate.New(connect(t, ns), cfg).Watcher(c.forget)
		require.False(t, w.Current(), "not current before its watch is established")
		go func() { done <- w.Run(ctx) }()
		caches, watchers = append(caches, c), append(watchers, w)
	}
	for _, w := range watchers {
		require.Eventually(t, w.Current, 10*time.Second, 10*time.Millisecond)
	}
	feed := invalidate.New(connect(t, ns), cfg)
	for _, key := range []string{"acct-1", "acct-2"} {
		require.NoError(t, feed.Announce(ctx, key))
		for i, c := range caches {
			require.True(t, c.has(key), "watcher %d forgot %s before Announce returned", i, key)
		}
	}

	ns.Stop()
	for _, w := range watchers {
		require.Eventually(t, func() bool { return !w.Current() }, 10*time.Second, 10*time.Millisecond, "not current without NATS")
	}
	ns.Restart()
	for i, w := range watchers {
		require.Eventually(t, w.Current, 30*time.Second, 10*time.Millisecond, "watcher %d current again", i)
		require.True(t, caches[i].has(""), "watcher %d forgot everything on the way", i)
	}
	require.NoError(t, feed.Announce(ctx, "acct-3"))
	for i, c := range caches {
		require.True(t, c.has("acct-3"), "watcher %d", i)
	}
	cancel()
	for range watchers {
		require.NoError(t, <-done)
	}
}

// A watcher that stopped (a replica gone) makes Announce fail after Confirm,
// until its consumer expires; Post does not wait.
func TestAnnounceFailsWithoutConfirmation(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	c := &cache{}
	js := connect(t, ns)
	w := invalidate.New(js, cfg).Watcher(c.forget)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	require.Eventually(t, w.Current, 10*time.Second, 10*time.Millisecond)
	// Its connection frozen: the consumer stays, nobody acknowledges.
	js.Conn().Close()
	cancel()
	require.NoError(t, <-done)

	c2 := cfg
	c2.Confirm = 300 * time.Millisecond
	feed := invalidate.New(connect(t, ns), c2)
	require.NoError(t, feed.Post(context.Background(), "acct-1"))
	require.ErrorContains(t, feed.Announce(context.Background(), "acct-1"), "did not confirm")
}
