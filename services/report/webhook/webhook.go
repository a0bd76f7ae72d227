// Package webhook is the report's webhooks: endpoints per account
// (WebhookService), a durable JetStream consumer that turns events into
// per-endpoint, per-recipient deliveries recorded in PostgreSQL (fanout.go),
// and a dispatcher that posts them signed per Standard Webhooks, retrying on
// Schedule (dispatch.go).
//
// Delivery is at least once: an event is acknowledged on the stream only once
// its deliveries are committed; a delivery is done only on a 2xx answer. A
// delivery's attempts for one (endpoint, message, recipient) go out in stream
// order: the next waits until the one before succeeded or failed for good.
// A 410 answer disables the endpoint at once; an endpoint whose deliveries fail
// continuously for Config.DisableAfter is disabled too. Deliveries of a
// disabled endpoint are held and go out when it is enabled again. Either way
// the owner sees the reason on the endpoint and as a WEBHOOK_DISABLED event
// (WatchEvents).
package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Deps are the service's clients.
type Deps struct {
	Pool      *pgxpool.Pool
	JetStream jetstream.JetStream
	// Keyring seals and opens the signing secrets (MASTER_KEYS). Without it
	// endpoints cannot be created and nothing can be signed.
	Keyring *secretbox.Keyring
	Logger  *slog.Logger
	// Now is the clock of the retry schedule and the failure runs; default time.Now.
	Now func() time.Time
	// Rand is the jitter source, in [0, 1); default math/rand/v2.
	Rand func() float64
	// Transport, when set, replaces the netguard transport (tests only).
	Transport http.RoundTripper
}

// Service runs webhooks.
type Service struct {
	cfg     Config
	js      jetstream.JetStream
	keyring *secretbox.Keyring
	log     *slog.Logger
	store   *store
	client  *http.Client
	now     func() time.Time
	rand    func() float64
	wakeup  chan struct{}
}

// New returns a service; it starts nothing.
func New(cfg Config, d Deps) (*Service, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook config: %w", err)
	}
	if d.Pool == nil || d.JetStream == nil {
		return nil, errors.New("webhook: missing pool or jetstream")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Rand == nil {
		d.Rand = randFloat
	}
	rt := d.Transport
	if rt == nil {
		g, err := netguard.New(cfg.Outbound)
		if err != nil {
			return nil, err
		}
		tr := g.Transport()
		// One replica posts up to Concurrency requests at once, often to one
		// host: keep that many connections for reuse.
		tr.MaxIdleConnsPerHost = cfg.Concurrency
		tr.MaxIdleConns = max(tr.MaxIdleConns, 4*cfg.Concurrency)
		rt = tr
	}
	return &Service{
		cfg: cfg, js: d.JetStream, keyring: d.Keyring, log: d.Logger, store: &store{pool: d.Pool},
		client: &http.Client{
			Transport: rt,
			// A redirect is an answer like any other non-2xx: not followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		now: d.Now, rand: d.Rand, wakeup: make(chan struct{}, 1),
	}, nil
}

// Run fans events out into deliveries, dispatches them and purges the
// delivery log after Retention, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	p := s.newPipeline()
	stop := p.start(gctx)
	g.Go(func() error { return s.fanOut(gctx, p) })
	g.Go(func() error { p.claim(gctx); return nil })
	g.Go(func() error { return s.janitor(gctx) })
	err := g.Wait()
	stop()
	return err
}

func (s *Service) janitor(ctx context.Context) error {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if n, err := s.store.purge(ctx, s.now().Add(-s.cfg.Retention)); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "purge webhook deliveries", "error", err)
		} else if n > 0 {
			s.log.InfoContext(ctx, "purged webhook deliveries", "deliveries", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tags looks up messages' tags (for the report's WatchEvents).
func (s *Service) Tags(ctx context.Context, account string, ids []string) (map[string]map[string]string, error) {
	return s.store.Tags(ctx, account, ids)
}

// Register registers the WebhookService.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	emailsenderv1.RegisterWebhookServiceServer(r, &server{svc: s})
}

// MethodScopes: every WebhookService method needs admin.
func MethodScopes() map[string]string {
	out := map[string]string{}
	for _, m := range emailsenderv1.WebhookService_ServiceDesc.Methods {
		out["/"+emailsenderv1.WebhookService_ServiceDesc.ServiceName+"/"+m.MethodName] = auth.ScopeAdmin
	}
	return out
}
