package gmail_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	gmailapi "google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/testkit/gmailtest"
	"github.com/namirasoft/email-sender/pkg/testkit/mimecheck"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// leafBy returns the leaf part that match accepts.
func leafBy(t *testing.T, m *mimecheck.Message, what string, match func(mimecheck.Part) bool) mimecheck.Part {
	t.Helper()
	var found []mimecheck.Part
	for _, p := range m.Leaves() {
		if match(p) {
			found = append(found, p)
		}
	}
	require.Len(t, found, 1, "one %s part in %+v", what, m.Leaves())
	return found[0]
}

// TestContract_RichMessage sends, through the real provider and the real
// gmail/v1 client, a message with Unicode names, subject and bodies, cc and
// bcc, an inline image and two attachments, once in the JSON body and once
// above 4 MiB through the media upload, and checks it with the independent
// parser (Python's email package). The fake checks every request against the
// discovery document and fails the test on a violation; the test also asserts
// the verdict.
func TestContract_RichMessage(t *testing.T) {
	t.Parallel()
	const (
		subject  = "Grüße aus Köln — 世界の皆さん、こんにちは — résumé 🚀 (Quartalsbericht, Teil 1 von 2)"
		textBody = "Hallo Jürgen,\n\nanbei die Übersicht für März. 日本語のテキストも。\n\nViele Grüße\nJörg 📮\n"
		htmlBody = "<html><body><p>Hallo <b>Jürgen</b> — 日本語 🚀</p><p><img src=\"cid:logo@namirasoft\" alt=\"Logo\"></p></body></html>\n"
	)
	tests := []struct {
		name   string
		big    int // bytes of the PDF attachment
		upload bool
	}{
		{name: "json body", big: 40_000},
		{name: "media upload above 4 MiB", big: 4<<20 + 300_000, upload: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t) // the default 4 MiB upload threshold
			d := b.delivery("01JRICH", "jurgen@example.org", "zoe@example.org", "hidden@example.org")
			m := d.Job.Message
			m.From = &emailsenderv1.Address{Address: "sender@conformance.test", Name: "Jörg Müller 📮"}
			m.To = []*emailsenderv1.Address{{Address: "jurgen@example.org", Name: "Jürgen Groß"}}
			m.Cc = []*emailsenderv1.Address{{Address: "zoe@example.org", Name: "Zoë Ångström, Ph.D."}}
			m.Bcc = []*emailsenderv1.Address{{Address: "hidden@example.org", Name: "秘密の受信者"}}
			m.Subject, m.TextBody, m.HtmlBody = subject, textBody, htmlBody
			logo := append([]byte("\x89PNG\r\n\x1a\n"), randomBytes(1, 2_000)...)
			pdf := append([]byte("%PDF-1.7\n"), randomBytes(2, tt.big)...)
			csv := []byte("name;city\r\nJürgen;Köln\r\n東京;日本\r\n")
			m.Attachments = []*emailsenderv1.Attachment{
				{Filename: "logo.png", ContentType: "image/png", Content: logo, ContentId: "logo@namirasoft"},
				{Filename: "Übersicht März.pdf", ContentType: "application/pdf", Content: pdf},
				{Filename: "daten.csv", ContentType: "text/csv; charset=utf-8", Content: csv},
			}

			out := b.sender.Send(ctx(t), d)
			require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)

			// The contract: one send call, matched to the document's method and
			// protocol, answered 200, nothing violated.
			require.Empty(t, b.fake.Violations())
			calls := b.fake.Calls()
			require.Len(t, calls, 1)
			call := calls[0]
			require.Equal(t, "gmail.users.messages.send", call.Method)
			require.Equal(t, "POST", call.HTTPMethod)
			require.Equal(t, 200, call.Status)
			require.Empty(t, call.Violations)
			require.Equal(t, map[string]string{"userId": "me"}, call.PathParams)

			msgs := b.fake.Messages()
			require.Len(t, msgs, 1)
			got := msgs[0]
			require.Equal(t, got.ID, out.MessageID)
			require.Equal(t, tt.upload, got.Upload)
			if tt.upload {
				require.Greater(t, len(got.Raw), 4<<20)
				require.Equal(t, "/upload/gmail/v1/users/me/messages/send", call.Path)
				require.Equal(t, "simple", call.Protocol)
				require.Equal(t, "multipart", call.UploadType)
				require.Equal(t, "message/rfc822", call.MediaType)
				require.Equal(t, len(got.Raw), call.MediaSize)
				require.Empty(t, call.Fields, "the metadata is an empty Message")
			} else {
				require.Less(t, len(got.Raw), 4<<20)
				require.Equal(t, "/gmail/v1/users/me/messages/send", call.Path)
				require.Empty(t, call.Protocol)
				require.Equal(t, []string{"raw"}, call.Fields)
			}

			// The independent reading.
			p := got.Parsed
			require.NotNil(t, p, got.ParseError)
			require.Empty(t, got.ParseError)
			require.Empty(t, p.Defects)
			require.Equal(t, subject, p.Subject)
			require.True(t, strings.HasPrefix(p.MessageID, "<01JRICH@"), p.MessageID)
			require.Equal(t, []mimecheck.Address{{Name: "Jörg Müller 📮", Address: "sender@conformance.test"}}, p.Addresses["from"])
			require.Equal(t, []mimecheck.Address{{Name: "Jürgen Groß", Address: "jurgen@example.org"}}, p.Addresses["to"])
			require.Equal(t, []mimecheck.Address{{Name: "Zoë Ångström, Ph.D.", Address: "zoe@example.org"}}, p.Addresses["cc"])
			// Gmail needs the Bcc header in the raw message; it strips it itself.
			require.Equal(t, []mimecheck.Address{{Name: "秘密の受信者", Address: "hidden@example.org"}}, p.Addresses["bcc"])
			require.Len(t, p.Header("Bcc"), 1)
			require.Equal(t, []string{"jurgen@example.org", "zoe@example.org", "hidden@example.org"}, got.Recipients)

			require.Equal(t, "multipart/mixed", p.Parts[0].ContentType)
			text := leafBy(t, p, "text/plain", func(x mimecheck.Part) bool { return x.ContentType == "text/plain" && x.Disposition == "" })
			require.Equal(t, textBody, text.Text)
			require.Equal(t, "utf-8", strings.ToLower(text.Charset))
			html := leafBy(t, p, "text/html", func(x mimecheck.Part) bool { return x.ContentType == "text/html" })
			require.Equal(t, htmlBody, html.Text)

			img := leafBy(t, p, "inline image", func(x mimecheck.Part) bool { return x.ContentID != "" })
			require.Equal(t, "<logo@namirasoft>", img.ContentID)
			require.Equal(t, "image/png", img.ContentType)
			require.Equal(t, "inline", img.Disposition)
			require.Equal(t, "logo.png", img.Filename)
			require.Equal(t, sha(logo), img.SHA256)

			att := leafBy(t, p, "pdf", func(x mimecheck.Part) bool { return x.ContentType == "application/pdf" })
			require.Equal(t, "attachment", att.Disposition)
			require.Equal(t, "Übersicht März.pdf", att.Filename)
			require.Equal(t, len(pdf), att.Size)
			require.Equal(t, sha(pdf), att.SHA256)
			att = leafBy(t, p, "csv", func(x mimecheck.Part) bool { return x.ContentType == "text/csv" })
			require.Equal(t, "attachment", att.Disposition)
			require.Equal(t, "daten.csv", att.Filename)
			require.Equal(t, sha(csv), att.SHA256, "the text attachment byte for byte, CRLF and UTF-8 included")
			// The related/alternative containers around the bodies.
			var containers []string
			for _, x := range p.Parts {
				if x.Multipart {
					containers = append(containers, x.ContentType)
				}
			}
			require.ElementsMatch(t, []string{"multipart/mixed", "multipart/related", "multipart/alternative"}, containers)

			// What the recipients get, read independently too: no Bcc.
			seen, err := mimecheck.ParseOne(ctx(t), got.Delivered())
			require.NoError(t, err)
			require.Empty(t, seen.Defects)
			require.NotContains(t, seen.Addresses, "bcc")
			require.Empty(t, seen.Header("Bcc"))
			require.Equal(t, subject, seen.Subject)
			require.Len(t, seen.Leaves(), len(p.Leaves()))
		})
	}
}

