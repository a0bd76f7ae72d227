package sandbox_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/providertest"
	"github.com/namirasoft/email-sender/pkg/provider/sandbox"
)

func env(t *testing.T) *providertest.Env {
	return &providertest.Env{
		Sender: sandbox.New(),
		Config: provider.Config{ID: "sandbox-1", AccountID: "acct", Kind: "sandbox"},
		Recipient: func(b providertest.Behavior) string {
			switch b {
			case providertest.Reject:
				return "reject@sandbox.test"
			case providertest.Fail:
				return "transient@sandbox.test"
			}
			return "someone@sandbox.test"
		},
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, providertest.HarnessFunc(env))
}

func TestSend(t *testing.T) {
	t.Parallel()
	fb := func(r string, types ...string) []provider.Feedback {
		var out []provider.Feedback
		for _, ty := range types {
			out = append(out, provider.Feedback{Recipient: r, Type: ty})
		}
		return out
	}
	tests := []struct {
		name     string
		rcpts    []string
		attempt  int
		want     provider.Class
		feedback []provider.Feedback
	}{
		{"deliver", []string{"jane@example.com"}, 1, provider.Sent, fb("jane@example.com", "DELIVERED")},
		{"bounce", []string{"bounce@example.com"}, 1, provider.Sent, fb("bounce@example.com", "BOUNCED")},
		{"bounce tag and case", []string{"BOUNCE+order-7@Example.com"}, 1, provider.Sent, fb("BOUNCE+order-7@Example.com", "BOUNCED")},
		{"complaint", []string{"complaint@x.test"}, 1, provider.Sent, fb("complaint@x.test", "DELIVERED", "COMPLAINED")},
		{"transient 1", []string{"transient@x.test"}, 1, provider.Transient, nil},
		{"transient 2", []string{"transient+a@x.test"}, 2, provider.Transient, nil},
		{"transient 3", []string{"transient@x.test"}, 3, provider.Sent, fb("transient@x.test", "DELIVERED")},
		{"transient 4", []string{"Transient@x.test"}, 4, provider.Sent, fb("Transient@x.test", "DELIVERED")},
		{"reject", []string{"reject@x.test"}, 1, provider.Permanent, nil},
		{"timeout", []string{"timeout@x.test"}, 1, provider.Ambiguous, nil},
		{"not a keyword", []string{"bounced@x.test", "xbounce@x.test"}, 1, provider.Sent,
			append(fb("bounced@x.test", "DELIVERED"), fb("xbounce@x.test", "DELIVERED")...)},
		{"mixed feedback", []string{"a@x.test", "bounce@x.test"}, 1, provider.Sent,
			append(fb("a@x.test", "DELIVERED"), fb("bounce@x.test", "BOUNCED")...)},
		{"worst wins: reject over transient", []string{"transient@x.test", "reject@x.test", "a@x.test"}, 1, provider.Permanent, nil},
		{"worst wins: permanent over ambiguous", []string{"timeout@x.test", "reject@x.test"}, 1, provider.Permanent, nil},
		{"worst wins: ambiguous over transient", []string{"transient@x.test", "timeout@x.test"}, 1, provider.Ambiguous, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := env(t)
			d := providertest.Delivery(e, "01JSANDBOX", tt.rcpts...)
			d.Attempt = tt.attempt
			out := e.Sender.Send(context.Background(), d)
			require.Equal(t, tt.want, out.Class, "err: %v", out.Err)
			if tt.want == provider.Sent {
				require.NoError(t, out.Err)
				require.Equal(t, "250 sandbox: accepted", out.Response)
				require.Equal(t, "sandbox-01JSANDBOX", out.MessageID)
				for i := range out.Feedback {
					out.Feedback[i].Detail = ""
				}
				require.Equal(t, tt.feedback, out.Feedback)
			} else {
				require.Error(t, out.Err)
				require.Empty(t, out.Feedback)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	require.NoError(t, sandbox.New().Verify(context.Background(), provider.Config{}))
}
