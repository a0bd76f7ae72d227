// Package ses is the Amazon SES v2 provider: a provider.Sender (and
// provider.Verifier) that hands messages to SES with SendEmail, raw content.
//
// # What is sent
//
// The message is the same MIME the SMTP provider sends (pkg/mime.Raw: the same
// Message-ID, Date, headers, body parts, attachments and inline parts), as
// Content.Raw. The envelope is the delivery's recipients (to, cc and bcc minus
// the suppressed ones) in Destination.ToAddresses: SES sends to the Destination
// addresses, not to the headers, so bcc recipients stay out of the headers as
// over SMTP. FromEmailAddress is the From address, ConfigurationSetName the
// configuration's configuration_set, and EmailTags are the message's tags:
// SES allows only [A-Za-z0-9_-] in tag names and values, at most 256
// characters, so a tag whose name or value has anything else is dropped (not
// rewritten, which could merge two tags), and logged at debug level. One tag
// is always added, emailsender-message-id with the service's message id, so
// SES event notifications name the message they are about. The SES message id
// is Outcome.MessageID (the worker writes it into the timeline); Response is
// "SES accepted: <id>".
//
// # Clients and rate
//
// One sesv2 client per configuration (ID, Version), with the configuration's
// region and static credentials (access_key_id, secret_access_key), the
// operator's endpoint override (Options.Endpoint, SES_ENDPOINT) and the SDK's
// own retries off: the worker's backoff governs. The clients share one HTTP
// transport (connections are reused) that dials through the guard
// (pkg/netguard).
//
// Each configuration's sends go through a token bucket at the account's SES
// maximum send rate (GetAccount's SendQuota.MaxSendRate, burst of one
// second's worth), read before the first send and again every
// Options.AccountRefresh (5 minutes). When GetAccount fails (for example the
// IAM policy lacks ses:GetAccount) the sends are not limited by this package
// (SES's own throttling answers are retried) and GetAccount is tried again
// after a minute.
//
// # Classification
//
//	TooManyRequestsException, Throttling(Exception), LimitExceededException,
//	  HTTP 429 and 5xx, network errors before the request was written     Transient (Retry-After honoured)
//	MessageRejected, MailFromDomainNotVerifiedException, NotFoundException,
//	  BadRequestException, other 4xx                                       Permanent
//	AccountSuspendedException, SendingPausedException                      Credentials (fail, configuration unhealthy)
//	UnrecognizedClientException, InvalidClientTokenId, InvalidSignature,
//	  SignatureDoesNotMatch, IncompleteSignature, MissingAuthenticationToken,
//	  AccessDenied(Exception), ExpiredToken, other 403                     Credentials
//	no answer after the whole request was written (timeout, reset)         Ambiguous
//	more than 50 recipients (SES's limit per message)                      Permanent
//
// Secrets never appear in errors: the SDK's errors do not carry them, and any
// text that would contain the secret access key is redacted anyway.
package ses

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/time/rate"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
)

// MaxRecipients is SES's limit of destinations per message.
const MaxRecipients = 50

// MessageIDTag is the SES message tag that carries the service's message id.
const MessageIDTag = "emailsender-message-id"

// Options configure a Sender.
type Options struct {
	// Logger; default slog.Default(). Never given secrets or message content.
	Logger *slog.Logger
	// MessageIDDomain is the right-hand side of Message-ID headers; empty means
	// the From address's domain.
	MessageIDDomain string
	// AccountRefresh is how often each configuration's GetAccount (the send
	// rate) is read again; default 5 minutes.
	AccountRefresh time.Duration
	// Endpoint overrides the regional SES endpoint for every configuration
	// (an emulator in tests and the dev stack): an operator setting
	// (SES_ENDPOINT), never a tenant's. Empty: AWS's regional endpoint.
	Endpoint string
	// Guard vets every address the HTTP client dials (after DNS
	// resolution); nil allows public addresses only. Unused with HTTPClient.
	Guard *netguard.Guard
	// HTTPClient overrides the shared HTTP client (tests); its transport
	// should dial through a guard.
	HTTPClient *http.Client
}

// ErrSettings is wrapped by every error about a configuration's settings.
var ErrSettings = errors.New("invalid ses settings")

// ErrCredentials is wrapped by errors of calls that SES refused for the
// credentials or the account (bad keys, access denied, account suspended,
// sending paused): the configuration is unusable until it is fixed.
var ErrCredentials = errors.New("ses refused the credentials or the account")

// ErrClosed is returned by a Sender after Close.
var ErrClosed = errors.New("ses sender closed")

// Sender is the SES provider. It is safe for concurrent use.
type Sender struct {
	opts Options
	log  *slog.Logger
	http *http.Client

	mu      sync.Mutex
	clients map[string]*client // by config ID
	closed  bool
}

