package ses_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/ses"
)

func TestParseFeedback(t *testing.T) {
	t.Parallel()
	at := "2026-01-02T03:04:05.678Z"
	for _, tc := range []struct {
		name, payload, event string
		want                 []provider.Feedback
		occurred             string
	}{
		{name: "delivery", event: "Delivery", occurred: at,
			payload: `{"eventType":"Delivery","mail":{"messageId":"ses-1","timestamp":"` + at + `","tags":{"emailsender-message-id":["m-1"]}},
				"delivery":{"timestamp":"` + at + `","recipients":["a@example.com"],"smtpResponse":"250 ok","reportingMTA":"mta.example"}}`,
			want: []provider.Feedback{{Recipient: "a@example.com", Type: "DELIVERED", Response: "250 ok", Detail: "delivered (SES, mta.example)"}}},
		{name: "hard bounce", event: "Bounce", occurred: at,
			payload: `{"notificationType":"Bounce","mail":{"messageId":"ses-1","tags":{"emailsender-message-id":["m-1"]}},
				"bounce":{"bounceType":"Permanent","bounceSubType":"General","timestamp":"` + at + `","bouncedRecipients":[{"emailAddress":"b@example.com","action":"failed","status":"5.1.1"}]}}`,
			want: []provider.Feedback{{Recipient: "b@example.com", Type: "BOUNCED", Response: "failed 5.1.1", Class: "hard_bounce", Suppress: "bounce",
				Detail: "hard bounce (Permanent/General): address suppressed"}}},
		{name: "soft bounce", event: "Bounce", occurred: at,
			payload: `{"eventType":"Bounce","mail":{"messageId":"ses-1"},
				"bounce":{"bounceType":"Transient","bounceSubType":"MailboxFull","timestamp":"` + at + `","bouncedRecipients":[{"emailAddress":"b@example.com","diagnosticCode":"452 full"}]}}`,
			want: []provider.Feedback{{Recipient: "b@example.com", Type: "BOUNCED", Response: "452 full", Class: "soft_bounce",
				Detail: "soft bounce (Transient/MailboxFull): not suppressed"}}},
		// A permanent bounce the remote server explains as a policy block
		// (5.7.x) or a rejected message is not the address's fault: the
		// same taxonomy as DSNs (pkg/bounce), never suppressed.
		{name: "policy block", event: "Bounce", occurred: at,
			payload: `{"eventType":"Bounce","mail":{"messageId":"ses-1"},
				"bounce":{"bounceType":"Permanent","bounceSubType":"General","timestamp":"` + at + `","bouncedRecipients":[{"emailAddress":"b@example.com","status":"5.7.1","diagnosticCode":"smtp; 554 5.7.1 blocked using zen.spamhaus.org"}]}}`,
			want: []provider.Feedback{{Recipient: "b@example.com", Type: "BOUNCED", Response: "smtp; 554 5.7.1 blocked using zen.spamhaus.org", Class: "policy_block",
				Detail: "policy or reputation block (Permanent/General): address not suppressed"}}},
		{name: "message too large", event: "Bounce", occurred: at,
			payload: `{"eventType":"Bounce","mail":{"messageId":"ses-1"},
				"bounce":{"bounceType":"Transient","bounceSubType":"MessageTooLarge","timestamp":"` + at + `","bouncedRecipients":[{"emailAddress":"b@example.com","status":"5.3.4"}]}}`,
			want: []provider.Feedback{{Recipient: "b@example.com", Type: "BOUNCED", Response: "5.3.4", Class: "message_rejected",
				Detail: "message rejected (Transient/MessageTooLarge): address not suppressed"}}},
		{name: "complaint", event: "Complaint", occurred: at,
			payload: `{"eventType":"Complaint","mail":{"messageId":"ses-1"},
				"complaint":{"timestamp":"` + at + `","complaintFeedbackType":"abuse","complainedRecipients":[{"emailAddress":"c@example.com"}]}}`,
			want: []provider.Feedback{{Recipient: "c@example.com", Type: "COMPLAINED", Class: "complaint", Suppress: "complaint", Detail: "complaint (abuse): address suppressed"}}},
		{name: "other event", event: "Open", payload: `{"eventType":"Open","mail":{"messageId":"ses-1"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ses.ParseFeedback([]byte(tc.payload))
			require.NoError(t, err)
			require.Equal(t, tc.event, n.Event)
			require.Equal(t, "ses-1", n.ProviderMessageID)
			require.Equal(t, tc.want, n.Recipients)
			if tc.occurred != "" {
				want, _ := time.Parse(time.RFC3339Nano, tc.occurred)
				require.True(t, want.Equal(n.OccurredAt), "%s", n.OccurredAt)
			} else {
				require.True(t, n.OccurredAt.IsZero())
			}
		})
	}
	n, err := ses.ParseFeedback([]byte(`{"eventType":"Delivery","mail":{"messageId":"x","timestamp":"` + at + `","sendingAccountId":"123456789012","tags":{"emailsender-message-id":["m-1"]}}}`))
	require.NoError(t, err)
	require.Equal(t, "m-1", n.MessageID)
	require.Equal(t, "123456789012", n.SenderAccount)
	require.False(t, n.SentAt.IsZero())
	_, err = ses.ParseFeedback([]byte(`not json`))
	require.Error(t, err)
}
