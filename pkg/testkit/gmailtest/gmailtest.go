// Package gmailtest is a fake Gmail API and Google OAuth 2.0 token endpoint: a
// real HTTP server on 127.0.0.1 that the real google.golang.org/api/gmail/v1
// client and golang.org/x/oauth2 talk to, for tests and benchmarks.
//
// It speaks what the provider uses, in the shapes Google uses:
//
//	POST /token                                     grant_type=refresh_token; client id and secret
//	                                                in the form (or HTTP Basic); answers
//	                                                {access_token, token_type, expires_in} or
//	                                                {error, error_description}
//	POST /gmail/v1/users/{userId}/messages/send     JSON {"raw": base64url}; answers {id, threadId, labelIds}
//	POST /upload/gmail/v1/users/{userId}/messages/send?uploadType=multipart
//	                                                multipart/related: JSON metadata, then message/*
//	POST /upload/gmail/v1/users/{userId}/messages/send?uploadType=media
//	                                                the message/* body alone
//	GET  /gmail/v1/users/{userId}/profile           {emailAddress, messagesTotal, threadsTotal, historyId}
//	GET  /gmail/v1/users/{userId}/history?startHistoryId=&historyTypes=&labelId=&maxResults=&pageToken=
//	                                                {history: [{id, messages, messagesAdded}], historyId,
//	                                                nextPageToken}; 404 for a startHistoryId older than
//	                                                the history kept (ExpireHistory)
//	GET  /gmail/v1/users/{userId}/messages/{id}?format=metadata&metadataHeaders=...
//	                                                {id, threadId, labelIds, historyId, internalDate,
//	                                                sizeEstimate, payload: {mimeType, headers}}; format
//	                                                minimal and raw too; 404 for an unknown id
//
// The mailbox: every sent message is in it (label SENT) and so is every
// message Receive puts there (labels INBOX, UNREAD; BounceOf builds Gmail's
// bounce notice about a sent message), each one messageAdded history record
// of an increasing historyId. A received message that names a mailbox
// message in In-Reply-To or References joins its thread, as Gmail threads a
// bounce with the message that bounced. A token with the gmail.metadata
// scope reads headers and labels only, as Gmail enforces it: format=full or
// raw answers 403 "Metadata scope doesn't allow format FULL" and answers
// carry no snippet.
//
// API calls need "Authorization: Bearer <access token>" with a token the
// server issued, not expired and not revoked, else 401 in Google's error
// shape. userId must be "me" or the mailbox's address (else 403 "Delegation
// denied", as Gmail answers), and the token's scopes must include one the
// document lists for the method (else 403 insufficientPermissions). Errors are Google's JSON error body
// ({"error": {"code", "message", "errors": [{"reason", ...}], "status"}}).
//
// Scripting, from any goroutine: FailNext (the next sends answer an HTTP error
// with a reason and Retry-After), FailTokenNext (the token endpoint refuses),
// RevokeAccessTokens (every issued access token answers 401), Hang (sends are
// held until the test ends). Recipients whose local part is "reject" make a
// send answer 400 invalidArgument, "transient" 503 backendError.
//
// Like Gmail, the server reads the recipients from the To, Cc and Bcc headers
// of the raw message; Message.Delivered is the message without its Bcc header,
// which is what Gmail hands the recipients.
//
// # Google's contract, not ours
//
// A fake written here would agree with our own misunderstandings of Gmail, so
// every API request is first checked against Google's published description of
// the API: the discovery document gmail/v1/gmail-api.json of the
// google.golang.org/api module, read from the module cache at the version the
// test binary links (see LoadContract and Contract.Check). The method and path
// template, path and query parameters (the standard ones such as alt,
// prettyPrint and uploadType included), the OAuth 2.0 credentials and scopes,
// the media upload protocols (path, uploadType, maxSize, accepted types) and
// the request body against the method's schema (unknown fields refused) must
// all agree with the document. A request that does not is answered 400 (404
// for a path of no method; 501 for what the document allows but the fake does
// not implement: other methods, resumable uploads) and is a contract
// violation: it is reported to Options.Reporter (StartTest: the test, which
// then fails) and listed by Violations. The fake's own answers are checked against the response schemas
// too. Calls lists every request with what the checker read.
//
// Every accepted raw message is also read back with pkg/mimecheck (Python's
// email package, an independent MIME parser): Message.Parsed. Parsing is done
// in batches when the messages are read (Messages, ByMessageID, Violations)
// and at Close; a parser error or defect is reported like a violation.
package gmailtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/namirasoft/email-sender/pkg/testkit/mimecheck"
)

