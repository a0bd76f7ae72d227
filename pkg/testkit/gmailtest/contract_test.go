package gmailtest_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/gmailtest"
)

// recorder is a Reporter that keeps what the fake reports, so tests of
// refused requests do not fail.
type recorder struct {
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

const sendPath = "/gmail/v1/users/me/messages/send"

const rawMessage = "From: =?utf-8?q?J=C3=B6rg?= <sender@gmail.test>\r\n" +
	"To: a@example.org\r\n" +
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
	"Message-ID: <01JCONTRACT@gmail.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n\r\n" +
	"Grüße\r\n"

// client talks to a fake with a recorder, as a hand-made Gmail client.
type client struct {
	t     *testing.T
	fake  *gmailtest.Server
	rec   *recorder
	token string
}

func newClient(t *testing.T, opts ...gmailtest.Options) *client {
	t.Helper()
	var o gmailtest.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	rec := &recorder{}
	o.Reporter = rec
	fake, err := gmailtest.New(o)
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	resp, err := http.PostForm(fake.TokenURL(), url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {gmailtest.DefaultRefreshToken},
		"client_id": {gmailtest.DefaultClientID}, "client_secret": {gmailtest.DefaultClientSecret},
	})
	require.NoError(t, err)
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	require.NotEmpty(t, tok.AccessToken)
	return &client{t: t, fake: fake, rec: rec, token: tok.AccessToken}
}

// do sends a request and returns the status and Google's error message.
func (c *client) do(method, pathAndQuery, contentType string, body []byte, auth bool) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.fake.URL()+pathAndQuery, bytes.NewReader(body))
	require.NoError(c.t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error.Message
}

func jsonRaw(raw string) []byte {
	b, _ := json.Marshal(map[string]string{"raw": base64.URLEncoding.EncodeToString([]byte(raw))})
	return b
}

// multipartUpload is the body of uploadType=multipart: the JSON metadata,
// then the media.
func multipartUpload(t *testing.T, meta string, mediaType string, media []byte, extra ...string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
	require.NoError(t, err)
	_, _ = pw.Write([]byte(meta))
	pw, err = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {mediaType}})
	require.NoError(t, err)
	_, _ = pw.Write(media)
	for _, e := range extra {
		pw, err = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain"}})
		require.NoError(t, err)
		_, _ = pw.Write([]byte(e))
	}
	require.NoError(t, mw.Close())
	return "multipart/related; boundary=" + mw.Boundary(), buf.Bytes()
}

// TestContract_DocumentSays pins what the discovery document says about the
// methods the fake serves; a new google.golang.org/api that changes them
// shows here.
func TestContract_DocumentSays(t *testing.T) {
	c, err := gmailtest.LoadContract()
	require.NoError(t, err)
	require.FileExists(t, c.File)
	require.Contains(t, c.File, "google.golang.org/api@"+c.ModuleVersion)
	require.NotEmpty(t, c.Revision)
	t.Logf("discovery document %s (revision %s, found by %s)", c.File, c.Revision, c.Found)

	send, ok := c.Method("gmail.users.messages.send")
	require.True(t, ok)
	require.Equal(t, "POST", send.HTTPMethod)
	require.Equal(t, "gmail/v1/users/{userId}/messages/send", send.Path)
	require.Equal(t, []string{"userId"}, send.Required)
	require.Equal(t, "Message", send.Request)
	require.Equal(t, "Message", send.Response)
	require.Contains(t, send.Scopes, "https://www.googleapis.com/auth/gmail.send")
	require.NotNil(t, send.Upload)
	require.Equal(t, []string{"message/*"}, send.Upload.Accept)
	require.Equal(t, int64(36700160), send.Upload.MaxSize, "35 MiB")
	require.Equal(t, gmailtest.ProtocolSpec{Path: "/upload/gmail/v1/users/{userId}/messages/send", Multipart: true,
		UploadType: []string{"media", "multipart"}}, send.Upload.Protocols["simple"])
	require.Equal(t, "/resumable/upload/gmail/v1/users/{userId}/messages/send", send.Upload.Protocols["resumable"].Path)

	prof, ok := c.Method("gmail.users.getProfile")
	require.True(t, ok)
	require.Equal(t, "GET", prof.HTTPMethod)
	require.Equal(t, "gmail/v1/users/{userId}/profile", prof.Path)
	require.Equal(t, "Profile", prof.Response)
	require.Nil(t, prof.Upload)
	require.Contains(t, prof.Scopes, "https://www.googleapis.com/auth/gmail.metadata")
	require.NotContains(t, prof.Scopes, "https://www.googleapis.com/auth/gmail.send", "gmail.send cannot read the profile")
}