var (
	_ provider.Sender   = (*Sender)(nil)
	_ provider.Verifier = (*Sender)(nil)
)

// New returns a Sender.
func New(opts Options) *Sender {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.AccountRefresh <= 0 {
		opts.AccountRefresh = 5 * time.Minute
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = newHTTPClient(opts.Guard)
	}
	return &Sender{opts: opts, log: opts.Logger.With("provider", "ses"), http: hc, clients: map[string]*client{}}
}

func newHTTPClient(g *netguard.Guard) *http.Client {
	tr := g.Transport()
	tr.MaxIdleConns = 512
	tr.MaxIdleConnsPerHost = 256
	tr.IdleConnTimeout = 90 * time.Second
	return &http.Client{Transport: tr}
}

// Close drops the clients and their idle connections; Send then fails with
// ErrClosed. It is safe to call more than once.
func (s *Sender) Close() error {
	s.mu.Lock()
	s.closed = true
	s.clients = map[string]*client{}
	s.mu.Unlock()
	s.http.CloseIdleConnections()
	return nil
}

// config is a parsed provider.Config.
type config struct {
	Settings
	secret string
}

func parseConfig(cfg provider.Config) (config, error) {
	var c config
	var sec Secret
	if err := provider.DecodeConfig(cfg, ErrSettings, &c.Settings, &sec); err != nil {
		return c, err
	}
	// An endpoint stored by an earlier version, when tenants could set one,
	// is not used: the operator's (Options.Endpoint) is.
	c.Endpoint = ""
	if err := c.Normalize(sec); err != nil {
		return c, fmt.Errorf("%w: %v", ErrSettings, err)
	}
	c.secret = sec.SecretAccessKey
	return c, nil
}

func newAPI(c config, hc *http.Client, endpoint string) *sesv2.Client {
	o := sesv2.Options{
		Region:      c.Region,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.secret, "")),
		Retryer:     aws.NopRetryer{},
	}
	if hc != nil {
		o.HTTPClient = hc
	}
	if endpoint != "" {
		o.BaseEndpoint = aws.String(endpoint)
	}
	return sesv2.New(o)
}

// client is one configuration version's SES client and send rate.
type client struct {
	version time.Time
	cfg     config
	api     *sesv2.Client

	mu         sync.Mutex
	known      bool          // a GetAccount finished (well or not)
	limiter    *rate.Limiter // nil: not limited
	info       *AccountInfo
	next       time.Time     // when to read GetAccount again
	refreshing chan struct{} // closed when the running refresh ends
}

// client returns the client of cfg, replacing the client of another version.
func (s *Sender) client(cfg provider.Config) (*client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if c := s.clients[cfg.ID]; c != nil && c.version.Equal(cfg.Version) {
		return c, nil
	}
	pc, err := parseConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := &client{version: cfg.Version, cfg: pc, api: newAPI(pc, s.http, s.opts.Endpoint)}
	s.clients[cfg.ID] = c
	return c, nil
}

// wait takes a token of the configuration's send rate, reading the account's
// rate first when it is due.
func (s *Sender) wait(ctx context.Context, c *client) error {
	c.mu.Lock()
	if !time.Now().Before(c.next) && c.refreshing == nil {
		ch := make(chan struct{})
		c.refreshing = ch
		go s.refresh(c, ch)
	}
	ch, known := c.refreshing, c.known
	c.mu.Unlock()
	if !known && ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	lim := c.limiter
	c.mu.Unlock()
	if lim == nil {
		return nil
	}
	return lim.Wait(ctx)
}

func (s *Sender) refresh(c *client, done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	info, err := getAccount(ctx, c.api)
	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(done)
	c.refreshing = nil
	c.known = true
	if err != nil {
		c.next = time.Now().Add(time.Minute)
		s.log.Warn("ses GetAccount failed; sending without the account's rate limit until it answers",
			"region", c.cfg.Region, "error", redactSecret(err, c.cfg.secret))
		return
	}
	c.info = &info
	c.next = time.Now().Add(s.opts.AccountRefresh)
	switch {
	case info.MaxSendRate <= 0:
		c.limiter = nil
	case c.limiter == nil:
		c.limiter = rate.NewLimiter(rate.Limit(info.MaxSendRate), burst(info.MaxSendRate))
	default:
		c.limiter.SetLimit(rate.Limit(info.MaxSendRate))
		c.limiter.SetBurst(burst(info.MaxSendRate))
	}
}

func burst(r float64) int {
	return max(1, int(r))
}

