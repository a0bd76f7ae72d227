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
//	                                                multipart/related: JSON metadata, then message/rfc822
//	GET  /gmail/v1/users/{userId}/profile           {emailAddress, messagesTotal, threadsTotal, historyId}
//
// API calls need "Authorization: Bearer <access token>" with a token the
// server issued, not expired and not revoked, else 401 in Google's error
// shape. userId must be "me" or the mailbox's address (else 403 "Delegation
// denied", as Gmail answers). Errors are Google's JSON error body
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
package gmailtest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Default credentials of a Server whose Options leave them empty.
const (
	DefaultClientID     = "fake-client-id.apps.googleusercontent.com"
	DefaultClientSecret = "fake-client-secret"
	DefaultRefreshToken = "1//fake-refresh-token"
	DefaultEmail        = "sender@gmail.test"
)

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

	mu          sync.Mutex
	tokens      map[string]time.Time // access token -> expiry
	refreshes   int
	sendCalls   int
	failNext    []Failure
	tokenFail   []TokenFailure
	messages    []Message
	seq         int
	hang        chan struct{} // non-nil: sends wait until it is closed
	closed      bool
	closeOnce   sync.Once
	releaseHang sync.Once
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
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("gmailtest: listen: %w", err)
	}
	s := &Server{opts: opts, lis: lis, url: "http://" + lis.Addr().String(), tokens: map[string]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /gmail/v1/users/{userId}/messages/send", s.send)
	mux.HandleFunc("POST /upload/gmail/v1/users/{userId}/messages/send", s.send)
	mux.HandleFunc("GET /gmail/v1/users/{userId}/profile", s.profile)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// StartTest starts a server for a test and closes it when the test ends.
func StartTest(tb testing.TB, opts ...Options) *Server {
	tb.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	s, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server and releases held sends.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.release()
		_ = s.srv.Close()
	})
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

// Messages returns the accepted messages in order.
func (s *Server) Messages() []Message {
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
		scope := "https://www.googleapis.com/auth/gmail.send https://www.googleapis.com/auth/gmail.metadata"
		if s.opts.NoReadScope {
			scope = "https://www.googleapis.com/auth/gmail.send"
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": tok, "token_type": "Bearer",
			"expires_in": int(s.opts.TokenTTL.Seconds()), "scope": scope,
		})
	}
}

// authorize checks the bearer token and the userId; false when it answered.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	exp, known := s.tokens[tok]
	s.mu.Unlock()
	if !ok || !known || time.Now().After(exp) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
		apiError(w, Failure{Status: http.StatusUnauthorized, Reason: "authError",
			Message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."})
		return "", false
	}
	if u := r.PathValue("userId"); u != "me" && !strings.EqualFold(u, s.opts.Email) {
		apiError(w, Failure{Status: http.StatusForbidden, Reason: "forbidden", Message: "Delegation denied for " + s.opts.Email})
		return "", false
	}
	return tok, true
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.sendCalls++
	hang := s.hang
	s.mu.Unlock()
	if r.URL.Query().Get("alt") != "json" {
		apiError(w, Failure{Status: http.StatusBadRequest, Reason: "invalidArgument", Message: "alt=json expected"})
		return
	}
	tok, ok := s.authorize(w, r)
	if !ok {
		return
	}
	raw, upload, err := readRaw(r)
	if err != nil {
		apiError(w, Failure{Status: http.StatusBadRequest, Reason: "invalidArgument", Message: err.Error()})
		return
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
	m := Message{ID: id, ThreadID: id, User: r.PathValue("userId"), Raw: raw, Recipients: rcpts, Upload: upload, AccessToken: tok}
	s.messages = append(s.messages, m)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"id": m.ID, "threadId": m.ThreadID, "labelIds": []string{"SENT"}})
}

// readRaw returns the message of a send request: the base64url "raw" field of
// the JSON body, or the message/rfc822 part of a multipart upload.
func readRaw(r *http.Request) ([]byte, bool, error) {
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, false, fmt.Errorf("bad content type: %w", err)
	}
	if strings.HasPrefix(r.URL.Path, "/upload/") {
		if r.URL.Query().Get("uploadType") != "multipart" || ct != "multipart/related" {
			return nil, true, fmt.Errorf("want uploadType=multipart with multipart/related, got %q, %q", r.URL.Query().Get("uploadType"), ct)
		}
		mr := multipart.NewReader(r.Body, params["boundary"])
		meta, err := mr.NextPart()
		if err != nil {
			return nil, true, fmt.Errorf("metadata part: %w", err)
		}
		if _, err := io.Copy(io.Discard, meta); err != nil {
			return nil, true, err
		}
		media, err := mr.NextPart()
		if err != nil {
			return nil, true, fmt.Errorf("media part: %w", err)
		}
		if mt := media.Header.Get("Content-Type"); mt != "message/rfc822" {
			return nil, true, fmt.Errorf("media content type %q is not message/rfc822", mt)
		}
		raw, err := io.ReadAll(media)
		return raw, true, err
	}
	if ct != "application/json" {
		return nil, false, fmt.Errorf("content type %q is not application/json", ct)
	}
	var body struct {
		Raw string `json:"raw"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		return nil, false, fmt.Errorf("bad JSON: %w", err)
	}
	if body.Raw == "" {
		return nil, false, errors.New("'raw' RFC822 payload message string or uploading message via /upload/* URL required")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(body.Raw, "="))
	if err != nil {
		return nil, false, fmt.Errorf("raw is not base64url: %w", err)
	}
	return raw, false, nil
}

func (s *Server) profile(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authorize(w, r); !ok {
		return
	}
	if s.opts.NoReadScope {
		apiError(w, Failure{Status: http.StatusForbidden, Reason: "insufficientPermissions", Message: "Request had insufficient authentication scopes."})
		return
	}
	s.mu.Lock()
	n := len(s.messages)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"emailAddress": s.opts.Email, "messagesTotal": n, "threadsTotal": n, "historyId": strconv.Itoa(1000 + n),
	})
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
