package ses

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/namirasoft/email-sender/pkg/provider"
)

// AccountInfo is what GetAccount says about the SES account of a configuration.
type AccountInfo struct {
	Max24HourSend     float64
	MaxSendRate       float64
	SentLast24Hours   float64
	ProductionAccess  bool // false: the account is in the SES sandbox
	SendingEnabled    bool
	EnforcementStatus string // HEALTHY, PROBATION, SHUTDOWN
}

// String is a one-line summary, e.g. for a verification's detail.
func (a AccountInfo) String() string {
	mode := "sandbox"
	if a.ProductionAccess {
		mode = "production"
	}
	sending := "sending enabled"
	if !a.SendingEnabled {
		sending = "sending paused"
	}
	s := fmt.Sprintf("%s account, %s, max send rate %g/s, %g of %g sent in the last 24 h",
		mode, sending, a.MaxSendRate, a.SentLast24Hours, a.Max24HourSend)
	if a.EnforcementStatus != "" {
		s += ", enforcement status " + a.EnforcementStatus
	}
	return s
}

// Verify calls GetAccount with cfg, sending nothing. Refused credentials (or a
// suspended account) match ErrCredentials.
func (s *Sender) Verify(ctx context.Context, cfg provider.Config) error {
	_, err := Verify(ctx, cfg)
	return err
}

// Verify calls GetAccount with cfg and returns the account's sending quota and
// status. Errors of refused credentials match ErrCredentials; invalid
// settings ErrSettings. Secrets never appear in the error.
func Verify(ctx context.Context, cfg provider.Config) (AccountInfo, error) {
	c, err := parseConfig(cfg)
	if err != nil {
		return AccountInfo{}, err
	}
	info, err := getAccount(ctx, newAPI(c, nil))
	return info, redactSecret(err, c.secret)
}

func getAccount(ctx context.Context, api *sesv2.Client) (AccountInfo, error) {
	out, err := api.GetAccount(ctx, &sesv2.GetAccountInput{})
	if err != nil {
		return AccountInfo{}, callError(ctx, "GetAccount", err)
	}
	info := AccountInfo{
		ProductionAccess:  out.ProductionAccessEnabled,
		SendingEnabled:    out.SendingEnabled,
		EnforcementStatus: aws.ToString(out.EnforcementStatus),
	}
	if q := out.SendQuota; q != nil {
		info.Max24HourSend, info.MaxSendRate, info.SentLast24Hours = q.Max24HourSend, q.MaxSendRate, q.SentLast24Hours
	}
	return info, nil
}

// IdentityVerified reports whether identity (an address or a domain) is an
// SES identity of cfg's account verified for sending (GetEmailIdentity's
// VerifiedForSendingStatus). An identity SES does not know is not verified
// (false, nil).
func IdentityVerified(ctx context.Context, cfg provider.Config, identity string) (bool, error) {
	c, err := parseConfig(cfg)
	if err != nil {
		return false, err
	}
	out, err := newAPI(c, nil).GetEmailIdentity(ctx, &sesv2.GetEmailIdentityInput{EmailIdentity: aws.String(identity)})
	if err != nil {
		var api *APIError
		cerr := callError(ctx, "GetEmailIdentity", err)
		if errors.As(cerr, &api) && api.Code == "NotFoundException" {
			return false, nil
		}
		return false, redactSecret(cerr, c.secret)
	}
	return out.VerifiedForSendingStatus, nil
}

// callError turns an SES call's error into an *APIError (an answer of SES) or
// a network error, named after the operation.
func callError(ctx context.Context, op string, err error) error {
	out := classify(ctx, err, false)
	var api *APIError
	if errors.As(out.Err, &api) {
		return fmt.Errorf("%s: %w", op, api)
	}
	return fmt.Errorf("%s: %s", op, strings.TrimPrefix(out.Err.Error(), "ses: "))
}
