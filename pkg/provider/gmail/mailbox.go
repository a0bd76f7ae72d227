package gmail

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"

	gmailapi "google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"

	"github.com/namirasoft/email-sender/pkg/bounce"
	"github.com/namirasoft/email-sender/pkg/provider"
)

// ErrHistoryExpired: users.history.list answered 404 for the startHistoryId:
// Gmail no longer keeps the history from there (typically after a week).
// Start again from the profile's current historyId.
var ErrHistoryExpired = errors.New("gmail: the history id is too old (404)")

// ErrNoMessage: users.messages.get answered 404 (the message was deleted).
var ErrNoMessage = errors.New("gmail: no such message (404)")

// ErrNoBodyAccess: users.messages.get with format=raw answered 403: the
// token may read headers only (Gmail holds a token that carries
// gmail.metadata to it, whatever else it carries).
var ErrNoBodyAccess = errors.New("gmail: the token may not read message bodies (format=raw refused)")

// The scopes that decide whether the bounce poller may read a notice's body.
const (
	ScopeMetadata = "https://www.googleapis.com/auth/gmail.metadata"
	ScopeReadonly = "https://www.googleapis.com/auth/gmail.readonly"
	ScopeModify   = "https://www.googleapis.com/auth/gmail.modify"
	ScopeFull     = "https://mail.google.com/"
)

// NoticeHeaders are the header fields the bounce poller reads of each new
// message (format=metadata, metadataHeaders).
var NoticeHeaders = []string{"From", "Subject", "Content-Type", "Auto-Submitted", "X-Failed-Recipients", "In-Reply-To", "References", "Message-ID"}

// HistoryPage is one page of users.history.list: the messages added.
type HistoryPage struct {
	// MessageIDs are the Gmail ids of the messages added, in history order,
	// each once.
	MessageIDs []string
	// HistoryID is the mailbox's historyId when the page was read: the
	// cursor to store once the last page (NextPageToken "") is done.
	HistoryID uint64
	// NextPageToken is the next page's token, "" on the last page.
	NextPageToken string
}

// MessageMeta is a message read with format=metadata.
type MessageMeta struct {
	ID, ThreadID string
	Labels       []string
	// Header holds the header fields asked for (textproto canonical keys).
	Header textproto.MIMEHeader
	// Snippet is Gmail's start of the text; empty under the gmail.metadata
	// scope, which gives headers and labels only.
	Snippet string
}

// call runs one API call of cfg's mailbox with the configuration's cached
// client (the access token the sends use), retried once after a 401 (the
// transport dropped the refused token). Errors are classified as Send's are:
// refused credentials wrap ErrAuth.
func (s *Sender) call(ctx context.Context, cfg provider.Config, do func(*client) error) error {
	cl, err := s.client(cfg)
	if err != nil {
		return err
	}
	for try := 0; ; try++ {
		if _, err = cl.tokens.tokenCtx(ctx); err == nil {
			err = do(cl)
		}
		if err == nil {
			return nil
		}
		var ge *googleapi.Error
		if errors.As(err, &ge) && ge.Code == http.StatusUnauthorized && try == 0 && ctx.Err() == nil {
			continue
		}
		if errors.As(err, &ge) && ge.Code == http.StatusForbidden && len(ge.Errors) > 0 && ge.Errors[0].Reason == "insufficientPermissions" {
			return fmt.Errorf("%w: the token may not read the mailbox: authorize the gmail.metadata scope (besides gmail.send) for bounces", ErrAuth)
		}
		return s.classify(ctx, err, false).Err
	}
}

// HistoryID is the mailbox's current historyId (users.getProfile): where a
// poller starts.
func (s *Sender) HistoryID(ctx context.Context, cfg provider.Config) (uint64, error) {
	var id uint64
	err := s.call(ctx, cfg, func(cl *client) error {
		p, err := cl.svc.Users.GetProfile(cl.cfg.SenderUser).Context(ctx).Do()
		if err == nil {
			id = p.HistoryId
		}
		return err
	})
	return id, err
}

