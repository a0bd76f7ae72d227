// Package smtp is the SMTP provider: a provider.Sender (and provider.Verifier)
// that relays messages to an account's SMTP server.
//
// # Connections
//
// Each configuration (ID, Version) has a pool of at most pool_size live
// connections, each a go-mail smtp.Client that one send uses at a time. Idle
// connections are reused for the next message (the server ends a transaction
// with its answer to DATA; RSET only follows an aborted one), closed after
// Options.IdleTimeout, and closed when a newer Version of the configuration
// shows up or Close is called. A connection that fails is closed, never reused;
// when a reused idle connection turns out to be dead before the server took
// anything (a hang-up, or the 421 a server sends when it closes an idle
// connection), the message is retried once on a fresh connection.
//
// # Why not mail.Client.Send
//
// go-mail's high-level Client.Send resets the whole transaction when any RCPT
// is refused, and reports a lost connection after the message data the same way
// as one before it. This package drives the transaction itself with go-mail's
// lower-level smtp.Client (MAIL, RCPT per recipient, DATA) and builds the
// message with pkg/mime (a go-mail Msg), so it can:
//
//   - deliver to the accepted recipients and report the refused ones
//     (Outcome.Rejected), and
//   - tell Ambiguous from Transient.
//
// # How Ambiguous is detected
//
// The TCP connection is wrapped in a net.Conn that records whether any write
// failed. After the message, the dot-terminated end of data is flushed and the
// final reply is read (go-mail's DataCloser.Close ignores the flush error, the
// wrapper does not). If reading the reply fails without an SMTP reply (timeout,
// context deadline, reset, EOF) and no write on the connection ever failed, then
// every byte of the message including the final "." reached the kernel's send
// buffer and the server may have accepted it: the outcome is Ambiguous. A failed
// write means the server cannot have the complete message: Transient. An SMTP
// reply is classified by its code whatever the phase. Context cancellation and
// the per-command timeout are enforced with connection deadlines, so a stalled
// server is abandoned promptly.
//
// # The envelope
//
// What strict servers (Postfix with strict_rfc821_envelopes, Mailpit) insist
// on, proven against them in interop_test.go:
//
//   - EHLO with the configured name, else Options.HELO: the host's FQDN, else
//     the connection's address literal; never "localhost".
//   - MAIL FROM:<path> with the angle brackets (RFC 5321 §4.1.1.2); the null
//     reverse-path <> for automatic replies (reversePath); with a bounce
//     domain (Options.VERP), the message's signed bounce address
//     b+<token>@<bounce domain>, bound to the recipient when there is one,
//     at the account's own verified bounce domain when it has one
//     (provider.Config.BounceDomain), else the operator's. SIZE=n when the
//     server offers SIZE, and a message over its limit fails before MAIL.
//     SMTPUTF8 only when an address needs it (RFC 6531): without it on the
//     server, internationalised header addresses fail the message and
//     envelope-only ones are refused alone (UTF8Error).
//   - RCPT TO:<path> for each recipient.
//
// # Classification
//
//	dial, TLS handshake, network errors before the end of data  Transient
//	4xx at any command                                           Transient
//	421 at MAIL on a reused idle connection                      redial once
//	5xx at MAIL, DATA or the final reply; every RCPT refused     Permanent
//	message over the server's SIZE; SMTPUTF8 needed, not offered Permanent
//	530, 534, 535 (and AUTH refusals)                            Credentials
//	some RCPT refused, the message accepted for the others      Sent + Rejected
//	no reply after the complete message was written              Ambiguous
//
// Passwords never appear in errors or responses: they are built from SMTP
// replies and network errors, and any text that would contain the password
// (as it is, or base64-encoded as AUTH PLAIN and LOGIN send it, should a
// server repeat it) is redacted.
package smtp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gosmtp "github.com/wneessen/go-mail/smtp"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/verp"
)

