package parked_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	"github.com/namirasoft/email-sender/services/worker/parked"
)

type pauses map[string]bool

func (p pauses) Paused(_ context.Context, account, provider string) (accountstate.Pause, error) {
	return accountstate.Pause{Account: account, Provider: provider, Paused: p[provider]}, nil
}

// Parked jobs stay parked while their configuration is paused and go back to
// their kind's subject, each once, when it is not: by Notify or by the sweep.
func TestParkedJobsAreReleasedOnceLifted(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).JetStream(t)
	ctx := t.Context()
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))
	acc, prov, other := uuid.NewString(), uuid.NewString(), uuid.NewString()
	park := func(p string, n int) {
		for range n {
			id := uuid.NewString()
			data, err := proto.Marshal(&queuev1.SendJob{MessageId: id, AccountId: acc, ProviderId: p, ProviderKind: "sandbox", AttemptsBefore: 2})
			require.NoError(t, err)
			_, err = js.PublishMsg(ctx, queue.NewMsg(queue.ParkedSubject(p, acc), id+"/parked/x", data))
			require.NoError(t, err)
		}
	}
	park(prov, 3)
	park(other, 2)
	subjects := func() map[string]uint64 {
		st, err := js.Stream(ctx, queue.SendStream)
		require.NoError(t, err)
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(queue.SendAccountsFilter))
		require.NoError(t, err)
		return info.State.Subjects
	}
	paused := pauses{prov: true, other: true}
	m := parked.New(js, paused, time.Hour, nil)

	require.NoError(t, m.Sweep(ctx))
	require.Equal(t, map[string]uint64{queue.ParkedSubject(prov, acc): 3, queue.ParkedSubject(other, acc): 2}, subjects(), "paused: nothing moves")

	n, err := m.Release(ctx, parked.Key{Account: acc, Provider: prov})
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, map[string]uint64{queue.SendSubject("sandbox", acc): 3, queue.ParkedSubject(other, acc): 2}, subjects())

	// The sweep releases a configuration no longer paused.
	paused[other] = false
	require.NoError(t, m.Sweep(ctx))
	require.Equal(t, map[string]uint64{queue.SendSubject("sandbox", acc): 5}, subjects())

	// The released jobs are the parked ones, attempts kept.
	cons, err := js.CreateOrUpdateConsumer(ctx, queue.SendStream, jetstream.ConsumerConfig{
		Durable: "check", FilterSubject: queue.SendSubject("sandbox", acc), AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	batch, err := cons.FetchNoWait(10)
	require.NoError(t, err)
	got := 0
	for msg := range batch.Messages() {
		var job queuev1.SendJob
		require.NoError(t, proto.Unmarshal(msg.Data(), &job))
		require.EqualValues(t, 2, job.GetAttemptsBefore())
		got++
	}
	require.Equal(t, 5, got)
}