// History reads one page of the messages added to the mailbox after
// startHistoryID (users.history.list, historyTypes=messageAdded), with the
// label labelID when it is not "". ErrHistoryExpired when Gmail no longer
// has that history.
func (s *Sender) History(ctx context.Context, cfg provider.Config, startHistoryID uint64, labelID, pageToken string, maxResults int64) (HistoryPage, error) {
	var page HistoryPage
	err := s.call(ctx, cfg, func(cl *client) error {
		c := cl.svc.Users.History.List(cl.cfg.SenderUser).StartHistoryId(startHistoryID).HistoryTypes("messageAdded").Context(ctx)
		if labelID != "" {
			c = c.LabelId(labelID)
		}
		if pageToken != "" {
			c = c.PageToken(pageToken)
		}
		if maxResults > 0 {
			c = c.MaxResults(maxResults)
		}
		r, err := c.Do()
		if err != nil {
			return err
		}
		page = HistoryPage{HistoryID: r.HistoryId, NextPageToken: r.NextPageToken}
		seen := map[string]bool{}
		for _, h := range r.History {
			for _, a := range h.MessagesAdded {
				if a.Message != nil && a.Message.Id != "" && !seen[a.Message.Id] {
					seen[a.Message.Id] = true
					page.MessageIDs = append(page.MessageIDs, a.Message.Id)
				}
			}
		}
		return nil
	})
	if notFound(err) {
		return HistoryPage{}, ErrHistoryExpired
	}
	return page, err
}

// Message reads the header fields names of the message id
// (users.messages.get, format=metadata): all the gmail.metadata scope
// allows. ErrNoMessage when it is gone.
func (s *Sender) Message(ctx context.Context, cfg provider.Config, id string, names ...string) (MessageMeta, error) {
	var meta MessageMeta
	err := s.call(ctx, cfg, func(cl *client) error {
		m, err := cl.svc.Users.Messages.Get(cl.cfg.SenderUser, id).Format("metadata").MetadataHeaders(names...).Context(ctx).Do()
		if err != nil {
			return err
		}
		meta = metaOf(m)
		return nil
	})
	if notFound(err) {
		return MessageMeta{}, ErrNoMessage
	}
	return meta, err
}

// ReadsBodies reports whether cfg's access token may read whole messages
// (users.messages.get, format=raw): Google's token endpoint says which
// scopes it granted (the token answer's "scope"), and the token must carry
// gmail.readonly, gmail.modify or https://mail.google.com/ and not
// gmail.metadata, which Gmail lets read headers only even beside a broader
// scope. False when the endpoint does not say.
func (s *Sender) ReadsBodies(ctx context.Context, cfg provider.Config) (bool, error) {
	var granted string
	err := s.call(ctx, cfg, func(cl *client) error {
		t, err := cl.tokens.tokenCtx(ctx)
		if err == nil {
			granted, _ = t.Extra("scope").(string)
		}
		return err
	})
	if err != nil {
		return false, err
	}
	return bodyScopes(strings.Fields(granted)), nil
}

// bodyScopes reports whether a token of the scopes may read bodies.
func bodyScopes(scopes []string) bool {
	if slices.Contains(scopes, ScopeMetadata) {
		return false
	}
	return slices.ContainsFunc(scopes, func(s string) bool { return s == ScopeReadonly || s == ScopeModify || s == ScopeFull })
}

// RawMessage is a message read with format=raw.
type RawMessage struct {
	ID, ThreadID string
	Labels       []string
	// Raw is the RFC 5322 message (decoded from base64url).
	Raw []byte
}

// Meta is the message as format=metadata gives it: its header fields
// (all of them) and labels.
func (m RawMessage) Meta() MessageMeta {
	meta := MessageMeta{ID: m.ID, ThreadID: m.ThreadID, Labels: m.Labels, Header: textproto.MIMEHeader{}}
	if h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(m.Raw))).ReadMIMEHeader(); h != nil {
		meta.Header = h
	}
	return meta
}

// RawMessage reads the whole message id (users.messages.get, format=raw),
// which needs a token that ReadsBodies. ErrNoMessage when it is gone,
// ErrNoBodyAccess when Gmail refuses the format to the token.
func (s *Sender) RawMessage(ctx context.Context, cfg provider.Config, id string) (RawMessage, error) {
	var (
		out     RawMessage
		refused bool
	)
	err := s.call(ctx, cfg, func(cl *client) error {
		m, err := cl.svc.Users.Messages.Get(cl.cfg.SenderUser, id).Format("raw").Context(ctx).Do()
		var ge *googleapi.Error
		if errors.As(err, &ge) && ge.Code == http.StatusForbidden && (len(ge.Errors) == 0 || !throttled[ge.Errors[0].Reason]) {
			refused = true
			return nil
		}
		if err != nil {
			return err
		}
		raw, err := decodeRaw(m.Raw)
		if err != nil {
			return fmt.Errorf("gmail: message %s: raw: %w", id, err)
		}
		out = RawMessage{ID: m.Id, ThreadID: m.ThreadId, Labels: m.LabelIds, Raw: raw}
		return nil
	})
	switch {
	case refused:
		return RawMessage{}, ErrNoBodyAccess
	case notFound(err):
		return RawMessage{}, ErrNoMessage
	}
	return out, err
}

