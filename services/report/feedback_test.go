package report_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report"
	"github.com/namirasoft/email-sender/services/report/sns"
)

const (
	testTopic = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
	// testAWSAccount is the AWS account of the fixture's SES provider
	// configuration (aws_account_id) and of its mail (mail.sendingAccountId).
	testAWSAccount = "123456789012"
)

// snsFixture is a report service serving HTTPS with a certificate of a test
// CA, and an HTTPS server (same CA, on 127.0.0.1, which the report's
// REPORT_SNS_CERT_HOST_PATTERN allows) playing SNS: it serves the signing
// certificate and answers subscription confirmations.
type snsFixture struct {
	*testBundle
	reportURL string
	https     *http.Client
	snsURL    string
	signer    *rsa.PrivateKey
	other     *rsa.PrivateKey

	mu       sync.Mutex
	confirms []string // tokens of the subscription confirmations received

	acct       account
	providerID string
}

func newSNSFixture(t *testing.T, topics ...string) *snsFixture {
	t.Helper()
	ca, caKey := newCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "report.crt"), filepath.Join(dir, "report.key")
	leaf := issueTLS(t, ca, caKey, certFile, keyFile)

	f := &snsFixture{signer: rsaKey(t), other: rsaKey(t)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /SimpleNotificationService-test.pem", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(selfSigned(t, f.signer))
	})
	mux.HandleFunc("GET /SimpleNotificationService-other.pem", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(selfSigned(t, f.other))
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("Action") != "ConfirmSubscription" {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		f.confirms = append(f.confirms, r.URL.Query().Get("Token"))
		f.mu.Unlock()
		fmt.Fprintf(w, `<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <ConfirmSubscriptionResult><SubscriptionArn>%s:sub-1</SubscriptionArn></ConfirmSubscriptionResult>
</ConfirmSubscriptionResponse>`, r.URL.Query().Get("TopicArn"))
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.snsURL = srv.URL

	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f.reportURL = "https://" + httpLis.Addr().String()
	f.testBundle = setupWith(t, setupOpts{
		cfg: report.Config{
			TLSCertFile:        certFile,
			TLSKeyFile:         keyFile,
			SNSCertHostPattern: `^127\.0\.0\.1$`,
			SNSTopicARNs:       topics,
		},
		deps: func(d *report.Deps) {
			d.HTTPListener = httpLis
			d.SNSRootCAs = pool
		},
	})
	f.https = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(f.https.CloseIdleConnections)
	f.acct = f.newAccount(t)
	f.providerID = f.newProvider(t, f.acct, "ses")
	return f
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return k
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "email-sender test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return ca, key
}

// issueTLS issues a server certificate for 127.0.0.1, writes it and its key
// as PEM files, and returns it.
func issueTLS(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certFile, keyFile string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	leaf, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	return leaf
}

// selfSigned is a PEM signing certificate for key, like SNS's.
func selfSigned(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "sns.amazonaws.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// newProvider stores a provider configuration of kind; an ses one is bound
// to testAWSAccount and testTopic.
func (b *testBundle) newProvider(t *testing.T, a account, kind string) string {
	t.Helper()
	settings := `{}`
	if kind == "ses" {
		settings = sesSettings(t, testAWSAccount, testTopic)
	}
	id := uuid.NewString()
	_, err := b.db.Pool.Exec(context.Background(),
		`INSERT INTO provider_configs (id, account_id, name, kind, settings) VALUES ($1, $2, $3, $4, $5)`,
		id, a.id, kind+"-"+id[:8], kind, settings)
	require.NoError(t, err)
	return id
}

// sesSettings is the settings JSON of an ses configuration bound to
// awsAccount and topics (neither when empty).
func sesSettings(t *testing.T, awsAccount string, topics ...string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"region": "us-east-1", "access_key_id": "AKIAFEEDBACK", "aws_account_id": awsAccount,
		"feedback_topic_arns": topics})
	require.NoError(t, err)
	return string(b)
}

// bind replaces the feedback binding of the ses configuration id.
func (b *testBundle) bind(t *testing.T, id, awsAccount string, topics ...string) {
	t.Helper()
	_, err := b.db.Pool.Exec(context.Background(), `UPDATE provider_configs SET settings = $2 WHERE id = $1`,
		id, sesSettings(t, awsAccount, topics...))
	require.NoError(t, err)
}

// sentMessage stores a message SENT through the fixture's SES configuration
// with sesID as its provider message id.
func (f *snsFixture) sentMessage(t *testing.T, a account, sesID string, to ...string) string {
	t.Helper()
	return f.sentVia(t, a, f.providerID, sesID, to...)
}

// sentVia stores a message SENT through providerID with providerMessageID.
func (f *snsFixture) sentVia(t *testing.T, a account, providerID, providerMessageID string, to ...string) string {
	t.Helper()
	id := f.newMessage(t, a, msgSpec{to: to, status: msgstatus.Sent, providerID: providerID})
	_, err := f.db.Pool.Exec(context.Background(), `UPDATE messages SET provider_message_id = $1 WHERE id = $2`, providerMessageID, id)
	require.NoError(t, err)
	return id
}

