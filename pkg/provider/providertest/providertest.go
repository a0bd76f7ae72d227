// Package providertest is the conformance suite every provider.Sender must
// pass (smtp against pkg/smtpsink, sandbox against its address conventions, and
// later ses and gmail against their fakes).
//
// A provider's test supplies a Harness that starts a fresh backend and says
// how to make it accept, refuse or fail transiently, then calls Run.
package providertest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/provider"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Behavior is what the backend does with a recipient.
type Behavior int

const (
	// Accept: the message is accepted for the recipient.
	Accept Behavior = iota
	// Reject: the recipient is refused permanently.
	Reject
	// Fail: the recipient fails transiently (on the first attempt at least).
	Fail
)

// Env is one backend and a sender connected to it.
type Env struct {
	Sender provider.Sender
	// Config is passed in every Delivery.
	Config provider.Config
	// Secrets must never appear in an outcome's error.
	Secrets []string
	// Recipient returns an address the backend treats as b. Required.
	Recipient func(b Behavior) string
	// Arrived, when set, returns the envelope recipients of every copy of
	// messageID the backend received, one slice per copy.
	Arrived func(t *testing.T, messageID string) [][]string
	// Hang, when set, makes the backend hold its answer to the next sends until
	// the test ends, so cancellation can be checked on a blocked send.
	Hang func(t *testing.T)
	// BadCredentials, when set, is a configuration whose login fails.
	BadCredentials *provider.Config
}

// Harness starts backends for the suite.
type Harness interface {
	// Setup starts a fresh backend and sender, cleaned up with t.Cleanup.
	Setup(t *testing.T) *Env
}

// HarnessFunc adapts a function to Harness.
type HarnessFunc func(t *testing.T) *Env

// Setup calls f.
func (f HarnessFunc) Setup(t *testing.T) *Env { return f(t) }

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	t.Run("Accepted", func(t *testing.T) {
		t.Parallel()
		env := h.Setup(t)
		d := Delivery(env, "01JCONFORMACCEPT0000000001", env.Recipient(Accept))
		out := env.Sender.Send(ctxT(t), d)
		require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
		require.NotEmpty(t, out.Response)
		require.NoError(t, out.Err)
		require.Empty(t, out.Rejected)
		if env.Arrived != nil {
			require.Equal(t, [][]string{d.Recipients}, env.Arrived(t, d.Job.GetMessageId()))
		}
	})

	t.Run("Rejected", func(t *testing.T) {
		t.Parallel()
		env := h.Setup(t)
		d := Delivery(env, "01JCONFORMREJECT0000000001", env.Recipient(Reject))
		out := env.Sender.Send(ctxT(t), d)
		require.Equal(t, provider.Permanent, out.Class, "err: %v", out.Err)
		require.Error(t, out.Err)
		checkSecrets(t, env, out)
		if env.Arrived != nil {
			require.Empty(t, env.Arrived(t, d.Job.GetMessageId()))
		}
	})

	t.Run("TransientFailure", func(t *testing.T) {
		t.Parallel()
		env := h.Setup(t)
		d := Delivery(env, "01JCONFORMTRANSIENT0000001", env.Recipient(Fail))
		out := env.Sender.Send(ctxT(t), d)
		require.Equal(t, provider.Transient, out.Class, "err: %v", out.Err)
		require.Error(t, out.Err)
		checkSecrets(t, env, out)
	})

	t.Run("CanceledContext", func(t *testing.T) {
		t.Parallel()
		env := h.Setup(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		out := env.Sender.Send(ctx, Delivery(env, "01JCONFORMCANCELED00000001", env.Recipient(Accept)))
		require.Less(t, time.Since(start), time.Second)
		require.Equal(t, provider.Transient, out.Class, "nothing was sent: %v", out.Err)
		require.Error(t, out.Err)
	})

	// Cases a backend cannot express (the sandbox cannot hang, has no
	// credentials) are not registered at all rather than skipped.
	caps := h.Setup(t)
	if caps.Hang != nil {
		t.Run("DeadlineOnBlockedSend", func(t *testing.T) {
			t.Parallel()
			env := h.Setup(t)
			env.Hang(t)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			out := env.Sender.Send(ctx, Delivery(env, "01JCONFORMDEADLINE00000001", env.Recipient(Accept)))
			require.Less(t, time.Since(start), 2*time.Second, "the send must stop soon after the deadline")
			require.Contains(t, []provider.Class{provider.Transient, provider.Ambiguous}, out.Class, "err: %v", out.Err)
			require.Error(t, out.Err)
		})
	}

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		env := h.Setup(t)
		const n = 50
		outs := make([]provider.Outcome, n)
		ds := make([]*provider.Delivery, n)
		var wg sync.WaitGroup
		for i := range n {
			ds[i] = Delivery(env, fmt.Sprintf("01JCONFORMCONCURRENT%06d", i), env.Recipient(Accept))
			wg.Go(func() { outs[i] = env.Sender.Send(ctxT(t), ds[i]) })
		}
		wg.Wait()
		for i, out := range outs {
			require.Equal(t, provider.Sent, out.Class, "send %d: %v", i, out.Err)
			if env.Arrived != nil {
				require.Len(t, env.Arrived(t, ds[i].Job.GetMessageId()), 1, "send %d arrived once", i)
			}
		}
	})

	if caps.BadCredentials == nil {
		return
	}
	t.Run("BadCredentials", func(t *testing.T) {
		t.Parallel()
		env := h.Setup(t)
		d := Delivery(env, "01JCONFORMBADCREDS00000001", env.Recipient(Accept))
		d.Config = *env.BadCredentials
		out := env.Sender.Send(ctxT(t), d)
		require.Equal(t, provider.Credentials, out.Class, "err: %v", out.Err)
		require.Error(t, out.Err)
		checkSecrets(t, env, out)
		for _, s := range secretsOf(d.Config) {
			require.NotContains(t, out.Err.Error(), s)
			require.NotContains(t, fmt.Sprintf("%+v", out.Err), s)
		}
	})
}

