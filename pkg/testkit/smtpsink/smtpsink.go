// Package smtpsink is a real SMTP server on TCP (built on go-smtp) that records
// what it accepts, for tests and benchmarks.
//
// A Sink records every accepted message (envelope and the exact DATA bytes) and
// can be scripted at runtime from any goroutine: answer the next transactions
// with a given reply, reject recipients, drop connections without answering,
// delay or stall the final answer to DATA, add a fixed latency per message,
// require AUTH PLAIN, and be stopped and started again on the same address.
//
// A transaction starts at MAIL FROM; each transaction takes the next scripted
// Action (see Script) at that moment, so "the next N transactions" counts MAIL
// commands, including those whose recipients are all rejected later.
package smtpsink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configure a Sink. The zero value is a usable sink on a random port.
type Options struct {
	// Addr to listen on; default "127.0.0.1:0".
	Addr string
	// Domain announced in the greeting; default "sink.test".
	Domain string
	// Username and Password, when Username is set, make AUTH PLAIN mandatory
	// before MAIL; wrong credentials get 535 5.7.8.
	Username, Password string
	// Latency delays every answer to DATA (a slow remote server).
	Latency time.Duration
	// TLSConfig, when set, enables STARTTLS (or implicit TLS with ImplicitTLS).
	TLSConfig *tls.Config
	// ImplicitTLS makes the listener speak TLS from the first byte (port 465 style).
	ImplicitTLS bool
	// DiscardData keeps only the envelope and size of messages, not their bytes
	// (benchmarks).
	DiscardData bool
	// MaxMessageBytes limits the DATA size; default 50 MiB.
	MaxMessageBytes int64
	// NoSMTPUTF8 stops the sink from offering SMTPUTF8 (RFC 6531).
	NoSMTPUTF8 bool
}

// Message is one accepted message.
type Message struct {
	From string
	To   []string
	// Data is the DATA payload exactly as received (dot-unstuffed, CRLF line
	// endings, without the terminating ".").
	Data []byte
	// Size is len(Data), also set when Options.DiscardData is true.
	Size       int
	QueueID    string
	Username   string
	ReceivedAt time.Time
}

// Reply is an SMTP reply, e.g. {451, "4.3.0", "try again later"}.
type Reply struct {
	Code     int
	Enhanced string // "x.y.z", empty for none
	Message  string
}

func (r Reply) smtpError() *smtp.SMTPError {
	e := &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.NoEnhancedCode, Message: r.Message}
	if r.Enhanced != "" {
		var a, b, c int
		if _, err := fmt.Sscanf(r.Enhanced, "%d.%d.%d", &a, &b, &c); err == nil {
			e.EnhancedCode = smtp.EnhancedCode{a, b, c}
		}
	}
	return e
}

// Stage is the point of a transaction where an Action applies.
type Stage int

const (
	// AtData applies the action after the message data was received, in place of
	// the final answer.
	AtData Stage = iota
	// AtMail applies the action to the MAIL FROM command.
	AtMail
)

// Action scripts how the sink handles one transaction.
type Action struct {
	Stage Stage
	// Reply, when non-zero, answers instead of accepting.
	Reply Reply
	// Drop closes the TCP connection without answering.
	Drop bool
	// Delay waits before answering (or dropping).
	Delay time.Duration
	// Stall waits until Release is called or the sink stops, then acts.
	Stall bool
}

// Sink is a scripted SMTP server. Its methods are safe for concurrent use.
type Sink struct {
	opts Options
	addr string

	mu        sync.Mutex
	server    *smtp.Server
	listener  net.Listener
	served    chan struct{}
	running   bool
	script    []Action
	rejects   map[string]Reply
	latency   time.Duration
	release   chan struct{} // closed by Release
	messages  []Message
	changed   chan struct{} // closed and replaced when messages grow
	stalled   int
	stopped   chan struct{} // closed by Stop; one per Start
	nextQueue atomic.Uint64
	conns     atomic.Int64
	active    atomic.Int64
}