// snsMessage is an SNS message as posted; keys absent from the map are absent
// from the JSON.
type snsMessage map[string]string

// notification is an SNS Notification carrying an SES event.
func (f *snsFixture) notification(sesEvent string) snsMessage {
	return snsMessage{
		"Type":           "Notification",
		"MessageId":      uuid.NewString(),
		"TopicArn":       testTopic,
		"Message":        sesEvent,
		"Timestamp":      time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"SigningCertURL": f.snsURL + "/SimpleNotificationService-test.pem",
		"UnsubscribeURL": f.snsURL + "/?Action=Unsubscribe&SubscriptionArn=" + testTopic + ":sub-1",
	}
}

// sign signs m the way SNS does (AWS: "Verifying the signatures of Amazon SNS
// messages"), with key, as SignatureVersion version ("1": SHA1withRSA, "2":
// SHA256withRSA). Built here independently of the code under test.
func sign(t *testing.T, m snsMessage, key *rsa.PrivateKey, version string) snsMessage {
	t.Helper()
	fields := []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"}
	if m["Type"] != "Notification" {
		fields = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
	}
	var s strings.Builder
	for _, k := range fields {
		if v, ok := m[k]; ok {
			s.WriteString(k + "\n" + v + "\n")
		}
	}
	var (
		hash   crypto.Hash
		digest []byte
	)
	if version == "1" {
		d := sha1.Sum([]byte(s.String()))
		hash, digest = crypto.SHA1, d[:]
	} else {
		d := sha256.Sum256([]byte(s.String()))
		hash, digest = crypto.SHA256, d[:]
	}
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, hash, digest)
	require.NoError(t, err)
	out := snsMessage{}
	for k, v := range m {
		out[k] = v
	}
	out["SignatureVersion"] = version
	out["Signature"] = base64.StdEncoding.EncodeToString(sig)
	return out
}

// post posts m to the feedback endpoint of providerID as SNS does.
func (f *snsFixture) post(t *testing.T, providerID string, m snsMessage) (int, string) {
	t.Helper()
	body, err := json.Marshal(m)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, f.reportURL+report.FeedbackPathPrefix+providerID, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/plain; charset=UTF-8")
	req.Header.Set("x-amz-sns-message-type", m["Type"])
	resp, err := f.https.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	text, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, strings.TrimSpace(string(text))
}

func (f *snsFixture) eventsInStream(t *testing.T) uint64 {
	t.Helper()
	st, err := f.js.Stream(context.Background(), queue.EventStream)
	require.NoError(t, err)
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

func (f *snsFixture) suppressions(t *testing.T, a account) map[string]string {
	t.Helper()
	rows, err := f.db.Pool.Query(context.Background(), `SELECT address, reason FROM suppressions WHERE account_id = $1`, a.id)
	require.NoError(t, err)
	out := map[string]string{}
	for rows.Next() {
		var addr, reason string
		require.NoError(t, rows.Scan(&addr, &reason))
		out[addr] = reason
	}
	require.NoError(t, rows.Err())
	return out
}

// waitRecipient waits until the recipient's status is want.
func (f *snsFixture) waitRecipient(t *testing.T, a account, msgID, addr string, want msgstatus.Status) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		resp, err := f.testBundle.client.GetMessage(authed(a), &emailsenderv1.GetMessageRequest{MessageId: msgID})
		require.NoError(c, err)
		require.Equal(c, want, recipientStatuses(resp)[addr], "status of %s", addr)
	}, 15*time.Second, 10*time.Millisecond)
}

// feedbackEventID is the id the endpoint gives the event of typ for addr
// from the SNS message snsID.
func feedbackEventID(msgID, typ, addr, snsID string) string {
	return queue.EventID(msgID, 0, typ, addr+"|"+snsID)
}

