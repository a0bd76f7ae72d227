package accountstate

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/queue"
)

// View is an in-memory copy of the account states, kept current by a watch
// of the bucket (Watch). Until the watch is established, and whenever it is
// lost, State reads PostgreSQL.
type View struct {
	db       DB
	js       jetstream.JetStream
	replicas int
	log      *slog.Logger

	mu       sync.Mutex
	states   map[string]Entry
	pauses   map[string]map[string]Pause // account → provider → pause
	onChange []func(Entry)
	onPause  []func(Pause)

	ready      atomic.Bool
	reconnects atomic.Uint64
}

// NewView returns a view over db, watching js once Watch runs; replicas
// sizes the bucket if the view creates it.
func NewView(db DB, js jetstream.JetStream, replicas int, log *slog.Logger) *View {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &View{db: db, js: js, replicas: replicas, log: log, states: map[string]Entry{}, pauses: map[string]map[string]Pause{}}
}

// OnChange registers f, called with every change the watch applies, before
// the change is confirmed to its writer (so a worker cancels the sends of a
// tombstoned account before DeleteAccountData answers). Call it before Watch.
func (v *View) OnChange(f func(Entry)) {
	v.mu.Lock()
	v.onChange = append(v.onChange, f)
	v.mu.Unlock()
}

// OnPause registers f, called with every pause (or lift) the watch applies,
// before it is confirmed to its writer. Call it before Watch.
func (v *View) OnPause(f func(Pause)) {
	v.mu.Lock()
	v.onPause = append(v.onPause, f)
	v.mu.Unlock()
}

// Paused returns whether a provider configuration of the account is paused:
// from memory while the watch is established, else from PostgreSQL.
func (v *View) Paused(ctx context.Context, account, provider string) (Pause, error) {
	if v.current() {
		v.mu.Lock()
		p, ok := v.pauses[account][provider]
		v.mu.Unlock()
		if !ok {
			p = Pause{Account: account, Provider: provider}
		}
		return p, nil
	}
	return LookupPause(ctx, v.db, account, provider)
}

// PausedCached returns, from memory only, whether the account has a paused
// provider configuration, and whether the watch is established.
func (v *View) PausedCached(account string) (bool, bool) {
	if !v.current() {
		return false, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.pauses[account]) > 0, true
}

// State returns the account's state: from memory while the watch is
// established, else from PostgreSQL.
func (v *View) State(ctx context.Context, account string) (Entry, error) {
	if v.current() {
		v.mu.Lock()
		e, ok := v.states[account]
		v.mu.Unlock()
		if !ok {
			e = Entry{Account: account, State: Active}
		}
		return e, nil
	}
	return Lookup(ctx, v.db, account)
}

