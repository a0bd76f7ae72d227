package e2e

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report"
)

// TestSESFeedbackSuppresses: a message SENT (through the sandbox, whose
// provider message id is "sandbox-<id>"), then SES reports a hard bounce for
// it through SNS to the report's feedback endpoint of the account's SES
// provider configuration: the recipient is BOUNCED, the address is on the
// account's suppression list, and the next message to it is SUPPRESSED.
func TestSESFeedbackSuppresses(t *testing.T) {
	t.Parallel()
	// SNS: an HTTPS server on 127.0.0.1 serving the signing certificate.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sns.amazonaws.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	snsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}))
	t.Cleanup(snsSrv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(snsSrv.Certificate())

	s := newStack(t, stackOptions{http: true, report: func(c *report.Config, d *report.Deps) {
		c.SNSCertHostPattern = `^127\.0\.0\.1$`
		d.SNSRootCAs = roots
	}})
	ctx := s.ctx("sandbox")
	put, err := s.account.PutProvider(ctx, &v1.PutProviderRequest{Name: "ses", Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{
		Region: "us-east-1", AccessKeyId: "AKIAFEEDBACKTEST", SecretAccessKey: "secret"}}})
	require.NoError(t, err)
	sesProvider := put.GetProvider().GetId()

	id := s.sendOK("sandbox", simple("Gone@Example.org"))
	sent := s.waitStatus("sandbox", id, v1.MessageStatus_DELIVERED)
	require.Equal(t, "sandbox-"+id, sent.GetMessage().GetProviderMessageId())

	event, err := json.Marshal(map[string]any{
		"eventType": "Bounce",
		"mail":      map[string]any{"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "messageId": "sandbox-" + id},
		"bounce": map[string]any{"bounceType": "Permanent", "bounceSubType": "General", "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
			"bouncedRecipients": []map[string]string{{"emailAddress": "gone@example.org", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}}},
	})
	require.NoError(t, err)
	msg := map[string]string{
		"Type": "Notification", "MessageId": uuid.NewString(), "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses",
		"Message": string(event), "Timestamp": time.Now().UTC().Format(time.RFC3339),
		"SigningCertURL": snsSrv.URL + "/SimpleNotificationService-e2e.pem", "SignatureVersion": "2",
	}
	toSign := ""
	for _, k := range []string{"Message", "MessageId", "Timestamp", "TopicArn", "Type"} {
		toSign += k + "\n" + msg[k] + "\n"
	}
	digest := sha256.Sum256([]byte(toSign))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	require.NoError(t, err)
	msg["Signature"] = base64.StdEncoding.EncodeToString(sig)
	body, err := json.Marshal(msg)
	require.NoError(t, err)

	resp, err := http.Post(s.reportURL+report.FeedbackPathPrefix+sesProvider, "text/plain", bytes.NewReader(body))
	require.NoError(t, err)
	text, _ := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", text)

	bounced := s.waitStatus("sandbox", id, v1.MessageStatus_BOUNCED)
	require.Contains(t, bounced.GetMessage().GetLastError(), "hard bounce")
	sups, err := s.account.ListSuppressions(ctx, &v1.ListSuppressionsRequest{PageSize: 10})
	require.NoError(t, err)
	require.Len(t, sups.GetSuppressions(), 1)
	require.Equal(t, "gone@example.org", sups.GetSuppressions()[0].GetAddress())
	require.Equal(t, "bounce", sups.GetSuppressions()[0].GetReason())

	next := s.sendOK("sandbox", simple("gone@example.org"))
	s.waitStatus("sandbox", next, v1.MessageStatus_SUPPRESSED)
}
