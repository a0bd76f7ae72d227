// Package gmailpoll finds the bounces of messages sent through Gmail
// configurations. Gmail has no envelope sender of ours: a message that
// cannot be delivered comes back to the sending mailbox as a delivery
// status notification from mailer-daemon@googlemail.com. One poller per
// gmail configuration reads the mailbox's history incrementally
// (users.history.list from the stored historyId, historyTypes=messageAdded,
// labelId=INBOX), reads each new message (users.messages.get: format=raw
// when the token may read bodies, else format=metadata), and records each
// bounce notice through pkg/bouncereport, the inbound service's path:
// suppression per pkg/suppression, then BOUNCED events on EMAIL_EVENTS.
//
// # Where it runs, and why
//
// In the worker, among the deliveries of the gmail kind
// (WORKER_PROVIDERS includes gmail): the worker already opens provider
// secrets (MASTER_KEYS) and holds each configuration's OAuth client, whose
// cached access token the poller shares with the sends. The inbound service
// publishes bounce events too, but it faces the internet on port 25 and has
// no keyring; giving it every tenant's refresh tokens would widen what a
// compromise of the exposed service yields.
//
// # Finding the message
//
// A Gmail bounce notice carries, in its headers, the failed recipients
// (X-Failed-Recipients, present on permanent failures only) and the bounced
// message's Message-ID (In-Reply-To, References), and Gmail threads it with
// that message, whose Gmail id (the provider_message_id recorded on SENT)
// is the thread's id. So the message is found by the notice's thread id
// among the configuration's messages, else by the Message-ID <message
// id@domain>; a notice counts only for a message this configuration sent,
// and only for that message's recipients.
//
// # The class: what the token may read
//
// Which scopes the token carries is what Google's token endpoint says it
// granted (the "scope" of the token answer), read at each poll:
//
//   - gmail.readonly, gmail.modify or https://mail.google.com/, and not
//     gmail.metadata: the notice is read whole (format=raw) and parsed by
//     pkg/mailreport, the inbound service's parser; each failed recipient
//     gets the class, status and diagnostic of its own delivery-status
//     entry (a full mailbox is a soft bounce, suppressed only after
//     SUPPRESS_SOFT_BOUNCES in a row; a 5.7.1 refusal a policy block, never
//     suppressed; 5.1.1 a hard bounce). Should Gmail refuse format=raw all
//     the same, the poll goes on with headers, as below, and says so.
//   - gmail.metadata (alone, or beside a broader scope: Gmail then gives a
//     token headers and labels only, format=raw and full answer 403, and
//     no snippet): the headers say that a recipient failed for good, not
//     why, so the class is pkg/bounce's for a failure without a code, a
//     hard bounce (suppressed). The snippet ("** Message blocked ** ... 550
//     5.7.1 ..."), when Gmail gives one, refines it.
//
// # Delay notices
//
// A "Delivery Status Notification (Delay)" (Gmail still trying) has no
// X-Failed-Recipients and is not recorded; neither is a recipient whose
// delivery-status entry says Action: delayed. It suppresses nothing and
// counts for no soft-bounce streak: Gmail's final Failure notice, or none
// when the retry succeeds, decides. (Recording it as a bounce would end the
// recipient's status at BOUNCED, which a later delivery could not undo.)
//
// # Cursor, lease, errors
//
// The cursor (gmail_poll_cursors) starts at the profile's historyId when a
// configuration is first polled (earlier notices are not looked at) and
// moves to the list's historyId once every page was read and recorded; a
// poll that fails is read again from the same cursor, and its events keep
// their ids (the notice's Gmail id is the report id). A 404 for a history
// id too old (Gmail keeps about a week) restarts from the profile's current
// historyId; the notices in between are lost, which is logged. One replica
// polls a configuration at a time: a lease in the EMAIL_GMAIL_POLL KV
// bucket, renewed by compare-and-set before each poll and freed at
// shutdown. Errors back off exponentially from the interval to MaxBackoff.
package gmailpoll

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/bounce"
	"github.com/namirasoft/email-sender/pkg/bouncereport"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/mailreport"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/gmail"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/services/worker/store"
)