// TestContract_Conforming: requests that follow the document are served and
// nothing is reported.
func TestContract_Conforming(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	status, msg := c.do("POST", sendPath+"?alt=json&prettyPrint=false", "application/json", jsonRaw(rawMessage), true)
	require.Equal(t, 200, status, msg)

	ct, body := multipartUpload(t, `{}`, "message/rfc822", []byte(rawMessage))
	status, msg = c.do("POST", "/upload/gmail/v1/users/me/messages/send?uploadType=multipart&alt=json", ct, body, true)
	require.Equal(t, 200, status, msg)

	status, msg = c.do("POST", "/upload/gmail/v1/users/"+url.PathEscape(gmailtest.DefaultEmail)+"/messages/send?uploadType=media", "message/rfc822", []byte(rawMessage), true)
	require.Equal(t, 200, status, msg)

	status, msg = c.do("GET", "/gmail/v1/users/me/profile?prettyPrint=true&fields=emailAddress", "", nil, true)
	require.Equal(t, 200, status, msg)

	require.Empty(t, c.rec.all())
	require.Empty(t, c.fake.Violations())
	calls := c.fake.Calls()
	require.Len(t, calls, 4)
	require.Equal(t, "gmail.users.messages.send", calls[0].Method)
	require.Equal(t, []string{"raw"}, calls[0].Fields)
	require.Equal(t, "simple", calls[1].Protocol)
	require.Equal(t, "multipart", calls[1].UploadType)
	require.Equal(t, "message/rfc822", calls[1].MediaType)
	require.Equal(t, len(rawMessage), calls[1].MediaSize)
	require.Equal(t, "media", calls[2].UploadType)
	require.Equal(t, gmailtest.DefaultEmail, calls[2].PathParams["userId"])
	require.Equal(t, "gmail.users.getProfile", calls[3].Method)
	for _, call := range calls {
		require.Equal(t, 200, call.Status)
		require.Empty(t, call.Violations)
	}

	// Every message is read back by the independent parser.
	msgs := c.fake.Messages()
	require.Len(t, msgs, 3)
	for _, m := range msgs {
		require.Equal(t, rawMessage, string(m.Raw))
		require.NotNil(t, m.Parsed)
		require.Empty(t, m.ParseError)
		require.Equal(t, "Grüße", m.Parsed.Subject)
		require.Equal(t, "Jörg", m.Parsed.Addresses["from"][0].Name)
		require.Equal(t, "Grüße\n", m.Parsed.Leaves()[0].Text)
	}
	require.Equal(t, []bool{false, true, true}, []bool{msgs[0].Upload, msgs[1].Upload, msgs[2].Upload})
}