// Default credentials of a Server whose Options leave them empty.
const (
	DefaultClientID     = "fake-client-id.apps.googleusercontent.com"
	DefaultClientSecret = "fake-client-secret"
	DefaultRefreshToken = "1//fake-refresh-token"
	DefaultEmail        = "sender@gmail.test"
)

// The methods the fake serves, by discovery id.
const (
	sendMethod    = "gmail.users.messages.send"
	profileMethod = "gmail.users.getProfile"
)

const (
	scopeSend     = "https://www.googleapis.com/auth/gmail.send"
	scopeMetadata = "https://www.googleapis.com/auth/gmail.metadata"
)

// Reporter receives what the fake finds wrong: contract violations and
// messages the independent MIME parser could not read cleanly. *testing.T
// satisfies it.
type Reporter interface {
	Errorf(format string, args ...any)
}

// Options configure a Server. The zero value is usable.
type Options struct {
	ClientID, ClientSecret, RefreshToken string
	// Email is the mailbox's address (profile, and the userId that is not "me").
	Email string
	// TokenTTL is the lifetime of issued access tokens (expires_in); default 1h.
	TokenTTL time.Duration
	// NoReadScope makes the issued tokens lack gmail.metadata/readonly: the
	// profile answers 403 insufficientPermissions, as Gmail does for a token
	// with only the gmail.send scope.
	NoReadScope bool
	// Latency is added to every send.
	Latency time.Duration
	// Scopes granted to the issued access tokens; default gmail.send and
	// gmail.metadata (gmail.send alone with NoReadScope). Each must be a scope
	// of the discovery document. A method answers 403 insufficientPermissions
	// when the token has none of the scopes the document lists for it.
	Scopes []string
	// Reporter is told every contract violation and MIME parser finding;
	// StartTest sets it to the test. Without one they are only listed by
	// Violations.
	Reporter Reporter
}

// Failure is a scripted HTTP error answer of the Gmail API.
type Failure struct {
	Status int    // HTTP status, e.g. 429
	Reason string // errors[0].reason, e.g. "rateLimitExceeded"
	// Message defaults to the HTTP status text.
	Message string
	// RetryAfter, when set, is sent as the Retry-After header (seconds or an
	// HTTP date).
	RetryAfter string
}

// TokenFailure is a scripted error answer of the token endpoint.
type TokenFailure struct {
	Status int    // default 400
	Code   string // RFC 6749 error, e.g. "invalid_grant"
}

// Message is one message the API accepted.
type Message struct {
	ID, ThreadID string
	// User is the userId of the request path.
	User string
	// Raw is the RFC 5322 message exactly as received (decoded from base64url).
	Raw []byte
	// Recipients are the addresses of the To, Cc and Bcc headers, lower-cased.
	Recipients []string
	// Upload: the message came through the media upload endpoint.
	Upload bool
	// AccessToken the request was made with.
	AccessToken string
	// UploadType is the upload request's uploadType ("multipart", "media").
	UploadType string
	// Parsed is Raw as pkg/mimecheck (Python's email package) read it; nil
	// when it could not. Messages with the same bytes share it.
	Parsed *mimecheck.Message
	// ParseError is the parser's failure or its defects ("" when clean).
	ParseError string
}