// New starts a sink.
func New(opts Options) (*Sink, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Domain == "" {
		opts.Domain = "sink.test"
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = 50 << 20
	}
	s := &Sink{
		opts:    opts,
		addr:    opts.Addr,
		rejects: map[string]Reply{},
		latency: opts.Latency,
		release: make(chan struct{}),
		changed: make(chan struct{}),
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// StartTest starts a sink for a test and closes it when the test ends.
func StartTest(tb testing.TB, opts ...Options) *Sink {
	tb.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	s, err := New(o)
	if err != nil {
		tb.Fatalf("start smtp sink: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Addr is the listening address, "host:port"; it stays the same across Stop
// and Start.
func (s *Sink) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Host and Port split Addr.
func (s *Sink) Host() string {
	h, _, _ := net.SplitHostPort(s.Addr())
	return h
}

// Port is the listening port.
func (s *Sink) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr())
	var n int
	fmt.Sscanf(p, "%d", &n)
	return n
}

// Start listens again after Stop, on the same address. It is a no-op while
// running.
func (s *Sink) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	var l net.Listener
	var err error
	// The port may linger briefly after Stop; retry for a moment.
	for i := 0; ; i++ {
		l, err = net.Listen("tcp", s.addr)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.addr, err)
	}
	s.addr = l.Addr().String()
	if s.opts.ImplicitTLS {
		if s.opts.TLSConfig == nil {
			l.Close()
			return errors.New("implicit tls needs a tls config")
		}
		l = tls.NewListener(l, s.opts.TLSConfig)
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = s.opts.Domain
	srv.MaxMessageBytes = s.opts.MaxMessageBytes
	srv.MaxRecipients = 1000
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = !s.opts.NoSMTPUTF8
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if !s.opts.ImplicitTLS {
		srv.TLSConfig = s.opts.TLSConfig
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(l)
	}()
	s.server, s.listener, s.served, s.running = srv, l, served, true
	s.stopped = make(chan struct{})
	return nil
}

// Stop closes the listener and every open connection, releasing stalled
// transactions; recorded messages and the script are kept. Start listens
// again on the same address.
func (s *Sink) Stop() {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return
	}
	srv, l, served := s.server, s.listener, s.served
	s.running = false
	close(s.stopped)
	s.mu.Unlock()

	_ = srv.Close()
	// srv.Close misses a listener that Serve has not registered yet.
	_ = l.Close()
	<-served
	// Sessions end when their connections close; wait so nothing outlives Stop.
	deadline := time.Now().Add(5 * time.Second)
	for s.active.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
}

// Close stops the sink for good.
func (s *Sink) Close() { s.Stop() }

// Script queues actions for the next transactions, one each, in order.
func (s *Sink) Script(actions ...Action) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, actions...)
}

// FailNext answers the DATA of the next n transactions with r.
func (s *Sink) FailNext(n int, r Reply) {
	s.Script(repeat(n, Action{Reply: r})...)
}

// DropNext closes the connection without answering in the next n
// transactions, at the given stage.
func (s *Sink) DropNext(n int, at Stage) {
	s.Script(repeat(n, Action{Stage: at, Drop: true})...)
}

// StallNext holds the final answer to DATA of the next n transactions until
// Release (or Stop), then accepts.
func (s *Sink) StallNext(n int) {
	s.Script(repeat(n, Action{Stall: true})...)
}

// DelayNext delays the final answer to DATA of the next n transactions.
func (s *Sink) DelayNext(n int, d time.Duration) {
	s.Script(repeat(n, Action{Delay: d})...)
}

// ResetScript drops queued actions and recipient rejections.
func (s *Sink) ResetScript() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = nil
	s.rejects = map[string]Reply{}
}

// RejectRcpt answers RCPT TO for addr (case-insensitive) with r until
// ResetScript.
func (s *Sink) RejectRcpt(addr string, r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejects[strings.ToLower(addr)] = r
}

// SetLatency sets the delay added to every answer to DATA.
func (s *Sink) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// Release lets every stalled transaction continue.
func (s *Sink) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked()
}

func (s *Sink) releaseLocked() {
	close(s.release)
	s.release = make(chan struct{})
}

// Stalled is the number of transactions currently stalled at DATA.
func (s *Sink) Stalled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stalled
}

