package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
)

func TestPublishAll(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Start(t).JetStream(t)
	ctx := context.Background()
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))

	msgs := []*nats.Msg{
		queue.NewMsg(queue.EventSubject("acc", "m1"), "e1", []byte("a")),
		queue.NewMsg(queue.EventSubject("acc", "m1"), "e2", []byte("b")),
		queue.NewMsg(queue.EventSubject("acc", "m1"), "e1", []byte("a")), // a duplicate: fine
		queue.NewMsg("nowhere.at.all", "e3", []byte("c")),                // no stream takes it
	}
	errs := queue.PublishAll(ctx, js, msgs, 5*time.Second, jetstream.WithExpectStream(queue.EventStream))
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.NoError(t, errs[2])
	require.Error(t, errs[3])
	require.Contains(t, errs[3].Error(), "e3", "the error names the message")
	s, err := js.Stream(ctx, queue.EventStream)
	require.NoError(t, err)
	require.EqualValues(t, 2, s.CachedInfo().State.Msgs)

	nc.Close()
	for _, err := range queue.PublishAll(ctx, js, msgs[:1], time.Second) {
		require.ErrorIs(t, err, queue.ErrDisconnected)
	}
}