// Options configure a Sender.
type Options struct {
	// Logger for connection events; default slog.Default(). Never given secrets
	// or message content.
	Logger *slog.Logger
	// IdleTimeout closes connections unused for this long; default 60s.
	IdleTimeout time.Duration
	// MessageIDDomain is the right-hand side of Message-ID headers; empty means
	// the From address's domain.
	MessageIDDomain string
	// RootCAs verifies servers' certificates; nil means the system pool.
	RootCAs *x509.CertPool
	// Guard vets every address dialled (after DNS resolution): a tenant's
	// host on loopback, a private network or the metadata service is refused.
	// Nil allows public addresses only.
	Guard *netguard.Guard
	// HELO is the name said in EHLO when a configuration names none. Empty
	// means this host's fully qualified name, or, when it has none, the
	// connection's own address as an address literal ("[192.0.2.1]", RFC 5321
	// §4.1.4); never "localhost", which strict servers refuse.
	HELO string
	// VERP, when set, makes the envelope sender of every message (but an
	// automatic reply's <>) its signed bounce address (pkg/verp), so that
	// bounces and reports come back to the inbound service.
	VERP *verp.Signer
}

// ErrAuth is wrapped by errors of failed authentication.
var ErrAuth = errors.New("smtp authentication failed")

// ErrClosed is returned by a Sender after Close.
var ErrClosed = errors.New("smtp sender closed")

// ReplyError is an SMTP reply that refused a command.
type ReplyError struct {
	Command string // "mail", "rcpt", "data", "end of data", "auth", ...
	Code    int
	Message string // the reply text after the code, lines joined by spaces
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("smtp %s: %d %s", e.Command, e.Code, e.Message)
}

// SizeError is a message larger than the server's SIZE limit (RFC 1870): it
// fails before MAIL, since the server would refuse it anyway.
type SizeError struct {
	Size, Limit int64
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("smtp: message is %d bytes; the server accepts at most %d (SIZE)", e.Size, e.Limit)
}

// UTF8Error is an internationalised address (RFC 6531) for a server that does
// not offer SMTPUTF8.
type UTF8Error struct {
	Address string
}

func (e *UTF8Error) Error() string {
	return fmt.Sprintf("smtp: address %s has an internationalised local part and the server does not offer SMTPUTF8", e.Address)
}

// Sender is the SMTP provider. It is safe for concurrent use.
type Sender struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	pools  map[string]*pool // by config ID
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

var (
	_ provider.Sender   = (*Sender)(nil)
	_ provider.Verifier = (*Sender)(nil)
)

// New returns a Sender; Close it to close its connections.
func New(opts Options) *Sender {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	if opts.HELO == "" {
		opts.HELO = hostFQDN()
	}
	s := &Sender{
		opts:  opts,
		log:   opts.Logger.With("provider", "smtp"),
		pools: map[string]*pool{},
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go s.reap()
	return s
}

// Close closes every connection; Send then fails with ErrClosed. It is safe
// to call more than once.
func (s *Sender) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	pools := s.pools
	s.pools = map[string]*pool{}
	close(s.stop)
	s.mu.Unlock()
	<-s.done
	for _, p := range pools {
		p.close()
	}
	return nil
}

// reap closes idle connections that have not been used for IdleTimeout.
func (s *Sender) reap() {
	defer close(s.done)
	t := time.NewTicker(max(s.opts.IdleTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			pools := make([]*pool, 0, len(s.pools))
			for _, p := range s.pools {
				pools = append(pools, p)
			}
			s.mu.Unlock()
			for _, p := range pools {
				p.closeIdle(now.Add(-s.opts.IdleTimeout))
			}
		}
	}
}

// pool returns the pool of cfg, replacing the pool of an older version.
func (s *Sender) pool(cfg provider.Config, c config) (*pool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	p := s.pools[cfg.ID]
	if p != nil && p.version.Equal(cfg.Version) {
		return p, nil
	}
	if p != nil {
		// A newer (or older) version replaced it: in-flight sends finish on
		// their connections, which are closed when returned.
		go p.close()
	}
	p = newPool(s, cfg.Version, c)
	s.pools[cfg.ID] = p
	return p, nil
}