// Delivered is the message as Gmail delivers it: without its Bcc header.
func (m Message) Delivered() []byte { return stripHeader(m.Raw, "Bcc") }

// Server is a fake Gmail API and token endpoint. Its methods are safe for
// concurrent use.
type Server struct {
	opts Options
	lis  net.Listener
	srv  *http.Server
	url  string

	contract *Contract
	scopes   []string // granted to issued tokens
	inflight sync.WaitGroup

	mu          sync.Mutex
	tokens      map[string]time.Time // access token -> expiry
	calls       []Call
	violations  []string
	parsedUpTo  int // messages[:parsedUpTo] have been parsed
	refreshes   int
	sendCalls   int
	failNext    []Failure
	tokenFail   []TokenFailure
	messages    []Message
	seq         int
	box         mailbox
	hang        chan struct{} // non-nil: sends wait until it is closed
	closed      bool
	closeOnce   sync.Once
	releaseHang sync.Once

	parseMu sync.Mutex
}

// New starts a server on a random port of 127.0.0.1.
func New(opts Options) (*Server, error) {
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = DefaultClientSecret
	}
	if opts.RefreshToken == "" {
		opts.RefreshToken = DefaultRefreshToken
	}
	if opts.Email == "" {
		opts.Email = DefaultEmail
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	c, err := LoadContract()
	if err != nil {
		return nil, err
	}
	scopes := opts.Scopes
	if scopes == nil {
		scopes = []string{scopeSend, scopeMetadata}
		if opts.NoReadScope {
			scopes = []string{scopeSend}
		}
	}
	known := c.Scopes()
	for _, sc := range scopes {
		if !slices.Contains(known, sc) {
			return nil, fmt.Errorf("gmailtest: scope %q is not in the discovery document", sc)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("gmailtest: listen: %w", err)
	}
	s := &Server{opts: opts, lis: lis, url: "http://" + lis.Addr().String(), tokens: map[string]time.Time{},
		contract: c, scopes: slices.Clone(scopes), box: newMailbox()}
	// Not a ServeMux: it would clean paths ("users//messages") before the
	// contract checker sees them.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/token" {
			s.token(w, r)
			return
		}
		s.api(w, r) // every other request is checked against the document
	})
	s.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// StartTest starts a server for a test and closes it when the test ends. It
// reports to tb (unless Options.Reporter is set): a contract violation or a
// message the MIME parser cannot read cleanly fails the test.
func StartTest(tb testing.TB, opts ...Options) *Server {
	tb.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Reporter == nil {
		o.Reporter = tb
	}
	s, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server, releases held sends, waits for the requests in
// progress and parses the messages not parsed yet (reporting what the parser
// finds).
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.release()
		_ = s.srv.Close()
		s.inflight.Wait()
		if s.opts.Reporter != nil {
			s.parsePending()
		}
	})
}

// enter counts a request in, unless the server is closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.inflight.Add(1)
	return true
}

// Contract is the discovery document the server checks requests against.
func (s *Server) Contract() *Contract { return s.contract }

// Calls returns every API request (not the token endpoint's) in order of
// arrival, with what the contract checker read and found.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Violations lists the contract violations and the MIME parser's findings so
// far (it parses the messages not parsed yet); a conforming run has none.
func (s *Server) Violations() []string {
	s.parsePending()
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violations)
}

// report records a finding and tells the Reporter.
func (s *Server) report(v string) {
	s.mu.Lock()
	s.violations = append(s.violations, v)
	s.mu.Unlock()
	if s.opts.Reporter != nil {
		s.opts.Reporter.Errorf("gmailtest: %s", v)
	}
}

// URL is the server's base URL, "http://127.0.0.1:port".
func (s *Server) URL() string { return s.url }

// TokenURL is the token endpoint (the provider's token_url).
func (s *Server) TokenURL() string { return s.url + "/token" }

// APIEndpoint is the Gmail API base URL (the provider's api_endpoint).
func (s *Server) APIEndpoint() string { return s.url + "/" }

