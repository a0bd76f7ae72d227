package reputation_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/reputation"
)

func defaults(t *testing.T) reputation.Config {
	t.Helper()
	cfg, err := reputation.Config{}.WithDefaults()
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	return cfg
}

// The defaults are the issue's: warn at 5% bounces or 0.1% complaints, pause
// at 10% or 0.5%, over 24 hours, from 100 recipients on.
func TestAssess(t *testing.T) {
	cfg := defaults(t)
	require.Equal(t, 24*time.Hour, cfg.Window)
	for _, tc := range []struct {
		name string
		n    reputation.Counts
		want reputation.Level
	}{
		{"nothing sent", reputation.Counts{}, reputation.OK},
		{"below the minimum volume every rate is ok", reputation.Counts{Sends: 99, Bounces: 99, Complaints: 99}, reputation.OK},
		{"clean", reputation.Counts{Sends: 1000, Bounces: 49, Complaints: 0}, reputation.OK},
		{"warn bounce rate reached", reputation.Counts{Sends: 1000, Bounces: 50}, reputation.Warning},
		{"warn complaint rate reached", reputation.Counts{Sends: 1000, Complaints: 1}, reputation.Warning},
		{"just below the pause bounce rate", reputation.Counts{Sends: 1000, Bounces: 99}, reputation.Warning},
		{"pause bounce rate reached", reputation.Counts{Sends: 1000, Bounces: 100}, reputation.Paused},
		{"pause complaint rate reached", reputation.Counts{Sends: 1000, Complaints: 5}, reputation.Paused},
		{"at the minimum volume", reputation.Counts{Sends: 100, Bounces: 10}, reputation.Paused},
		{"bounces beyond sends (late reports)", reputation.Counts{Sends: 100, Bounces: 300}, reputation.Paused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, cfg.Assess(tc.n))
		})
	}
	off := cfg
	off.PauseBounceRate, off.PauseComplaintRate = 0, 0
	require.Equal(t, reputation.Warning, off.Assess(reputation.Counts{Sends: 100, Bounces: 100}), "a zero threshold never crosses")
}

// Each crossing has its event; a pause is left only by Resume.
func TestTransition(t *testing.T) {
	for _, tc := range []struct {
		cur, next reputation.Level
		want      reputation.Level
		event     string
	}{
		{reputation.OK, reputation.OK, reputation.OK, ""},
		{reputation.OK, reputation.Warning, reputation.Warning, queue.EventReputationWarning},
		{reputation.OK, reputation.Paused, reputation.Paused, queue.EventReputationPaused},
		{reputation.Warning, reputation.Warning, reputation.Warning, ""},
		{reputation.Warning, reputation.Paused, reputation.Paused, queue.EventReputationPaused},
		{reputation.Warning, reputation.OK, reputation.OK, queue.EventReputationRecovered},
		{reputation.Paused, reputation.OK, reputation.Paused, ""},
		{reputation.Paused, reputation.Warning, reputation.Paused, ""},
		{reputation.Paused, reputation.Paused, reputation.Paused, ""},
	} {
		t.Run(string(tc.cur)+"→"+string(tc.next), func(t *testing.T) {
			got, ev := reputation.Transition(tc.cur, tc.next)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.event, ev)
		})
	}
}

func TestValidate(t *testing.T) {
	cfg := defaults(t)
	for name, mutate := range map[string]func(*reputation.Config){
		"short window":        func(c *reputation.Config) { c.Window = time.Second },
		"no minimum":          func(c *reputation.Config) { c.MinSends = 0 },
		"rate above 1":        func(c *reputation.Config) { c.PauseBounceRate = 2 },
		"warn above pause":    func(c *reputation.Config) { c.WarnBounceRate = 0.2 },
		"negative complaints": func(c *reputation.Config) { c.WarnComplaintRate = -0.1 },
	} {
		c := cfg
		mutate(&c)
		require.Error(t, c.Validate(), name)
	}
}