// SendRate returns the send rate (messages/s) applied to cfg's sends, from
// the account's GetAccount; ok is false while none is applied (no send yet,
// or GetAccount failed).
func (s *Sender) SendRate(cfg provider.Config) (perSecond float64, ok bool) {
	s.mu.Lock()
	c := s.clients[cfg.ID]
	s.mu.Unlock()
	if c == nil || !c.version.Equal(cfg.Version) {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limiter == nil {
		return 0, false
	}
	return float64(c.limiter.Limit()), true
}

// Send delivers d.
func (s *Sender) Send(ctx context.Context, d *provider.Delivery) provider.Outcome {
	out := s.send(ctx, d)
	if out.Err != nil && d != nil && len(d.Config.Secret) > 0 {
		if c, err := parseConfig(d.Config); err == nil {
			out.Err = redactSecret(out.Err, c.secret)
			out.Response = strings.ReplaceAll(out.Response, c.secret, "[redacted]")
		}
	}
	return out
}

func (s *Sender) send(ctx context.Context, d *provider.Delivery) provider.Outcome {
	if d == nil || d.Job == nil || d.Job.GetMessage() == nil {
		return permanent(errors.New("ses: delivery has no message"))
	}
	c, err := s.client(d.Config)
	if errors.Is(err, ErrClosed) {
		return transient(err)
	}
	if err != nil {
		return provider.Outcome{Class: provider.Credentials, Err: err}
	}
	job := d.Job
	raw, err := mime.Raw(job.GetMessage(), d.MIMEOptions(s.opts.MessageIDDomain))
	if err != nil {
		return permanent(fmt.Errorf("build message %s: %w", job.GetMessageId(), err))
	}
	from, err := mime.CanonicalAddress(job.GetMessage().GetFrom().GetAddress())
	if err != nil {
		return permanent(fmt.Errorf("from address: %w", err))
	}
	// SES has no SMTPUTF8: addresses must be ASCII (IDN domains are, in
	// punycode), in the headers and on the envelope.
	if a := mime.UTF8HeaderAddress(job.GetMessage()); a != "" {
		return permanent(fmt.Errorf("ses: address %s has an internationalised local part, which SES does not accept", a))
	}
	rcpts := make([]string, 0, len(d.Recipients))
	rejected := map[string]string{}
	for _, r := range d.Recipients {
		a, err := mime.CanonicalAddress(r)
		if err != nil {
			rejected[r] = "invalid address"
			continue
		}
		if !address.IsASCII(a) {
			rejected[r] = "internationalised local part, which SES does not accept"
			continue
		}
		rcpts = append(rcpts, a)
	}
	if len(rcpts) == 0 {
		return permanent(errors.New("ses: no valid recipient"))
	}
	if len(rcpts) > MaxRecipients {
		return permanent(fmt.Errorf("ses: %d recipients; SES takes at most %d per message", len(rcpts), MaxRecipients))
	}
	if err := ctx.Err(); err != nil {
		return transient(fmt.Errorf("ses: %w", err))
	}
	if err := s.wait(ctx, c); err != nil {
		return transient(fmt.Errorf("ses: wait for the send rate: %w", err))
	}

	in := &sesv2.SendEmailInput{
		FromEmailAddress: aws.String(from),
		Destination:      &types.Destination{ToAddresses: rcpts},
		Content:          &types.EmailContent{Raw: &types.RawMessage{Data: raw}},
		EmailTags:        s.tags(job.GetMessageId(), job.GetMessage().GetTags()),
	}
	if c.cfg.ConfigurationSet != "" {
		in.ConfigurationSetName = aws.String(c.cfg.ConfigurationSet)
	}
	var wrote atomic.Bool
	tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	})
	res, err := c.api.SendEmail(tctx, in)
	if err != nil {
		return classify(ctx, err, wrote.Load())
	}
	id := aws.ToString(res.MessageId)
	out := provider.Outcome{Class: provider.Sent, Response: "SES accepted: " + id, MessageID: id}
	if len(rejected) > 0 {
		out.Rejected = rejected
	}
	return out
}

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

// ValidTag reports whether SES accepts name=value as a message tag.
func ValidTag(name, value string) bool {
	return tagRE.MatchString(name) && tagRE.MatchString(value)
}

