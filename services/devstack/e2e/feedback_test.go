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

	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/testkit/sestest"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report"
)

// TestSESFeedbackSuppresses: a message SENT through the account's SES
// provider configuration (the SES emulator), bound to its AWS account and
// SNS topic; SES reports a hard bounce for it through SNS to the report's
// feedback endpoint of that configuration: the recipient is BOUNCED, the
// address is on the account's suppression list, and the next message to it
// is SUPPRESSED. The same bounce, validly signed, from another topic or
// about another AWS account's mail, or naming our (public) message id
// instead of the SES message id, is refused or ignored.
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
	emu := sestest.StartEmulator(t)

	s := newStack(t, stackOptions{http: true, outbound: kinds.Config{SESEndpoint: emu.URL}, report: func(c *report.Config, d *report.Deps) {
		c.SNSCertHostPattern = `^127\.0\.0\.1$`
		d.SNSRootCAs = roots
	}})
	const (
		awsAccount = "123456789012"
		topic      = "arn:aws:sns:eu-west-1:123456789012:ses-events"
	)
	ctx := s.ctx("a")
	put, err := s.account.PutProvider(ctx, &v1.PutProviderRequest{Name: "ses", Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{
		Region: "eu-west-1", AccessKeyId: "AKIAE2EFEEDBACK00001", SecretAccessKey: sesSecret,
		AwsAccountId: awsAccount, FeedbackTopicArns: []string{topic}}}})
	require.NoError(t, err)
	sesProvider := put.GetProvider().GetId()
	require.Equal(t, awsAccount, put.GetProvider().GetSes().GetAwsAccountId())
	require.Equal(t, []string{topic}, put.GetProvider().GetSes().GetFeedbackTopicArns())

	req := simple("Gone@Example.org")
	req.ProviderId = sesProvider
	id := s.sendOK("a", req)
	sent := s.waitStatus("a", id, v1.MessageStatus_SENT)
	sesID := sent.GetMessage().GetProviderMessageId()
	require.NotEmpty(t, sesID)

	post := func(topicARN, sendingAccount, sesMessageID string) (int, string) {
		event, err := json.Marshal(map[string]any{
			"eventType": "Bounce",
			"mail": map[string]any{"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "messageId": sesMessageID,
				"sendingAccountId": sendingAccount, "tags": map[string][]string{"emailsender-message-id": {id}}},
			"bounce": map[string]any{"bounceType": "Permanent", "bounceSubType": "General", "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
				"bouncedRecipients": []map[string]string{{"emailAddress": "gone@example.org", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}}},
		})
		require.NoError(t, err)
		msg := map[string]string{
			"Type": "Notification", "MessageId": uuid.NewString(), "TopicArn": topicARN,
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
		return resp.StatusCode, string(text)
	}

	// Forged: validly signed by SNS, but from another AWS account's topic,
	// about another account's mail, or naming our public message id only.
	code, text := post("arn:aws:sns:eu-west-1:666666666666:ses-events", awsAccount, sesID)
	require.Equal(t, http.StatusForbidden, code, "another topic: %s", text)
	code, text = post(topic, "666666666666", sesID)
	require.Equal(t, http.StatusForbidden, code, "another AWS account: %s", text)
	code, text = post(topic, awsAccount, id)
	require.Equal(t, http.StatusServiceUnavailable, code, "our message id is not the SES message id: %s", text)
	sups, err := s.account.ListSuppressions(ctx, &v1.ListSuppressionsRequest{PageSize: 10})
	require.NoError(t, err)
	require.Empty(t, sups.GetSuppressions())
	require.Equal(t, v1.MessageStatus_SENT, s.waitStatus("a", id, v1.MessageStatus_SENT).GetMessage().GetStatus())

	code, text = post(topic, awsAccount, sesID)
	require.Equal(t, http.StatusOK, code, "%s", text)
	bounced := s.waitStatus("a", id, v1.MessageStatus_BOUNCED)
	require.Contains(t, bounced.GetMessage().GetLastError(), "hard bounce")
	sups, err = s.account.ListSuppressions(ctx, &v1.ListSuppressionsRequest{PageSize: 10})
	require.NoError(t, err)
	require.Len(t, sups.GetSuppressions(), 1)
	require.Equal(t, "gone@example.org", sups.GetSuppressions()[0].GetAddress())
	require.Equal(t, "bounce", sups.GetSuppressions()[0].GetReason())

	next := simple("gone@example.org")
	next.ProviderId = sesProvider
	s.waitStatus("a", s.sendOK("a", next), v1.MessageStatus_SUPPRESSED)
}