// TestContract_Violations: requests that break the document are refused and
// reported (to a recorder, so this test does not fail).
func TestContract_Violations(t *testing.T) {
	t.Parallel()
	std := base64.StdEncoding.EncodeToString([]byte(rawMessage + "\xfb\xff")) // has '+' or '/'
	require.True(t, strings.ContainsAny(std, "+/"))
	okCT, okBody := multipartUpload(t, `{}`, "message/rfc822", []byte(rawMessage))
	textCT, textBody := multipartUpload(t, `{}`, "text/plain", []byte(rawMessage))
	metaCT, metaBody := multipartUpload(t, `{"raw": 1, "labels": []}`, "message/rfc822", []byte(rawMessage))
	threeCT, threeBody := multipartUpload(t, `{}`, "message/rfc822", []byte(rawMessage), "extra")
	tests := []struct {
		name         string
		method, path string
		ct           string
		body         []byte
		noAuth       bool
		status       int
		want         string // in the reported violation
	}{
		{name: "wrong method", method: "GET", path: sendPath, status: 400, want: "wrong HTTP method GET; the document has POST (gmail.users.messages.send) for the path /gmail/v1/users/me/messages/send"},
		{name: "PUT on the profile", method: "PUT", path: "/gmail/v1/users/me/profile", ct: "application/json", body: []byte(`{}`), status: 400, want: "wrong HTTP method"},
		{name: "unknown body field", method: "POST", path: sendPath, ct: "application/json",
			body: []byte(`{"raw":"` + base64.URLEncoding.EncodeToString([]byte(rawMessage)) + `","rawMessage":"x"}`), status: 400,
			want: `unknown field "rawMessage": the Message schema has`},
		{name: "raw of the wrong type", method: "POST", path: sendPath, ct: "application/json", body: []byte(`{"raw": 12}`), status: 400, want: "Message.raw: want a JSON string, got a number"},
		{name: "raw in the standard base64 alphabet", method: "POST", path: sendPath, ct: "application/json", body: []byte(`{"raw":"` + std + `"}`), status: 400, want: "not base64url"},
		{name: "raw not base64", method: "POST", path: sendPath, ct: "application/json", body: []byte(`{"raw":"a b"}`), status: 400, want: "not base64"},
		{name: "no raw", method: "POST", path: sendPath, ct: "application/json", body: []byte(`{"threadId":"x"}`), status: 400, want: `field "raw" is required by gmail.users.messages.send`},
		{name: "labelIds of the wrong type", method: "POST", path: sendPath, ct: "application/json", body: []byte(`{"raw":"QQ","labelIds":"SENT"}`), status: 400, want: "Message.labelIds: want a JSON array"},
		{name: "body not JSON", method: "POST", path: sendPath, ct: "application/json", body: []byte(`raw=x`), status: 400, want: "is not JSON"},
		{name: "body not application/json", method: "POST", path: sendPath, ct: "message/rfc822", body: []byte(rawMessage), status: 400, want: "is sent as application/json"},
		{name: "bad uploadType", method: "POST", path: "/upload/gmail/v1/users/me/messages/send?uploadType=chunked", ct: okCT, body: okBody, status: 400,
			want: "uploadType=chunked is not a value of the simple upload protocol"},
		{name: "resumable uploadType on the simple path", method: "POST", path: "/upload/gmail/v1/users/me/messages/send?uploadType=resumable", ct: okCT, body: okBody, status: 400,
			want: "uploadType=resumable is not a value of the simple upload protocol"},
		{name: "no uploadType on the upload path", method: "POST", path: "/upload/gmail/v1/users/me/messages/send", ct: okCT, body: okBody, status: 400, want: "no uploadType on the simple upload path"},
		{name: "uploadType on the JSON path", method: "POST", path: sendPath + "?uploadType=multipart", ct: "application/json", body: jsonRaw(rawMessage), status: 400, want: "uploadType=multipart on gmail.users.messages.send's own path"},
		{name: "media type not accepted", method: "POST", path: "/upload/gmail/v1/users/me/messages/send?uploadType=multipart", ct: textCT, body: textBody, status: 400, want: `media Content-Type "text/plain" is not in the mediaUpload accept list message/*`},
		{name: "uploadType=media of text/plain", method: "POST", path: "/upload/gmail/v1/users/me/messages/send?uploadType=media", ct: "text/plain", body: []byte(rawMessage), status: 400, want: "accept list"},
		{name: "metadata breaks the schema", method: "POST", path: "/upload/gmail/v1/users/me/messages/send?uploadType=multipart", ct: metaCT, body: metaBody, status: 400, want: `the metadata part: Message: unknown field "labels"`},
		{name: "three parts", method: "POST", path: "/upload/gmail/v1/users/me/messages/send?uploadType=multipart", ct: threeCT, body: threeBody, status: 400, want: "want two parts (metadata, media), got a third"},
		{name: "multipart without multipart/related", method: "POST", path: "/upload/gmail/v1/users/me/messages/send?uploadType=multipart", ct: "message/rfc822", body: []byte(rawMessage), status: 400, want: "is multipart/related with a boundary"},
		{name: "empty userId", method: "POST", path: "/gmail/v1/users//messages/send", ct: "application/json", body: jsonRaw(rawMessage), status: 400, want: "the required path parameter userId of gmail.users.messages.send is empty"},
		{name: "no userId segment", method: "POST", path: "/gmail/v1/users/messages/send", ct: "application/json", body: jsonRaw(rawMessage), status: 404, want: "no method of the Gmail API discovery document"},
		{name: "wrong version", method: "POST", path: "/gmail/v2/users/me/messages/send", ct: "application/json", body: jsonRaw(rawMessage), status: 404, want: "no method"},
		{name: "unknown query parameter", method: "POST", path: sendPath + "?format=raw", ct: "application/json", body: jsonRaw(rawMessage), status: 400, want: `unknown query parameter "format"`},
		{name: "alt not in the enum", method: "POST", path: sendPath + "?alt=xml", ct: "application/json", body: jsonRaw(rawMessage), status: 400, want: `query parameter alt="xml": not one of json, media, proto`},
		{name: "alt=media without media download", method: "POST", path: sendPath + "?alt=media", ct: "application/json", body: jsonRaw(rawMessage), status: 400, want: "does not support media download"},
		{name: "prettyPrint not a boolean", method: "POST", path: sendPath + "?prettyPrint=no", ct: "application/json", body: jsonRaw(rawMessage), status: 400, want: "not a boolean"},
		{name: "alt twice", method: "POST", path: sendPath + "?alt=json&alt=json", ct: "application/json", body: jsonRaw(rawMessage), status: 400, want: "given 2 times"},
		{name: "no credentials", method: "POST", path: sendPath, ct: "application/json", body: jsonRaw(rawMessage), noAuth: true, status: 400,
			want: "no OAuth 2.0 access token (Authorization: Bearer): gmail.users.messages.send needs one of the scopes"},
		{name: "body on a GET", method: "GET", path: "/gmail/v1/users/me/profile", ct: "application/json", body: []byte(`{}`), status: 400, want: "takes no request body"},
		{name: "resumable protocol", method: "POST", path: "/resumable/upload/gmail/v1/users/me/messages/send?uploadType=resumable", ct: okCT, body: okBody, status: 501, want: "gmailtest does not implement it"},
		{name: "a method the fake does not serve", method: "GET", path: "/gmail/v1/users/me/labels", status: 501, want: "gmail.users.labels.list is in the discovery document, but gmailtest does not serve it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t)
			status, msg := c.do(tt.method, tt.path, tt.ct, tt.body, !tt.noAuth)
			require.Equal(t, tt.status, status, msg)
			require.Contains(t, msg, tt.want, "the answer names the violation")
			reported := c.rec.all()
			require.NotEmpty(t, reported, "the violation is reported to the test")
			require.Contains(t, strings.Join(reported, "\n"), tt.want)
			t.Log(reported[0])
			require.Contains(t, reported[0], "gmailtest: contract violation: "+tt.method+" ")
			require.Equal(t, len(reported), len(c.fake.Violations()))
			calls := c.fake.Calls()
			require.Len(t, calls, 1)
			require.NotEmpty(t, calls[0].Violations)
			require.Equal(t, tt.status, calls[0].Status)
			require.Empty(t, c.fake.Messages(), "nothing is sent")
		})
	}
}

