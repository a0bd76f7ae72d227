package submission

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/namirasoft/email-sender/pkg/auth"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// session is one submission connection: AUTH once, then any number of
// transactions, each message a SendEmail call with the session's API key.
type session struct {
	srv  *Server
	conn *smtp.Conn
	ctx  context.Context
	peer string // the client's IP address
	// key is the API key AUTH verified; empty until then.
	key string
	// senders are the account's verified senders; nil when the key may not
	// list them (a send-only key).
	senders *senderSet
	env     envelope
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) tlsOK() bool {
	_, isTLS := ss.conn.TLSConnectionState()
	return isTLS || ss.srv.cfg.InsecureAuth
}

// AuthMechanisms are offered only over TLS (EHLO after STARTTLS, or on the
// implicit-TLS port).
func (ss *session) AuthMechanisms() []string {
	if !ss.tlsOK() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth takes the API key as the password; the user name is not used.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if !ss.tlsOK() {
		return nil, errEncryptFirst
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, _, password string) error { return ss.login(password) }), nil
	case sasl.Login:
		return &loginServer{authenticate: func(_, password string) error { return ss.login(password) }}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *session) login(key string) error {
	if key == "" {
		ss.srv.metrics.auth(ss.ctx, "invalid")
		return errAuthFailed
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.CallTimeout)
	defer cancel()
	res := &authResult{}
	_, err := ss.srv.authn.Authenticate(context.WithValue(withPeer(ctx, ss.peer), authResultKey{}, res), key)
	switch {
	case err == nil:
		ss.key, ss.senders = key, res.senders
		ss.srv.metrics.auth(ss.ctx, "ok")
		return nil
	case errors.Is(err, auth.ErrUnauthenticated):
		ss.srv.metrics.auth(ss.ctx, "invalid")
		ss.srv.log.Info("submission auth failed", "remote", ss.peer)
		return errAuthFailed
	case errors.Is(err, auth.ErrThrottled):
		ss.srv.metrics.auth(ss.ctx, "throttled")
		return errAuthThrottled
	default:
		ss.srv.metrics.auth(ss.ctx, "error")
		ss.srv.log.Warn("submission auth: ingest call failed", "remote", ss.peer, "error", err)
		return errAuthUnavailable
	}
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.key == "" {
		return errAuthRequired
	}
	ss.env = envelope{from: from}
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.key == "" {
		return errAuthRequired
	}
	if at := strings.LastIndexByte(to, '@'); at < 1 || at == len(to)-1 {
		return reply(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
	}
	ss.env.rcpts = append(ss.env.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	if ss.key == "" {
		return errAuthRequired
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		var tooLarge *smtp.SMTPError
		if errors.As(err, &tooLarge) && tooLarge.Code == 552 {
			ss.srv.metrics.message(ss.ctx, 552)
			return errTooLarge
		}
		return err
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.CallTimeout)
	defer cancel()
	id, err := ss.srv.submit(withPeer(ctx, ss.peer), ss.key, ss.env, raw, ss.senders)
	if err != nil {
		var rep *smtp.SMTPError
		if !errors.As(err, &rep) {
			rep = replyOf(err)
		}
		ss.srv.metrics.message(ss.ctx, rep.Code)
		ss.srv.log.Info("submission refused", "remote", ss.peer, "code", rep.Code, "reply", rep.Message)
		return rep
	}
	ss.srv.metrics.message(ss.ctx, 250)
	ss.srv.log.Debug("submission accepted", "remote", ss.peer, "message_id", id, "recipients", len(ss.env.rcpts))
	return accepted(id)
}

func (ss *session) Reset() { ss.env = envelope{} }

func (ss *session) Logout() error { return nil }

// senderSet is an account's verified senders: addresses and domains.
type senderSet struct {
	addresses, domains map[string]bool
}

func newSenderSet(list []*v1.Sender) *senderSet {
	s := &senderSet{addresses: map[string]bool{}, domains: map[string]bool{}}
	for _, x := range list {
		if x.GetStatus() != "verified" {
			continue
		}
		if x.GetIsDomain() {
			s.domains[strings.ToLower(x.GetAddress())] = true
		} else {
			s.addresses[strings.ToLower(x.GetAddress())] = true
		}
	}
	return s
}

// has reports whether addr is a verified sender (nil set: unknown, no).
func (s *senderSet) has(addr string) bool {
	if s == nil {
		return false
	}
	lower := strings.ToLower(addr)
	if s.addresses[lower] {
		return true
	}
	at := strings.LastIndexByte(lower, '@')
	return at >= 0 && s.domains[lower[at+1:]]
}

// loginServer is the server side of AUTH LOGIN (user name, then password,
// each base64 after a 334 prompt).
type loginServer struct {
	step         int
	user         string
	authenticate func(user, password string) error
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if response == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.authenticate(l.user, string(response))
	}
	return nil, false, errors.New("unexpected LOGIN response")
}
