// Package usage records every authenticated API call (account, method, API key
// id or token subject, client IP, user agent, time, result, duration; never the
// request's content) and lists an account's records.
//
// Recording stays off the hot path: the interceptor puts a record on a bounded
// queue and returns; a background writer COPYs the queue into PostgreSQL every
// FlushInterval or BatchSize records. When the queue is full (the database is
// slow or down) new records are dropped and counted, and the count is logged
// once a minute: the API keeps answering rather than waiting for its own
// accounting. Stop flushes what is queued. Calls that fail authentication have
// no account to record them under; they are counted and logged the same way.
package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/grpcserver"

	"github.com/namirasoft/email-sender/pkg/auth"
)

// Config configures recording; shared by the services that serve the API.
type Config struct {
	// TrustedProxies are the proxies (CIDRs) whose x-forwarded-for is believed.
	TrustedProxies []string      `env:"TRUSTED_PROXIES" help:"CIDRs of proxies whose x-forwarded-for names the client (empty: none)"`
	QueueSize      int           `env:"USAGE_QUEUE" default:"10000" help:"usage records buffered before new ones are dropped"`
	BatchSize      int           `env:"USAGE_BATCH" default:"500" help:"usage records written per COPY, at most"`
	FlushInterval  time.Duration `env:"USAGE_FLUSH_INTERVAL" default:"100ms" help:"how long a usage record may wait to be written"`
	// Retention is how long records are kept: ingest's partition manager
	// drops their partitions after it (pkg/partition).
	Retention time.Duration `env:"USAGE_RETENTION" default:"2160h" help:"how long usage records are kept (ingest drops their partitions after it)"`
}

// Validate checks the configuration. It has no defaults of its own: the env
// tags are their one source (envconfig.Load, or envconfig.FillDefaults for a
// Config built in code).
func (c Config) Validate() error {
	var errs []error
	if c.QueueSize <= 0 {
		errs = append(errs, fmt.Errorf("USAGE_QUEUE=%d: want a positive number", c.QueueSize))
	}
	if c.BatchSize <= 0 {
		errs = append(errs, fmt.Errorf("USAGE_BATCH=%d: want a positive number", c.BatchSize))
	}
	if c.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("USAGE_FLUSH_INTERVAL=%s: want a positive duration", c.FlushInterval))
	}
	if c.Retention <= 0 {
		errs = append(errs, fmt.Errorf("USAGE_RETENTION=%s: want a positive duration", c.Retention))
	}
	return errors.Join(errs...)
}

// Record is one API call.
type Record struct {
	ID           uuid.UUID
	AccountID    string
	At           time.Time
	Method       string
	KeyID        string
	TokenSubject string
	ClientIP     string
	UserAgent    string
	Result       string
	Duration     time.Duration
}

// Recorder queues and writes records.
type Recorder struct {
	cfg     Config
	pool    *pgxpool.Pool
	log     *slog.Logger
	proxies []netip.Prefix
	queue   chan Record

	dropped         atomic.Int64
	unauthenticated atomic.Int64
	written         atomic.Int64
}