// decodeRaw decodes Message.raw, base64url with or without padding.
func decodeRaw(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.URLEncoding.DecodeString(s)
	}
	return base64.RawURLEncoding.DecodeString(s)
}

// notFound reports whether err is the API's 404.
func notFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == http.StatusNotFound
}

func metaOf(m *gmailapi.Message) MessageMeta {
	meta := MessageMeta{ID: m.Id, ThreadID: m.ThreadId, Labels: m.LabelIds, Snippet: m.Snippet, Header: textproto.MIMEHeader{}}
	if m.Payload != nil {
		for _, h := range m.Payload.Headers {
			meta.Header.Add(h.Name, h.Value)
		}
	}
	return meta
}

// Notice is what a delivery status notification in the mailbox says, read
// from its headers (and Gmail's snippet when there is one).
type Notice struct {
	// Failed are the recipients that failed (X-Failed-Recipients).
	Failed []string
	// ThreadID is the notice's Gmail thread: Gmail threads a bounce with the
	// message that bounced, whose id (the id users.messages.send returned,
	// the message's provider_message_id) is its thread's id.
	ThreadID string
	// References are the Message-IDs of In-Reply-To and References: the
	// message that bounced.
	References []string
	// Text is the snippet ("" under the gmail.metadata scope).
	Text string
}

// ParseNotice reads a message of the mailbox as a bounce notice; false when
// it is not one: not from a mailer-daemon or postmaster and no
// multipart/report delivery-status, or naming no failed recipient (a
// "Delivery Status Notification (Delay)": Gmail is still trying).
func ParseNotice(m MessageMeta) (Notice, bool) {
	if !isMailerDaemon(m.Header) {
		return Notice{}, false
	}
	n := Notice{ThreadID: m.ThreadID, Text: m.Snippet}
	for _, v := range m.Header.Values("X-Failed-Recipients") {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				n.Failed = append(n.Failed, a)
			}
		}
	}
	if len(n.Failed) == 0 {
		return Notice{}, false
	}
	for _, h := range []string{"In-Reply-To", "References"} {
		for _, v := range m.Header.Values(h) {
			for _, f := range strings.Fields(v) {
				if strings.HasPrefix(f, "<") && strings.HasSuffix(f, ">") && !slices.Contains(n.References, f) {
					n.References = append(n.References, f)
				}
			}
		}
	}
	return n, true
}

// isMailerDaemon reports whether the headers are a delivery status
// notification's: from MAILER-DAEMON or postmaster (Gmail's is
// mailer-daemon@googlemail.com), or a multipart/report of
// report-type=delivery-status.
func isMailerDaemon(h textproto.MIMEHeader) bool {
	if a, err := mail.ParseAddress(h.Get("From")); err == nil {
		local, _, _ := strings.Cut(strings.ToLower(a.Address), "@")
		if local == "mailer-daemon" || local == "postmaster" {
			return true
		}
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mt == "multipart/report" && strings.EqualFold(params["report-type"], "delivery-status")
}

// Class is the bounce class of the notice's failures as its headers (and
// snippet) tell it; the bounce poller reads the notice's delivery-status
// instead when the token may read bodies (ReadsBodies). The headers say a
// recipient failed for good (X-Failed-Recipients is on failures only), not
// why: without text the class is pkg/bounce's for a failure without a code,
// a hard bounce. Gmail's snippet, when the scope gives one, starts with its
// heading and usually the remote server's answer ("** Message blocked **
// ... 550 5.7.1 ..."), which pkg/bounce reads as it reads a DSN's.
func (n Notice) Class() bounce.Class {
	return bounce.Classify(bounce.Report{Action: "failed", Diagnostic: n.Text})
}

// Status is the enhanced status code the notice's text names, "" when none.
func (n Notice) Status() string { return bounce.ParseCode(n.Text).String() }