func sesEvent(t *testing.T, v map[string]any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func mailOf(sesID string, sentAt time.Time, extra map[string]any) map[string]any {
	m := map[string]any{
		"timestamp": sentAt.UTC().Format(time.RFC3339Nano), "messageId": sesID, "source": "news@example.com",
		"sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/example.com", "sendingAccountId": testAWSAccount,
		"destination": []string{"x@example.com"},
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// deliveryEvent is an SES event-publishing Delivery event.
func deliveryEvent(t *testing.T, sesID string, rcpts ...string) string {
	return sesEvent(t, map[string]any{
		"eventType": "Delivery",
		"mail":      mailOf(sesID, time.Now(), nil),
		"delivery": map[string]any{
			"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "processingTimeMillis": 546,
			"recipients": rcpts, "smtpResponse": "250 2.6.0 Message received", "reportingMTA": "a8-70.smtp-out.amazonses.com",
		},
	})
}

// bounceNotification is an SES notification (the older format) of a bounce.
func bounceNotification(t *testing.T, sesID, bounceType string, rcpts ...string) string {
	var recipients []map[string]string
	for _, r := range rcpts {
		recipients = append(recipients, map[string]string{
			"emailAddress": r, "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown",
		})
	}
	sub := "General"
	if bounceType == "Transient" {
		sub = "MailboxFull"
	}
	return sesEvent(t, map[string]any{
		"notificationType": "Bounce",
		"mail":             mailOf(sesID, time.Now(), nil),
		"bounce": map[string]any{
			"bounceType": bounceType, "bounceSubType": sub, "bouncedRecipients": recipients,
			"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "feedbackId": uuid.NewString(),
		},
	})
}

// complaintEvent is an SES event-publishing Complaint event.
func complaintEvent(t *testing.T, sesID string, rcpts ...string) string {
	var recipients []map[string]string
	for _, r := range rcpts {
		recipients = append(recipients, map[string]string{"emailAddress": r})
	}
	return sesEvent(t, map[string]any{
		"eventType": "Complaint",
		"mail":      mailOf(sesID, time.Now(), nil),
		"complaint": map[string]any{
			"complainedRecipients": recipients, "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
			"feedbackId": uuid.NewString(), "complaintFeedbackType": "abuse",
		},
	})
}

func TestFeedbackSubscription(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	subscribe := func(host, token string) snsMessage {
		return snsMessage{
			"Type":      "SubscriptionConfirmation",
			"MessageId": uuid.NewString(),
			"Token":     token,
			"TopicArn":  testTopic,
			"Message":   "You have chosen to subscribe to the topic " + testTopic + ".\nTo confirm the subscription, visit the SubscribeURL included in this message.",
			"SubscribeURL": "https://" + host + "/?Action=ConfirmSubscription&TopicArn=" + url.QueryEscape(testTopic) +
				"&Token=" + token,
			"Timestamp":      time.Now().UTC().Format(time.RFC3339),
			"SigningCertURL": f.snsURL + "/SimpleNotificationService-test.pem",
		}
	}
	snsHost := strings.TrimPrefix(f.snsURL, "https://")

	// A SubscribeURL on a host that is not SNS's is never called.
	_, port, err := net.SplitHostPort(snsHost)
	require.NoError(t, err)
	code, _ := f.post(t, f.providerID, sign(t, subscribe("localhost:"+port, "tok-evil"), f.signer, "2"))
	require.Equal(t, http.StatusForbidden, code)

	code, text := f.post(t, f.providerID, sign(t, subscribe(snsHost, "tok-1"), f.signer, "2"))
	require.Equal(t, http.StatusOK, code, text)
	f.mu.Lock()
	require.Equal(t, []string{"tok-1"}, f.confirms, "the SubscribeURL was called once, with its token")
	f.mu.Unlock()
	var (
		subARN    string
		confirmed *time.Time
	)
	require.NoError(t, f.db.Pool.QueryRow(context.Background(), `
		SELECT subscription_arn, confirmed_at FROM feedback_subscriptions
		WHERE account_id = $1 AND provider_id = $2 AND topic_arn = $3`, f.acct.id, f.providerID, testTopic).Scan(&subARN, &confirmed))
	require.Equal(t, testTopic+":sub-1", subARN)
	require.NotNil(t, confirmed)

	unsub := subscribe(snsHost, "tok-2")
	unsub["Type"] = "UnsubscribeConfirmation"
	code, text = f.post(t, f.providerID, sign(t, unsub, f.signer, "1"))
	require.Equal(t, http.StatusOK, code, text)
	var unsubscribed *time.Time
	require.NoError(t, f.db.Pool.QueryRow(context.Background(), `
		SELECT unsubscribed_at FROM feedback_subscriptions WHERE provider_id = $1 AND topic_arn = $2`,
		f.providerID, testTopic).Scan(&unsubscribed))
	require.NotNil(t, unsubscribed)
	f.mu.Lock()
	require.Len(t, f.confirms, 1, "an unsubscribe confirmation subscribes nothing again")
	f.mu.Unlock()
}

func TestFeedbackDelivery(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	msgID := f.sentMessage(t, f.acct, "ses-delivery-1", "a@example.com", "B@Example.com")
	for _, version := range []string{"1", "2"} {
		// SignatureVersion 1 with a Subject (signed when present), 2 without.
		n := f.notification(deliveryEvent(t, "ses-delivery-1", "a@example.com", "b@example.com"))
		if version == "1" {
			n["Subject"] = "Amazon SES Email Event Notification"
		}
		code, text := f.post(t, f.providerID, sign(t, n, f.signer, version))
		require.Equal(t, http.StatusOK, code, text)
		f.wait(t, "applied", feedbackEventID(msgID, queue.EventDelivered, "a@example.com", n["MessageId"]),
			feedbackEventID(msgID, queue.EventDelivered, "b@example.com", n["MessageId"]))
	}
	resp := f.get(t, f.acct, msgID)
	require.Equal(t, msgstatus.Delivered, resp.GetMessage().GetStatus())
	require.Equal(t, map[string]msgstatus.Status{"a@example.com": msgstatus.Delivered, "b@example.com": msgstatus.Delivered}, recipientStatuses(resp))
	for _, r := range resp.GetRecipients() {
		require.Equal(t, "250 2.6.0 Message received", r.GetDetail())
	}
	require.Empty(t, f.suppressions(t, f.acct))
}

func TestFeedbackHardBounce(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	msgID := f.sentMessage(t, f.acct, "ses-bounce-1", "gone@example.com", "fine@example.com")
	n := f.notification(bounceNotification(t, "ses-bounce-1", "Permanent", "Gone@Example.com", "stranger@example.com"))
	code, text := f.post(t, f.providerID, sign(t, n, f.signer, "2"))
	require.Equal(t, http.StatusOK, code, text)
	f.wait(t, "applied", feedbackEventID(msgID, queue.EventBounced, "gone@example.com", n["MessageId"]))
	resp := f.get(t, f.acct, msgID)
	require.Equal(t, map[string]msgstatus.Status{"gone@example.com": msgstatus.Bounced, "fine@example.com": msgstatus.Sent}, recipientStatuses(resp))
	require.Contains(t, resp.GetMessage().GetLastError(), "hard bounce (Permanent/General)")
	require.Contains(t, eventTypes(resp), queue.EventBounced)
	// Only the message's own recipient is suppressed, not an address it did
	// not go to.
	require.Equal(t, map[string]string{"gone@example.com": "bounce"}, f.suppressions(t, f.acct))
}

func TestFeedbackSoftBounce(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	msgID := f.sentMessage(t, f.acct, "ses-soft-1", "full@example.com")
	n := f.notification(bounceNotification(t, "ses-soft-1", "Transient", "full@example.com"))
	code, text := f.post(t, f.providerID, sign(t, n, f.signer, "1"))
	require.Equal(t, http.StatusOK, code, text)
	f.wait(t, "applied", feedbackEventID(msgID, queue.EventBounced, "full@example.com", n["MessageId"]))
	resp := f.get(t, f.acct, msgID)
	require.Equal(t, msgstatus.Bounced, resp.GetMessage().GetStatus())
	require.Contains(t, resp.GetMessage().GetLastError(), "soft bounce (Transient/MailboxFull)")
	require.Empty(t, f.suppressions(t, f.acct), "a soft bounce suppresses nothing")
}

func TestFeedbackComplaint(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	msgID := f.sentMessage(t, f.acct, "ses-complaint-1", "angry@example.com")
	// Delivered first, then the complaint.
	d := f.notification(deliveryEvent(t, "ses-complaint-1", "angry@example.com"))
	code, _ := f.post(t, f.providerID, sign(t, d, f.signer, "2"))
	require.Equal(t, http.StatusOK, code)
	n := f.notification(complaintEvent(t, "ses-complaint-1", "angry@example.com"))
	code, text := f.post(t, f.providerID, sign(t, n, f.signer, "2"))
	require.Equal(t, http.StatusOK, code, text)
	f.wait(t, "applied", feedbackEventID(msgID, queue.EventComplained, "angry@example.com", n["MessageId"]))
	f.waitRecipient(t, f.acct, msgID, "angry@example.com", msgstatus.Complained)
	require.Equal(t, map[string]string{"angry@example.com": "complaint"}, f.suppressions(t, f.acct))
}

func TestFeedbackDuplicate(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	msgID := f.sentMessage(t, f.acct, "ses-dup-1", "dup@example.com")
	n := f.notification(bounceNotification(t, "ses-dup-1", "Permanent", "dup@example.com"))
	signed := sign(t, n, f.signer, "2")
	code, _ := f.post(t, f.providerID, signed)
	require.Equal(t, http.StatusOK, code)
	id := feedbackEventID(msgID, queue.EventBounced, "dup@example.com", n["MessageId"])
	f.wait(t, "applied", id)
	f.waitDrained(t)
	before := f.eventsInStream(t)

	// SNS retries: the same message again, and signed the other way.
	for _, m := range []snsMessage{signed, sign(t, n, f.signer, "1")} {
		code, text := f.post(t, f.providerID, m)
		require.Equal(t, http.StatusOK, code, text)
	}
	require.Equal(t, before, f.eventsInStream(t), "JetStream dropped the copies")
	resp := f.get(t, f.acct, msgID)
	require.Equal(t, 1, countEvents(resp, queue.EventBounced))
	require.Equal(t, map[string]string{"dup@example.com": "bounce"}, f.suppressions(t, f.acct))
	f.waitDrained(t)
	require.Equal(t, 1, countEvents(f.get(t, f.acct, msgID), queue.EventBounced))
}

func countEvents(resp *emailsenderv1.GetMessageResponse, typ string) int {
	n := 0
	for _, e := range resp.GetEvents() {
		if e.GetType() == typ {
			n++
		}
	}
	return n
}

func TestFeedbackRefused(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	msgID := f.sentMessage(t, f.acct, "ses-refused-1", "victim@example.com")
	sandboxProvider := f.newProvider(t, f.acct, "sandbox")
	bounce := func() snsMessage {
		return f.notification(bounceNotification(t, "ses-refused-1", "Permanent", "victim@example.com"))
	}
	certAt := func(u string) snsMessage {
		m := bounce()
		m["SigningCertURL"] = u
		return sign(t, m, f.signer, "2")
	}
	_, port, err := net.SplitHostPort(strings.TrimPrefix(f.snsURL, "https://"))
	require.NoError(t, err)

	tests := []struct {
		name     string
		provider string
		msg      snsMessage
		want     int
	}{
		{"tampered message", f.providerID, func() snsMessage {
			m := sign(t, f.notification(deliveryEvent(t, "ses-refused-1", "victim@example.com")), f.signer, "2")
			m["Message"] = bounce()["Message"]
			return m
		}(), http.StatusForbidden},
		{"tampered topic", f.providerID, func() snsMessage {
			m := sign(t, bounce(), f.signer, "2")
			m["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:other"
			return m
		}(), http.StatusForbidden},
		{"signed by another key", f.providerID, sign(t, bounce(), f.other, "2"), http.StatusForbidden},
		{"wrong certificate", f.providerID, certAt(f.snsURL + "/SimpleNotificationService-other.pem"), http.StatusForbidden},
		{"certificate over http", f.providerID, certAt("http://127.0.0.1:" + port + "/SimpleNotificationService-test.pem"), http.StatusForbidden},
		{"certificate host not allowed", f.providerID, certAt("https://localhost:" + port + "/SimpleNotificationService-test.pem"), http.StatusForbidden},
		{"certificate host lookalike", f.providerID, certAt("https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-test.pem"), http.StatusForbidden},
		{"certificate not a pem", f.providerID, certAt(f.snsURL + "/?Action=ConfirmSubscription"), http.StatusForbidden},
		{"signature version 3", f.providerID, func() snsMessage {
			m := sign(t, bounce(), f.signer, "2")
			m["SignatureVersion"] = "3"
			return m
		}(), http.StatusForbidden},
		{"unsigned", f.providerID, bounce(), http.StatusForbidden},
		{"not json", f.providerID, snsMessage{}, http.StatusForbidden},
		{"unknown provider", uuid.NewString(), sign(t, bounce(), f.signer, "2"), http.StatusNotFound},
		{"not an ses provider", sandboxProvider, sign(t, bounce(), f.signer, "2"), http.StatusNotFound},
		{"provider id not a uuid", "not-a-uuid", sign(t, bounce(), f.signer, "2"), http.StatusNotFound},
	}
	before := f.eventsInStream(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, text := f.post(t, tt.provider, tt.msg)
			require.Equal(t, tt.want, code, text)
			require.Equal(t, before, f.eventsInStream(t), "no event published")
			require.Empty(t, f.suppressions(t, f.acct))
		})
	}
	resp := f.get(t, f.acct, msgID)
	require.Equal(t, msgstatus.Sent, resp.GetMessage().GetStatus())
	f.mu.Lock()
	require.Empty(t, f.confirms)
	f.mu.Unlock()
	// What a forger wrote never reaches a span: the tampered topic failed
	// verification, so it was not recorded.
	for _, sp := range f.spans.GetSpans() {
		for _, a := range sp.Attributes {
			require.NotContains(t, a.Value.Emit(), "999999999999", "span %s attribute %s", sp.Name, a.Key)
		}
	}
}

// TestFeedbackTopicAllowList: REPORT_SNS_TOPIC_ARNS filters on top of each
// configuration's own topics: a topic bound to the configuration but not in
// the operator's list is refused.
func TestFeedbackTopicAllowList(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t, "arn:aws:sns:*:123456789012:ses-*")
	const outside = "arn:aws:sns:us-east-1:123456789012:other-feedback"
	f.bind(t, f.providerID, testAWSAccount, testTopic, outside)
	msgID := f.sentMessage(t, f.acct, "ses-topic-1", "t@example.com")
	other := f.notification(deliveryEvent(t, "ses-topic-1", "t@example.com"))
	other["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:ses-feedback"
	code, _ := f.post(t, f.providerID, sign(t, other, f.signer, "2"))
	require.Equal(t, http.StatusForbidden, code, "a topic of another AWS account")
	bound := f.notification(deliveryEvent(t, "ses-topic-1", "t@example.com"))
	bound["TopicArn"] = outside
	code, _ = f.post(t, f.providerID, sign(t, bound, f.signer, "2"))
	require.Equal(t, http.StatusForbidden, code, "bound to the configuration, not allowed by the operator")

	n := f.notification(deliveryEvent(t, "ses-topic-1", "t@example.com"))
	code, text := f.post(t, f.providerID, sign(t, n, f.signer, "2"))
	require.Equal(t, http.StatusOK, code, text)
	f.wait(t, "applied", feedbackEventID(msgID, queue.EventDelivered, "t@example.com", n["MessageId"]))
}

func TestFeedbackAccountIsolation(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	msgID := f.sentMessage(t, f.acct, "ses-iso-1", "mine@example.com")
	other := f.newAccount(t)
	otherProvider := f.newProvider(t, other, "ses")
	before := f.eventsInStream(t)

	// Account B's endpoint names account A's SES message id: not B's
	// message. While the mail is recent SNS is asked to retry (the SENT event
	// may be late); an old one is dropped.
	n := f.notification(bounceNotification(t, "ses-iso-1", "Permanent", "mine@example.com"))
	code, _ := f.post(t, otherProvider, sign(t, n, f.signer, "2"))
	require.Equal(t, http.StatusServiceUnavailable, code)

	old := f.notification(sesEvent(t, map[string]any{
		"eventType": "Complaint",
		"mail":      mailOf("ses-iso-1", time.Now().Add(-time.Hour), nil),
		"complaint": map[string]any{"complainedRecipients": []map[string]string{{"emailAddress": "mine@example.com"}}},
	}))
	code, text := f.post(t, otherProvider, sign(t, old, f.signer, "2"))
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "unknown message", text)

	// Nor does A's message id in B's SES message tag reach it.
	tagged := f.notification(sesEvent(t, map[string]any{
		"eventType": "Complaint",
		"mail":      mailOf("ses-iso-2", time.Now().Add(-time.Hour), map[string]any{"tags": map[string][]string{"emailsender-message-id": {msgID}}}),
		"complaint": map[string]any{"complainedRecipients": []map[string]string{{"emailAddress": "mine@example.com"}}},
	}))
	code, _ = f.post(t, otherProvider, sign(t, tagged, f.signer, "2"))
	require.Equal(t, http.StatusOK, code)

	require.Equal(t, before, f.eventsInStream(t))
	require.Empty(t, f.suppressions(t, f.acct))
	require.Empty(t, f.suppressions(t, other))
	require.Equal(t, msgstatus.Sent, f.get(t, f.acct, msgID).GetMessage().GetStatus())
}

// TestFeedbackForgedPublicMessageIDNotApplied: our message id is public (it
// is in the Message-ID header); a notification that names it (in the SES
// message tag) but not the SES message id recorded at send, or the SES
// message id of a send through another configuration, changes nothing.
func TestFeedbackForgedPublicMessageIDNotApplied(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	before := f.eventsInStream(t)
	tagged := func(sesID, msgID string, sentAt time.Time) snsMessage {
		return f.notification(sesEvent(t, map[string]any{
			"eventType": "Bounce",
			"mail":      mailOf(sesID, sentAt, map[string]any{"tags": map[string][]string{"emailsender-message-id": {msgID}}}),
			"bounce": map[string]any{"bounceType": "Permanent", "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
				"bouncedRecipients": []map[string]string{{"emailAddress": "victim@example.com"}}},
		}))
	}

	// No SES message id recorded yet (the SENT event is on its way): a
	// recent notification is answered 503 for SNS to retry, never taken by
	// the tag.
	early := f.newMessage(t, f.acct, msgSpec{to: []string{"victim@example.com"}, status: msgstatus.Sending, providerID: f.providerID})
	code, text := f.post(t, f.providerID, sign(t, tagged("ses-forged-1", early, time.Now()), f.signer, "2"))
	require.Equal(t, http.StatusServiceUnavailable, code, text)

	// A message whose recorded SES message id differs.
	sent := f.sentMessage(t, f.acct, "ses-real-1", "victim@example.com")
	code, text = f.post(t, f.providerID, sign(t, tagged("ses-forged-2", sent, time.Now().Add(-time.Hour)), f.signer, "2"))
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "unknown message", text)

	// The provider message id of a send through another configuration of the
	// account (here the sandbox's) is not this configuration's.
	sandbox := f.newProvider(t, f.acct, "sandbox")
	via := f.sentVia(t, f.acct, sandbox, "sandbox-x-1", "victim@example.com")
	code, text = f.post(t, f.providerID, sign(t, tagged("sandbox-x-1", via, time.Now().Add(-time.Hour)), f.signer, "2"))
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "unknown message", text)

	require.Equal(t, before, f.eventsInStream(t), "no event published")
	require.Empty(t, f.suppressions(t, f.acct))
	for _, id := range []string{sent, via} {
		require.Equal(t, msgstatus.Sent, f.get(t, f.acct, id).GetMessage().GetStatus())
	}

	// Once the SENT event recorded the SES message id, SNS's retry of a
	// genuine notification naming it is applied.
	_, err := f.db.Pool.Exec(context.Background(), `UPDATE messages SET provider_message_id = 'ses-early-1' WHERE id = $1`, early)
	require.NoError(t, err)
	n := tagged("ses-early-1", early, time.Now())
	code, text = f.post(t, f.providerID, sign(t, n, f.signer, "2"))
	require.Equal(t, http.StatusOK, code, text)
	f.waitRecipient(t, f.acct, early, "victim@example.com", msgstatus.Bounced)
}

