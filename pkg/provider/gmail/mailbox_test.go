package gmail_test

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/bounce"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/gmail"
	"github.com/namirasoft/email-sender/pkg/testkit/gmailtest"
)

// TestContract_BounceNotice: a sent message, then Gmail's bounce notice about
// it in the mailbox, read as the poller reads it through the real gmail/v1
// client: users.getProfile's historyId, users.history.list
// (startHistoryId, historyTypes=messageAdded, labelId=INBOX, maxResults,
// pageToken) and users.messages.get (format=metadata, metadataHeaders). The
// fake checks every request against the discovery document and fails the
// test on a violation; the notice is threaded with the sent message.
func TestContract_BounceNotice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start, err := b.sender.HistoryID(ctx(t), b.cfg)
	require.NoError(t, err)

	out := b.sender.Send(ctx(t), b.delivery("01JBOUNCE", "jane@example.com"))
	require.Equal(t, provider.Sent, out.Class, "%v", out.Err)
	sent := b.fake.Messages()[0]
	other := b.fake.Receive([]byte("From: Bob <bob@example.org>\r\nTo: sender@gmail.test\r\nSubject: hi\r\n\r\nhello\r\n"))
	notice := b.fake.Receive(b.fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"jane@example.com"}}))

	// Two pages of one message each: the sent message has no INBOX label.
	page, err := b.sender.History(ctx(t), b.cfg, start, "INBOX", "", 1)
	require.NoError(t, err)
	require.Equal(t, []string{other}, page.MessageIDs)
	require.NotEmpty(t, page.NextPageToken)
	require.Equal(t, b.fake.HistoryID(), page.HistoryID)
	page, err = b.sender.History(ctx(t), b.cfg, start, "INBOX", page.NextPageToken, 1)
	require.NoError(t, err)
	require.Equal(t, []string{notice}, page.MessageIDs)
	require.Empty(t, page.NextPageToken)

	meta, err := b.sender.Message(ctx(t), b.cfg, notice, gmail.NoticeHeaders...)
	require.NoError(t, err)
	require.Equal(t, sent.ThreadID, meta.ThreadID, "Gmail threads the bounce with the message")
	require.Equal(t, []string{"INBOX", "UNREAD"}, meta.Labels)
	require.Empty(t, meta.Snippet, "the gmail.metadata scope gives no snippet")
	require.Empty(t, meta.Header.Get("Delivered-To"), "only the headers asked for")
	n, ok := gmail.ParseNotice(meta)
	require.True(t, ok)
	require.Equal(t, []string{"jane@example.com"}, n.Failed)
	require.Equal(t, sent.ID, n.ThreadID)
	require.Equal(t, sent.Parsed.Header("Message-ID"), n.References)
	require.Equal(t, bounce.Hard, n.Class(), "a failure with headers only")

	meta, err = b.sender.Message(ctx(t), b.cfg, other, gmail.NoticeHeaders...)
	require.NoError(t, err)
	_, ok = gmail.ParseNotice(meta)
	require.False(t, ok, "mail from a person is no notice")

	_, err = b.sender.Message(ctx(t), b.cfg, "1affffffffffffff", gmail.NoticeHeaders...)
	require.ErrorIs(t, err, gmail.ErrNoMessage)

	methods := map[string]int{}
	for _, c := range b.fake.Calls() {
		methods[c.Method]++
		require.Empty(t, c.Violations)
		if c.Method == "gmail.users.history.list" {
			q, err := url.ParseQuery(c.Query)
			require.NoError(t, err)
			require.Equal(t, []string{"messageAdded"}, q["historyTypes"])
			require.Equal(t, "INBOX", q.Get("labelId"))
			require.Equal(t, "1", q.Get("maxResults"))
		}
		if c.Method == "gmail.users.messages.get" {
			q, err := url.ParseQuery(c.Query)
			require.NoError(t, err)
			require.Equal(t, "metadata", q.Get("format"))
			require.Equal(t, gmail.NoticeHeaders, q["metadataHeaders"])
		}
	}
	require.Equal(t, map[string]int{"gmail.users.getProfile": 1, "gmail.users.messages.send": 1,
		"gmail.users.history.list": 2, "gmail.users.messages.get": 3}, methods)
	require.Empty(t, b.fake.Violations())
}