// Config configures the pollers of one worker process.
type Config struct {
	// Interval is the time between two polls of a mailbox.
	Interval time.Duration `env:"GMAIL_POLL_INTERVAL" default:"1m" help:"time between two reads of a Gmail configuration's mailbox history for bounce notices"`
	// MaxBackoff bounds the delay after failed polls (doubling from Interval).
	MaxBackoff time.Duration `env:"GMAIL_POLL_MAX_BACKOFF" default:"15m" help:"longest delay between polls of a mailbox after errors"`
	// Lease is how long a replica holds a configuration's poll; renewed
	// before each poll, it is how long a dead replica's configurations wait
	// for another.
	Lease time.Duration `env:"GMAIL_POLL_LEASE" default:"5m" help:"lease of a mailbox's poller (one replica at a time); must exceed GMAIL_POLL_INTERVAL"`
	// Discovery is how often the gmail configurations are listed.
	Discovery time.Duration `env:"GMAIL_POLL_DISCOVERY" default:"1m" help:"how often the worker lists the gmail configurations to poll"`
	// PageSize is maxResults of users.history.list.
	PageSize int `env:"GMAIL_POLL_PAGE_SIZE" default:"100" help:"history records per users.history.list page (at most 500)"`
}

// WithDefaults fills unset fields with the defaults the env tags name.
func (c Config) WithDefaults() (Config, error) {
	err := envconfig.FillDefaults(&c, "Interval", "MaxBackoff", "Lease", "Discovery", "PageSize")
	return c, err
}

func (c Config) validate() error {
	switch {
	case c.Interval <= 0 || c.MaxBackoff < c.Interval:
		return errors.New("gmail poll: want 0 < GMAIL_POLL_INTERVAL <= GMAIL_POLL_MAX_BACKOFF")
	case c.Lease <= c.Interval:
		return errors.New("gmail poll: GMAIL_POLL_LEASE must exceed GMAIL_POLL_INTERVAL")
	case c.Discovery <= 0 || c.PageSize < 1 || c.PageSize > 500:
		return errors.New("gmail poll: want GMAIL_POLL_DISCOVERY > 0 and GMAIL_POLL_PAGE_SIZE in 1..500")
	}
	return nil
}

// Mailbox reads a gmail configuration's mailbox (*gmail.Sender).
type Mailbox interface {
	HistoryID(ctx context.Context, cfg provider.Config) (uint64, error)
	History(ctx context.Context, cfg provider.Config, startHistoryID uint64, labelID, pageToken string, maxResults int64) (gmail.HistoryPage, error)
	Message(ctx context.Context, cfg provider.Config, id string, names ...string) (gmail.MessageMeta, error)
	// ReadsBodies reports whether the configuration's token may read whole
	// messages; RawMessage reads one.
	ReadsBodies(ctx context.Context, cfg provider.Config) (bool, error)
	RawMessage(ctx context.Context, cfg provider.Config, id string) (gmail.RawMessage, error)
}

// Configs loads a configuration with its secret opened (*store.Configs).
type Configs interface {
	Load(ctx context.Context, accountID, id string) (store.ProviderConfig, error)
}

// Deps are the poller's collaborators.
type Deps struct {
	Pool      *pgxpool.Pool
	JetStream jetstream.JetStream
	Mailbox   Mailbox
	Configs   Configs
	// Suppression is the operator's rule (SUPPRESS_*).
	Suppression suppression.Config
	// Replicas of the lease bucket; default 1.
	Replicas  int
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Poller runs one poll loop per gmail configuration.
type Poller struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	cursors  *cursors
	leases   *leases
	messages *bouncereport.Store
	recorder *bouncereport.Recorder
}