// TestFeedbackForgedOtherTopicRefused: a notification validly signed by SNS
// but from a topic the configuration is not bound to (anyone's AWS account
// can publish one) is refused, with no REPORT_SNS_TOPIC_ARNS set; so is any
// notification for a configuration bound to no topic.
func TestFeedbackForgedOtherTopicRefused(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	msgID := f.sentMessage(t, f.acct, "ses-topic-forged-1", "victim@example.com")
	unbound := f.newProvider(t, f.acct, "ses")
	f.bind(t, unbound, "")
	unboundMsg := f.sentVia(t, f.acct, unbound, "ses-topic-forged-2", "victim2@example.com")
	before := f.eventsInStream(t)
	for name, tc := range map[string]struct {
		provider, topic, sesID string
	}{
		"attacker's topic":               {f.providerID, "arn:aws:sns:us-east-1:666666666666:ses-feedback", "ses-topic-forged-1"},
		"another topic of the account":   {f.providerID, "arn:aws:sns:us-east-1:123456789012:other", "ses-topic-forged-1"},
		"configuration bound to nothing": {unbound, testTopic, "ses-topic-forged-2"},
	} {
		t.Run(name, func(t *testing.T) {
			n := f.notification(bounceNotification(t, tc.sesID, "Permanent", "victim@example.com", "victim2@example.com"))
			n["TopicArn"] = tc.topic
			code, text := f.post(t, tc.provider, sign(t, n, f.signer, "2"))
			require.Equal(t, http.StatusForbidden, code, text)
		})
	}
	require.Equal(t, before, f.eventsInStream(t), "no event published")
	require.Empty(t, f.suppressions(t, f.acct), "nothing suppressed")
	require.Equal(t, msgstatus.Sent, f.get(t, f.acct, msgID).GetMessage().GetStatus())
	require.Equal(t, msgstatus.Sent, f.get(t, f.acct, unboundMsg).GetMessage().GetStatus())
}