// WaitStalled waits until at least n transactions are stalled.
func (s *Sink) WaitStalled(ctx context.Context, n int) error {
	for {
		if s.Stalled() >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d stalled transactions: %w", n, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Connections is the number of TCP connections accepted so far.
func (s *Sink) Connections() int { return int(s.conns.Load()) }

// ActiveConnections is the number of connections open now.
func (s *Sink) ActiveConnections() int { return int(s.active.Load()) }

// Messages returns a copy of the accepted messages, in order of acceptance.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Count is the number of accepted messages.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.messages)
}

// WaitFor waits until at least n messages were accepted and returns them.
func (s *Sink) WaitFor(ctx context.Context, n int) ([]Message, error) {
	for {
		s.mu.Lock()
		if len(s.messages) >= n {
			out := append([]Message(nil), s.messages...)
			s.mu.Unlock()
			return out, nil
		}
		ch := s.changed
		have := len(s.messages)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for %d messages (have %d): %w", n, have, ctx.Err())
		}
	}
}

func (s *Sink) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.conns.Add(1)
	s.active.Add(1)
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	return &session{sink: s, conn: c, stopped: stopped}, nil
}

func (s *Sink) next() Action {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.script) == 0 {
		return Action{}
	}
	a := s.script[0]
	s.script = s.script[1:]
	return a
}

func repeat(n int, a Action) []Action {
	out := make([]Action, n)
	for i := range out {
		out[i] = a
	}
	return out
}

// session is one SMTP connection.
type session struct {
	sink    *Sink
	conn    *smtp.Conn
	stopped chan struct{} // of the Start that accepted this connection
	authed  string
	from    string
	to      []string
	action  Action
	done    bool
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.sink.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || ss.sink.opts.Username == "" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != ss.sink.opts.Username || password != ss.sink.opts.Password {
			return smtp.ErrAuthFailed
		}
		ss.authed = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.sink.opts.Username != "" && ss.authed == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	ss.action = ss.sink.next()
	if ss.action.Stage == AtMail {
		if err := ss.apply(); err != nil {
			return err
		}
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.sink.mu.Lock()
	r, ok := ss.sink.rejects[strings.ToLower(to)]
	ss.sink.mu.Unlock()
	if ok {
		return r.smtpError()
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	var data []byte
	var size int
	var err error
	if ss.sink.opts.DiscardData {
		var n int64
		n, err = io.Copy(io.Discard, r)
		size = int(n)
	} else {
		data, err = io.ReadAll(r)
		size = len(data)
	}
	if err != nil {
		return err
	}
	ss.sink.mu.Lock()
	latency := ss.sink.latency
	ss.sink.mu.Unlock()
	if !ss.sleep(latency) {
		return ss.drop()
	}
	if ss.action.Stage == AtData {
		if err := ss.apply(); err != nil {
			return err
		}
	}
	id := fmt.Sprintf("%X", ss.sink.nextQueue.Add(1)+0xA0000)
	msg := Message{
		From: ss.from, To: append([]string(nil), ss.to...), Data: data, Size: size,
		QueueID: id, Username: ss.authed, ReceivedAt: time.Now(),
	}
	ss.sink.mu.Lock()
	ss.sink.messages = append(ss.sink.messages, msg)
	close(ss.sink.changed)
	ss.sink.changed = make(chan struct{})
	ss.sink.mu.Unlock()
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

// apply runs the transaction's action; a non-nil error is the answer.
func (ss *session) apply() error {
	a := ss.action
	ss.action = Action{}
	if !ss.sleep(a.Delay) {
		return ss.drop()
	}
	if a.Stall {
		ss.sink.mu.Lock()
		ch := ss.sink.release
		ss.sink.stalled++
		ss.sink.mu.Unlock()
		select {
		case <-ch:
		case <-ss.stopped:
		}
		ss.sink.mu.Lock()
		ss.sink.stalled--
		ss.sink.mu.Unlock()
	}
	select {
	case <-ss.stopped:
		// The sink went down meanwhile: nothing is accepted.
		return ss.drop()
	default:
	}
	if a.Drop {
		return ss.drop()
	}
	if a.Reply.Code != 0 {
		return a.Reply.smtpError()
	}
	return nil
}

// sleep waits for d; false when the sink stopped meanwhile.
func (ss *session) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ss.stopped:
		return false
	}
}

// drop closes the TCP connection; the error is the answer go-smtp will fail
// to write.
func (ss *session) drop() error {
	_ = ss.conn.Conn().Close()
	return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "dropped"}
}

func (ss *session) Reset() {
	ss.from, ss.to, ss.action = "", nil, Action{}
}

func (ss *session) Logout() error {
	if !ss.done {
		ss.done = true
		ss.sink.active.Add(-1)
	}
	return nil
}
