package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"sync"
	"time"

	gosmtp "github.com/wneessen/go-mail/smtp"

	"github.com/namirasoft/email-sender/pkg/netguard"
)

var errNoStartTLS = errors.New("smtp server does not offer STARTTLS")

// pool holds the connections of one configuration version.
type pool struct {
	s       *Sender
	version time.Time
	cfg     config
	slots   chan struct{} // one per connection in use

	mu     sync.Mutex
	idle   []*conn // most recently used last
	closed bool
}

func newPool(s *Sender, version time.Time, c config) *pool {
	return &pool{s: s, version: version, cfg: c, slots: make(chan struct{}, c.PoolSize)}
}

func (p *pool) acquire(ctx context.Context) error {
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pool) release() { <-p.slots }

// get returns an idle connection, or dials one. reused tells which.
func (p *pool) get(ctx context.Context) (cn *conn, reused bool, err error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 && !p.closed {
		cn = p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return cn, true, nil
	}
	p.mu.Unlock()
	cn, err = dial(ctx, p.cfg, p.s.opts)
	if err != nil {
		return nil, false, err
	}
	p.s.log.Debug("smtp connection opened", "host", p.cfg.Host, "port", p.cfg.Port)
	return cn, false, nil
}

// put parks a clean connection for the next message.
func (p *pool) put(cn *conn) {
	cn.lastUsed = time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		cn.quit()
		return
	}
	p.idle = append(p.idle, cn)
	p.mu.Unlock()
}

// closeIdle closes connections unused since before.
func (p *pool) closeIdle(before time.Time) {
	p.mu.Lock()
	var old []*conn
	p.idle = slices.DeleteFunc(p.idle, func(cn *conn) bool {
		if cn.lastUsed.Before(before) {
			old = append(old, cn)
			return true
		}
		return false
	})
	p.mu.Unlock()
	for _, cn := range old {
		cn.quit()
	}
}

// close quits idle connections now and busy ones when they are returned.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, cn := range idle {
		cn.quit()
	}
}

// conn is one live SMTP connection.
type conn struct {
	c        *gosmtp.Client
	tc       *trackConn
	timeout  time.Duration
	lastUsed time.Time
}

// dial connects through the guard, says EHLO, secures the connection as
// configured and authenticates. Its errors are *stepError: they keep their
// text and tell Check at which step the connection failed.
func dial(ctx context.Context, c config, o Options) (*conn, error) {
	cn, step, err := dialSteps(ctx, c, o)
	if err != nil {
		return nil, &stepError{step: step, err: err}
	}
	return cn, nil
}

func dialSteps(ctx context.Context, c config, o Options) (_ *conn, step string, _ error) {
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	addr := net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	// The guard checks the address actually connected to, after resolution,
	// so a name that resolves (or rebinds) to an internal address is refused.
	raw, err := o.Guard.Dialer(c.timeout).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, stepConnect, fmt.Errorf("smtp dial %s: %w", addr, ctxOr(ctx, err))
	}
	tc := &trackConn{Conn: raw}
	cn := &conn{tc: tc, timeout: c.timeout}
	ok := false
	defer func() {
		if !ok {
			_ = tc.Close()
		}
	}()
	stop := cn.watch(dctx)
	defer stop()
	cn.deadline(dctx)

	tlsConfig := &tls.Config{ServerName: c.Host, RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}
	var nc net.Conn = tc
	if c.TLS == TLSImplicit {
		t := tls.Client(tc, tlsConfig)
		if err := t.HandshakeContext(dctx); err != nil {
			return nil, stepTLS, fmt.Errorf("smtp tls handshake with %s: %w", addr, ctxOr(ctx, err))
		}
		nc = t
	}
	cl, err := gosmtp.NewClient(nc, c.Host)
	if err != nil {
		return nil, stepGreeting, dialErr(ctx, "greeting", err)
	}
	cn.c = cl
	helo := c.HELO
	if helo == "" {
		helo = o.HELO
	}
	if helo == "" {
		helo = addressLiteral(raw.LocalAddr())
	}
	if err := cl.Hello(helo); err != nil {
		return nil, stepEHLO, dialErr(ctx, "ehlo", err)
	}
	if c.TLS == TLSStartTLS || c.TLS == TLSStartTLSOpportunistic {
		has, _ := cl.Extension("STARTTLS")
		switch {
		case has:
			if err := cl.StartTLS(tlsConfig); err != nil {
				return nil, stepStartTLS, dialErr(ctx, "starttls", err)
			}
		case c.TLS == TLSStartTLS:
			return nil, stepStartTLS, fmt.Errorf("%w (tls is starttls)", errNoStartTLS)
		}
	}
	if c.Username != "" {
		if err := authenticate(cl, c); err != nil {
			return nil, stepAuth, dialErr(ctx, "auth", err)
		}
	}
	ok = true
	return cn, "", nil
}