// New prepares a poller (and its lease bucket); Run starts it.
func New(ctx context.Context, cfg Config, deps Deps) (*Poller, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Pool == nil || deps.JetStream == nil || deps.Mailbox == nil || deps.Configs == nil {
		return nil, errors.New("gmail poll: missing dependencies: pool, jetstream, mailbox and configs")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	var b [8]byte
	_, _ = crand.Read(b[:])
	l, err := ensureLeases(ctx, deps.JetStream, deps.Replicas, hex.EncodeToString(b[:]))
	if err != nil {
		return nil, err
	}
	return &Poller{
		cfg: cfg, deps: deps, log: deps.Logger.With("component", "gmailpoll"),
		cursors:  &cursors{pool: deps.Pool},
		leases:   l,
		messages: bouncereport.NewStore(deps.Pool),
		recorder: bouncereport.NewRecorder(suppression.New(deps.Pool, deps.Suppression), bouncereport.NewStreamPublisher(deps.JetStream, deps.Telemetry)),
	}, nil
}

// Run polls until ctx ends: it lists the gmail configurations every
// Discovery, starts a loop for each new one and stops those of
// configurations gone (deleted, or unhealthy).
func (p *Poller) Run(ctx context.Context) error {
	type loop struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	loops := map[string]loop{}
	var wg sync.WaitGroup
	defer func() {
		for _, l := range loops {
			l.cancel()
		}
		wg.Wait()
	}()
	for {
		targets, err := p.cursors.targets(ctx)
		if err != nil && ctx.Err() == nil {
			p.log.WarnContext(ctx, "list gmail configurations", "error", err)
		}
		if err == nil {
			live := map[string]bool{}
			for _, t := range targets {
				live[t.id] = true
				if _, ok := loops[t.id]; ok {
					continue
				}
				lctx, cancel := context.WithCancel(ctx)
				l := loop{cancel: cancel, done: make(chan struct{})}
				loops[t.id] = l
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer close(l.done)
					p.loop(lctx, t)
				}()
			}
			for id, l := range loops {
				if !live[id] {
					l.cancel()
					<-l.done
					delete(loops, id)
				}
			}
			if err := p.cursors.drop(ctx); err != nil && ctx.Err() == nil {
				p.log.WarnContext(ctx, "drop cursors of deleted configurations", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(p.cfg.Discovery):
		}
	}
}

// loop polls one configuration while this replica holds its lease.
func (p *Poller) loop(ctx context.Context, t target) {
	log := p.log.With("provider_id", t.id, "account_id", t.accountID)
	var rev uint64
	defer func() {
		if rev != 0 {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			p.leases.release(rctx, t.id, rev)
			cancel()
		}
	}()
	delay := time.Duration(rand.Int64N(int64(p.cfg.Interval)/4 + 1)) // spread the first polls
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		now := p.deps.Now()
		next, err := p.leases.acquire(ctx, t.id, rev, now, now.Add(p.cfg.Lease))
		if err != nil {
			rev = 0
			if !errors.Is(err, errLeaseHeld) && !errors.Is(err, errLeaseLost) && ctx.Err() == nil {
				log.WarnContext(ctx, "gmail poll lease", "error", err)
			}
			delay = p.cfg.Interval
			continue
		}
		rev = next
		pctx, cancel := context.WithTimeout(ctx, p.cfg.Lease-p.cfg.Interval/2)
		err = p.Poll(pctx, t.accountID, t.id)
		cancel()
		if err == nil || ctx.Err() != nil {
			failures = 0
			delay = p.cfg.Interval
			continue
		}
		failures++
		delay = min(p.cfg.Interval<<min(failures, 16), p.cfg.MaxBackoff)
		log.WarnContext(ctx, "gmail bounce poll failed; backing off", "error", err, "failures", failures, "retry_in", delay.String())
	}
}

// Poll reads the configuration's mailbox history from its cursor once and
// records the bounce notices found; the caller holds the lease.
func (p *Poller) Poll(ctx context.Context, accountID, providerID string) error {
	t := target{id: providerID, accountID: accountID}
	pc, err := p.deps.Configs.Load(ctx, accountID, providerID)
	if err != nil {
		return err
	}
	cfg := pc.Config
	log := p.log.With("provider_id", t.id, "account_id", t.accountID)
	start, had, err := p.cursors.get(ctx, t.id)
	if err != nil {
		return err
	}
	if !had {
		hid, err := p.deps.Mailbox.HistoryID(ctx, cfg)
		if err != nil {
			return err
		}
		if _, err := p.cursors.set(ctx, t, 0, false, hid, p.deps.Now()); err != nil {
			return err
		}
		log.InfoContext(ctx, "gmail bounce polling starts at the mailbox's current history", "history_id", hid)
		return nil
	}
	bodies, err := p.deps.Mailbox.ReadsBodies(ctx, cfg)
	if err != nil {
		return err
	}
	var (
		token string
		last  uint64
		found int
	)
	for {
		page, err := p.deps.Mailbox.History(ctx, cfg, start, "INBOX", token, int64(p.cfg.PageSize))
		if errors.Is(err, gmail.ErrHistoryExpired) {
			hid, err := p.deps.Mailbox.HistoryID(ctx, cfg)
			if err != nil {
				return err
			}
			log.WarnContext(ctx, "gmail history from the cursor is no longer kept; bounce notices in between are not looked at; restarting from the mailbox's current history",
				"history_id", start, "restart_at", hid)
			_, err = p.cursors.set(ctx, t, start, true, hid, p.deps.Now())
			return err
		}
		if err != nil {
			return err
		}
		for _, id := range page.MessageIDs {
			n, err := p.notice(ctx, cfg, t, id, &bodies)
			if err != nil {
				return err
			}
			found += n
		}
		last = max(last, page.HistoryID)
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	if last == 0 || last == start {
		return nil
	}
	moved, err := p.cursors.set(ctx, t, start, true, last, p.deps.Now())
	if err != nil {
		return err
	}
	if !moved {
		log.InfoContext(ctx, "gmail poll cursor moved by another poller meanwhile")
	}
	if found > 0 {
		log.InfoContext(ctx, "gmail bounce notices recorded", "events", found, "history_id", last)
	}
	return nil
}

// notice reads one new message of the mailbox and records it when it is a
// bounce notice about one of the configuration's messages; it returns the
// number of events published. With *bodies it reads the whole message and
// classifies each recipient from the notice's delivery-status (the inbound
// service's parser); when Gmail refuses that, *bodies is cleared and the
// headers are read, for this notice and the rest of the poll.
func (p *Poller) notice(ctx context.Context, cfg provider.Config, t target, gmailID string, bodies *bool) (int, error) {
	log := p.log.With("provider_id", t.id, "account_id", t.accountID, "gmail_id", gmailID)
	var (
		meta gmail.MessageMeta
		dsn  *mailreport.Report
		err  error
	)
	if *bodies {
		var raw gmail.RawMessage
		raw, err = p.deps.Mailbox.RawMessage(ctx, cfg, gmailID)
		switch {
		case errors.Is(err, gmail.ErrNoBodyAccess):
			log.WarnContext(ctx, "gmail refused to give a notice's body to a token granted gmail.readonly; reading headers only", "error", err)
			*bodies = false
		case err == nil:
			meta = raw.Meta()
			if rep, perr := mailreport.Parse(raw.Raw); perr == nil {
				dsn = &rep
			}
		}
	}
	if !*bodies {
		meta, err = p.deps.Mailbox.Message(ctx, cfg, gmailID, gmail.NoticeHeaders...)
	}
	if errors.Is(err, gmail.ErrNoMessage) {
		return 0, nil // deleted since
	}
	if err != nil {
		return 0, err
	}
	n, ok := gmail.ParseNotice(meta)
	if !ok {
		return 0, nil
	}
	msg, err := p.message(ctx, t, n)
	if errors.Is(err, bouncereport.ErrNotFound) {
		log.InfoContext(ctx, "drop a bounce notice about no message of this configuration", "thread_id", n.ThreadID)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	rep := bouncereport.Report{ID: gmailID, Source: "gmail", Via: "Gmail notice"}
	for _, a := range n.Failed {
		addr := bouncereport.Canonical(a)
		if !msg.Has(addr) {
			continue // not this message's recipient: the notice cannot speak for it
		}
		f, ok := finding(n, dsn, addr)
		if !ok {
			log.InfoContext(ctx, "gmail notice: delivery still being tried; not recorded", "message_id", msg.ID)
			continue
		}
		rep.Findings = append(rep.Findings, f)
	}
	res, err := p.recorder.Record(ctx, msg, rep, p.deps.Now())
	if err != nil {
		return 0, err
	}
	if res.Events == 0 {
		log.InfoContext(ctx, "drop a bounce notice naming no recipient of the message", "message_id", msg.ID)
		return 0, nil
	}
	classes := make([]string, 0, len(rep.Findings))
	for _, f := range rep.Findings {
		classes = append(classes, string(f.Class))
	}
	log.InfoContext(ctx, "gmail bounce recorded", "message_id", msg.ID, "classes", classes, "events", res.Events, "suppressed", len(res.Suppressed))
	return res.Events, nil
}

// finding is what the notice says about addr: from its delivery-status
// when the body was read (the recipient's own class, status and
// diagnostic), else from the headers (and snippet); false for a recipient
// the delivery-status says Gmail is still trying (Action: delayed), which
// is not recorded: it suppresses nothing and counts for no streak.
func finding(n gmail.Notice, dsn *mailreport.Report, addr string) (bouncereport.Finding, bool) {
	if dsn != nil {
		for _, rc := range dsn.Recipients {
			if bouncereport.Canonical(rc.Final) != addr && bouncereport.Canonical(rc.Original) != addr {
				continue
			}
			if rc.Action == "delayed" {
				return bouncereport.Finding{}, false
			}
			if rc.Class == "" || rc.Class.Event() == "" {
				break // a recipient the DSN says was delivered: the headers decide
			}
			response := rc.Diagnostic
			if response == "" {
				response = strings.TrimSpace(rc.Action + " " + rc.Status)
			}
			what := rc.Status
			if what == "" {
				what = "DSN"
			}
			return bouncereport.Finding{Address: addr, Class: rc.Class, Response: response, What: what}, true
		}
		if dsn.Kind == mailreport.PlainBounce && len(dsn.Recipients) == 1 {
			// A notice without a delivery-status: its text's class.
			rc := dsn.Recipients[0]
			what := bounce.ParseCode(rc.Diagnostic).String()
			if what == "" {
				what = "text"
			}
			return bouncereport.Finding{Address: addr, Class: rc.Class, Response: rc.Diagnostic, What: what}, true
		}
	}
	response, what := "Gmail: delivery failed", n.Status()
	if n.Text != "" {
		response = n.Text
	}
	if what == "" {
		what = "X-Failed-Recipients"
	}
	return bouncereport.Finding{Address: addr, Class: n.Class(), Response: response, What: what}, true
}

// message is the configuration's message the notice is about: the one whose
// Gmail id is the notice's thread, else the one its Message-ID names.
func (p *Poller) message(ctx context.Context, t target, n gmail.Notice) (bouncereport.Message, error) {
	msg, err := p.messages.ByProviderMessageID(ctx, t.accountID, t.id, n.ThreadID)
	if !errors.Is(err, bouncereport.ErrNotFound) {
		return msg, err
	}
	for _, ref := range n.References {
		local, _, ok := strings.Cut(strings.Trim(ref, "<>"), "@")
		if _, perr := uuid.Parse(local); !ok || perr != nil {
			continue
		}
		msg, err := p.messages.Message(ctx, local)
		if errors.Is(err, bouncereport.ErrNotFound) {
			continue
		}
		if err != nil {
			return bouncereport.Message{}, err
		}
		if msg.AccountID == t.accountID && msg.ProviderID == t.id {
			return msg, nil
		}
	}
	return bouncereport.Message{}, bouncereport.ErrNotFound
}