// TestFeedbackForgedOtherAWSAccountRefused: from the bound topic, but about
// mail another AWS account sent (mail.sendingAccountId), or naming none: refused.
func TestFeedbackForgedOtherAWSAccountRefused(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	msgID := f.sentMessage(t, f.acct, "ses-acct-forged-1", "victim@example.com")
	before := f.eventsInStream(t)
	for name, sender := range map[string]any{"another account": "666666666666", "none": nil} {
		t.Run(name, func(t *testing.T) {
			n := f.notification(sesEvent(t, map[string]any{
				"eventType": "Complaint",
				"mail":      mailOf("ses-acct-forged-1", time.Now(), map[string]any{"sendingAccountId": sender}),
				"complaint": map[string]any{"complainedRecipients": []map[string]string{{"emailAddress": "victim@example.com"}},
					"timestamp": time.Now().UTC().Format(time.RFC3339Nano)},
			}))
			code, text := f.post(t, f.providerID, sign(t, n, f.signer, "2"))
			require.Equal(t, http.StatusForbidden, code, text)
		})
	}
	require.Equal(t, before, f.eventsInStream(t), "no event published")
	require.Empty(t, f.suppressions(t, f.acct))
	require.Equal(t, msgstatus.Sent, f.get(t, f.acct, msgID).GetMessage().GetStatus())
}

