package queue

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
)

// The server must report back exactly what EnsureStreams asks for, or every
// start would update the streams.
func TestServerConfigMatchesWhatWeSet(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).JetStream(t)
	ctx := context.Background()
	require.NoError(t, EnsureStreams(ctx, js, StreamConfig{}))
	for _, want := range streamConfigs(StreamConfig{}) {
		s, err := js.Stream(ctx, want.Name)
		require.NoError(t, err)
		require.True(t, sameStreamConfig(s.CachedInfo().Config, want), "%s: server reports %+v", want.Name, s.CachedInfo().Config)
	}
}
