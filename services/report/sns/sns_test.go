package sns

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStringToSign(t *testing.T) {
	t.Parallel()
	subject := "Hi"
	n := &Message{Type: TypeNotification, MessageID: "m1", TopicArn: "arn:t", Message: "body\nline", Timestamp: "2026-01-01T00:00:00.000Z",
		Token: "ignored", SubscribeURL: "https://ignored"}
	require.Equal(t, "Message\nbody\nline\nMessageId\nm1\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\narn:t\nType\nNotification\n", n.StringToSign())
	n.Subject = &subject
	require.Equal(t, "Message\nbody\nline\nMessageId\nm1\nSubject\nHi\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\narn:t\nType\nNotification\n", n.StringToSign())

	c := &Message{Type: TypeSubscriptionConfirmation, MessageID: "m2", TopicArn: "arn:t", Message: "confirm", Timestamp: "ts",
		Token: "tok", SubscribeURL: "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription", Subject: &subject}
	require.Equal(t, "Message\nconfirm\nMessageId\nm2\nSubscribeURL\nhttps://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription\n"+
		"Timestamp\nts\nToken\ntok\nTopicArn\narn:t\nType\nSubscriptionConfirmation\n", c.StringToSign())
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	v, err := NewVerifier(Config{})
	require.NoError(t, err)
	for raw, ok := range map[string]bool{
		"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem":         true,
		"https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem":     true,
		"http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem":          false,
		"https://sns.us-east-1.amazonaws.com.evil.example/x.pem":                        false,
		"https://evilsns.us-east-1.amazonaws.com/x.pem":                                 false,
		"https://sns.us-east-1.amazonaws.com@evil.example/x.pem":                        false,
		"https://user@sns.us-east-1.amazonaws.com/x.pem":                                false,
		"https://s3.amazonaws.com/sns.us-east-1.amazonaws.com/x.pem":                    false,
		"https://SNS.US-EAST-1.AMAZONAWS.COM/SimpleNotificationService-abc.pem":         false,
		"//sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem":               false,
		"https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem":    true,
		"https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem":     true,
		"https://sns.us-east-1.amazonaws.com./SimpleNotificationService-abc.pem":        false,
		"https://sns.us-east-1.amazonaws.com%2F.evil/SimpleNotificationService-abc.pem": false,
	} {
		_, err := v.checkURL(raw, "SigningCertURL")
		if ok {
			require.NoError(t, err, raw)
		} else {
			require.ErrorIs(t, err, ErrInvalid, raw)
		}
	}
}