// config returns cfg parsed: the pool's copy when a pool of this version
// exists (the pool dials with it anyway), so that a send does not decode the
// settings JSON again.
func (s *Sender) config(cfg provider.Config) (config, error) {
	s.mu.Lock()
	p := s.pools[cfg.ID]
	s.mu.Unlock()
	if p != nil && p.version.Equal(cfg.Version) {
		return p.cfg, nil
	}
	return parseConfig(cfg)
}

// Send delivers d.
func (s *Sender) Send(ctx context.Context, d *provider.Delivery) provider.Outcome {
	out := s.send(ctx, d)
	if len(d.Config.Secret) > 0 && (out.Err != nil || out.Response != "") {
		// The response is the server's reply, an AUTH refusal included: it is
		// stored and shown as the provider's answer.
		if c, err := s.config(d.Config); err == nil {
			out.Response = redactText(out.Response, c)
			out.Err = redactErr(out.Err, c)
		}
	}
	return out
}

func (s *Sender) send(ctx context.Context, d *provider.Delivery) provider.Outcome {
	if d == nil || d.Job == nil || d.Job.GetMessage() == nil {
		return permanent(errors.New("smtp: delivery has no message"))
	}
	c, err := s.config(d.Config)
	if err != nil {
		return provider.Outcome{Class: provider.Credentials, Err: err}
	}
	job := d.Job
	msg := job.GetMessage()
	raw, err := mime.Raw(msg, d.MIMEOptions(s.opts.MessageIDDomain))
	if err != nil {
		return permanent(fmt.Errorf("build message %s: %w", job.GetMessageId(), err))
	}
	from, err := reversePath(msg)
	if err != nil {
		return permanent(fmt.Errorf("envelope sender: %w", err))
	}
	if len(d.Recipients) == 0 {
		return permanent(errors.New("smtp: no recipients"))
	}
	if from != "" && s.opts.VERP != nil {
		if from, err = bounceAddress(s.opts.VERP, d.Config, job.GetMessageId(), d.Recipients); err != nil {
			return permanent(fmt.Errorf("envelope sender: %w", err))
		}
	}
	if err := ctx.Err(); err != nil {
		return transient(fmt.Errorf("smtp: %w", err))
	}

	p, err := s.pool(d.Config, c)
	if err != nil {
		return transient(err)
	}
	if err := p.acquire(ctx); err != nil {
		return transient(fmt.Errorf("wait for smtp connection: %w", err))
	}
	defer p.release()

	for try := 0; ; try++ {
		cn, reused, err := p.get(ctx)
		if err != nil {
			return dialOutcome(err)
		}
		t := &txn{conn: cn, from: from, rcpts: d.Recipients, raw: raw, utf8Header: mime.UTF8HeaderAddress(msg)}
		out := t.run(ctx)
		if t.stale && reused && try == 0 && ctx.Err() == nil {
			// The idle connection died while parked; nothing was answered.
			cn.close()
			continue
		}
		if t.reusable && !cn.tc.isAborted() {
			p.put(cn)
		} else {
			cn.close()
		}
		return out
	}
}

// Verify logs in with cfg (TLS and AUTH as configured) and quits, sending
// nothing.
func (s *Sender) Verify(ctx context.Context, cfg provider.Config) error {
	c, err := parseConfig(cfg)
	if err != nil {
		return err
	}
	cn, err := dial(ctx, c, s.opts)
	if err != nil {
		return redact(err, cfg)
	}
	cn.quit()
	return nil
}