// TestHistory_Expired: a startHistoryId older than the history Gmail keeps
// answers 404, which History reports as ErrHistoryExpired; the profile's
// historyId is valid again.
func TestHistory_Expired(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start, err := b.sender.HistoryID(ctx(t), b.cfg)
	require.NoError(t, err)
	b.fake.Receive([]byte("From: a@example.org\r\nSubject: x\r\n\r\nx\r\n"))
	b.fake.ExpireHistory()
	_, err = b.sender.History(ctx(t), b.cfg, start, "INBOX", "", 0)
	require.ErrorIs(t, err, gmail.ErrHistoryExpired)
	now, err := b.sender.HistoryID(ctx(t), b.cfg)
	require.NoError(t, err)
	require.Greater(t, now, start)
	page, err := b.sender.History(ctx(t), b.cfg, now, "INBOX", "", 0)
	require.NoError(t, err)
	require.Empty(t, page.MessageIDs)
	require.Equal(t, now, page.HistoryID)
}

// TestNotice_Classes: the snippet, when the scope gives one, refines the
// class; Gmail's delay notices and other mail are not notices.
func TestNotice_Classes(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{fake: gmailtest.Options{Scopes: []string{
		"https://www.googleapis.com/auth/gmail.send", "https://www.googleapis.com/auth/gmail.readonly"}}})
	out := b.sender.Send(ctx(t), b.delivery("01JCLASSES", "jane@example.com"))
	require.Equal(t, provider.Sent, out.Class, "%v", out.Err)
	sent := b.fake.Messages()[0]
	tests := []struct {
		name   string
		bounce gmailtest.Bounce
		class  bounce.Class
		notice bool
	}{
		{"address not found", gmailtest.Bounce{Failed: []string{"jane@example.com"}}, bounce.Hard, true},
		{"message blocked", gmailtest.Bounce{Failed: []string{"jane@example.com"}, Heading: "Message blocked", Status: "5.7.1",
			Diagnostic: "550 5.7.1 Message rejected due to local policy"}, bounce.Policy, true},
		{"mailbox full", gmailtest.Bounce{Failed: []string{"jane@example.com"}, Heading: "Message not delivered", Status: "5.2.2",
			Diagnostic: "552 5.2.2 The recipient's inbox is out of storage space."}, bounce.Soft, true},
		{"delay", gmailtest.Bounce{Failed: []string{"jane@example.com"}, Delay: true}, "", false},
	}
	for _, tt := range tests {
		id := b.fake.Receive(b.fake.BounceOf(sent, tt.bounce))
		meta, err := b.sender.Message(ctx(t), b.cfg, id, gmail.NoticeHeaders...)
		require.NoError(t, err, tt.name)
		require.NotEmpty(t, meta.Snippet, tt.name)
		n, ok := gmail.ParseNotice(meta)
		require.Equal(t, tt.notice, ok, tt.name)
		if ok {
			require.Equal(t, tt.class, n.Class(), "%s: %s", tt.name, n.Text)
		}
	}
}

// TestRawMessage_ByScope: whether the token may read bodies comes from the
// scopes the token endpoint says it granted; format=raw then gives the
// notice whole (checked against the discovery document by the fake), and
// is refused (ErrNoBodyAccess) to a token that carries gmail.metadata.
func TestRawMessage_ByScope(t *testing.T) {
	t.Parallel()
	send := "https://www.googleapis.com/auth/gmail.send"
	for _, tc := range []struct {
		name   string
		scopes []string
		bodies bool
	}{
		{"readonly", []string{send, gmail.ScopeReadonly}, true},
		{"modify", []string{send, gmail.ScopeModify}, true},
		{"full access", []string{gmail.ScopeFull}, true},
		{"metadata", []string{send, gmail.ScopeMetadata}, false},
		{"readonly beside metadata", []string{send, gmail.ScopeReadonly, gmail.ScopeMetadata}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{fake: gmailtest.Options{Scopes: tc.scopes}})
			bodies, err := b.sender.ReadsBodies(ctx(t), b.cfg)
			require.NoError(t, err)
			require.Equal(t, tc.bodies, bodies)

			out := b.sender.Send(ctx(t), b.delivery("01JRAW", "jane@example.com"))
			require.Equal(t, provider.Sent, out.Class, "%v", out.Err)
			sent := b.fake.Messages()[0]
			notice := b.fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"jane@example.com"}})
			id := b.fake.Receive(notice)
			raw, err := b.sender.RawMessage(ctx(t), b.cfg, id)
			if !tc.bodies {
				require.ErrorIs(t, err, gmail.ErrNoBodyAccess)
				return
			}
			require.NoError(t, err)
			require.Equal(t, notice, raw.Raw)
			require.Equal(t, sent.ThreadID, raw.ThreadID)
			n, ok := gmail.ParseNotice(raw.Meta())
			require.True(t, ok)
			require.Equal(t, []string{"jane@example.com"}, n.Failed)
			_, err = b.sender.RawMessage(ctx(t), b.cfg, "1affffffffffffff")
			require.ErrorIs(t, err, gmail.ErrNoMessage)
			require.Empty(t, b.fake.Violations())
		})
	}
}
