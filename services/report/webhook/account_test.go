package webhook

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

// Account-level events go only to endpoints that name them, whatever their
// tag filter; an endpoint without a type filter gets message events only.
func TestAccountDeliveries(t *testing.T) {
	t.Parallel()
	ev := streamEvent{seq: 7, pb: &queuev1.DeliveryEvent{
		EventId: "ev1", MessageId: "p1", AccountId: "a1", Type: queue.EventReputationPaused, ProviderId: "p1",
		OccurredAt: timestamppb.New(time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)), Detail: "bounce rate 10.00% ...",
		Reputation: &queuev1.ReputationSnapshot{Level: "paused", Sends: 10, Bounces: 1, WindowSeconds: 3600},
	}}
	for _, tc := range []struct {
		name  string
		ep    matcher
		wants bool
	}{
		{"names it", matcher{ID: "e1", AccountID: "a1", Types: []string{"reputation_paused"}}, true},
		{"names it, with a tag filter", matcher{ID: "e1", AccountID: "a1", Types: []string{"delivered", "reputation_paused"}, Tags: map[string]string{"c": "x"}}, true},
		{"no type filter", matcher{ID: "e1", AccountID: "a1"}, false},
		{"another reputation type", matcher{ID: "e1", AccountID: "a1", Types: []string{"reputation_warning"}}, false},
		{"message types only", matcher{ID: "e1", AccountID: "a1", Types: []string{"bounced", "failed"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := AccountTypes[ev.pb.GetType()]
			ds, err := accountDeliveries(ev, name, []matcher{tc.ep}, time.Now())
			require.NoError(t, err)
			if !tc.wants {
				require.Empty(t, ds)
				return
			}
			require.Len(t, ds, 1)
			d := ds[0]
			require.Equal(t, "reputation.paused", d.EventType)
			require.Equal(t, "p1", d.MessageID, "ordered per provider configuration")
			require.Empty(t, d.Recipient)
			require.Equal(t, DeliveryID("e1", "ev1", ""), d.ID)
			var p map[string]any
			require.NoError(t, json.Unmarshal(d.Payload, &p))
			require.EqualValues(t, 1, p["version"])
			data := p["data"].(map[string]any)
			require.Equal(t, "paused", data["level"])
			require.InDelta(t, 0.1, data["bounce_rate"], 1e-9)
			require.EqualValues(t, 0, data["complaint_rate"])
			require.EqualValues(t, 3600, data["window_seconds"])
			require.Equal(t, "p1", data["provider_id"])
		})
	}
}

func TestTypeNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, payload string }{
		{"delivered", "message.delivered"},
		{"retrying", "message.retrying"},
		{"reputation_warning", "reputation.warning"},
		{"reputation_resumed", "reputation.resumed"},
	} {
		require.Equal(t, tc.payload, typeName(tc.name))
	}
	require.Len(t, AccountTypeNames, len(AccountTypes))
	for _, n := range AccountTypes {
		require.Contains(t, TypeNames, n)
	}
	for _, bad := range [][]string{{"reputation.paused"}, {"REPUTATION_PAUSED_X"}, {"delivered", "nope"}} {
		_, ok := validTypes(bad)
		require.False(t, ok, "%v", bad)
	}
	_, ok := validTypes([]string{"Reputation_Paused", "delivered"})
	require.True(t, ok)
}