// TestContract_Scopes: the document's scopes of each method decide what a
// token may do (403, as Gmail answers; not a violation).
func TestContract_Scopes(t *testing.T) {
	t.Parallel()
	c := newClient(t, gmailtest.Options{NoReadScope: true})
	status, msg := c.do("GET", "/gmail/v1/users/me/profile", "", nil, true)
	require.Equal(t, 403, status)
	require.Equal(t, "Request had insufficient authentication scopes.", msg)
	status, _ = c.do("POST", sendPath, "application/json", jsonRaw(rawMessage), true)
	require.Equal(t, 200, status)

	c = newClient(t, gmailtest.Options{Scopes: []string{"https://www.googleapis.com/auth/gmail.readonly"}})
	status, _ = c.do("POST", sendPath, "application/json", jsonRaw(rawMessage), true)
	require.Equal(t, 403, status, "gmail.readonly cannot send")
	status, _ = c.do("GET", "/gmail/v1/users/me/profile", "", nil, true)
	require.Equal(t, 200, status)
	require.Empty(t, c.rec.all())

	_, err := gmailtest.New(gmailtest.Options{Scopes: []string{"https://www.googleapis.com/auth/gmail.everything"}})
	require.ErrorContains(t, err, "not in the discovery document")
}

// TestContract_Response: the fake's answers are held to the response schemas.
func TestContract_Response(t *testing.T) {
	c, err := gmailtest.LoadContract()
	require.NoError(t, err)
	require.Empty(t, c.CheckResponse("gmail.users.getProfile", []byte(`{"emailAddress":"a@b","messagesTotal":3,"threadsTotal":3,"historyId":"1003"}`)))
	bad := c.CheckResponse("gmail.users.getProfile", []byte(`{"emailAddress":"a@b","messagesTotal":"3","historyId":1003,"extra":true}`))
	require.Equal(t, []string{
		`Profile: unknown field "extra": the Profile schema has emailAddress, historyId, messagesTotal, threadsTotal`,
		"Profile.historyId: want a JSON string, got a number",
		"Profile.messagesTotal: want a JSON number, got a string",
	}, bad)
	require.Equal(t, []string{"Message.id: want a JSON string, got a number"},
		c.CheckResponse("gmail.users.messages.send", []byte(`{"id":1,"threadId":"t","labelIds":["SENT"]}`)))
}