// Cached returns the account's state from memory only (no round trip), and
// whether the watch is established; for hot paths that must not block (the
// scheduler's choice of accounts).
func (v *View) Cached(account string) (State, bool) {
	if !v.current() {
		return Active, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.states[account]; ok {
		return e.State, true
	}
	return Active, true
}

// current reports whether the in-memory copy may be used.
func (v *View) current() bool {
	if v.js == nil || !v.ready.Load() {
		return false
	}
	nc := v.js.Conn()
	if nc == nil || !nc.IsConnected() {
		return false
	}
	// Changes announced while disconnected may be missed: re-read.
	return nc.Stats().Reconnects == v.reconnects.Load()
}

// Watch follows the bucket until ctx ends (then it returns nil), retrying
// while NATS is unavailable.
func (v *View) Watch(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := v.watchOnce(ctx)
		v.ready.Store(false)
		if ctx.Err() != nil {
			break
		}
		v.log.WarnContext(ctx, "account state watch lost; reading PostgreSQL meanwhile", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

func (v *View) watchOnce(ctx context.Context) error {
	if _, err := Bucket(ctx, v.js, v.replicas); err != nil {
		return err
	}
	stream, err := v.js.Stream(ctx, "KV_"+queue.AccountStatesBucket)
	if err != nil {
		return fmt.Errorf("open %s stream: %w", queue.AccountStatesBucket, err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Name:              watcherPrefix + uuid.NewString(),
		Description:       "a replica following account states",
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		AckPolicy:         jetstream.AckExplicitPolicy,
		InactiveThreshold: 5 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", queue.AccountStatesBucket, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
		cancel()
	}()
	it, err := cons.Messages(jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return fmt.Errorf("watch %s: %w", queue.AccountStatesBucket, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	// The consumer exists before the snapshot is read: a change committed
	// after the snapshot arrives through it.
	nc := v.js.Conn()
	reconnects := nc.Stats().Reconnects
	snap, err := all(ctx, v.db)
	if err != nil {
		return err
	}
	paused, err := queryPauses(ctx, v.db, "")
	if err != nil {
		return err
	}
	pauses := map[string]map[string]Pause{}
	for _, p := range paused {
		if pauses[p.Account] == nil {
			pauses[p.Account] = map[string]Pause{}
		}
		pauses[p.Account][p.Provider] = p
	}
	v.mu.Lock()
	v.states = snap
	v.pauses = pauses
	v.mu.Unlock()
	v.reconnects.Store(reconnects)
	v.ready.Store(true)
	for {
		msg, err := it.Next()
		if err != nil {
			return fmt.Errorf("watch %s: %w", queue.AccountStatesBucket, err)
		}
		v.apply(msg)
		// Acknowledged after the change is applied: Store.Announce waits for it.
		_ = msg.Ack()
	}
}

// apply applies one bucket message and tells the OnChange (or OnPause)
// functions.
func (v *View) apply(msg jetstream.Msg) {
	key := strings.TrimPrefix(msg.Subject(), "$KV."+queue.AccountStatesBucket+".")
	if account, provider, ok := strings.Cut(key, "."); ok {
		v.applyPause(msg, account, provider)
		return
	}
	account := key
	e := Entry{Account: account, State: Active}
	switch msg.Headers().Get("KV-Operation") {
	case "DEL", "PURGE":
	default:
		if err := json.Unmarshal(msg.Data(), &e); err != nil || !e.State.Valid() {
			v.log.Warn("undecodable account state; ignored", "account_id", account, "error", err)
			return
		}
	}
	v.mu.Lock()
	if old, ok := v.states[account]; ok && e.State != Active && old.Version > e.Version {
		v.mu.Unlock()
		return // an older change arriving late
	}
	if e.State == Active {
		delete(v.states, account)
	} else {
		v.states[account] = e
	}
	if e.State.Tombstone() {
		// A deleted account's pauses went with its data.
		delete(v.pauses, account)
	}
	fs := append([]func(Entry){}, v.onChange...)
	v.mu.Unlock()
	for _, f := range fs {
		f(e)
	}
}

// applyPause applies one pause (or lift) of the bucket.
func (v *View) applyPause(msg jetstream.Msg, account, provider string) {
	p := Pause{Account: account, Provider: provider}
	switch msg.Headers().Get("KV-Operation") {
	case "DEL", "PURGE":
	default:
		if err := json.Unmarshal(msg.Data(), &p); err != nil || p.Account != account || p.Provider != provider {
			v.log.Warn("undecodable provider pause; ignored", "account_id", account, "provider_id", provider, "error", err)
			return
		}
	}
	v.mu.Lock()
	if old, ok := v.pauses[account][provider]; ok && p.Version != 0 && old.Version > p.Version {
		v.mu.Unlock()
		return // an older change arriving late
	}
	if p.Paused {
		if v.pauses[account] == nil {
			v.pauses[account] = map[string]Pause{}
		}
		v.pauses[account][provider] = p
	} else {
		delete(v.pauses[account], provider)
		if len(v.pauses[account]) == 0 {
			delete(v.pauses, account)
		}
	}
	fs := append([]func(Pause){}, v.onPause...)
	v.mu.Unlock()
	for _, f := range fs {
		f(p)
	}
}
