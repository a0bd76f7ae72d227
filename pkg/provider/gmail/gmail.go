package gmail

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	gmailapi "google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Options configure a Sender.
type Options struct {
	// Logger for token events; default slog.Default(). Never given secrets or
	// message content.
	Logger *slog.Logger
	// MessageIDDomain is the right-hand side of Message-ID headers; empty means
	// the From address's domain.
	MessageIDDomain string
	// TokenURL is the OAuth 2.0 token endpoint for every configuration; an
	// operator setting (GMAIL_TOKEN_URL, an emulator in tests), never a
	// tenant's. Empty: DefaultTokenURL.
	TokenURL string
	// APIEndpoint is the Gmail API's base URL for every configuration; an
	// operator setting (GMAIL_API_ENDPOINT). Empty: Google's.
	APIEndpoint string
	// Guard vets every address the default transport dials (after DNS
	// resolution); nil allows public addresses only. Unused with Transport.
	Guard *netguard.Guard
	// Transport carries the API and token requests; default the guard's
	// transport (pkg/netguard) keeping more idle connections per host.
	Transport http.RoundTripper
	// TokenTimeout bounds one token request; default 30s.
	TokenTimeout time.Duration
	// EarlyExpiry: a cached access token is refreshed this long before it
	// expires; default 1 minute.
	EarlyExpiry time.Duration
	// UploadThreshold: raw messages larger than this many bytes go through the
	// media upload endpoint; default 4 MiB.
	UploadThreshold int
	// Now is the clock for Retry-After dates; default time.Now.
	Now func() time.Time
}

// ErrAuth is wrapped by the errors of refused credentials: a refused refresh
// token or client, a 401 after a refresh, a 403 that is not throttling.
var ErrAuth = errors.New("gmail authorization failed")

// ErrClosed is returned by a Sender after Close.
var ErrClosed = errors.New("gmail sender closed")

// Sender is the Gmail API provider. It is safe for concurrent use.
type Sender struct {
	opts      Options
	log       *slog.Logger
	transport http.RoundTripper

	mu      sync.Mutex
	clients map[string]*client // by config ID
	closed  bool
}

var (
	_ provider.Sender   = (*Sender)(nil)
	_ provider.Verifier = (*Sender)(nil)
)

