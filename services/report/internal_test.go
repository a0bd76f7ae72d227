package report

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/reputation"
)

func TestClean(t *testing.T) {
	t.Parallel()
	require.Equal(t, "ab", clean("a\x00b", 10))
	cut := clean("héllo", 2) // 'é' is two bytes: cut before it
	require.Equal(t, "h", cut)
	require.True(t, utf8.ValidString(cut))
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	id := uuid.Must(uuid.NewV7()).String()
	got, err := decodeCursor(encodeCursor(id))
	require.NoError(t, err)
	require.Equal(t, id, got)
	for _, bad := range []string{"", "!!", "AQ", encodeCursor(id)[:10]} {
		_, err := decodeCursor(bad)
		require.Error(t, err, bad)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	withDefaults := func(c Config) Config {
		c, err := c.WithDefaults()
		require.NoError(t, err)
		return c
	}
	require.NoError(t, withDefaults(Config{}).validate())
	require.ErrorContains(t, withDefaults(Config{BatchSize: 100, MaxAckPending: 150}).validate(), "max ack pending")
	require.ErrorContains(t, withDefaults(Config{ApplyTimeout: 30 * time.Second, AckWait: 30 * time.Second}).validate(), "apply timeout")
}

// ackMsg is a message whose ack fails while its connection is "down".
type ackMsg struct {
	jetstream.Msg
	down  *atomic.Bool
	acked atomic.Int32
}

func (m *ackMsg) Ack() error {
	if m.down.Load() {
		return nats.ErrReconnectBufExceeded
	}
	m.acked.Add(1)
	return nil
}

func (m *ackMsg) Subject() string { return "EMAIL_EVENTS.x" }

// Acks that cannot go out while NATS reconnects are sent once it is back,
// before the consumer takes the next batch; not dropped.
func TestFlushAcksAfterReconnect(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	s := &Service{cfg: Config{AckWait: 10 * time.Second}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	msgs := []*ackMsg{{down: &down}, {down: &down}, {down: &down}}
	for _, m := range msgs {
		s.ack(context.Background(), m)
	}
	require.Len(t, s.unacked, 3)
	go func() { time.Sleep(300 * time.Millisecond); down.Store(false) }()
	start := time.Now()
	s.flushAcks(context.Background())
	require.Empty(t, s.unacked)
	for _, m := range msgs {
		require.EqualValues(t, 1, m.acked.Load())
	}
	require.Less(t, time.Since(start), 5*time.Second)

	// Down for longer than the ack wait: given up (the events come back).
	s.cfg.AckWait = 200 * time.Millisecond
	down.Store(true)
	s.ack(context.Background(), &ackMsg{down: &down})
	s.flushAcks(context.Background())
	require.Empty(t, s.unacked)
}

// A pair's deliveries are assessed at once the first time, then wait until
// the interval has passed since its last assessment (take hands them over);
// an adverse batch's assessment counts as one.
func TestAssessQueue(t *testing.T) {
	t.Parallel()
	a, b := reputation.Key{Account: "a", Provider: "p"}, reputation.Key{Account: "b", Provider: "p"}
	var q assessQueue
	t0 := time.Unix(1000, 0)
	every := time.Second
	require.Equal(t, []reputation.Key{a}, q.due([]reputation.Key{a}, t0, every))
	require.Empty(t, q.due([]reputation.Key{a}, t0.Add(500*time.Millisecond), every), "assessed 0.5s ago: waits")
	require.Equal(t, []reputation.Key{b}, q.due([]reputation.Key{a, b}, t0.Add(600*time.Millisecond), every))
	require.Equal(t, []reputation.Key{a}, q.take(t0.Add(time.Second), every), "the waiting pair")
	require.Empty(t, q.take(t0.Add(1100*time.Millisecond), every))
	require.Empty(t, q.due([]reputation.Key{a}, t0.Add(1500*time.Millisecond), every), "assessed by take at 1s")
	require.Equal(t, []reputation.Key{a}, q.due([]reputation.Key{a}, t0.Add(2*time.Second), every))
	q.assessed([]reputation.Key{b}, t0.Add(2*time.Second))
	require.Empty(t, q.due([]reputation.Key{b}, t0.Add(2500*time.Millisecond), every), "an adverse batch assessed it")
	require.Equal(t, []reputation.Key{b}, q.take(t0.Add(3*time.Second), every))
	require.Empty(t, q.take(t0.Add(10*time.Second), every))
	require.Empty(t, q.last, "pairs not assessed within the interval are forgotten")
}