// TestMIME_ParserFindings: a message the independent parser reads with
// defects is accepted (Gmail is lenient) but reported.
func TestMIME_ParserFindings(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	broken := "From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n" // no closing boundary
	status, msg := c.do("POST", sendPath, "application/json", jsonRaw(broken), true)
	require.Equal(t, 200, status, msg)
	msgs := c.fake.Messages()
	require.Len(t, msgs, 1)
	require.Contains(t, msgs[0].ParseError, "CloseBoundaryNotFoundDefect")
	require.NotNil(t, msgs[0].Parsed)
	reported := c.rec.all()
	require.Len(t, reported, 1)
	require.Contains(t, reported[0], "mimecheck: the parser found defects: CloseBoundaryNotFoundDefect")
	require.Len(t, c.fake.Violations(), 1)
	require.Len(t, c.rec.all(), 1, "reported once")

	// The parsed form carries the decoded parts, hashed.
	status, _ = c.do("POST", sendPath, "application/json", jsonRaw(rawMessage), true)
	require.Equal(t, 200, status)
	leaf := c.fake.Messages()[1].Parsed.Leaves()[0]
	sum := sha256.Sum256([]byte("Grüße\r\n"))
	require.Equal(t, hex.EncodeToString(sum[:]), leaf.SHA256)
}

