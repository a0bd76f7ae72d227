// Package sns receives Amazon SNS messages over HTTP(S): it parses the JSON
// SNS posts, verifies its signature against the signing certificate, and
// confirms subscriptions.
//
// Verification follows AWS's "Verifying the signatures of Amazon SNS
// messages": the string to sign is built from the message's fields in a fixed
// order that depends on its type (Subject only when present), the signature
// is RSA PKCS #1 v1.5 with SHA-1 (SignatureVersion 1) or SHA-256
// (SignatureVersion 2), and the certificate is fetched from SigningCertURL only
// when that URL is https on a host that matches the allowed pattern (by
// default sns.<region>.amazonaws.com). Certificates are cached by URL.
//
// A signature proves that SNS sent the message, not that it came from a topic
// the receiver wants (anyone can create a topic in their own AWS account and
// subscribe any URL): the receiver must check TopicArn against the topics it
// expects. Verifier also checks it against an optional global allow-list.
package sns

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1" // SignatureVersion 1 is SHA1withRSA by AWS's definition
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Message types.
const (
	TypeSubscriptionConfirmation = "SubscriptionConfirmation"
	TypeNotification             = "Notification"
	TypeUnsubscribeConfirmation  = "UnsubscribeConfirmation"
)

// DefaultCertHostPattern matches the hosts SNS serves signing certificates
// and subscription URLs from.
const DefaultCertHostPattern = `^sns[.][a-z0-9-]+[.]amazonaws[.]com([.]cn)?$`

// ErrInvalid is wrapped by every error that says a message is not a genuine,
// acceptable SNS message (as opposed to a failure to check it).
var ErrInvalid = errors.New("invalid sns message")

// Message is an SNS message as posted to an HTTP(S) endpoint.
type Message struct {
	Type             string  `json:"Type"`
	MessageID        string  `json:"MessageId"`
	TopicArn         string  `json:"TopicArn"`
	Subject          *string `json:"Subject"`
	Message          string  `json:"Message"`
	Timestamp        string  `json:"Timestamp"`
	Token            string  `json:"Token"`
	SubscribeURL     string  `json:"SubscribeURL"`
	UnsubscribeURL   string  `json:"UnsubscribeURL"`
	SignatureVersion string  `json:"SignatureVersion"`
	Signature        string  `json:"Signature"`
	SigningCertURL   string  `json:"SigningCertURL"`
}

// Parse decodes the body of an SNS POST. It checks the shape only; Verify
// checks that SNS sent it.
func Parse(body []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrInvalid, err)
	}
	switch m.Type {
	case TypeNotification, TypeSubscriptionConfirmation, TypeUnsubscribeConfirmation:
	default:
		return nil, fmt.Errorf("%w: unknown type %q", ErrInvalid, m.Type)
	}
	if m.MessageID == "" || m.TopicArn == "" || m.Timestamp == "" || m.Signature == "" || m.SigningCertURL == "" {
		return nil, fmt.Errorf("%w: missing MessageId, TopicArn, Timestamp, Signature or SigningCertURL", ErrInvalid)
	}
	if m.Type != TypeNotification && (m.Token == "" || m.SubscribeURL == "") {
		return nil, fmt.Errorf("%w: %s without Token or SubscribeURL", ErrInvalid, m.Type)
	}
	return &m, nil
}

// StringToSign is the canonical form SNS signs: "name\nvalue\n" for each
// field, in AWS's order for the message's type.
func (m *Message) StringToSign() string {
	var b strings.Builder
	add := func(name, value string) {
		b.WriteString(name)
		b.WriteByte('\n')
		b.WriteString(value)
		b.WriteByte('\n')
	}
	add("Message", m.Message)
	add("MessageId", m.MessageID)
	if m.Type == TypeNotification {
		if m.Subject != nil {
			add("Subject", *m.Subject)
		}
		add("Timestamp", m.Timestamp)
		add("TopicArn", m.TopicArn)
		add("Type", m.Type)
		return b.String()
	}
	add("SubscribeURL", m.SubscribeURL)
	add("Timestamp", m.Timestamp)
	add("Token", m.Token)
	add("TopicArn", m.TopicArn)
	add("Type", m.Type)
	return b.String()
}

// Config configures a Verifier.
type Config struct {
	// CertHostPattern is what the host of SigningCertURL and SubscribeURL must
	// match. Default DefaultCertHostPattern.
	CertHostPattern string
	// TopicARNs, when not empty, are the only topics accepted; each is an ARN
	// or a path.Match pattern ("arn:aws:sns:*:123456789012:*"). Empty accepts
	// every topic: the caller then checks TopicArn itself.
	TopicARNs []string
	// RootCAs verify the TLS certificates of the certificate and subscription
	// hosts; nil uses the system's roots.
	RootCAs *x509.CertPool
	// Timeout bounds one certificate fetch or subscription confirmation.
	// Default 10s.
	Timeout time.Duration
	// Now is the clock certificates' validity is checked against.
	Now func() time.Time
}

// Verifier verifies SNS messages and confirms subscriptions. It is safe for
// concurrent use.
type Verifier struct {
	host   *regexp.Regexp
	topics []string
	client *http.Client
	now    func() time.Time

	mu    sync.Mutex
	certs map[string]*x509.Certificate
}

// maxCachedCerts bounds the certificate cache. SNS uses one certificate per
// region at a time, so this is never reached by genuine traffic.
const maxCachedCerts = 64