// Check is Verify as ingest's VerifyProvider records it: what was logged in
// to, or what failed; refused credentials (ErrAuth) make the configuration
// unhealthy. The detail is in our words (checkDetail): never the server's
// greeting or reply text, which is whatever answered on the host and port a
// tenant chose.
func (s *Sender) Check(ctx context.Context, cfg provider.Config) provider.Verification {
	start := time.Now()
	if err := s.Verify(ctx, cfg); err != nil {
		st, _ := ParseSettings(cfg)
		v := provider.Verification{Detail: checkDetail(err, st)}
		if errors.Is(err, ErrAuth) {
			v.Healthy = provider.Unhealthy()
		}
		return v
	}
	took := time.Since(start).Round(time.Millisecond)
	st, _ := ParseSettings(cfg)
	login := "no AUTH (no username configured)"
	if st.Username != "" {
		login = fmt.Sprintf("authenticated as %s", st.Username)
	}
	return provider.Verification{OK: true, Healthy: provider.Healthy(), Detail: fmt.Sprintf(
		"connected to %s:%d (tls %s), %s, quit in %s; nothing was sent", st.Host, st.Port, st.TLS, login, took)}
}

// txn is one mail transaction on one connection.
type txn struct {
	conn *conn
	// from is the reverse-path, "" for the null reverse-path <>.
	from  string
	rcpts []string
	raw   []byte
	// utf8Header is an internationalised address in the message's headers,
	// "" when there is none (see mime.UTF8HeaderAddress).
	utf8Header string

	// stale: the connection failed before the server answered anything.
	stale bool
	// reusable: the connection is in a clean state for the next transaction.
	reusable bool
}

var queuedAs = regexp.MustCompile(`(?i)queued as\s+<?([A-Za-z0-9._@-]+)`)

