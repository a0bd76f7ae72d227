package inbound

import (
	"bytes"
	"context"
	"io"

	"github.com/emersion/go-smtp"
)

var (
	errNoSuchAddress = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such bounce address"}
	errTryLater      = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot store the report now; try again later"}
)

// session is one SMTP transaction sequence on one connection.
type session struct {
	svc    *Service
	ctx    context.Context
	remote string
	from   string
	// rcpts are the transaction's verified bounce addresses.
	rcpts []string
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	// Bounces come from <>, auto-replies and reports from anyone: the
	// recipient address is what is checked.
	ss.from, ss.rcpts = from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if _, err := ss.svc.ParseAddress(to); err != nil {
		ss.svc.metrics.refused(ss.ctx)
		ss.svc.log.Info("refused recipient", "remote", ss.remote, "rcpt", to, "reason", err.Error())
		return errNoSuchAddress
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(r, ss.svc.cfg.ParseBytes)); err != nil {
		return err // too large (552) or the connection failed
	}
	// The rest of a large returned original is not needed.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	// Durable on EMAIL_INBOUND before the 250; recorded by the consumer.
	if err := ss.svc.accept(ss.ctx, ss.rcpts, buf.Bytes(), ss.remote); err != nil {
		ss.svc.log.Warn("accepted mail not stored; sender told to retry", "remote", ss.remote, "error", err)
		return errTryLater
	}
	return nil
}

func (ss *session) Reset() { ss.from, ss.rcpts = "", nil }

func (ss *session) Logout() error { return nil }
