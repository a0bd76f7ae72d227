// Package reputation is the reputation guard: rolling bounce and complaint
// rates per account and provider configuration, with warn and pause
// thresholds.
//
//   - The report counts, as it applies events (Count, in its transaction),
//     the recipients sent to (SENT), bounced (BOUNCED, except soft bounces:
//     a full mailbox says nothing of the sender) and complained about
//     (COMPLAINED), per account, provider configuration and time bucket.
//   - After each batch it assesses the pairs it touched (Guard.Assess): the
//     rates over the last Window, once at least MinSends recipients were sent
//     to, against the thresholds. A change of level is a crossing: an event
//     (REPUTATION_WARNING, REPUTATION_PAUSED, REPUTATION_RECOVERED) on the
//     events stream, which WatchEvents shows.
//   - At the pause threshold the provider configuration is paused
//     (pkg/accountstate's Pause, the account-state mechanism narrowed to one
//     configuration): ingest refuses sends naming it with FAILED_PRECONDITION
//     and workers hold its queued mail (pkg/queue's ParkedSubject) until the
//     owner resumes it (Resume, AccountService.ResumeProvider), which starts
//     the window afresh and publishes REPUTATION_RESUMED. A paused
//     configuration stays paused whatever its rates do meanwhile.
package reputation

import (
	"errors"
	"fmt"
	"time"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/queue"
)

// Config is the guard's thresholds; the report embeds it (REPUTATION_*).
type Config struct {
	// Window is how far back the rolling rates look.
	Window time.Duration `env:"REPUTATION_WINDOW" default:"24h" help:"how far back the reputation guard's rolling bounce and complaint rates look"`
	// MinSends is the volume below which no threshold applies.
	MinSends int64 `env:"REPUTATION_MIN_SENDS" default:"100" help:"recipients sent to within the window below which the reputation guard neither warns nor pauses"`
	// Rates are fractions (0.05 is 5%); a rate at or above a threshold
	// crosses it. 0 disables that threshold.
	WarnBounceRate     float64 `env:"REPUTATION_WARN_BOUNCE_RATE" default:"0.05" help:"bounce rate (fraction) at which the reputation guard warns (0: never)"`
	WarnComplaintRate  float64 `env:"REPUTATION_WARN_COMPLAINT_RATE" default:"0.001" help:"complaint rate (fraction) at which the reputation guard warns (0: never)"`
	PauseBounceRate    float64 `env:"REPUTATION_PAUSE_BOUNCE_RATE" default:"0.1" help:"bounce rate (fraction) at which the reputation guard pauses the provider configuration (0: never)"`
	PauseComplaintRate float64 `env:"REPUTATION_PAUSE_COMPLAINT_RATE" default:"0.005" help:"complaint rate (fraction) at which the reputation guard pauses the provider configuration (0: never)"`
}

// WithDefaults fills unset fields from the default tags.
func (c Config) WithDefaults() (Config, error) {
	err := envconfig.FillDefaults(&c, "Window", "MinSends", "WarnBounceRate", "WarnComplaintRate", "PauseBounceRate", "PauseComplaintRate")
	return c, err
}

// Validate reports thresholds that make no sense.
func (c Config) Validate() error {
	var errs []error
	if c.Window < time.Minute {
		errs = append(errs, fmt.Errorf("reputation window %s: want at least 1m", c.Window))
	}
	if c.MinSends < 1 {
		errs = append(errs, fmt.Errorf("reputation min sends %d: want at least 1", c.MinSends))
	}
	for name, r := range map[string]float64{
		"warn bounce rate": c.WarnBounceRate, "warn complaint rate": c.WarnComplaintRate,
		"pause bounce rate": c.PauseBounceRate, "pause complaint rate": c.PauseComplaintRate,
	} {
		if r < 0 || r > 1 {
			errs = append(errs, fmt.Errorf("reputation %s %g: want a fraction in 0..1", name, r))
		}
	}
	if c.WarnBounceRate > 0 && c.PauseBounceRate > 0 && c.WarnBounceRate > c.PauseBounceRate ||
		c.WarnComplaintRate > 0 && c.PauseComplaintRate > 0 && c.WarnComplaintRate > c.PauseComplaintRate {
		errs = append(errs, errors.New("reputation: a warn threshold above its pause threshold"))
	}
	return errors.Join(errs...)
}

// bucket is the width of one counting bucket: a 24th of the window (at least
// a minute), so the window slides in steps of about 4%.
func (c Config) bucket() time.Duration {
	return max(c.Window/24, time.Minute).Truncate(time.Second)
}

// Counts are what happened within the window.
type Counts struct {
	Sends, Bounces, Complaints int64
}

// BounceRate is bounces per recipient sent to (0 without sends).
func (n Counts) BounceRate() float64 { return ratio(n.Bounces, n.Sends) }

// ComplaintRate is complaints per recipient sent to (0 without sends).
func (n Counts) ComplaintRate() float64 { return ratio(n.Complaints, n.Sends) }

func ratio(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Level is where a provider configuration's rates stand.
type Level string

const (
	OK      Level = "ok"
	Warning Level = "warning"
	Paused  Level = "paused"
)

// Assess is the level n's rates are at: OK below MinSends.
func (c Config) Assess(n Counts) Level {
	if n.Sends < c.MinSends {
		return OK
	}
	at := func(rate, threshold float64) bool { return threshold > 0 && rate >= threshold }
	switch br, cr := n.BounceRate(), n.ComplaintRate(); {
	case at(br, c.PauseBounceRate) || at(cr, c.PauseComplaintRate):
		return Paused
	case at(br, c.WarnBounceRate) || at(cr, c.WarnComplaintRate):
		return Warning
	}
	return OK
}

// Why says in words which rate stands where, for an event's detail and a
// pause's reason.
func (c Config) Why(n Counts) string {
	return fmt.Sprintf("bounce rate %.2f%% and complaint rate %.3f%% over %d recipients in the last %s (warn at %.2f%%/%.3f%%, pause at %.2f%%/%.3f%%)",
		100*n.BounceRate(), 100*n.ComplaintRate(), n.Sends, c.Window,
		100*c.WarnBounceRate, 100*c.WarnComplaintRate, 100*c.PauseBounceRate, 100*c.PauseComplaintRate)
}

// Transition is what a provider configuration at level cur whose rates now
// assess to next becomes, and the event that announces the crossing ("" for
// none). A pause is left only by Resume.
func Transition(cur, next Level) (Level, string) {
	switch {
	case cur == Paused:
		return Paused, ""
	case next == Paused:
		return Paused, queue.EventReputationPaused
	case next == Warning && cur != Warning:
		return Warning, queue.EventReputationWarning
	case next == OK && cur == Warning:
		return OK, queue.EventReputationRecovered
	}
	return cur, ""
}
