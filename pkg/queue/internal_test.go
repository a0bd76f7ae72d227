package queue

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/natstest"
)

// The server must report back exactly what EnsureStreams asks for, or every
// start would update the streams.
func TestServerConfigMatchesWhatWeSet(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, EnsureStreams(ctx, js, StreamConfig{}))
	for _, want := range streamConfigs(StreamConfig{}) {
		s, err := js.Stream(ctx, want.Name)
		require.NoError(t, err)
		require.True(t, sameStreamConfig(s.CachedInfo().Config, want), "%s: server reports %+v", want.Name, s.CachedInfo().Config)
	}
}
