package imappoll

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/namirasoft/email-sender/pkg/provider/smtp"
)

// Keyword marks mail the poller handled.
const Keyword imap.Flag = "$NamirasoftHandled"

// poll handles the new mail of b's mailbox: what was not handled before
// (UID above the stored one, without Keyword), oldest first, up to
// MaxMessages. It stops at the first mail that could not be recorded,
// which the next poll tries again. n is the mail handled.
func (p *Poller) poll(ctx context.Context, b mailbox) (n int, err error) {
	c, err := p.dial(ctx, b.settings)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	// Commands have no context: closing the connection ends them.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	wrap := func(what string, err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("imap %s: %w", what, ctx.Err())
		}
		return fmt.Errorf("imap %s: %w", what, err)
	}

	if err := c.Login(b.settings.BounceIMAPUsername, b.password).Wait(); err != nil {
		return 0, wrap("login", err) // the server's text never quotes the password
	}
	sel, err := c.Select(b.settings.BounceIMAPMailbox, nil).Wait()
	if err != nil {
		return 0, wrap("select "+strconv.Quote(b.settings.BounceIMAPMailbox), err)
	}
	st, err := p.state.load(ctx, b.providerID)
	if err != nil {
		return 0, err
	}
	last := imap.UID(st.lastUID)
	if st.uidValidity != sel.UIDValidity || st.mailbox != b.settings.BounceIMAPMailbox {
		last = 0 // another mailbox, or recreated: the keyword tells what was handled
	}
	keywords := slices.Contains(sel.PermanentFlags, imap.FlagWildcard) || slices.Contains(sel.PermanentFlags, Keyword)
	crit := &imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: last + 1, Stop: 0}}}}
	if keywords {
		crit.NotFlag = []imap.Flag{Keyword}
	}
	found, err := c.UIDSearch(crit, nil).Wait()
	if err != nil {
		return 0, wrap("search", err)
	}
	// "n:*" always includes the highest UID, handled or not.
	uids := slices.DeleteFunc(found.AllUIDs(), func(u imap.UID) bool { return u <= last })
	slices.Sort(uids)
	if len(uids) > p.cfg.MaxMessages {
		uids = uids[:p.cfg.MaxMessages]
	}
	save := func() error {
		return p.state.save(context.WithoutCancel(ctx), b, sel.UIDValidity, uint32(last))
	}
	section := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: p.deps.ParseBytes}}
	for _, uid := range uids {
		raw, err := fetch(c, uid, section)
		if err != nil {
			return n, errors.Join(wrap("fetch", err), save())
		}
		recorded, err := p.handle(ctx, b, raw)
		if err != nil {
			return n, errors.Join(fmt.Errorf("record mail %d: %w", uid, err), save())
		}
		flags := []imap.Flag{}
		if keywords {
			flags = append(flags, Keyword)
		}
		if recorded {
			flags = append(flags, imap.FlagSeen)
		}
		if len(flags) > 0 {
			if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close(); err != nil {
				return n, errors.Join(wrap("store flags", err), save())
			}
		}
		last, n = uid, n+1
	}
	if err := save(); err != nil {
		return n, err
	}
	_ = c.Logout().Wait()
	return n, nil
}

// fetch is the start of mail uid (section).
func fetch(c *imapclient.Client, uid imap.UID, section *imap.FetchItemBodySection) ([]byte, error) {
	msgs, err := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if m.UID == uid {
			if raw := m.FindBodySection(section); raw != nil {
				return raw, nil
			}
		}
	}
	return nil, nil // expunged meanwhile: nothing to record
}

// handle matches raw to a message of b's account and records it.
func (p *Poller) handle(ctx context.Context, b mailbox, raw []byte) (bool, error) {
	if len(raw) == 0 {
		return false, nil
	}
	tok, messageID := match(p.deps.Signer, b.accountID, raw)
	if tok == nil && messageID == "" {
		p.log.InfoContext(ctx, "imap poll: mail names none of our messages", "provider_id", b.providerID)
		return false, nil
	}
	return p.deps.Recorder.Record(ctx, Found{Token: tok, MessageID: messageID, AccountID: b.accountID, Raw: raw})
}

// dial connects through the guard, with b's TLS mode, and waits for the
// greeting.
func (p *Poller) dial(ctx context.Context, s smtp.Settings) (*imapclient.Client, error) {
	addr := net.JoinHostPort(s.BounceIMAPHost, strconv.Itoa(s.BounceIMAPPort))
	dctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	conn, err := p.guard.Dialer(p.cfg.Timeout).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("imap dial %s: %w", addr, err)
	}
	// Every command must answer within the timeout (the client's own are
	// longer); the deadline moves with each read and write.
	conn = &deadlineConn{Conn: conn, timeout: p.cfg.Timeout}
	opts := &imapclient.Options{TLSConfig: &tls.Config{ServerName: s.BounceIMAPHost, MinVersion: tls.VersionTLS12, RootCAs: p.deps.RootCAs}}
	var c *imapclient.Client
	switch s.BounceIMAPTLS {
	case smtp.IMAPTLSImplicit:
		tc := tls.Client(conn, opts.TLSConfig)
		if err := tc.HandshakeContext(dctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("imap tls %s: %w", addr, err)
		}
		c = imapclient.New(tc, opts)
	case smtp.IMAPTLSStartTLS:
		if c, err = imapclient.NewStartTLS(conn, opts); err != nil {
			return nil, fmt.Errorf("imap starttls %s: %w", addr, err)
		}
	default:
		c = imapclient.New(conn, opts)
	}
	if err := c.WaitGreeting(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("imap greeting %s: %w", addr, err)
	}
	return c, nil
}

// deadlineConn sets a deadline of timeout before each read and write.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(b)
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(b)
}