// New returns a Sender; Close it to close its idle connections.
func New(opts Options) *Sender {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TokenTimeout <= 0 {
		opts.TokenTimeout = 30 * time.Second
	}
	if opts.EarlyExpiry <= 0 {
		opts.EarlyExpiry = time.Minute
	}
	if opts.UploadThreshold <= 0 {
		opts.UploadThreshold = 4 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TokenURL == "" {
		opts.TokenURL = DefaultTokenURL
	}
	if opts.APIEndpoint != "" && !strings.HasSuffix(opts.APIEndpoint, "/") {
		// The client resolves "gmail/v1/users/..." against it.
		opts.APIEndpoint += "/"
	}
	tr := opts.Transport
	if tr == nil {
		t := opts.Guard.Transport()
		t.MaxIdleConnsPerHost = 64
		tr = t
	}
	return &Sender{opts: opts, log: opts.Logger.With("provider", "gmail"), transport: tr, clients: map[string]*client{}}
}

// Close drops the cached clients and closes idle connections; Send then fails
// with ErrClosed. It is safe to call more than once.
func (s *Sender) Close() error {
	s.mu.Lock()
	s.closed = true
	s.clients = map[string]*client{}
	s.mu.Unlock()
	if t, ok := s.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return nil
}

// client is the API client of one configuration version.
type client struct {
	version time.Time
	cfg     config
	tokens  *tokenCache
	svc     *gmailapi.Service
}

func (s *Sender) newClient(cfg provider.Config, c config) (*client, error) {
	conf := &oauth2.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.secret.ClientSecret,
		// Google's endpoint takes the client credentials in the form.
		Endpoint: oauth2.Endpoint{TokenURL: s.opts.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
	}
	tokens := newTokenCache(conf, &http.Client{Transport: s.transport, Timeout: s.opts.TokenTimeout}, c.secret.RefreshToken, s.opts.EarlyExpiry)
	hc := &http.Client{Transport: &oauth2.Transport{Source: tokens, Base: &invalidating{cache: tokens, base: s.transport}}}
	opts := []option.ClientOption{option.WithHTTPClient(hc)}
	if s.opts.APIEndpoint != "" {
		opts = append(opts, option.WithEndpoint(s.opts.APIEndpoint))
	}
	svc, err := gmailapi.NewService(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("gmail client: %w", err)
	}
	return &client{version: cfg.Version, cfg: c, tokens: tokens, svc: svc}, nil
}

// client returns the client of cfg's version, replacing an older one.
func (s *Sender) client(cfg provider.Config) (*client, error) {
	s.mu.Lock()
	cl := s.clients[cfg.ID]
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if cl != nil && cl.version.Equal(cfg.Version) {
		return cl, nil
	}
	c, err := parseConfig(cfg)
	if err != nil {
		return nil, err
	}
	fresh, err := s.newClient(cfg, c)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	// Another send may have built it meanwhile: keep one, so its token is shared.
	if cl := s.clients[cfg.ID]; cl != nil && cl.version.Equal(cfg.Version) {
		return cl, nil
	}
	s.clients[cfg.ID] = fresh
	return fresh, nil
}

// Send delivers d through users.messages.send.
func (s *Sender) Send(ctx context.Context, d *provider.Delivery) provider.Outcome {
	if d == nil || d.Job == nil || d.Job.GetMessage() == nil {
		return permanent(errors.New("gmail: delivery has no message"))
	}
	if len(d.Recipients) == 0 {
		return permanent(errors.New("gmail: no recipients"))
	}
	cl, err := s.client(d.Config)
	if errors.Is(err, ErrClosed) {
		return transient(err)
	}
	if err != nil {
		return provider.Outcome{Class: provider.Credentials, Err: err}
	}
	job := d.Job
	// Gmail has no envelope: it delivers to the header recipients and strips Bcc.
	opts := d.MIMEOptions(s.opts.MessageIDDomain)
	opts.BccHeader = true
	raw, err := mime.Raw(envelopeOnly(job.GetMessage(), d.Recipients), opts)
	if err != nil {
		return permanent(fmt.Errorf("build message %s: %w", job.GetMessageId(), err))
	}
	if err := ctx.Err(); err != nil {
		return transient(fmt.Errorf("gmail: %w", err))
	}

	for try := 0; ; try++ {
		msg, wrote, err := cl.send(ctx, raw, s.opts.UploadThreshold)
		if err == nil {
			return provider.Outcome{
				Class:     provider.Sent,
				Response:  fmt.Sprintf("Gmail accepted: %s (thread %s)", msg.Id, msg.ThreadId),
				MessageID: msg.Id,
			}
		}
		var ge *googleapi.Error
		if errors.As(err, &ge) && ge.Code == http.StatusUnauthorized && try == 0 && ctx.Err() == nil {
			// The transport dropped the refused access token: the retry
			// refreshes it once.
			s.log.InfoContext(ctx, "gmail refused the access token; refreshing it and retrying once",
				"provider_id", d.Config.ID, "message_id", job.GetMessageId())
			continue
		}
		return s.classify(ctx, err, wrote)
	}
}

// send makes one users.messages.send call. wrote reports whether the request
// was written completely (its answer may then have been lost).
func (c *client) send(ctx context.Context, raw []byte, uploadThreshold int) (*gmailapi.Message, bool, error) {
	// Wait for the access token under ctx; the transport then finds it cached.
	if _, err := c.tokens.tokenCtx(ctx); err != nil {
		return nil, false, err
	}
	var wrote atomic.Bool
	tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	})
	var call *gmailapi.UsersMessagesSendCall
	if len(raw) > uploadThreshold {
		call = c.svc.Users.Messages.Send(c.cfg.SenderUser, &gmailapi.Message{}).
			Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(0))
	} else {
		call = c.svc.Users.Messages.Send(c.cfg.SenderUser, &gmailapi.Message{Raw: base64.URLEncoding.EncodeToString(raw)})
	}
	msg, err := call.Context(tctx).Do()
	return msg, wrote.Load(), err
}