func (t *txn) run(ctx context.Context) provider.Outcome {
	cn := t.conn
	stop := cn.watch(ctx)
	defer stop()

	rejected := map[string]string{}
	rcpts := make([]envelopeRcpt, 0, len(t.rcpts))
	needUTF8 := t.utf8Header != "" || !address.IsASCII(t.from) // the domain is punycode
	for _, r := range t.rcpts {
		addr, err := mime.CanonicalAddress(r)
		if err != nil {
			rejected[r] = "invalid address"
			continue
		}
		needUTF8 = needUTF8 || !address.IsASCII(addr)
		rcpts = append(rcpts, envelopeRcpt{key: r, addr: addr})
	}

	// What the server said in EHLO decides the MAIL parameters, and whether
	// the message can go to this server at all. Nothing is sent yet, so the
	// connection stays clean whatever is refused here.
	hasUTF8, _ := cn.c.Extension("SMTPUTF8")
	if needUTF8 && !hasUTF8 {
		if out, ok := t.refuseUTF8(rcpts, rejected); !ok {
			t.reusable = true
			return out
		}
		rcpts = slices.DeleteFunc(rcpts, func(r envelopeRcpt) bool { return !address.IsASCII(r.addr) })
		needUTF8 = false
	}
	params := ""
	if hasSize, limit := cn.c.Extension("SIZE"); hasSize {
		if n, err := strconv.ParseInt(strings.TrimSpace(limit), 10, 64); err == nil && n > 0 && int64(len(t.raw)) > n {
			t.reusable = true
			return permanent(&SizeError{Size: int64(len(t.raw)), Limit: n})
		}
		// RFC 1870: the size declared lets the server refuse before DATA.
		params = " SIZE=" + strconv.Itoa(len(t.raw))
	}
	// go-mail adds BODY=8BITMIME when offered, and SMTPUTF8 when offered and
	// not skipped; parameters are space-separated after the path, so SIZE can
	// ride along with the path (RFC 5321 §4.1.1.2 mail-parameters).
	cn.c.SkipSMTPUTF8(!needUTF8)
	cn.deadline(ctx)
	if err := cn.c.Mail("<" + t.from + ">" + params); err != nil {
		var re *textproto.Error
		if !errors.As(err, &re) {
			t.stale = true
			return netOutcome(ctx, "mail", err)
		}
		if re.Code == 421 {
			// The server is closing the connection (an idle timeout, say):
			// nothing of this message was taken.
			t.stale = true
			return replyOutcome("mail", re)
		}
		t.reusable = t.reset(ctx)
		return replyOutcome("mail", re)
	}

	accepted := 0
	anyTemp := false
	var firstRefusal *textproto.Error
	for _, r := range rcpts {
		cn.deadline(ctx)
		if err := cn.c.Rcpt("<" + r.addr + ">"); err != nil {
			var re *textproto.Error
			if !errors.As(err, &re) {
				return netOutcome(ctx, "rcpt", err)
			}
			rejected[r.key] = reply(re)
			anyTemp = anyTemp || re.Code/100 == 4
			if firstRefusal == nil {
				firstRefusal = re
			}
			continue
		}
		accepted++
	}
	if accepted == 0 {
		t.reusable = t.reset(ctx)
		if firstRefusal == nil {
			return permanent(fmt.Errorf("smtp: no valid recipient (%s)", joinRejected(rejected)))
		}
		out := replyOutcome("rcpt", firstRefusal)
		if anyTemp && out.Class == provider.Permanent {
			// Some recipient may be accepted later: retry the message.
			out.Class = provider.Transient
		}
		return out
	}

	cn.deadline(ctx)
	w, err := cn.c.Data()
	if err != nil {
		var re *textproto.Error
		if !errors.As(err, &re) {
			return netOutcome(ctx, "data", err)
		}
		t.reusable = t.reset(ctx)
		return replyOutcome("data", re)
	}
	cn.deadline(ctx)
	if _, err := w.Write(t.raw); err != nil {
		return netOutcome(ctx, "write message", err)
	}
	err = w.Close() // writes the final ".", reads the final reply
	if err != nil {
		var re *textproto.Error
		if errors.As(err, &re) {
			// The server answered: the transaction is over, the connection is clean.
			t.reusable = true
			return replyOutcome("end of data", re)
		}
		if cn.writeFailed() {
			return netOutcome(ctx, "write message", err)
		}
		return provider.Outcome{
			Class: provider.Ambiguous,
			Err:   fmt.Errorf("smtp: no reply after the message was sent: %w", ctxOr(ctx, err)),
		}
	}
	t.reusable = true
	resp := "250 " + oneLine(w.(*gosmtp.DataCloser).ServerResponse())
	out := provider.Outcome{Class: provider.Sent, Response: resp}
	if m := queuedAs.FindStringSubmatch(resp); m != nil {
		out.MessageID = m[1]
	}
	if len(rejected) > 0 {
		out.Rejected = rejected
	}
	return out
}

// envelopeRcpt is one recipient: key as the delivery names it (the key of
// Outcome.Rejected), addr as it goes on the envelope.
type envelopeRcpt struct{ key, addr string }

// refuseUTF8 handles a message that needs SMTPUTF8 on a server that does not
// offer it. Internationalised header addresses or reverse-path fail the whole
// message; internationalised envelope-only recipients (bcc) are refused one
// by one. ok is true when the others can still be sent.
func (t *txn) refuseUTF8(rcpts []envelopeRcpt, rejected map[string]string) (out provider.Outcome, ok bool) {
	if t.utf8Header != "" {
		return permanent(&UTF8Error{Address: t.utf8Header}), false
	}
	if !address.IsASCII(t.from) {
		return permanent(&UTF8Error{Address: t.from}), false
	}
	left := 0
	for _, r := range rcpts {
		if address.IsASCII(r.addr) {
			left++
			continue
		}
		rejected[r.key] = (&UTF8Error{Address: r.addr}).Error()
	}
	if left == 0 {
		return permanent(fmt.Errorf("smtp: no valid recipient (%s)", joinRejected(rejected))), false
	}
	return provider.Outcome{}, true
}

