package queue_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
)

func TestEnsureStreamsIsIdempotentAndUpdatesChanges(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).JetStream(t)
	ctx := context.Background()

	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))
	s, err := js.Stream(ctx, queue.SendStream)
	require.NoError(t, err)
	created := s.CachedInfo().Created

	// Unchanged: nothing to do, the stream stays as it is.
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))
	s, err = js.Stream(ctx, queue.SendStream)
	require.NoError(t, err)
	require.Equal(t, created, s.CachedInfo().Created)
	require.NotNil(t, s.CachedInfo().Config.RePublish)

	// Changed: updated in place.
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{MaxMsgSize: 1 << 20}))
	s, err = js.Stream(ctx, queue.SendStream)
	require.NoError(t, err)
	require.EqualValues(t, 1<<20, s.CachedInfo().Config.MaxMsgSize)
}