// Steps of dial, for Check's detail.
const (
	stepConnect  = "connect"
	stepTLS      = "tls"
	stepGreeting = "greeting"
	stepEHLO     = "ehlo"
	stepStartTLS = "starttls"
	stepAuth     = "auth"
)

// stepError is an error of dial with the step it happened at. Its text is
// the cause's: Outcome errors and logs read as before.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// checkDetail is what VerifyProvider shows of a failed Verify: our words and
// at most an SMTP reply code, never the text the peer sent (its greeting, a
// reply's message, a non-SMTP banner): the peer is whatever listens where a
// tenant pointed us.
func checkDetail(err error, st Settings) string {
	where := net.JoinHostPort(st.Host, strconv.Itoa(st.Port))
	var se *stepError
	if !errors.As(err, &se) {
		// Not a connection error: the settings (FieldError texts name the
		// field, never a value of the peer).
		return err.Error()
	}
	var re *ReplyError
	reply := errors.As(err, &re)
	var cv *tls.CertificateVerificationError
	certFailed := errors.As(err, &cv)
	timedOut := errors.Is(err, context.DeadlineExceeded) || isTimeout(err)
	switch se.step {
	case stepConnect:
		switch {
		case errors.Is(err, netguard.ErrRefused):
			return fmt.Sprintf("connection to %s refused by policy: the host is not a public internet address", where)
		case timedOut:
			return fmt.Sprintf("could not connect to %s: timed out", where)
		}
		return fmt.Sprintf("could not connect to %s", where)
	case stepTLS, stepStartTLS:
		name := "TLS handshake"
		if se.step == stepStartTLS {
			name = "STARTTLS"
		}
		switch {
		case errors.Is(err, errNoStartTLS):
			return fmt.Sprintf("connected to %s, but the server does not offer STARTTLS (tls is starttls)", where)
		case reply:
			return fmt.Sprintf("connected to %s, %s refused (SMTP %d)", where, name, re.Code)
		case certFailed:
			return fmt.Sprintf("connected to %s, %s failed: the server's certificate is not valid for %s", where, name, st.Host)
		case timedOut:
			return fmt.Sprintf("connected to %s, %s failed: timed out", where, name)
		}
		return fmt.Sprintf("connected to %s, %s failed", where, name)
	case stepGreeting:
		switch {
		case reply:
			return fmt.Sprintf("connected to %s, the server refused the session (SMTP %d)", where, re.Code)
		case timedOut:
			return fmt.Sprintf("connected to %s, no SMTP greeting: timed out", where)
		}
		return fmt.Sprintf("connected to %s, but it did not answer as an SMTP server", where)
	case stepEHLO:
		if reply {
			return fmt.Sprintf("connected to %s, EHLO refused (SMTP %d)", where, re.Code)
		}
		return fmt.Sprintf("connected to %s, the connection failed during EHLO", where)
	case stepAuth:
		switch {
		case reply:
			return fmt.Sprintf("connected to %s, authentication as %s refused (SMTP %d)", where, st.Username, re.Code)
		case errors.Is(err, errNoAuth):
			return fmt.Sprintf("connected to %s, but the server does not offer AUTH", where)
		case errors.Is(err, errNoMechanism):
			return fmt.Sprintf("connected to %s, but the server offers neither AUTH PLAIN nor LOGIN", where)
		case errors.Is(err, gosmtp.ErrUnencrypted):
			return fmt.Sprintf("connected to %s, authentication not attempted: the connection is not encrypted (set tls_mode)", where)
		case errors.Is(err, ErrAuth):
			return fmt.Sprintf("connected to %s, authentication as %s failed", where, st.Username)
		}
		return fmt.Sprintf("connected to %s, the connection failed during authentication", where)
	}
	return fmt.Sprintf("could not log in to %s", where)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var (
	errNoAuth      = errors.New("server does not offer AUTH")
	errNoMechanism = errors.New("server offers neither PLAIN nor LOGIN")
)

// authenticate uses PLAIN, or LOGIN when the server offers only that. Both
// refuse to send the password unencrypted except to localhost.
func authenticate(cl *gosmtp.Client, c config) error {
	has, mechs := cl.Extension("AUTH")
	if !has {
		return fmt.Errorf("%w: %w", ErrAuth, errNoAuth)
	}
	var a gosmtp.Auth
	switch offered := " " + mechs + " "; {
	case containsWord(offered, "PLAIN"):
		a = gosmtp.PlainAuth("", c.Username, c.password, c.Host, false)
	case containsWord(offered, "LOGIN"):
		a = gosmtp.LoginAuth(c.Username, c.password, c.Host, false)
	default:
		return fmt.Errorf("%w: %w", ErrAuth, errNoMechanism)
	}
	if err := cl.Auth(a); err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			return fmt.Errorf("%w: %w", ErrAuth, &ReplyError{Command: "auth", Code: te.Code, Message: oneLine(te.Msg)})
		}
		if errors.Is(err, gosmtp.ErrUnencrypted) || errors.Is(err, gosmtp.ErrWrongHostname) {
			return fmt.Errorf("%w: %w", ErrAuth, err)
		}
		return err
	}
	return nil
}

