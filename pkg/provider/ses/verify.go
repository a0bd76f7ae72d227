package ses

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/namirasoft/email-sender/pkg/mime"
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
	_, err := s.Account(ctx, cfg)
	return err
}

// Account calls GetAccount with cfg and returns the account's sending quota
// and status. Errors of refused credentials match ErrCredentials; invalid
// settings ErrSettings. Secrets never appear in the error.
func (s *Sender) Account(ctx context.Context, cfg provider.Config) (AccountInfo, error) {
	c, err := parseConfig(cfg)
	if err != nil {
		return AccountInfo{}, err
	}
	info, err := getAccount(ctx, newAPI(c, s.http, s.opts.Endpoint))
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
func (s *Sender) IdentityVerified(ctx context.Context, cfg provider.Config, identity string) (bool, error) {
	c, err := parseConfig(cfg)
	if err != nil {
		return false, err
	}
	out, err := newAPI(c, s.http, s.opts.Endpoint).GetEmailIdentity(ctx, &sesv2.GetEmailIdentityInput{EmailIdentity: aws.String(identity)})
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
	return &opError{msg: op + ": " + strings.TrimPrefix(out.Err.Error(), "ses: "), err: out.Err}
}

// opError is a failed call's error named after the operation; errors.Is
// still reaches its cause (netguard.ErrRefused, context errors).
type opError struct {
	msg string
	err error
}

func (e *opError) Error() string { return e.msg }
func (e *opError) Unwrap() error { return e.err }

// Check is Verify as ingest's VerifyProvider records it: GetAccount's sending
// quota and status. Refused credentials, a suspended account or paused
// sending make the configuration unhealthy.
func (s *Sender) Check(ctx context.Context, cfg provider.Config) provider.Verification {
	info, err := s.Account(ctx, cfg)
	if err != nil {
		if errors.Is(err, ErrCredentials) {
			return provider.Verification{Detail: err.Error(), Healthy: provider.Unhealthy()}
		}
		return provider.Verification{Detail: err.Error()}
	}
	v := provider.Verification{OK: info.SendingEnabled, Detail: "SES GetAccount: " + info.String() + "; nothing was sent",
		Quota: &provider.Quota{Max24HourSend: info.Max24HourSend, MaxSendRate: info.MaxSendRate, SentLast24Hours: info.SentLast24Hours,
			ProductionAccess: info.ProductionAccess, SendingEnabled: info.SendingEnabled}}
	if info.SendingEnabled {
		v.Healthy = provider.Healthy()
	} else {
		v.Healthy = provider.Unhealthy()
	}
	return v
}

// SenderVerified reports whether cfg's SES account has an identity verified
// for sending that covers a sender: the address itself or its domain (sender
// is an address, or a domain when isDomain). An error (SES unreachable,
// refused credentials) names the identity asked about and means "not known".
func (s *Sender) SenderVerified(ctx context.Context, cfg provider.Config, sender string, isDomain bool) (bool, error) {
	addr := sender
	if isDomain {
		addr = "postmaster@" + sender
	}
	ascii, err := mime.CanonicalAddress(addr)
	if err != nil {
		return false, nil
	}
	domain := ascii[strings.LastIndexByte(ascii, '@')+1:]
	identities := []string{domain}
	if !isDomain {
		identities = []string{ascii, domain}
	}
	for _, id := range identities {
		ok, err := s.IdentityVerified(ctx, cfg, id)
		if err != nil {
			return false, fmt.Errorf("identity %s: %w", id, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}