// Options returns the server's options with the defaults applied.
func (s *Server) Options() Options { return s.opts }

// Refreshes is how many access tokens the token endpoint issued.
func (s *Server) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// SendCalls is how many send requests arrived, answered with success or not.
func (s *Server) SendCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sendCalls
}

// Messages returns the accepted messages in order, each parsed.
func (s *Server) Messages() []Message {
	s.parsePending()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// ByMessageID returns the accepted messages whose Message-ID header is
// <id@...>, as built by pkg/mime for the service's message id.
func (s *Server) ByMessageID(id string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		if h := messageIDHeader(m.Raw); strings.HasPrefix(h, "<"+id+"@") {
			out = append(out, m)
		}
	}
	return out
}

// FailNext answers the next n sends with f.
func (s *Server) FailNext(n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failNext = append(s.failNext, f)
	}
}

// FailTokenNext answers the next n token requests with f.
func (s *Server) FailTokenNext(n int, f TokenFailure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.tokenFail = append(s.tokenFail, f)
	}
}

// RevokeAccessTokens makes every access token issued so far invalid (401), as
// when Google revokes them before their expiry.
func (s *Server) RevokeAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// Hang holds the answer to every later send until the test ends (or Close).
func (s *Server) Hang(tb testing.TB) {
	s.mu.Lock()
	if s.hang == nil {
		s.hang = make(chan struct{})
	}
	s.mu.Unlock()
	tb.Cleanup(s.release)
}

func (s *Server) release() {
	s.mu.Lock()
	h := s.hang
	s.mu.Unlock()
	if h != nil {
		s.releaseHang.Do(func() { close(h) })
	}
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "bad form")
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tokenFail) > 0 {
		f := s.tokenFail[0]
		s.tokenFail = s.tokenFail[1:]
		if f.Status == 0 {
			f.Status = http.StatusBadRequest
		}
		tokenError(w, f.Status, f.Code, "scripted failure")
		return
	}
	switch {
	case r.PostForm.Get("grant_type") != "refresh_token":
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+r.PostForm.Get("grant_type"))
	case id != s.opts.ClientID || secret != s.opts.ClientSecret:
		tokenError(w, http.StatusUnauthorized, "invalid_client", "Unauthorized")
	case r.PostForm.Get("refresh_token") != s.opts.RefreshToken:
		tokenError(w, http.StatusBadRequest, "invalid_grant", "Token has been expired or revoked.")
	default:
		tok := "ya29.fake-" + randomHex(16)
		s.tokens[tok] = time.Now().Add(s.opts.TokenTTL)
		s.refreshes++
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": tok, "token_type": "Bearer",
			"expires_in": int(s.opts.TokenTTL.Seconds()), "scope": strings.Join(s.scopes, " "),
		})
	}
}

// statusWriter remembers the status of the answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// api serves every API request: it checks the request against the discovery
// document, refuses a violation with 400 (and reports it), and hands the
// conforming ones to the method's handler.
func (s *Server) api(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		apiError(w, Failure{Status: http.StatusServiceUnavailable, Reason: "backendError", Message: "gmailtest is closed"})
		return
	}
	defer s.inflight.Done()
	call := s.contract.Check(r)
	if len(call.Violations) == 0 && !slices.Contains([]string{sendMethod, profileMethod, historyMethod, getMethod}, call.Method) {
		call.violate("%s is in the discovery document, but gmailtest does not serve it", call.Method)
		call.unsupported = true
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		rec := *call
		rec.resource, rec.media = nil, nil // the message is kept by Messages
		rec.Status = sw.status
		s.mu.Lock()
		s.calls = append(s.calls, rec)
		s.mu.Unlock()
	}()
	if call.Method == sendMethod {
		s.mu.Lock()
		s.sendCalls++
		s.mu.Unlock()
	}
	if len(call.Violations) > 0 {
		for _, v := range call.Violations {
			s.report(fmt.Sprintf("contract violation: %s %s: %s", r.Method, r.URL.RequestURI(), v))
		}
		f := Failure{Status: http.StatusBadRequest, Reason: "badRequest"}
		switch {
		case call.notFound:
			f = Failure{Status: http.StatusNotFound, Reason: "notFound"}
		case call.unsupported:
			f = Failure{Status: http.StatusNotImplemented, Reason: "notImplemented"}
		}
		f.Message = "gmailtest: the request breaks the Gmail API discovery document: " + strings.Join(call.Violations, "; ")
		apiError(sw, f)
		return
	}
	if !s.authorize(sw, call) {
		return
	}
	switch call.Method {
	case sendMethod:
		s.send(sw, r, call)
	case profileMethod:
		s.profile(sw, call)
	case historyMethod:
		s.historyList(sw, r, call)
	case getMethod:
		s.messageGet(sw, r, call)
	}
}