// New returns a recorder writing to pool; Run must run for anything to be written.
func New(cfg Config, pool *pgxpool.Pool, log *slog.Logger) (*Recorder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{cfg: cfg, pool: pool, log: log, queue: make(chan Record, cfg.QueueSize)}
	for _, c := range cfg.TrustedProxies {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return nil, fmt.Errorf("TRUSTED_PROXIES: %q is not a CIDR: %w", c, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		r.proxies = append(r.proxies, p.Masked())
	}
	return r, nil
}

// Dropped is how many records were dropped (queue full, write failed).
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Unauthenticated is how many calls failed authentication (not recorded).
func (r *Recorder) Unauthenticated() int64 { return r.unauthenticated.Load() }

// Written is how many records were written.
func (r *Recorder) Written() int64 { return r.written.Load() }

// Add queues rec without blocking; a full queue drops it.
func (r *Recorder) Add(rec Record) {
	select {
	case r.queue <- rec:
	default:
		r.dropped.Add(1)
	}
}

// Run writes queued records until ctx ends, then writes what is still queued
// and returns. Run it with a context that ends after the gRPC server stopped,
// so that calls finishing during the graceful stop are recorded too.
func (r *Recorder) Run(ctx context.Context) error {
	flush := time.NewTicker(r.cfg.FlushInterval)
	defer flush.Stop()
	report := time.NewTicker(time.Minute)
	defer report.Stop()
	batch := make([]Record, 0, r.cfg.BatchSize)
	var lastDropped, lastUnauth int64
	for {
		select {
		case rec := <-r.queue:
			batch = append(batch, rec)
			if len(batch) >= r.cfg.BatchSize {
				batch = r.write(ctx, batch)
			}
		case <-flush.C:
			batch = r.write(ctx, batch)
		case <-report.C:
			d, u := r.dropped.Load(), r.unauthenticated.Load()
			if d != lastDropped || u != lastUnauth {
				r.log.WarnContext(ctx, "usage records", "dropped_total", d, "unauthenticated_calls_total", u)
				lastDropped, lastUnauth = d, u
			}
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			for {
				select {
				case rec := <-r.queue:
					batch = append(batch, rec)
					if len(batch) >= r.cfg.BatchSize {
						batch = r.write(fctx, batch)
					}
					continue
				default:
				}
				break
			}
			r.write(fctx, batch)
			return nil
		}
	}
}

var columns = []string{"id", "account_id", "at", "method", "key_id", "token_subject", "client_ip", "user_agent", "result", "duration_ms"}

// write COPYs batch and returns it emptied; a failed write drops the batch.
func (r *Recorder) write(ctx context.Context, batch []Record) []Record {
	if len(batch) == 0 {
		return batch
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	n, err := r.pool.CopyFrom(wctx, pgx.Identifier{"usage_records"}, columns, pgx.CopyFromSlice(len(batch), func(i int) ([]any, error) {
		b := batch[i]
		// pgtype.UUID: pgx copies a uuid column in binary, and a string would
		// be tried in binary, fail and go as text, for every record.
		account, err := uuid.Parse(b.AccountID)
		if err != nil {
			return nil, fmt.Errorf("usage record of account %q: %w", b.AccountID, err)
		}
		return []any{pgtype.UUID{Bytes: b.ID, Valid: true}, pgtype.UUID{Bytes: account, Valid: true}, b.At, b.Method, b.KeyID, b.TokenSubject, b.ClientIP, b.UserAgent, b.Result,
			float64(b.Duration) / float64(time.Millisecond)}, nil
	}))
	if err != nil {
		r.dropped.Add(int64(len(batch)))
		r.log.WarnContext(ctx, "write usage records; dropped", "records", len(batch), "error", err)
	} else {
		r.written.Add(n)
	}
	clear(batch)
	return batch[:0]
}

// CountUnauthenticated returns a unary interceptor, chained before
// authentication, that counts the calls authentication refused.
func (r *Recorder) CountUnauthenticated() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil && status.Code(err) == codes.Unauthenticated {
			r.unauthenticated.Add(1)
			r.log.DebugContext(ctx, "unauthenticated call", "method", info.FullMethod, "client_ip", r.ClientIP(ctx))
		}
		return resp, err
	}
}

// NoteUnauthenticated counts a call refused before it reached the interceptors
// (on its metadata, before its request was read).
func (r *Recorder) NoteUnauthenticated(ctx context.Context, method string) {
	r.unauthenticated.Add(1)
	r.log.DebugContext(ctx, "unauthenticated call", "method", method, "client_ip", r.ClientIP(ctx))
}

// deleteAccountData is AccountService.DeleteAccountData, which is not recorded
// when it succeeds.
const deleteAccountData = "/emailsender.v1.AccountService/DeleteAccountData"

