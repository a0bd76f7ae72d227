package sestest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SES v2 operations the Fake answers.
const (
	OpSendEmail        = "SendEmail"
	OpGetAccount       = "GetAccount"
	OpGetEmailIdentity = "GetEmailIdentity"
)

// Error is an AWS error answer: HTTP status, the error code in
// X-Amzn-ErrorType (e.g. "MessageRejected", "TooManyRequestsException";
// empty sends none, so the client sees only the status) and its message.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when set, is sent as a Retry-After header (whole seconds).
	RetryAfter time.Duration
}

// Common errors, with the status and message SES answers them with.
var (
	ErrMessageRejected  = Error{Status: 400, Code: "MessageRejected", Message: "Email address is not verified. The following identities failed the check in region EU-WEST-1: rejected@conformance.test"}
	ErrTooManyRequests  = Error{Status: 429, Code: "TooManyRequestsException", Message: "Maximum sending rate exceeded."}
	ErrUnrecognizedKey  = Error{Status: 403, Code: "UnrecognizedClientException", Message: "The security token included in the request is invalid."}
	ErrAccountSuspended = Error{Status: 400, Code: "AccountSuspendedException", Message: "Your account has been suspended."}
	ErrSendingPaused    = Error{Status: 400, Code: "SendingPausedException", Message: "Sending is paused for this account."}
)

// Account is the Fake's GetAccount answer.
type Account struct {
	Max24HourSend     float64
	MaxSendRate       float64
	SentLast24Hours   float64
	ProductionAccess  bool
	SendingEnabled    bool
	EnforcementStatus string
}

// Send is one SendEmail call the Fake accepted.
type Send struct {
	MessageID   string
	AccessKeyID string
	Region      string
	From        string
	To, Cc, Bcc []string
	// Raw is the decoded Content.Raw.Data; nil for other content.
	Raw              []byte
	ConfigurationSet string
	Tags             map[string]string
}

// Fake is an in-process SES v2 endpoint. Its zero state accepts every
// SendEmail (or forwards it, see ForwardTo), answers GetAccount with a
// production account sending 14 messages/s, and knows no identity.
type Fake struct {
	URL string

	srv  *httptest.Server
	stop chan struct{}

	mu         sync.Mutex
	account    Account
	identities map[string]bool
	byRcpt     map[string]Error
	byKey      map[string]Error
	next       map[string][]Error
	hang       bool
	forward    string
	sends      []Send
	calls      map[string]int
	seq        int
}

// NewFake starts a Fake, closed in t.Cleanup.
func NewFake(t testing.TB) *Fake {
	t.Helper()
	f := &Fake{
		stop:       make(chan struct{}),
		account:    Account{Max24HourSend: 50000, MaxSendRate: 14, ProductionAccess: true, SendingEnabled: true, EnforcementStatus: "HEALTHY"},
		identities: map[string]bool{},
		byRcpt:     map[string]Error{},
		byKey:      map[string]Error{},
		next:       map[string][]Error{},
		calls:      map[string]int{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	t.Cleanup(f.Close)
	return f
}

// Close stops the server, releasing hung calls.
func (f *Fake) Close() {
	f.mu.Lock()
	select {
	case <-f.stop:
		f.mu.Unlock()
		return
	default:
	}
	close(f.stop)
	f.mu.Unlock()
	f.srv.Close()
}

// SetAccount sets the GetAccount answer.
func (f *Fake) SetAccount(a Account) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.account = a
}

// SetIdentity makes GetEmailIdentity know identity (an address or a domain),
// verified for sending or not. Unknown identities answer NotFoundException.
func (f *Fake) SetIdentity(identity string, verified bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.identities[strings.ToLower(identity)] = verified
}

// FailRecipient makes every SendEmail with rcpt among its destinations fail with e.
func (f *Fake) FailRecipient(rcpt string, e Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byRcpt[strings.ToLower(rcpt)] = e
}

// FailAccessKey makes every call signed with the access key id fail with e
// (e.g. ErrUnrecognizedKey for bad credentials).
func (f *Fake) FailAccessKey(accessKeyID string, e Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byKey[accessKeyID] = e
}

// FailNext makes the next n calls of op fail with e.
func (f *Fake) FailNext(op string, n int, e Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.next[op] = append(f.next[op], e)
	}
}

// Hang makes every later call wait, unanswered, until its client gives up or
// the Fake closes.
func (f *Fake) Hang() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hang = true
}

// ForwardTo passes the SendEmail calls that are not failed to the SES
// endpoint at url (the emulator) and answers with its answer.
func (f *Fake) ForwardTo(url string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forward = url
}

// Sends returns the SendEmail calls accepted so far.
func (f *Fake) Sends() []Send {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sends)
}

