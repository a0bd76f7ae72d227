package account

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// codeDigits is the length of a mailed sender code: 10^8 values against at
// most maxCodeAttempts guesses per code.
const codeDigits = 8

func newCode() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(100_000_000))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%0*d", codeDigits, n.Int64()), nil
}

// AddSender registers a sender and mails it a code.
//
// The code is mailed through the account's provider (provider_id, else the
// default): proving that the address receives mail and, just as much, that
// this provider may send from it. So the verification mail is sent from the
// address itself to itself, unless VERIFICATION_FROM names a fixed From (for
// providers configured to send as one system address). A domain (no "@") can
// be added only for an SES provider, where it is verified as an SES identity;
// it stays pending until then. AddSender again on a pending sender mails a new
// code (the old one dies).
func (s *Server) AddSender(ctx context.Context, req *emailsenderv1.AddSenderRequest) (*emailsenderv1.AddSenderResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	raw := strings.TrimSpace(req.GetAddress())
	if raw == "" {
		return nil, fieldErr(codes.InvalidArgument, "address", "is required")
	}
	isDomain := !strings.Contains(raw, "@")
	var parsed address.Address
	if isDomain {
		parsed, err = address.Parse("postmaster@" + raw)
	} else {
		parsed, err = address.Parse(raw)
	}
	if err != nil {
		return nil, fieldErr(codes.InvalidArgument, "address", fmt.Sprintf("%q is not a valid address or domain: %s", raw,
			strings.TrimPrefix(err.Error(), address.ErrInvalid.Error()+": ")))
	}
	key := parsed.Lower()
	if isDomain {
		key = parsed.Domain
	}
	prov, err := store.ResolveProvider(ctx, s.d.DB, p.AccountID, req.GetProviderId())
	var (
		unknown *store.UnknownProviderError
	)
	switch {
	case errors.As(err, &unknown), errors.Is(err, store.ErrNoDefaultProvider):
		return nil, fieldErr(codes.FailedPrecondition, "provider_id", err.Error())
	case err != nil:
		return nil, internal(ctx, s.log, "resolve provider", err)
	}
	now := s.now()
	ns := store.NewPendingSender{ID: uuid.NewString(), AccountID: p.AccountID, Address: key, IsDomain: isDomain,
		ProviderID: prov.ID, Now: now}
	kind, _ := kinds.Lookup(prov.Kind)
	var code string
	if isDomain {
		if kind.SenderVerified == nil {
			return nil, fieldErr(codes.InvalidArgument, "address",
				"a whole domain can be added only with an SES provider (it is verified as an SES identity); add an address instead")
		}
		ns.Method = store.MethodSESIdentity
	} else {
		if code, err = newCode(); err != nil {
			return nil, internal(ctx, s.log, "new code", err)
		}
		ns.Method = store.MethodCode
		ns.CodeHash = store.SenderCodeHash(p.AccountID, key, code)
		ns.CodeExpires = now.Add(s.cfg.CodeTTL)
	}
	var sender store.Sender
	if s.senderVerified(ctx, kind, p.AccountID, prov.ID, key, isDomain) {
		// An identity already verified in SES (the address or its domain) counts: no code.
		ns.Method, ns.CodeHash, ns.CodeExpires, code = store.MethodSESIdentity, nil, time.Time{}, ""
		sender, err = store.PutVerifiedSender(ctx, s.d.DB, ns)
	} else {
		sender, err = store.PutPendingSender(ctx, s.d.DB, ns)
	}
	if errors.Is(err, store.ErrSenderVerified) {
		return nil, fieldErr(codes.AlreadyExists, "address", fmt.Sprintf("%q %s", key, err))
	}
	if err != nil {
		return nil, internal(ctx, s.log, "add sender", err)
	}
	if sender.Status == store.SenderVerified {
		s.configChanged(ctx, p.AccountID)
	}
	if code != "" {
		if _, err := s.d.Mailer.SendSystem(ctx, p.AccountID, s.verificationMail(parsed.String(), prov.ID, code)); err != nil {
			return nil, err
		}
	}
	s.log.InfoContext(ctx, "sender added", "account_id", p.AccountID, "sender_id", sender.ID, "provider_id", prov.ID, "method", ns.Method)
	return &emailsenderv1.AddSenderResponse{Sender: senderProto(sender)}, nil
}

