package send

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"

	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
	"github.com/namirasoft/email-sender/services/ingest/validate"
)

// lookups are what prepare needs to know about a call's from addresses: which
// are verified senders of the account (from the directory: its cache, or one
// round trip for the whole call).
type lookups struct {
	checkSenders bool
	verified     map[string]store.SenderGrant
}

type systemKey struct{}

// SendSystem accepts a message ingest itself writes on behalf of accountID (the
// sender verification mail) through the same path as SendEmail (validation,
// store, outbox, publish), without the verified-sender check.
// Its errors are gRPC statuses, like SendEmail's.
func (s *Server) SendSystem(ctx context.Context, accountID string, req *emailsenderv1.SendEmailRequest) (*emailsenderv1.SendEmailResponse, error) {
	results, err := s.accept(context.WithValue(ctx, systemKey{}, true), accountID, []*emailsenderv1.SendEmailRequest{req})
	if err != nil {
		return nil, statusOf(ctx, s.log, err, "").Err()
	}
	if r := results[0]; r.err != nil {
		return nil, statusOf(ctx, s.log, r.err, "").Err()
	}
	return results[0].resp, nil
}

// lookup fetches the lookups of the valid requests (nil entries are
// skipped), from their canonical addresses.
func (s *Server) lookup(ctx context.Context, accountID string, valid []*validate.Request) (*lookups, error) {
	l := &lookups{checkSenders: s.cfg.RequireVerifiedSenders && ctx.Value(systemKey{}) == nil}
	if !l.checkSenders {
		return l, nil
	}
	var froms []string
	seen := map[string]bool{}
	for _, v := range valid {
		if v != nil && !seen[v.From] {
			seen[v.From] = true
			froms = append(froms, v.From)
		}
	}
	if len(froms) == 0 {
		return l, nil
	}
	var err error
	if l.verified, err = s.dir.senders(ctx, accountID, froms); err != nil {
		return nil, err
	}
	return l, nil
}

// checkSender refuses an unverified from address.
func (l *lookups) checkSender(v *validate.Request) error {
	if !l.checkSenders || l.verified[v.From].Verified() {
		return nil
	}
	return &validate.Error{Field: "message.from.address", Code: codes.FailedPrecondition,
		Description: fmt.Sprintf("%q is not a verified sender of this account (AccountService.AddSender, then VerifySender)", v.Message.GetFrom().GetAddress())}
}

// checkSenderProvider refuses a from address verified only by other
// providers' identity checks (an SES identity of provider P vouches for sends
// through P, not through the account's other providers).
func (l *lookups) checkSenderProvider(v *validate.Request, providerID string) error {
	g := l.verified[v.From]
	if !l.checkSenders || g.Allows(providerID) {
		return nil
	}
	return &validate.Error{Field: "message.from.address", Code: codes.FailedPrecondition,
		Description: fmt.Sprintf("%q is verified only as an identity of provider %s, for sends through that provider; "+
			"send through it (provider_id), or verify the address for every provider with a mailed code "+
			"(AccountService.RemoveSender, then AddSender with provider_id %s and VerifySender)",
			v.Message.GetFrom().GetAddress(), strings.Join(g.Providers, ", "), providerID)}
}

// providerBound reports whether v's from address is usable only through
// specific providers (so its message must not fail over to another one).
func (l *lookups) providerBound(v *validate.Request) bool {
	g := l.verified[v.From]
	return l.checkSenders && !g.Any && len(g.Providers) > 0
}