// TestFeedbackStaleRefused: an SNS message published longer ago than
// REPORT_SNS_MAX_AGE (2h) or in the future, or about mail older than
// REPORT_FEEDBACK_MAX_MAIL_AGE (14 days) or sent after SNS published the
// event, is refused: a captured genuine notification cannot be replayed later.
func TestFeedbackStaleRefused(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	msgID := f.sentMessage(t, f.acct, "ses-stale-1", "victim@example.com")
	before := f.eventsInStream(t)
	bounce := func(mailAt time.Time) snsMessage {
		return f.notification(sesEvent(t, map[string]any{
			"eventType": "Bounce",
			"mail":      mailOf("ses-stale-1", mailAt, nil),
			"bounce": map[string]any{"bounceType": "Permanent", "timestamp": mailAt.UTC().Format(time.RFC3339Nano),
				"bouncedRecipients": []map[string]string{{"emailAddress": "victim@example.com"}}},
		}))
	}
	at := func(m snsMessage, ts time.Time) snsMessage {
		m["Timestamp"] = ts.UTC().Format("2006-01-02T15:04:05.000Z")
		return m
	}
	for name, m := range map[string]snsMessage{
		"sns timestamp 3h old":         at(bounce(time.Now().Add(-4*time.Hour)), time.Now().Add(-3*time.Hour)),
		"sns timestamp in the future":  at(bounce(time.Now()), time.Now().Add(time.Hour)),
		"sns timestamp not a time":     func() snsMessage { m := bounce(time.Now()); m["Timestamp"] = "yesterday"; return m }(),
		"mail 15 days old":             bounce(time.Now().Add(-15 * 24 * time.Hour)),
		"mail after the sns timestamp": at(bounce(time.Now()), time.Now().Add(-time.Hour)),
		"mail timestamp in the future": bounce(time.Now().Add(time.Hour)),
		"mail without timestamp": f.notification(sesEvent(t, map[string]any{
			"eventType": "Complaint",
			"mail":      mailOf("ses-stale-1", time.Now(), map[string]any{"timestamp": nil}),
			"complaint": map[string]any{"complainedRecipients": []map[string]string{{"emailAddress": "victim@example.com"}}},
		})),
	} {
		t.Run(name, func(t *testing.T) {
			code, text := f.post(t, f.providerID, sign(t, m, f.signer, "2"))
			require.Equal(t, http.StatusForbidden, code, text)
		})
	}
	require.Equal(t, before, f.eventsInStream(t), "no event published")
	require.Empty(t, f.suppressions(t, f.acct))
	require.Equal(t, msgstatus.Sent, f.get(t, f.acct, msgID).GetMessage().GetStatus())
}