func (s *Server) verificationMail(to, providerID, code string) *emailsenderv1.SendEmailRequest {
	from := s.cfg.VerificationFrom
	if from == "" {
		from = to
	}
	return &emailsenderv1.SendEmailRequest{ProviderId: providerID, Message: &emailsenderv1.EmailMessage{
		From:    &emailsenderv1.Address{Address: from, Name: "Email Sender verification"},
		To:      []*emailsenderv1.Address{{Address: to}},
		Subject: "Verify your sender address",
		TextBody: fmt.Sprintf("Your verification code for sending as %s is:\n\n    %s\n\n"+
			"Enter it with AccountService.VerifySender within %s. If you did not ask for this, ignore this mail.\n",
			to, code, s.cfg.CodeTTL),
		Tags: map[string]string{"emailsender": store.VerificationTag},
	}}
}

// VerifySender confirms a sender with its mailed code.
func (s *Server) VerifySender(ctx context.Context, req *emailsenderv1.VerifySenderRequest) (*emailsenderv1.VerifySenderResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	code := strings.TrimSpace(req.GetCode())
	if code == "" {
		return nil, fieldErr(codes.InvalidArgument, "code", "is required")
	}
	sender, err := store.VerifySenderCode(ctx, s.d.DB, p.AccountID, req.GetId(), code, s.now(), maxCodeAttempts)
	var wrong *store.WrongCodeError
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fieldErr(codes.NotFound, "id", "no such sender in this account")
	case errors.Is(err, store.ErrNoCode):
		return nil, fieldErr(codes.FailedPrecondition, "id", err.Error())
	case errors.Is(err, store.ErrCodeExpired):
		return nil, fieldErr(codes.FailedPrecondition, "code", err.Error())
	case errors.As(err, &wrong):
		return nil, fieldErr(codes.InvalidArgument, "code", wrong.Error())
	case err != nil:
		return nil, internal(ctx, s.log, "verify sender", err)
	}
	s.configChanged(ctx, p.AccountID)
	s.log.InfoContext(ctx, "sender verified", "account_id", p.AccountID, "sender_id", sender.ID)
	return &emailsenderv1.VerifySenderResponse{Sender: senderProto(sender)}, nil
}

// ListSenders lists the account's senders.
func (s *Server) ListSenders(ctx context.Context, _ *emailsenderv1.ListSendersRequest) (*emailsenderv1.ListSendersResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	list, err := store.ListSenders(ctx, s.d.DB, p.AccountID)
	if err != nil {
		return nil, internal(ctx, s.log, "list senders", err)
	}
	out := &emailsenderv1.ListSendersResponse{}
	for _, x := range list {
		out.Senders = append(out.Senders, senderProto(x))
	}
	return out, nil
}

// RemoveSender deletes a sender; sending from it is refused from then on.
func (s *Server) RemoveSender(ctx context.Context, req *emailsenderv1.RemoveSenderRequest) (*emailsenderv1.RemoveSenderResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	err = store.RemoveSender(ctx, s.d.DB, p.AccountID, req.GetId())
	if errors.Is(err, store.ErrNotFound) {
		return nil, fieldErr(codes.NotFound, "id", "no such sender in this account")
	}
	if err != nil {
		return nil, internal(ctx, s.log, "remove sender", err)
	}
	s.configChanged(ctx, p.AccountID)
	return &emailsenderv1.RemoveSenderResponse{}, nil
}

func senderProto(x store.Sender) *emailsenderv1.Sender {
	return &emailsenderv1.Sender{
		Id: x.ID, Address: x.Address, IsDomain: x.IsDomain, Status: x.Status, Method: x.Method,
		CreatedAt: timestamppb.New(x.CreatedAt), VerifiedAt: ts(x.VerifiedAt), ProviderId: x.ProviderID,
	}
}