// authorize checks the access token, the userId and the token's scopes against
// the method's; false when it answered.
func (s *Server) authorize(w http.ResponseWriter, call *Call) bool {
	s.mu.Lock()
	exp, known := s.tokens[call.AccessToken]
	s.mu.Unlock()
	if !known || time.Now().After(exp) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
		apiError(w, Failure{Status: http.StatusUnauthorized, Reason: "authError",
			Message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."})
		return false
	}
	if u, ok := call.PathParams["userId"]; ok && u != "me" && !strings.EqualFold(u, s.opts.Email) {
		apiError(w, Failure{Status: http.StatusForbidden, Reason: "forbidden", Message: "Delegation denied for " + s.opts.Email})
		return false
	}
	spec, _ := s.contract.Method(call.Method)
	if !slices.ContainsFunc(spec.Scopes, func(sc string) bool { return slices.Contains(s.scopes, sc) }) {
		apiError(w, Failure{Status: http.StatusForbidden, Reason: "insufficientPermissions", Message: "Request had insufficient authentication scopes."})
		return false
	}
	return true
}

// answer writes a method's JSON answer, checked against the method's response
// schema: a mismatch is the fake's own bug, reported like a violation.
func (s *Server) answer(w http.ResponseWriter, call *Call, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	for _, bad := range s.contract.CheckResponse(call.Method, b) {
		s.report(fmt.Sprintf("gmailtest's own answer to %s breaks the document: %s", call.Method, bad))
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
}

func (s *Server) send(w http.ResponseWriter, r *http.Request, call *Call) {
	s.mu.Lock()
	hang := s.hang
	s.mu.Unlock()
	raw := call.media
	if call.Protocol == "" {
		// The checker made sure raw is a base64url string.
		str, _ := call.resource["raw"].(string)
		raw, _ = decodeBytes(str, true)
	}
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
		apiError(w, Failure{Status: http.StatusServiceUnavailable, Reason: "backendError", Message: "released by the test"})
		return
	}
	if s.opts.Latency > 0 {
		time.Sleep(s.opts.Latency)
	}
	s.mu.Lock()
	if len(s.failNext) > 0 {
		f := s.failNext[0]
		s.failNext = s.failNext[1:]
		s.mu.Unlock()
		apiError(w, f)
		return
	}
	s.mu.Unlock()

	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		apiError(w, Failure{Status: http.StatusBadRequest, Reason: "invalidArgument", Message: "Invalid RFC 5322 message: " + err.Error()})
		return
	}
	var rcpts []string
	for _, h := range []string{"To", "Cc", "Bcc"} {
		if msg.Header.Get(h) == "" {
			continue
		}
		list, err := msg.Header.AddressList(h)
		if err != nil {
			apiError(w, Failure{Status: http.StatusBadRequest, Reason: "invalidArgument", Message: "Invalid " + h + " header"})
			return
		}
		for _, a := range list {
			rcpts = append(rcpts, strings.ToLower(a.Address))
		}
	}
	if len(rcpts) == 0 {
		apiError(w, Failure{Status: http.StatusBadRequest, Reason: "invalidArgument", Message: "Recipient address required"})
		return
	}
	for _, a := range rcpts {
		switch a[:strings.IndexByte(a, '@')+1] {
		case "reject@":
			apiError(w, Failure{Status: http.StatusBadRequest, Reason: "invalidArgument", Message: "Invalid To header"})
			return
		case "transient@":
			apiError(w, Failure{Status: http.StatusServiceUnavailable, Reason: "backendError", Message: "Backend Error"})
			return
		}
	}

	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("19%014x", s.seq)
	m := Message{ID: id, ThreadID: id, User: call.PathParams["userId"], Raw: raw, Recipients: rcpts,
		Upload: call.Protocol != "", UploadType: call.UploadType, AccessToken: call.AccessToken}
	s.messages = append(s.messages, m)
	s.box.add(id, id, raw, "SENT")
	s.mu.Unlock()
	s.answer(w, call, map[string]any{"id": m.ID, "threadId": m.ThreadID, "labelIds": []string{"SENT"}})
}