func containsWord(list, w string) bool {
	for i := 0; i+len(w) <= len(list); i++ {
		if list[i:i+len(w)] == w && (i == 0 || list[i-1] == ' ') && (i+len(w) == len(list) || list[i+len(w)] == ' ') {
			return true
		}
	}
	return false
}

// dialErr turns an SMTP refusal into a ReplyError and a network error into a
// wrapped one.
func dialErr(ctx context.Context, step string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		return &ReplyError{Command: step, Code: te.Code, Message: oneLine(te.Msg)}
	}
	var re *ReplyError
	if errors.As(err, &re) {
		return err
	}
	return fmt.Errorf("smtp %s: %w", step, ctxOr(ctx, err))
}

// watch aborts blocked I/O when ctx ends; the returned func stops watching.
func (cn *conn) watch(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, cn.tc.abort)
}

// deadline bounds the next command by the timeout and ctx's deadline.
func (cn *conn) deadline(ctx context.Context) {
	t := time.Now().Add(cn.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(t) {
		t = d
	}
	cn.tc.setDeadline(t)
}

func (cn *conn) writeFailed() bool { return cn.tc.failed() }

// quit says goodbye politely but briefly, then closes.
func (cn *conn) quit() {
	cn.tc.setDeadline(time.Now().Add(2 * time.Second))
	if cn.c != nil {
		_ = cn.c.Quit()
	}
	_ = cn.tc.Close()
}

func (cn *conn) close() { _ = cn.tc.Close() }

// trackConn records failed writes and lets a context abort blocked I/O for
// good (later deadlines cannot undo an abort).
type trackConn struct {
	net.Conn

	mu          sync.Mutex
	aborted     bool
	writeFailed bool
}

func (c *trackConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.mu.Lock()
		c.writeFailed = true
		c.mu.Unlock()
	}
	return n, err
}

func (c *trackConn) failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeFailed
}

func (c *trackConn) isAborted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.aborted
}

func (c *trackConn) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.aborted = true
	_ = c.Conn.SetDeadline(time.Unix(1, 0))
}

func (c *trackConn) setDeadline(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.aborted {
		_ = c.Conn.SetDeadline(t)
	}
}

// SetDeadline and friends are what TLS and go-mail may call; they obey abort.
func (c *trackConn) SetDeadline(t time.Time) error {
	c.setDeadline(t)
	return nil
}

func (c *trackConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *trackConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}
