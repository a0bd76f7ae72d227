package ses

import (
	"regexp"
	"slices"
	"strings"

	"github.com/namirasoft/email-sender/pkg/provider"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Kind is the provider kind configurations name this provider by.
const Kind = "ses"

// Settings are the non-secret settings of an ses provider configuration: the
// settings JSON stored by ingest (the API's SesSettings) and read by the
// sender (provider.Config.Settings).
type Settings struct {
	Region           string `json:"region"`
	AccessKeyID      string `json:"access_key_id"`
	ConfigurationSet string `json:"configuration_set,omitempty"`
	// Endpoint is no longer a tenant setting: the SES endpoint is the
	// operator's (SES_ENDPOINT, Options.Endpoint), or a tenant could point
	// ingest and the workers at internal addresses and have a fake endpoint
	// vouch for sender identities. Normalize refuses it; a value stored by an
	// earlier version is ignored.
	Endpoint string `json:"endpoint,omitempty"`
	// AWSAccountID is the 12-digit AWS account the configuration sends from
	// (SES's mail.sendingAccountId). SES feedback is accepted only when it
	// and FeedbackTopicARNs are set (FeedbackBound), and only for mail of
	// this account.
	AWSAccountID string `json:"aws_account_id,omitempty"`
	// FeedbackTopicARNs are the SNS topics SES publishes this configuration's
	// events to: the only topics whose notifications (and subscription
	// confirmations) the feedback endpoint accepts for it.
	FeedbackTopicARNs []string `json:"feedback_topic_arns,omitempty"`
}

// MaxFeedbackTopics bounds Settings.FeedbackTopicARNs.
const MaxFeedbackTopics = 10

// FeedbackBound reports whether feedback can be accepted for s: it names its
// AWS account and at least one SNS topic.
func (s Settings) FeedbackBound() bool {
	return s.AWSAccountID != "" && len(s.FeedbackTopicARNs) > 0
}

// FeedbackTopic reports whether arn is one of s's feedback topics (exactly).
func (s Settings) FeedbackTopic(arn string) bool {
	return slices.Contains(s.FeedbackTopicARNs, arn)
}

// Secret is the secret settings of an ses configuration (sealed by ingest,
// provider.Config.Secret).
type Secret struct {
	SecretAccessKey string `json:"secret_access_key,omitempty"`
}

// Fields names the secret fields that are set.
func (s Secret) Fields() []string {
	if s.SecretAccessKey == "" {
		return nil
	}
	return []string{"secret_access_key"}
}

var (
	regionRE    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	accountIDRE = regexp.MustCompile(`^[0-9]{12}$`)
	// topicARNRE is an SNS topic ARN: partition, region, account, name
	// (letters, digits, - and _, up to 256 with a FIFO topic's .fifo).
	topicARNRE = regexp.MustCompile(`^arn:aws(-cn|-us-gov)?:sns:[a-z]{2}(-[a-z]+)+-[0-9]+:[0-9]{12}:([A-Za-z0-9_-]{1,256}|[A-Za-z0-9_-]{1,251}[.]fifo)$`)
)

// Normalize validates s with its secret. Errors are *provider.FieldError
// naming the API field and never quote the secret.
func (s *Settings) Normalize(sec Secret) error {
	s.Region = strings.TrimSpace(s.Region)
	if s.Region == "" {
		return provider.Invalid("region", "is required")
	}
	if !regionRE.MatchString(s.Region) {
		return provider.Invalid("region", "%q is not an AWS region such as eu-west-1", s.Region)
	}
	if s.AccessKeyID == "" {
		return provider.Invalid("access_key_id", "is required")
	}
	if err := provider.CheckPlain(s.AccessKeyID); err != nil {
		return provider.Invalid("access_key_id", "%s", err)
	}
	if sec.SecretAccessKey == "" {
		return provider.Invalid("secret_access_key", "is required")
	}
	if err := provider.CheckPlain(s.ConfigurationSet); err != nil {
		return provider.Invalid("configuration_set", "%s", err)
	}
	if s.Endpoint != "" {
		return provider.Invalid("endpoint", "is an operator setting (SES_ENDPOINT of ingest and the worker), not a provider setting; leave it empty")
	}
	return s.normalizeFeedback()
}

// normalizeFeedback validates the feedback binding: the account id and the
// topic ARNs (trimmed, duplicates dropped).
func (s *Settings) normalizeFeedback() error {
	s.AWSAccountID = strings.TrimSpace(s.AWSAccountID)
	if s.AWSAccountID != "" && !accountIDRE.MatchString(s.AWSAccountID) {
		return provider.Invalid("aws_account_id", "%q is not a 12-digit AWS account id", s.AWSAccountID)
	}
	var topics []string
	for _, t := range s.FeedbackTopicARNs {
		t = strings.TrimSpace(t)
		if !topicARNRE.MatchString(t) {
			return provider.Invalid("feedback_topic_arns", "%q is not an SNS topic ARN such as arn:aws:sns:eu-west-1:123456789012:ses-events", t)
		}
		if !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	if len(topics) > MaxFeedbackTopics {
		return provider.Invalid("feedback_topic_arns", "has %d topics: at most %d", len(topics), MaxFeedbackTopics)
	}
	if len(topics) > 0 && s.AWSAccountID == "" {
		return provider.Invalid("aws_account_id", "is required with feedback_topic_arns: feedback is accepted only for mail of this AWS account")
	}
	s.FeedbackTopicARNs = topics
	return nil
}

// FromAPI is the settings and secret that in (the API's SesSettings) sets,
// not yet normalized; an empty secret_access_key keeps stored's.
func FromAPI(in *emailsenderv1.SesSettings, stored Secret) (Settings, Secret) {
	s := Settings{Region: in.GetRegion(), AccessKeyID: in.GetAccessKeyId(),
		ConfigurationSet: in.GetConfigurationSet(), Endpoint: in.GetEndpoint(),
		AWSAccountID: in.GetAwsAccountId(), FeedbackTopicARNs: slices.Clone(in.GetFeedbackTopicArns())}
	sec := stored
	if k := in.GetSecretAccessKey(); k != "" {
		sec.SecretAccessKey = k
	}
	return s, sec
}

// API is s as the API shows it: no secret.
func (s Settings) API() *emailsenderv1.SesSettings {
	return &emailsenderv1.SesSettings{Region: s.Region, AccessKeyId: s.AccessKeyID,
		ConfigurationSet: s.ConfigurationSet,
		AwsAccountId:     s.AWSAccountID, FeedbackTopicArns: slices.Clone(s.FeedbackTopicARNs)}
}