// TestContract_Verify: users.getProfile as Verify calls it conforms too.
func TestContract_Verify(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.sender.Verify(ctx(t), b.cfg))
	calls := b.fake.Calls()
	require.Len(t, calls, 1)
	require.Equal(t, "gmail.users.getProfile", calls[0].Method)
	require.Equal(t, "GET", calls[0].HTTPMethod)
	require.Equal(t, 200, calls[0].Status)
	require.Empty(t, calls[0].Violations)
	require.Empty(t, b.fake.Violations())
}

// recorder is a gmailtest.Reporter that keeps the reports, so the requests
// that break the contract on purpose do not fail this test.
type recorder struct {
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errs, "\n")
}

// TestContract_CheckerCatchesMisuse: the checker refuses, with 400 and a
// report, what a client (the real gmail/v1 client used wrongly, or hand-made
// requests) could get wrong.
func TestContract_CheckerCatchesMisuse(t *testing.T) {
	t.Parallel()
	// A message whose standard base64 has '+' and '/'.
	raw := []byte("From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\n\r\n" + string(randomBytes(3, 300_000)))
	require.True(t, strings.ContainsAny(base64.StdEncoding.EncodeToString(raw), "+/"))
	okJSON := `{"raw":"` + base64.URLEncoding.EncodeToString([]byte("To: b@example.org\r\nSubject: x\r\n\r\nhi\r\n")) + `"}`

	tests := []struct {
		name   string
		call   func(svc *gmailapi.Service, hc *http.Client, base string) (int, error)
		status int
		want   string
	}{
		{name: "client: resumable upload to the simple path", status: 400, want: "uploadType=resumable is not a value of the simple upload protocol",
			call: func(svc *gmailapi.Service, _ *http.Client, _ string) (int, error) {
				_, err := svc.Users.Messages.Send("me", &gmailapi.Message{}).
					Media(bytes.NewReader(raw), googleapi.ContentType("message/rfc822"), googleapi.ChunkSize(256<<10)).Do()
				return code(err), err
			}},
		{name: "client: media that is not message/*", status: 400, want: "not in the mediaUpload accept list message/*",
			call: func(svc *gmailapi.Service, _ *http.Client, _ string) (int, error) {
				_, err := svc.Users.Messages.Send("me", &gmailapi.Message{}).
					Media(bytes.NewReader(raw), googleapi.ContentType("application/octet-stream"), googleapi.ChunkSize(0)).Do()
				return code(err), err
			}},
		{name: "client: raw in standard base64", status: 400, want: "Message.raw: format byte: not base64url",
			call: func(svc *gmailapi.Service, _ *http.Client, _ string) (int, error) {
				_, err := svc.Users.Messages.Send("me", &gmailapi.Message{Raw: base64.StdEncoding.EncodeToString(raw)}).Do()
				return code(err), err
			}},
		{name: "client: no raw", status: 400, want: `field "raw" is required by gmail.users.messages.send`,
			call: func(svc *gmailapi.Service, _ *http.Client, _ string) (int, error) {
				_, err := svc.Users.Messages.Send("me", &gmailapi.Message{ThreadId: "t1"}).Do()
				return code(err), err
			}},
		{name: "client: empty userId", status: 400, want: "the required path parameter userId of gmail.users.messages.send is empty",
			call: func(svc *gmailapi.Service, _ *http.Client, _ string) (int, error) {
				_, err := svc.Users.Messages.Send("", &gmailapi.Message{Raw: base64.URLEncoding.EncodeToString(raw)}).Do()
				return code(err), err
			}},
		{name: "wrong method", status: 400, want: "wrong HTTP method PUT; the document has POST (gmail.users.messages.send)",
			call: func(_ *gmailapi.Service, hc *http.Client, base string) (int, error) {
				return do(hc, "PUT", base+"gmail/v1/users/me/messages/send", "application/json", okJSON)
			}},
		{name: "unknown body field", status: 400, want: `unknown field "to": the Message schema has`,
			call: func(_ *gmailapi.Service, hc *http.Client, base string) (int, error) {
				return do(hc, "POST", base+"gmail/v1/users/me/messages/send", "application/json", strings.Replace(okJSON, "{", `{"to":["b@example.org"],`, 1))
			}},
		{name: "bad uploadType", status: 400, want: "uploadType=raw is not a value of the simple upload protocol",
			call: func(_ *gmailapi.Service, hc *http.Client, base string) (int, error) {
				return do(hc, "POST", base+"upload/gmail/v1/users/me/messages/send?uploadType=raw", "message/rfc822", "To: b@example.org\r\n\r\nhi\r\n")
			}},
		{name: "missing userId path segment", status: 404, want: "no method of the Gmail API discovery document",
			call: func(_ *gmailapi.Service, hc *http.Client, base string) (int, error) {
				return do(hc, "POST", base+"gmail/v1/users/messages/send", "application/json", okJSON)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			fake, err := gmailtest.New(gmailtest.Options{Reporter: rec})
			require.NoError(t, err)
			t.Cleanup(fake.Close)
			conf := &oauth2.Config{ClientID: gmailtest.DefaultClientID, ClientSecret: gmailtest.DefaultClientSecret,
				Endpoint: oauth2.Endpoint{TokenURL: fake.TokenURL(), AuthStyle: oauth2.AuthStyleInParams}}
			hc := conf.Client(ctx(t), &oauth2.Token{RefreshToken: gmailtest.DefaultRefreshToken})
			svc, err := gmailapi.NewService(ctx(t), option.WithHTTPClient(hc), option.WithEndpoint(fake.APIEndpoint()))
			require.NoError(t, err)

			status, err := tt.call(svc, hc, fake.APIEndpoint())
			require.Equal(t, tt.status, status, "err: %v", err)
			require.Contains(t, err.Error(), tt.want, "the answer names the violation")
			require.Contains(t, rec.text(), "gmailtest: contract violation: ")
			require.Contains(t, rec.text(), tt.want, "reported")
			require.NotEmpty(t, fake.Violations())
			require.Empty(t, fake.Messages())
		})
	}
}

func code(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

// do makes a hand-made request; a non-2xx answer is an error with Google's
// error message.
func do(hc *http.Client, method, url, contentType, body string) (int, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
			return resp.StatusCode, fmt.Errorf("%d: %s", resp.StatusCode, b)
		}
		return resp.StatusCode, fmt.Errorf("%d: %s", resp.StatusCode, e.Error.Message)
	}
	return resp.StatusCode, nil
}
