package submission

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

const plainMsg = "From: Sender <Sender@example.com>\r\n" +
	"To: Jane <jane@example.org>\r\n" +
	"Cc: carol@example.org\r\n" +
	"Subject: Hi\r\n" +
	"Message-ID: <m1@app.example.com>\r\n" +
	"\r\n" +
	"Hello\r\n"

func TestRequest(t *testing.T) {
	noSenders := func(string) bool { return false }
	req, err := request(envelope{from: "sender@example.com", rcpts: []string{"jane@example.org", "Carol@example.org", "hidden@example.net", "hidden@example.net"}}, []byte(plainMsg), noSenders)
	if err != nil {
		t.Fatal(err)
	}
	m := req.GetMessage()
	if len(m.GetTo()) != 1 || len(m.GetCc()) != 1 || len(m.GetBcc()) != 1 || m.GetBcc()[0].GetAddress() != "hidden@example.net" {
		t.Errorf("to %v cc %v bcc %v", m.GetTo(), m.GetCc(), m.GetBcc())
	}
	if req.GetIdempotencyKey() != "smtp-message-id:<m1@app.example.com>" {
		t.Errorf("key %q", req.GetIdempotencyKey())
	}
	if m.GetTextBody() != "Hello\r\n" || m.GetSubject() != "Hi" {
		t.Errorf("subject %q text %q", m.GetSubject(), m.GetTextBody())
	}

	for _, tc := range []struct {
		name     string
		env      envelope
		raw      string
		senderOK func(string) bool
		code     int
		enh      smtp.EnhancedCode
	}{
		{"envelope sender neither From nor verified", envelope{from: "other@example.com", rcpts: []string{"jane@example.org", "carol@example.org"}}, plainMsg, noSenders, 550, smtp.EnhancedCode{5, 7, 1}},
		{"header recipient not in envelope", envelope{from: "sender@example.com", rcpts: []string{"jane@example.org"}}, plainMsg, noSenders, 550, smtp.EnhancedCode{5, 5, 0}},
		{"not a message", envelope{from: "sender@example.com", rcpts: []string{"jane@example.org"}}, "no header\r\n", noSenders, 554, smtp.EnhancedCode{5, 6, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := request(tc.env, []byte(tc.raw), tc.senderOK)
			var rep *smtp.SMTPError
			if !errors.As(err, &rep) || rep.Code != tc.code || rep.EnhancedCode != tc.enh {
				t.Fatalf("err = %v, want %d %v", err, tc.code, tc.enh)
			}
		})
	}
	// A verified envelope sender other than From is fine.
	if _, err := request(envelope{from: "bounces@example.com", rcpts: []string{"jane@example.org", "carol@example.org"}}, []byte(plainMsg),
		func(a string) bool { return a == "bounces@example.com" }); err != nil {
		t.Fatal(err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	long := "<" + strings.Repeat("x", 300) + "@example.com>"
	for _, tc := range []struct{ id, wantPrefix string }{
		{"", ""},
		{" <a@b> ", "smtp-message-id:<a@b>"},
		{long, "smtp-message-id:sha256:"},
		{"<a\x01@b>", "smtp-message-id:sha256:"},
	} {
		got := idempotencyKey(tc.id)
		if !strings.HasPrefix(got, tc.wantPrefix) || (tc.wantPrefix == "" && got != "") || len(got) > maxKeyChars {
			t.Errorf("idempotencyKey(%q) = %q, want prefix %q", tc.id, got, tc.wantPrefix)
		}
	}
	if idempotencyKey(long) != idempotencyKey(long) {
		t.Error("not deterministic")
	}
}

func TestSenderSet(t *testing.T) {
	var unknown *senderSet
	if unknown.has("a@example.com") {
		t.Error("nil set has an address")
	}
}

func TestLoginServer(t *testing.T) {
	var user, pass string
	l := &loginServer{authenticate: func(u, p string) error { user, pass = u, p; return nil }}
	if c, done, _ := l.Next(nil); string(c) != "Username:" || done {
		t.Fatalf("first challenge %q", c)
	}
	if c, done, _ := l.Next([]byte("me")); string(c) != "Password:" || done {
		t.Fatalf("second challenge %q", c)
	}
	if _, done, err := l.Next([]byte("es_key")); !done || err != nil || user != "me" || pass != "es_key" {
		t.Fatalf("done %v err %v user %q pass %q", done, err, user, pass)
	}
}