// Calls returns how many calls of op arrived (failed ones too).
func (f *Fake) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// credentialRE reads the access key id and region of a SigV4 Authorization header.
var credentialRE = regexp.MustCompile(`Credential=([^/]+)/[0-9]+/([^/]+)/`)

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	op := ""
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v2/email/outbound-emails":
		op = OpSendEmail
	case r.Method == http.MethodGet && r.URL.Path == "/v2/email/account":
		op = OpGetAccount
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/email/identities/"):
		op = OpGetEmailIdentity
	default:
		writeError(w, Error{Status: 404, Code: "UnknownOperationException", Message: r.Method + " " + r.URL.Path})
		return
	}
	key, region := "", ""
	if m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		key, region = m[1], m[2]
	}

	f.mu.Lock()
	f.calls[op]++
	hang := f.hang
	f.mu.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
		case <-f.stop:
		}
		return
	}
	if key == "" {
		writeError(w, Error{Status: 403, Code: "MissingAuthenticationTokenException", Message: "Missing Authentication Token"})
		return
	}

	f.mu.Lock()
	e, failed := f.byKey[key]
	if !failed && len(f.next[op]) > 0 {
		e, failed = f.next[op][0], true
		f.next[op] = f.next[op][1:]
	}
	f.mu.Unlock()
	if failed {
		writeError(w, e)
		return
	}

	switch op {
	case OpGetAccount:
		f.mu.Lock()
		a := f.account
		f.mu.Unlock()
		writeJSON(w, map[string]any{
			"EnforcementStatus":       a.EnforcementStatus,
			"ProductionAccessEnabled": a.ProductionAccess,
			"SendingEnabled":          a.SendingEnabled,
			"SendQuota": map[string]any{
				"Max24HourSend": a.Max24HourSend, "MaxSendRate": a.MaxSendRate, "SentLast24Hours": a.SentLast24Hours,
			},
		})
	case OpGetEmailIdentity:
		id, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/v2/email/identities/"))
		if err != nil {
			writeError(w, Error{Status: 400, Code: "BadRequestException", Message: "bad identity"})
			return
		}
		f.mu.Lock()
		verified, ok := f.identities[strings.ToLower(id)]
		f.mu.Unlock()
		if !ok {
			writeError(w, Error{Status: 404, Code: "NotFoundException", Message: "Email identity " + id + " does not exist."})
			return
		}
		typ := "EMAIL_ADDRESS"
		if !strings.Contains(id, "@") {
			typ = "DOMAIN"
		}
		status := "PENDING"
		if verified {
			status = "SUCCESS"
		}
		writeJSON(w, map[string]any{"IdentityType": typ, "VerifiedForSendingStatus": verified, "VerificationStatus": status})
	case OpSendEmail:
		f.sendEmail(w, r, body, key, region)
	}
}

func (f *Fake) sendEmail(w http.ResponseWriter, r *http.Request, body []byte, key, region string) {
	var in struct {
		FromEmailAddress string
		Destination      struct{ ToAddresses, CcAddresses, BccAddresses []string }
		Content          struct {
			Raw *struct{ Data string }
		}
		ConfigurationSetName string
		EmailTags            []struct{ Name, Value string }
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, Error{Status: 400, Code: "BadRequestException", Message: "invalid JSON: " + err.Error()})
		return
	}
	s := Send{AccessKeyID: key, Region: region, From: in.FromEmailAddress, To: in.Destination.ToAddresses,
		Cc: in.Destination.CcAddresses, Bcc: in.Destination.BccAddresses, ConfigurationSet: in.ConfigurationSetName}
	if in.Content.Raw != nil {
		raw, err := base64.StdEncoding.DecodeString(in.Content.Raw.Data)
		if err != nil {
			writeError(w, Error{Status: 400, Code: "BadRequestException", Message: "Raw.Data is not base64"})
			return
		}
		s.Raw = raw
	}
	if len(in.EmailTags) > 0 {
		s.Tags = map[string]string{}
		for _, t := range in.EmailTags {
			s.Tags[t.Name] = t.Value
		}
	}
	f.mu.Lock()
	for _, rc := range slices.Concat(s.To, s.Cc, s.Bcc) {
		if e, ok := f.byRcpt[strings.ToLower(rc)]; ok {
			f.mu.Unlock()
			writeError(w, e)
			return
		}
	}
	forward := f.forward
	f.mu.Unlock()

	if forward != "" {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, forward+"/v2/email/outbound-emails", bytes.NewReader(body))
		if err != nil {
			writeError(w, Error{Status: 500, Code: "InternalFailure", Message: err.Error()})
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", r.Header.Get("Authorization"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			writeError(w, Error{Status: 502, Code: "InternalFailure", Message: "forward: " + err.Error()})
			return
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		var out struct{ MessageId string }
		if resp.StatusCode != http.StatusOK || json.Unmarshal(answer, &out) != nil || out.MessageId == "" {
			writeError(w, Error{Status: resp.StatusCode, Code: "BadRequestException", Message: "emulator: " + string(answer)})
			return
		}
		s.MessageID = out.MessageId
	} else {
		f.mu.Lock()
		f.seq++
		s.MessageID = fmt.Sprintf("0102fake%012d-%s", f.seq, strconv.FormatInt(time.Now().UnixNano(), 36))
		f.mu.Unlock()
	}
	f.mu.Lock()
	f.sends = append(f.sends, s)
	f.mu.Unlock()
	writeJSON(w, map[string]any{"MessageId": s.MessageID})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers as SES's REST-JSON protocol does.
func writeError(w http.ResponseWriter, e Error) {
	if e.Status == 0 {
		e.Status = 400
	}
	w.Header().Set("Content-Type", "application/json")
	if e.Code != "" {
		w.Header().Set("X-Amzn-ErrorType", e.Code)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	w.Header().Set("X-Amzn-RequestId", "fake-request")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": e.Message})
}