func joinRejected(rejected map[string]string) string {
	parts := make([]string, 0, len(rejected))
	for k, v := range rejected {
		parts = append(parts, k+": "+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// reset aborts the open transaction; false when the connection is unusable.
func (t *txn) reset(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	t.conn.deadline(ctx)
	return t.conn.c.Reset() == nil
}

func reply(e *textproto.Error) string {
	return strconv.Itoa(e.Code) + " " + oneLine(e.Msg)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func replyOutcome(cmd string, e *textproto.Error) provider.Outcome {
	err := &ReplyError{Command: cmd, Code: e.Code, Message: oneLine(e.Msg)}
	out := provider.Outcome{Response: reply(e), Err: err}
	switch {
	case e.Code == 530 || e.Code == 534 || e.Code == 535:
		out.Class = provider.Credentials
	case e.Code >= 400 && e.Code < 500:
		out.Class = provider.Transient
	default:
		out.Class = provider.Permanent
	}
	return out
}

func netOutcome(ctx context.Context, cmd string, err error) provider.Outcome {
	return transient(fmt.Errorf("smtp %s: %w", cmd, ctxOr(ctx, err)))
}

// ctxOr prefers the context's error to the i/o timeout it caused.
func ctxOr(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil {
		// The connection deadline is ctx's deadline; the i/o timeout can come a
		// moment before ctx notices.
		var ne net.Error
		if d, ok := ctx.Deadline(); ok && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(d) {
			cerr = context.DeadlineExceeded
		}
	}
	if cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// dialOutcome classifies an error of dial (connect, greeting, TLS, AUTH).
func dialOutcome(err error) provider.Outcome {
	var re *ReplyError
	if errors.As(err, &re) {
		out := provider.Outcome{Response: strconv.Itoa(re.Code) + " " + re.Message, Err: err}
		switch {
		case errors.Is(err, ErrAuth) && re.Code/100 != 4:
			out.Class = provider.Credentials
		case re.Code/100 == 4:
			out.Class = provider.Transient
		default:
			out.Class = provider.Permanent
		}
		return out
	}
	if errors.Is(err, ErrAuth) {
		return provider.Outcome{Class: provider.Credentials, Err: err}
	}
	if errors.Is(err, netguard.ErrRefused) {
		// The host is not a public address and not in OUTBOUND_ALLOW_NETS:
		// retrying cannot help, the configuration has to change.
		return permanent(err)
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) || errors.Is(err, errNoStartTLS) {
		return permanent(err)
	}
	return transient(err)
}

func permanent(err error) provider.Outcome {
	return provider.Outcome{Class: provider.Permanent, Err: err}
}

func transient(err error) provider.Outcome {
	return provider.Outcome{Class: provider.Transient, Err: err}
}

// redact removes the configuration's password from err's text.
func redact(err error, cfg provider.Config) error {
	c, perr := parseConfig(cfg)
	if perr != nil {
		return err
	}
	return redactErr(err, c)
}

// redactErr is err with c's password removed from its text (nil stays nil).
func redactErr(err error, c config) error {
	if err == nil {
		return nil
	}
	msg := redactText(err.Error(), c)
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// redactText replaces in s c's password and the base64 forms AUTH sends it
// in: PLAIN ("\x00user\x00password") and LOGIN (the password alone). The
// unpadded encodings match padded text too.
func redactText(s string, c config) string {
	if c.password == "" || s == "" {
		return s
	}
	for _, secret := range []string{
		base64.RawStdEncoding.EncodeToString([]byte("\x00" + c.Username + "\x00" + c.password)),
		base64.RawStdEncoding.EncodeToString([]byte(c.password)),
		c.password,
	} {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}

// redactedError keeps errors.Is/As working on the cause while its text has
// the secret removed.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Is and As reach the cause without exposing its text through Unwrap.
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }
func (e *redactedError) As(target any) bool   { return errors.As(e.err, target) }