// NewVerifier returns a verifier; it fails when the host pattern or a topic
// pattern does not compile.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.CertHostPattern == "" {
		cfg.CertHostPattern = DefaultCertHostPattern
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	host, err := regexp.Compile(cfg.CertHostPattern)
	if err != nil {
		return nil, fmt.Errorf("sns cert host pattern: %w", err)
	}
	for _, t := range cfg.TopicARNs {
		if _, err := path.Match(t, ""); err != nil {
			return nil, fmt.Errorf("sns topic arn %q: %w", t, err)
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	transport.Proxy = nil
	return &Verifier{
		host:   host,
		topics: cfg.TopicARNs,
		client: &http.Client{
			Transport: transport,
			Timeout:   cfg.Timeout,
			// A redirect could lead anywhere: the URL's host is what was checked.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		now:   cfg.Now,
		certs: map[string]*x509.Certificate{},
	}, nil
}

// Verify checks that m was signed by SNS and comes from an allowed topic.
// Errors wrapping ErrInvalid mean the message must be refused; others that
// the certificate could not be fetched (the sender should retry).
func (v *Verifier) Verify(ctx context.Context, m *Message) error {
	if !v.topicAllowed(m.TopicArn) {
		return fmt.Errorf("%w: topic %s is not allowed", ErrInvalid, m.TopicArn)
	}
	var hash crypto.Hash
	switch m.SignatureVersion {
	case "1":
		hash = crypto.SHA1
	case "2":
		hash = crypto.SHA256
	default:
		return fmt.Errorf("%w: signature version %q", ErrInvalid, m.SignatureVersion)
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil {
		return fmt.Errorf("%w: signature: %w", ErrInvalid, err)
	}
	certURL, err := v.checkURL(m.SigningCertURL, "SigningCertURL")
	if err != nil {
		return err
	}
	if !strings.HasSuffix(certURL.Path, ".pem") {
		return fmt.Errorf("%w: SigningCertURL %s is not a .pem", ErrInvalid, certURL.Redacted())
	}
	cert, err := v.cert(ctx, certURL.String())
	if err != nil {
		return err
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: signing certificate has a %T key, not RSA", ErrInvalid, cert.PublicKey)
	}
	digest := digest(hash, m.StringToSign())
	if err := rsa.VerifyPKCS1v15(pub, hash, digest, sig); err != nil {
		return fmt.Errorf("%w: bad signature: %w", ErrInvalid, err)
	}
	return nil
}

func digest(h crypto.Hash, s string) []byte {
	if h == crypto.SHA1 {
		d := sha1.Sum([]byte(s))
		return d[:]
	}
	d := sha256.Sum256([]byte(s))
	return d[:]
}

func (v *Verifier) topicAllowed(arn string) bool {
	if len(v.topics) == 0 {
		return true
	}
	for _, t := range v.topics {
		if ok, _ := path.Match(t, arn); ok {
			return true
		}
	}
	return false
}

// checkURL parses raw and checks that it is https on an allowed host.
func (v *Verifier) checkURL(raw, field string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, field, err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("%w: %s %s is not https", ErrInvalid, field, u.Redacted())
	}
	if u.User != nil || !v.host.MatchString(u.Hostname()) {
		return nil, fmt.Errorf("%w: %s host %q is not allowed", ErrInvalid, field, u.Hostname())
	}
	return u, nil
}

// cert returns the certificate at certURL, from the cache or fetched. An
// expired cached certificate is fetched again.
func (v *Verifier) cert(ctx context.Context, certURL string) (*x509.Certificate, error) {
	now := v.now()
	v.mu.Lock()
	c := v.certs[certURL]
	v.mu.Unlock()
	if c != nil && now.Before(c.NotAfter) {
		return c, nil
	}
	body, err := v.get(ctx, certURL, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("fetch signing certificate: %w", err)
	}
	block, _ := pem.Decode(body)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: SigningCertURL does not hold a PEM certificate", ErrInvalid)
	}
	c, err = x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: signing certificate: %w", ErrInvalid, err)
	}
	if now.Before(c.NotBefore) || !now.Before(c.NotAfter) {
		return nil, fmt.Errorf("%w: signing certificate is not valid now (%s to %s)", ErrInvalid,
			c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
	}
	v.mu.Lock()
	if len(v.certs) >= maxCachedCerts {
		clear(v.certs)
	}
	v.certs[certURL] = c
	v.mu.Unlock()
	return c, nil
}

// Confirm confirms a SubscriptionConfirmation (already verified) by getting
// its SubscribeURL, and returns the subscription's ARN when SNS's answer names it.
func (v *Verifier) Confirm(ctx context.Context, m *Message) (string, error) {
	if m.Type != TypeSubscriptionConfirmation {
		return "", fmt.Errorf("%w: confirm a %s", ErrInvalid, m.Type)
	}
	u, err := v.checkURL(m.SubscribeURL, "SubscribeURL")
	if err != nil {
		return "", err
	}
	body, err := v.get(ctx, u.String(), 64<<10)
	if err != nil {
		return "", fmt.Errorf("confirm subscription: %w", err)
	}
	var resp struct {
		ARN string `xml:"ConfirmSubscriptionResult>SubscriptionArn"`
	}
	// The answer's only use is the ARN for the record; SNS confirmed the
	// subscription when it answered 200, whatever the body.
	_ = xml.Unmarshal(body, &resp)
	return strings.TrimSpace(resp.ARN), nil
}

// get fetches rawURL and returns at most limit bytes of a 200 answer.
func (v *Verifier) get(ctx context.Context, rawURL string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", req.URL.Host+req.URL.Path, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", req.URL.Host+req.URL.Path, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("GET %s: answer over %d bytes", req.URL.Host+req.URL.Path, limit)
	}
	return body, nil
}