// Delivery returns a delivery of a small message to rcpts, first attempt.
func Delivery(env *Env, messageID string, rcpts ...string) *provider.Delivery {
	to := make([]*emailsenderv1.Address, 0, len(rcpts))
	for _, r := range rcpts {
		to = append(to, &emailsenderv1.Address{Address: r})
	}
	return &provider.Delivery{
		Job: &queuev1.SendJob{
			MessageId:    messageID,
			AccountId:    "acct-conformance",
			ProviderId:   env.Config.ID,
			ProviderKind: env.Config.Kind,
			Message: &emailsenderv1.EmailMessage{
				From:     &emailsenderv1.Address{Address: "sender@conformance.test", Name: "Conformance"},
				To:       to,
				Subject:  "conformance " + messageID,
				TextBody: "hello from the conformance suite\n",
			},
			AcceptedAt: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
		},
		Attempt:    1,
		Recipients: rcpts,
		Config:     env.Config,
	}
}

func checkSecrets(t *testing.T, env *Env, out provider.Outcome) {
	t.Helper()
	secrets := append(append([]string(nil), env.Secrets...), secretsOf(env.Config)...)
	for _, s := range secrets {
		if s == "" {
			continue
		}
		require.NotContains(t, out.Response, s)
		if out.Err != nil {
			require.NotContains(t, out.Err.Error(), s)
			require.NotContains(t, fmt.Sprintf("%+v", out.Err), s)
		}
	}
}

// secretsOf returns the string values of a config's secret JSON object.
func secretsOf(cfg provider.Config) []string {
	var m map[string]any
	if json.Unmarshal(cfg.Secret, &m) != nil {
		return nil
	}
	var out []string
	for _, v := range m {
		if s, ok := v.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
