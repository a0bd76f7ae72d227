package ses_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/ses"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

const topic = "arn:aws:sns:eu-west-1:123456789012:ses-events"

// TestSettingsFeedbackBinding: the AWS account and SNS topics a configuration
// accepts feedback from are validated field by field, and map to and from
// the API.
func TestSettingsFeedbackBinding(t *testing.T) {
	t.Parallel()
	base := func() ses.Settings { return ses.Settings{Region: "eu-west-1", AccessKeyID: "AKIA0000000000000001"} }
	sec := ses.Secret{SecretAccessKey: "s3cr3t"}
	for _, tc := range []struct {
		name    string
		account string
		topics  []string
		field   string // "" when valid
	}{
		{name: "none (feedback refused)"},
		{name: "bound", account: "123456789012", topics: []string{topic, " arn:aws-cn:sns:cn-north-1:123456789012:fb.fifo ", topic}},
		{name: "topic of another account", account: "123456789012", topics: []string{"arn:aws:sns:eu-west-1:210987654321:shared"}},
		{name: "account alone", account: "123456789012"},
		{name: "account id short", account: "12345678901", field: "aws_account_id"},
		{name: "account id letters", account: "12345678901a", field: "aws_account_id"},
		{name: "topics without account", topics: []string{topic}, field: "aws_account_id"},
		{name: "not an arn", account: "123456789012", topics: []string{"ses-events"}, field: "feedback_topic_arns"},
		{name: "sqs arn", account: "123456789012", topics: []string{"arn:aws:sqs:eu-west-1:123456789012:q"}, field: "feedback_topic_arns"},
		{name: "pattern", account: "123456789012", topics: []string{"arn:aws:sns:*:123456789012:*"}, field: "feedback_topic_arns"},
		{name: "short account in arn", account: "123456789012", topics: []string{"arn:aws:sns:eu-west-1:1234:t"}, field: "feedback_topic_arns"},
		{name: "bad region", account: "123456789012", topics: []string{"arn:aws:sns:moon:123456789012:t"}, field: "feedback_topic_arns"},
		{name: "name too long", account: "123456789012", topics: []string{"arn:aws:sns:eu-west-1:123456789012:" + strings.Repeat("a", 257)}, field: "feedback_topic_arns"},
		{name: "too many", account: "123456789012", topics: func() []string {
			var ts []string
			for i := range ses.MaxFeedbackTopics + 1 {
				ts = append(ts, fmt.Sprintf("arn:aws:sns:eu-west-1:123456789012:t%d", i))
			}
			return ts
		}(), field: "feedback_topic_arns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			s.AWSAccountID, s.FeedbackTopicARNs = tc.account, tc.topics
			err := s.Normalize(sec)
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			var fe *provider.FieldError
			require.True(t, errors.As(err, &fe), "%v", err)
			require.Equal(t, tc.field, fe.Field, fe.Reason)
		})
	}

	s := base()
	s.AWSAccountID, s.FeedbackTopicARNs = " 123456789012 ", []string{topic, topic + " "}
	require.NoError(t, s.Normalize(sec))
	require.Equal(t, "123456789012", s.AWSAccountID)
	require.Equal(t, []string{topic}, s.FeedbackTopicARNs, "trimmed, duplicates dropped")
	require.True(t, s.FeedbackBound())
	require.True(t, s.FeedbackTopic(topic))
	require.False(t, s.FeedbackTopic("arn:aws:sns:eu-west-1:123456789012:other"))
	require.False(t, base().FeedbackBound())

	in := &emailsenderv1.SesSettings{Region: "eu-west-1", AccessKeyId: "AKIA0000000000000001",
		AwsAccountId: "123456789012", FeedbackTopicArns: []string{topic}}
	got, _ := ses.FromAPI(in, sec)
	require.Equal(t, "123456789012", got.AWSAccountID)
	require.Equal(t, []string{topic}, got.FeedbackTopicARNs)
	out := got.API()
	require.Equal(t, "123456789012", out.GetAwsAccountId())
	require.Equal(t, []string{topic}, out.GetFeedbackTopicArns())
}
