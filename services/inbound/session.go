package inbound

import (
	"bytes"
	"context"
	"errors"
	"io"

	"github.com/emersion/go-smtp"

	"github.com/namirasoft/email-sender/pkg/verp"
)

var (
	errNoSuchAddress = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such bounce address"}
	errTryLater      = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot record the report now; try again later"}
)

// session is one SMTP transaction sequence on one connection.
type session struct {
	svc    *Service
	ctx    context.Context
	remote string
	from   string
	tokens []verp.Token
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	// Bounces come from <>, auto-replies and reports from anyone: the
	// recipient address is what is checked.
	ss.from, ss.tokens = from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	tok, err := ss.svc.ParseAddress(to)
	if err != nil {
		ss.svc.metrics.refused(ss.ctx)
		ss.svc.log.Info("refused recipient", "remote", ss.remote, "rcpt", to, "reason", err.Error())
		return errNoSuchAddress
	}
	ss.tokens = append(ss.tokens, tok)
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
	ctx, cancel := context.WithTimeout(ss.ctx, ss.svc.cfg.ProcessTimeout)
	defer cancel()
	var errs []error
	for _, tok := range ss.tokens {
		errs = append(errs, ss.svc.Handle(ctx, tok, buf.Bytes()))
	}
	if err := errors.Join(errs...); err != nil {
		ss.svc.log.Warn("report not recorded; sender told to retry", "remote", ss.remote, "error", err)
		return errTryLater
	}
	return nil
}

func (ss *session) Reset() { ss.from, ss.tokens = "", nil }

func (ss *session) Logout() error { return nil }