// Interceptor returns a unary interceptor, chained after auth.Authenticate
// and before auth.Authorize (so refused scopes are recorded too), that
// records every call of an authenticated caller.
func (r *Recorder) Interceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p, ok := auth.FromContext(ctx)
		if !ok || p.AccountID == "" {
			return handler(ctx, req)
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		if err == nil && info.FullMethod == deleteAccountData {
			// The account and its records are gone; recording this call
			// would leave personal data (IP, user agent) of it behind.
			return resp, err
		}
		keyID := p.KeyID
		if keyID == "" {
			keyID = p.Subject
		}
		r.Add(Record{
			ID:           uuid.Must(uuid.NewV7()),
			AccountID:    p.AccountID,
			At:           start,
			Method:       info.FullMethod,
			KeyID:        keyID,
			TokenSubject: p.Subject,
			ClientIP:     r.ClientIP(ctx),
			UserAgent:    r.UserAgent(ctx),
			Result:       CodeName(status.Code(err)),
			Duration:     time.Since(start),
		})
		return resp, err
	}
}

// CodeName is the canonical name of c, e.g. "INVALID_ARGUMENT".
func CodeName(c codes.Code) string {
	if n, ok := code.Code_name[int32(c)]; ok {
		return n
	}
	return c.String()
}

const maxUserAgent = 256

// gatewayUserAgent is where the HTTP/JSON gateway (pkg/httpgateway) puts the
// HTTP client's User-Agent: gRPC's own user-agent of its calls is the gateway's.
const gatewayUserAgent = "grpcgateway-user-agent"

// UserAgent is the caller's user agent: gRPC's user-agent, or, for a call
// relayed by a trusted proxy (the in-process HTTP gateway), the HTTP client's.
func (r *Recorder) UserAgent(ctx context.Context) string {
	// The keys read, not a copy of the whole metadata (FromIncomingContext).
	ua := strings.Join(metadata.ValueFromIncomingContext(ctx, "user-agent"), " ")
	if fwd := metadata.ValueFromIncomingContext(ctx, gatewayUserAgent); len(fwd) > 0 && r.viaTrustedProxy(ctx) {
		ua = strings.Join(fwd, " ")
	}
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	return strings.ToValidUTF8(ua, "")
}

// ClientIP is the caller's address: the peer's, or, when the peer is a trusted
// proxy (TRUSTED_PROXIES) or the process's own HTTP gateway (an in-process
// connection, grpcserver.InProcess), the right-most address of
// x-forwarded-for that is not a trusted proxy (addresses left of it could be
// made up by the client). No address is trusted for being loopback: in a
// service mesh every peer is.
func (r *Recorder) ClientIP(ctx context.Context) string {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.Addr == nil {
		return ""
	}
	gateway := grpcserver.InProcess(ctx)
	var client netip.Addr
	if !gateway {
		peerIP, ok := parseIP(pr.Addr.String())
		if !ok {
			return pr.Addr.String()
		}
		if !r.trusted(peerIP) {
			return peerIP.String()
		}
		client = peerIP
	}
	var hops []string
	for _, v := range metadata.ValueFromIncomingContext(ctx, "x-forwarded-for") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		ip, ok := parseIP(strings.TrimSpace(hops[i]))
		if !ok {
			break // garbage: trust nothing further left
		}
		client = ip
		if !r.trusted(ip) {
			break
		}
	}
	if !client.IsValid() {
		return ""
	}
	return client.String()
}

// viaTrustedProxy reports whether the call was relayed by a trusted proxy or
// by the process's own HTTP gateway.
func (r *Recorder) viaTrustedProxy(ctx context.Context) bool {
	if grpcserver.InProcess(ctx) {
		return true
	}
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.Addr == nil {
		return false
	}
	ip, ok := parseIP(pr.Addr.String())
	return ok && r.trusted(ip)
}

func (r *Recorder) trusted(ip netip.Addr) bool {
	for _, p := range r.proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// parseIP accepts "ip", "ip:port" and "[ip]:port".
func parseIP(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