// tags returns the message's valid tags, sorted by name, and the message id tag.
func (s *Sender) tags(messageID string, in map[string]string) []types.MessageTag {
	out := make([]types.MessageTag, 0, len(in)+1)
	var dropped []string
	for k, v := range in {
		if k == MessageIDTag {
			continue
		}
		if !ValidTag(k, v) {
			dropped = append(dropped, k)
			continue
		}
		out = append(out, types.MessageTag{Name: aws.String(k), Value: aws.String(v)})
	}
	slices.SortFunc(out, func(a, b types.MessageTag) int { return strings.Compare(*a.Name, *b.Name) })
	if ValidTag(MessageIDTag, messageID) {
		out = append(out, types.MessageTag{Name: aws.String(MessageIDTag), Value: aws.String(messageID)})
	}
	if len(dropped) > 0 {
		s.log.Debug("ses: tags dropped (SES allows only A-Z a-z 0-9 _ - up to 256 characters)",
			"message_id", messageID, "tags", len(dropped))
	}
	return out
}

// Error codes by class.
var (
	throttleCodes = codes("TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException",
		"RequestLimitExceeded", "InternalFailure", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException")
	permanentCodes = codes("MessageRejected", "MailFromDomainNotVerifiedException", "NotFoundException",
		"BadRequestException", "ValidationException", "InvalidParameterValue")
	accountCodes = codes("AccountSuspendedException", "SendingPausedException")
	credsCodes   = codes("UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
		"SignatureDoesNotMatch", "IncompleteSignature", "IncompleteSignatureException", "MissingAuthenticationToken",
		"MissingAuthenticationTokenException", "AccessDenied", "AccessDeniedException", "ExpiredToken",
		"ExpiredTokenException", "AuthFailure", "InvalidAccessKeyId", "NotAuthorized")
)

func codes(cs ...string) map[string]bool {
	m := make(map[string]bool, len(cs))
	for _, c := range cs {
		m[c] = true
	}
	return m
}

// Classify returns the outcome of a failed SES call. wrote says whether the
// whole request reached the network before the call failed.
func classify(ctx context.Context, err error, wrote bool) provider.Outcome {
	code, msg, status := "", "", 0
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg = ae.ErrorCode(), ae.ErrorMessage()
	}
	var re *smithyhttp.ResponseError
	var retryAfter time.Duration
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
		if re.Response != nil {
			retryAfter = parseRetryAfter(re.Response.Header.Get("Retry-After"))
		}
	}
	if code == "UnknownError" {
		code = ""
	}
	if status == 0 && code == "" {
		// No answer from SES.
		if errors.Is(err, netguard.ErrRefused) {
			// The endpoint is not a public address and not in
			// OUTBOUND_ALLOW_NETS: nothing was sent, and retrying cannot help.
			return provider.Outcome{Class: provider.Permanent, Err: fmt.Errorf("ses: %w", netguard.ErrRefused)}
		}
		if wrote {
			// The whole request reached the network: SES may have accepted it.
			return provider.Outcome{Class: provider.Ambiguous, Err: fmt.Errorf("ses: no answer after the request was sent: %w", ctxOr(ctx, err))}
		}
		return transient(fmt.Errorf("ses: %w", ctxOr(ctx, err)))
	}
	resp := "SES"
	if status != 0 {
		resp += " " + strconv.Itoa(status)
	}
	if code != "" {
		resp += " " + code
	}
	if msg != "" {
		resp += ": " + oneLine(msg)
	}
	out := provider.Outcome{Response: resp, Err: &APIError{Status: status, Code: code, Message: oneLine(msg)}}
	switch {
	case accountCodes[code], credsCodes[code]:
		out.Class = provider.Credentials
	case throttleCodes[code]:
		out.Class, out.RetryAfter = provider.Transient, retryAfter
	case permanentCodes[code]:
		out.Class = provider.Permanent
	case status == http.StatusTooManyRequests || status >= 500:
		out.Class, out.RetryAfter = provider.Transient, retryAfter
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		out.Class = provider.Credentials
	case status == http.StatusRequestTimeout:
		out.Class = provider.Transient
	default:
		out.Class = provider.Permanent
	}
	return out
}

// APIError is an error answer of SES.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	s := "ses"
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Status != 0 {
		s += " (HTTP " + strconv.Itoa(e.Status) + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is makes errors of refused credentials or accounts match ErrCredentials.
func (e *APIError) Is(target error) bool {
	if target != ErrCredentials {
		return false
	}
	return accountCodes[e.Code] || credsCodes[e.Code] ||
		(e.Code == "" && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden))
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// ctxOr prefers the context's error to the error it caused.
func ctxOr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	var ne net.Error
	if d, ok := ctx.Deadline(); ok && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(d) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func permanent(err error) provider.Outcome {
	return provider.Outcome{Class: provider.Permanent, Err: err}
}

func transient(err error) provider.Outcome {
	return provider.Outcome{Class: provider.Transient, Err: err}
}

// redactSecret removes secret from err's text, keeping errors.Is/As working.
func redactSecret(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), secret, "[redacted]"), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }
func (e *redactedError) As(target any) bool   { return errors.As(e.err, target) }