// TestContract_MailboxMethods pins what the discovery document says about
// users.history.list and users.messages.get, checks hand-made requests of
// both against it (the conforming served, the others refused and reported),
// and the gmail.metadata scope's limits as Gmail enforces them.
func TestContract_MailboxMethods(t *testing.T) {
	t.Parallel()
	doc, err := gmailtest.LoadContract()
	require.NoError(t, err)
	hist, ok := doc.Method("gmail.users.history.list")
	require.True(t, ok)
	require.Equal(t, "GET", hist.HTTPMethod)
	require.Equal(t, "gmail/v1/users/{userId}/history", hist.Path)
	require.Equal(t, "ListHistoryResponse", hist.Response)
	require.Contains(t, hist.Scopes, "https://www.googleapis.com/auth/gmail.metadata")
	get, ok := doc.Method("gmail.users.messages.get")
	require.True(t, ok)
	require.Equal(t, "gmail/v1/users/{userId}/messages/{id}", get.Path)
	require.Equal(t, []string{"id", "userId"}, get.Required)
	require.Equal(t, "Message", get.Response)
	require.Contains(t, get.Scopes, "https://www.googleapis.com/auth/gmail.metadata")
	require.NotContains(t, get.Scopes, "https://www.googleapis.com/auth/gmail.send", "gmail.send cannot read messages")

	c := newClient(t)
	status, msg := c.do("POST", sendPath, "application/json", jsonRaw(rawMessage), true)
	require.Equal(t, 200, status, msg)
	sent := c.fake.Messages()[0]
	notice := c.fake.Receive(c.fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"a@example.org"}}))

	for _, path := range []string{
		"/gmail/v1/users/me/history?startHistoryId=1000&historyTypes=messageAdded&labelId=INBOX&maxResults=10",
		"/gmail/v1/users/me/history?startHistoryId=1000&historyTypes=messageAdded&historyTypes=labelAdded&pageToken=h1000",
		"/gmail/v1/users/me/messages/" + notice + "?format=metadata&metadataHeaders=From&metadataHeaders=X-Failed-Recipients",
		"/gmail/v1/users/me/messages/" + notice + "?format=minimal",
	} {
		status, msg := c.do("GET", path, "", nil, true)
		require.Equal(t, 200, status, "%s: %s", path, msg)
	}
	require.Empty(t, c.rec.all())

	// What Gmail refuses that the document allows: not violations.
	for _, tt := range []struct {
		path   string
		status int
		msg    string
	}{
		{"/gmail/v1/users/me/messages/" + notice + "?format=raw", 403, "Metadata scope doesn't allow format RAW"},
		{"/gmail/v1/users/me/messages/" + notice, 403, "Metadata scope doesn't allow format FULL"},
		{"/gmail/v1/users/me/messages/1affffffffffffff?format=metadata", 404, "Requested entity was not found."},
		{"/gmail/v1/users/me/history", 400, "Invalid startHistoryId"},
	} {
		status, msg := c.do("GET", tt.path, "", nil, true)
		require.Equal(t, tt.status, status, tt.path)
		require.Equal(t, tt.msg, msg, tt.path)
	}
	c.fake.ExpireHistory()
	status, _ = c.do("GET", "/gmail/v1/users/me/history?startHistoryId=1000", "", nil, true)
	require.Equal(t, 404, status, "history older than Gmail keeps")
	require.Empty(t, c.rec.all())

	// Violations of the document.
	for _, tt := range []struct{ path, want string }{
		{"/gmail/v1/users/me/history?startHistoryId=1000&historyTypes=messageRead", `historyTypes="messageRead": not one of messageAdded, messageDeleted, labelAdded, labelRemoved`},
		{"/gmail/v1/users/me/history?startHistoryId=x", `startHistoryId="x": not a uint64 in decimal`},
		{"/gmail/v1/users/me/history?startHistoryId=1000&maxResults=-1", "out of the uint32 range"},
		{"/gmail/v1/users/me/history?startHistoryId=1000&labelIds=INBOX", `unknown query parameter "labelIds"`},
		{"/gmail/v1/users/me/messages/" + notice + "?format=headers", `format="headers": not one of minimal, full, raw, metadata`},
		{"/gmail/v1/users/me/messages/" + notice + "?format=metadata&metadataHeader=From", `unknown query parameter "metadataHeader"`},
	} {
		status, msg := c.do("GET", tt.path, "", nil, true)
		require.Equal(t, 400, status, tt.path)
		require.Contains(t, msg, tt.want, tt.path)
	}
	require.Len(t, c.rec.all(), 6)

	// A broader scope alone reads raw messages and snippets.
	r := newClient(t, gmailtest.Options{Scopes: []string{"https://www.googleapis.com/auth/gmail.readonly"}})
	id := r.fake.Receive(r.fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"a@example.org"}}))
	status, msg = r.do("GET", "/gmail/v1/users/me/messages/"+id+"?format=raw", "", nil, true)
	require.Equal(t, 200, status, msg)
	require.Empty(t, r.rec.all())
}