func (s *Server) profile(w http.ResponseWriter, call *Call) {
	s.mu.Lock()
	n, hid := len(s.messages), s.box.historyID
	s.mu.Unlock()
	s.answer(w, call, map[string]any{
		"emailAddress": s.opts.Email, "messagesTotal": n, "threadsTotal": n, "historyId": strconv.FormatUint(hid, 10),
	})
}

// parsePending reads the messages not parsed yet with pkg/mimecheck and
// reports parser errors and defects.
func (s *Server) parsePending() {
	s.parseMu.Lock() // messages are parsed and reported once
	defer s.parseMu.Unlock()
	s.mu.Lock()
	start := s.parsedUpTo
	raws := make([][]byte, 0, len(s.messages)-start)
	for _, m := range s.messages[start:] {
		raws = append(raws, m.Raw)
	}
	s.mu.Unlock()
	if len(raws) == 0 {
		return
	}
	res := parser.parse(raws)
	var problems []string
	s.mu.Lock()
	for i, pr := range res {
		m := &s.messages[start+i]
		m.Parsed, m.ParseError = pr.msg, pr.err
		if pr.err != "" {
			problems = append(problems, fmt.Sprintf("message %s (%s): mimecheck: %s", m.ID, messageIDHeader(m.Raw), pr.err))
		}
	}
	s.parsedUpTo = start + len(raws)
	s.mu.Unlock()
	for _, p := range problems {
		s.report(p)
	}
}

// apiError writes f in Google's JSON error shape.
func apiError(w http.ResponseWriter, f Failure) {
	if f.Message == "" {
		f.Message = http.StatusText(f.Status)
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	domain := "global"
	if strings.Contains(strings.ToLower(f.Reason), "limit") {
		domain = "usageLimits"
	}
	writeJSON(w, f.Status, map[string]any{"error": map[string]any{
		"code": f.Status, "message": f.Message, "status": grpcStatus(f.Status),
		"errors": []map[string]any{{"message": f.Message, "domain": domain, "reason": f.Reason}},
	}})
}

func grpcStatus(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	}
	return "UNKNOWN"
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// messageIDHeader returns the Message-ID header of raw.
func messageIDHeader(raw []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return ""
	}
	return m.Header.Get("Message-Id")
}

// stripHeader removes every field named name (with its folded continuation
// lines) from the header section of raw.
func stripHeader(raw []byte, name string) []byte {
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if end < 0 {
		return raw
	}
	var out bytes.Buffer
	skipping := false
	for _, line := range bytes.SplitAfter(raw[:end+2], []byte("\r\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !skipping {
				out.Write(line)
			}
			continue
		}
		field, _, _ := bytes.Cut(line, []byte(":"))
		skipping = strings.EqualFold(strings.TrimSpace(string(field)), name)
		if !skipping {
			out.Write(line)
		}
	}
	out.Write(raw[end+2:])
	return out.Bytes()
}