// TestFeedbackForgedSubscriptionNotConfirmed: a validly signed subscription
// confirmation from a topic the configuration is not bound to is not
// confirmed (its SubscribeURL is never called) nor recorded; nor is an
// unsubscribe recorded.
func TestFeedbackForgedSubscriptionNotConfirmed(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	const forged = "arn:aws:sns:us-east-1:666666666666:ses-feedback"
	snsHost := strings.TrimPrefix(f.snsURL, "https://")
	for _, typ := range []string{"SubscriptionConfirmation", "UnsubscribeConfirmation"} {
		m := snsMessage{
			"Type": typ, "MessageId": uuid.NewString(), "Token": "tok-forged", "TopicArn": forged,
			"Message":      "You have chosen to subscribe to the topic " + forged + ".",
			"SubscribeURL": "https://" + snsHost + "/?Action=ConfirmSubscription&TopicArn=" + url.QueryEscape(forged) + "&Token=tok-forged",
			"Timestamp":    time.Now().UTC().Format(time.RFC3339), "SigningCertURL": f.snsURL + "/SimpleNotificationService-test.pem",
		}
		code, text := f.post(t, f.providerID, sign(t, m, f.signer, "2"))
		require.Equal(t, http.StatusForbidden, code, "%s: %s", typ, text)
	}
	f.mu.Lock()
	require.Empty(t, f.confirms, "the SubscribeURL was not called")
	f.mu.Unlock()
	var n int
	require.NoError(t, f.db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM feedback_subscriptions WHERE provider_id = $1`, f.providerID).Scan(&n))
	require.Zero(t, n)
}

func TestFeedbackHTTPS(t *testing.T) {
	t.Parallel()
	f := newSNSFixture(t)
	msgID := f.sentMessage(t, f.acct, "ses-https-1", "x@example.com")

	// The whole HTTP API is served over TLS: the ReportService gateway too.
	req, err := http.NewRequest(http.MethodGet, f.reportURL+"/v1/messages/"+msgID, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+f.acct.key)
	resp, err := f.https.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.NotNil(t, resp.TLS)
	require.Contains(t, string(body), msgID)

	// Plain HTTP to the HTTPS port is refused.
	plain, err := http.Get("http://" + strings.TrimPrefix(f.reportURL, "https://") + "/healthz")
	require.NoError(t, err)
	require.NoError(t, plain.Body.Close())
	require.Equal(t, http.StatusBadRequest, plain.StatusCode)
}

func TestFeedbackConfig(t *testing.T) {
	t.Parallel()
	var cfg report.Config
	require.NoError(t, envconfig.LoadFrom(&cfg, func(string) (string, bool) { return "", false }))
	require.Equal(t, sns.DefaultCertHostPattern, cfg.SNSCertHostPattern, "the env default is the package's")
	defaults, err := report.Config{}.WithDefaults()
	require.NoError(t, err)
	require.Equal(t, sns.DefaultCertHostPattern, defaults.SNSCertHostPattern)

	for name, c := range map[string]report.Config{
		"cert without key": {TLSCertFile: "report.crt"},
		"key without cert": {TLSKeyFile: "report.key"},
		"bad host pattern": {SNSCertHostPattern: "("},
		"bad topic":        {SNSTopicARNs: []string{"arn:aws:sns:["}},
	} {
		_, err := report.New(c, report.Deps{})
		require.Error(t, err, name)
	}
}