// classify turns a failed call into an outcome.
func (s *Sender) classify(ctx context.Context, err error, wrote bool) provider.Outcome {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return s.apiOutcome(ge)
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return tokenOutcome(re)
	}
	if errors.Is(err, netguard.ErrRefused) {
		// The endpoint is not a public address and not in
		// OUTBOUND_ALLOW_NETS: nothing was sent, and retrying cannot help.
		return permanent(fmt.Errorf("gmail: %w", netguard.ErrRefused))
	}
	if cerr := ctx.Err(); cerr != nil && !wrote {
		return transient(fmt.Errorf("gmail: %w", cerr))
	}
	if wrote {
		return provider.Outcome{
			Class: provider.Ambiguous,
			Err:   fmt.Errorf("gmail: no answer after the message was sent: %w", ctxOr(ctx, err)),
		}
	}
	return transient(fmt.Errorf("gmail: %w", err))
}

// throttled are the 403 reasons that mean "slow down", like 429.
var throttled = map[string]bool{
	"rateLimitExceeded": true, "userRateLimitExceeded": true, "dailyLimitExceeded": true, "quotaExceeded": true,
}

// APIError is an error answer of the Gmail API.
type APIError struct {
	Code    int    // HTTP status
	Reason  string // errors[0].reason, e.g. "rateLimitExceeded"
	Message string
}

func (e *APIError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("gmail api: %d %s", e.Code, e.Message)
	}
	return fmt.Sprintf("gmail api: %d %s: %s", e.Code, e.Reason, e.Message)
}

func (s *Sender) apiOutcome(ge *googleapi.Error) provider.Outcome {
	ae := &APIError{Code: ge.Code, Message: oneLine(ge.Message)}
	if len(ge.Errors) > 0 {
		ae.Reason = ge.Errors[0].Reason
		if ae.Message == "" {
			ae.Message = oneLine(ge.Errors[0].Message)
		}
	}
	if ae.Message == "" {
		ae.Message = http.StatusText(ge.Code)
	}
	out := provider.Outcome{Response: strings.TrimPrefix(ae.Error(), "gmail api: "), Err: ae}
	switch {
	case ge.Code == http.StatusTooManyRequests || (ge.Code == http.StatusForbidden && throttled[ae.Reason]):
		out.Class = provider.Transient
		out.RetryAfter = retryAfter(ge.Header.Get("Retry-After"), s.opts.Now())
	case ge.Code == http.StatusUnauthorized || ge.Code == http.StatusForbidden:
		out.Class = provider.Credentials
		out.Err = fmt.Errorf("%w: %w", ErrAuth, ae)
	case ge.Code == http.StatusRequestTimeout || ge.Code >= 500:
		out.Class = provider.Transient
	default:
		out.Class = provider.Permanent
	}
	return out
}

// tokenOutcome classifies a refused token request.
func tokenOutcome(re *oauth2.RetrieveError) provider.Outcome {
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	// Not re.Error(): without an error code it quotes the whole body.
	what := re.ErrorCode
	if re.ErrorDescription != "" {
		what += " (" + oneLine(re.ErrorDescription) + ")"
	}
	if what == "" {
		what = strconv.Itoa(status) + " " + http.StatusText(status)
	}
	err := fmt.Errorf("gmail token refresh: %s", what)
	switch {
	case re.ErrorCode == "" && (status == http.StatusTooManyRequests || status >= 500):
		return transient(err)
	case re.ErrorCode == "temporarily_unavailable" || re.ErrorCode == "server_error":
		return transient(err)
	}
	return provider.Outcome{Class: provider.Credentials, Response: "token endpoint: " + what, Err: fmt.Errorf("%w: %w", ErrAuth, err)}
}

// retryAfter parses a Retry-After value: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Profile is what Verify learned from users.getProfile.
type Profile struct {
	EmailAddress  string
	MessagesTotal int64
	ThreadsTotal  int64
}

// Verify redeems the refresh token and reads the mailbox's profile, sending
// nothing.
func (s *Sender) Verify(ctx context.Context, cfg provider.Config) error {
	_, err := s.VerifyDetail(ctx, cfg)
	return err
}

// VerifyDetail is Verify that also describes what it found.
func (s *Sender) VerifyDetail(ctx context.Context, cfg provider.Config) (string, error) {
	p, err := s.Profile(ctx, cfg)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("gmail: authorized for %s (%d messages, %d threads) by users.getProfile; nothing was sent",
		p.EmailAddress, p.MessagesTotal, p.ThreadsTotal), nil
}

// Check is VerifyDetail as ingest's VerifyProvider records it; refused
// credentials (ErrAuth) make the configuration unhealthy.
func (s *Sender) Check(ctx context.Context, cfg provider.Config) provider.Verification {
	start := time.Now()
	detail, err := s.VerifyDetail(ctx, cfg)
	if err != nil {
		if errors.Is(err, ErrAuth) {
			return provider.Verification{Detail: err.Error(), Healthy: provider.Unhealthy()}
		}
		return provider.Verification{Detail: err.Error()}
	}
	took := time.Since(start).Round(time.Millisecond)
	return provider.Verification{OK: true, Healthy: provider.Healthy(), Detail: fmt.Sprintf("%s (%s)", detail, took)}
}

// Profile redeems the refresh token with a fresh token source (never a cached
// access token) and calls users.getProfile for sender_user. Refused
// credentials wrap ErrAuth.
func (s *Sender) Profile(ctx context.Context, cfg provider.Config) (*Profile, error) {
	c, err := parseConfig(cfg)
	if err != nil {
		return nil, err
	}
	cl, err := s.newClient(cfg, c)
	if err != nil {
		return nil, err
	}
	if _, err := cl.tokens.tokenCtx(ctx); err != nil {
		return nil, s.verifyError(ctx, err)
	}
	p, err := cl.svc.Users.GetProfile(c.SenderUser).Context(ctx).Do()
	if err != nil {
		return nil, s.verifyError(ctx, err)
	}
	return &Profile{EmailAddress: p.EmailAddress, MessagesTotal: p.MessagesTotal, ThreadsTotal: p.ThreadsTotal}, nil
}

func (s *Sender) verifyError(ctx context.Context, err error) error {
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code == http.StatusForbidden && len(ge.Errors) > 0 && ge.Errors[0].Reason == "insufficientPermissions" {
		return errors.New("gmail: the token was refreshed, but users.getProfile is not allowed: " +
			"authorize the gmail.metadata scope (besides gmail.send) to verify this configuration")
	}
	out := s.classify(ctx, err, false)
	return out.Err
}

// envelopeOnly returns m with To, Cc and Bcc limited to the envelope: Gmail
// delivers to every address in those headers.
func envelopeOnly(m *emailsenderv1.EmailMessage, rcpts []string) *emailsenderv1.EmailMessage {
	keep := make(map[string]bool, len(rcpts))
	for _, r := range rcpts {
		keep[strings.ToLower(r)] = true
	}
	all := true
	for _, l := range [][]*emailsenderv1.Address{m.GetTo(), m.GetCc(), m.GetBcc()} {
		for _, a := range l {
			all = all && keep[strings.ToLower(a.GetAddress())]
		}
	}
	if all {
		return m
	}
	c := proto.Clone(m).(*emailsenderv1.EmailMessage)
	filter := func(in []*emailsenderv1.Address) []*emailsenderv1.Address {
		var out []*emailsenderv1.Address
		for _, a := range in {
			if keep[strings.ToLower(a.GetAddress())] {
				out = append(out, a)
			}
		}
		return out
	}
	c.To, c.Cc, c.Bcc = filter(c.To), filter(c.Cc), filter(c.Bcc)
	return c
}

// ctxOr prefers the context's error to the i/o timeout it caused.
func ctxOr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	var ne net.Error
	if d, ok := ctx.Deadline(); ok && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(d) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func permanent(err error) provider.Outcome {
	return provider.Outcome{Class: provider.Permanent, Err: err}
}

func transient(err error) provider.Outcome {
	return provider.Outcome{Class: provider.Transient, Err: err}
}
