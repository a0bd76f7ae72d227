package webhook

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/apierr"
	"github.com/namirasoft/email-sender/pkg/auth"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Request limits.
const (
	maxURLBytes         = 2048
	maxDescription      = 256
	maxFilterTags       = 20
	defaultPreviousTTL  = 24 * time.Hour
	maxPreviousTTL      = 7 * 24 * time.Hour
	defaultDeliveryPage = 50
	maxDeliveryPage     = 200
)

var (
	errNoPrincipal = errors.New("no authenticated caller")
	errNoKeyring   = errors.New("webhooks need MASTER_KEYS")
)

var errorRules = []apierr.Rule{
	apierr.Is(errNotFound, codes.NotFound, "webhook not found"),
	apierr.Is(errTooMany, codes.FailedPrecondition, "the account has the most webhook endpoints allowed"),
	apierr.Is(errNoPrincipal, codes.Unauthenticated, "unauthenticated"),
	apierr.Is(errNoKeyring, codes.FailedPrecondition, "webhooks are not configured on this server (MASTER_KEYS)"),
}

// server implements emailsenderv1.WebhookServiceServer.
type server struct {
	emailsenderv1.UnimplementedWebhookServiceServer
	svc *Service
}

func (s *server) fail(ctx context.Context, op string, err error) error {
	return apierr.Map(ctx, s.svc.log, op, err, errorRules...)
}

func accountOf(ctx context.Context) (string, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.AccountID == "" {
		return "", errNoPrincipal
	}
	return p.AccountID, nil
}

func parseID(field, v string) (string, error) {
	u, err := uuid.Parse(v)
	if err != nil {
		return "", apierr.InvalidField(field, "not a webhook id")
	}
	return u.String(), nil
}

func checkURL(raw string) error {
	if len(raw) > maxURLBytes {
		return apierr.InvalidField("url", "at most %d bytes", maxURLBytes)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return apierr.InvalidField("url", "want an absolute http(s) URL without credentials or fragment")
	}
	return nil
}

func checkFilter(types []string, tags map[string]string) ([]string, error) {
	if bad, ok := validTypes(types); !ok {
		return nil, apierr.InvalidField("event_types", "unknown event type %q; want some of %s", bad, strings.Join(TypeNames, ", "))
	}
	if len(tags) > maxFilterTags {
		return nil, apierr.InvalidField("tags", "at most %d", maxFilterTags)
	}
	out := make([]string, 0, len(types))
	for _, t := range types {
		if t = strings.ToLower(t); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}

func toProto(e endpoint) *emailsenderv1.Webhook {
	w := &emailsenderv1.Webhook{
		Id: e.ID, Url: e.URL, Description: e.Description, EventTypes: e.EventTypes, Tags: e.Tags,
		Enabled: e.Enabled, DisabledReason: e.DisabledReason,
		CreatedAt: timestamppb.New(e.CreatedAt), UpdatedAt: timestamppb.New(e.UpdatedAt),
	}
	if e.DisabledAt != nil {
		w.DisabledAt = timestamppb.New(*e.DisabledAt)
	}
	if e.FailingSince != nil {
		w.FailingSince = timestamppb.New(*e.FailingSince)
	}
	if e.PreviousExpiresAt != nil && e.PreviousSecret != nil {
		w.PreviousSecretExpiresAt = timestamppb.New(*e.PreviousExpiresAt)
	}
	return w
}

// seal seals a new secret for endpoint id (the id is the additional data, so
// a sealed secret cannot be moved to another endpoint).
func (s *server) seal(id string) (secret string, sealed []byte, err error) {
	if s.svc.keyring == nil {
		return "", nil, errNoKeyring
	}
	if secret, err = NewSecret(); err != nil {
		return "", nil, err
	}
	sealed, err = s.svc.keyring.Seal([]byte(secret), []byte(id))
	return secret, sealed, err
}

func (s *server) CreateWebhook(ctx context.Context, req *emailsenderv1.CreateWebhookRequest) (*emailsenderv1.CreateWebhookResponse, error) {
	resp, err := s.create(ctx, req)
	return resp, s.fail(ctx, "CreateWebhook", err)
}

func (s *server) create(ctx context.Context, req *emailsenderv1.CreateWebhookRequest) (*emailsenderv1.CreateWebhookResponse, error) {
	account, err := accountOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkURL(req.GetUrl()); err != nil {
		return nil, err
	}
	if len(req.GetDescription()) > maxDescription {
		return nil, apierr.InvalidField("description", "at most %d bytes", maxDescription)
	}
	types, err := checkFilter(req.GetEventTypes(), req.GetTags())
	if err != nil {
		return nil, err
	}
	id := uuid.Must(uuid.NewV7()).String()
	secret, sealed, err := s.seal(id)
	if err != nil {
		return nil, err
	}
	now := s.svc.now()
	e := endpoint{ID: id, AccountID: account, URL: req.GetUrl(), Description: req.GetDescription(), EventTypes: types,
		Tags: req.GetTags(), Secret: sealed, Enabled: true, CreatedAt: now, UpdatedAt: now}
	if err := s.svc.store.create(ctx, e, s.svc.cfg.MaxEndpoints); err != nil {
		return nil, err
	}
	return &emailsenderv1.CreateWebhookResponse{Webhook: toProto(e), Secret: secret}, nil
}

func (s *server) ListWebhooks(ctx context.Context, _ *emailsenderv1.ListWebhooksRequest) (*emailsenderv1.ListWebhooksResponse, error) {
	account, err := accountOf(ctx)
	if err != nil {
		return nil, s.fail(ctx, "ListWebhooks", err)
	}
	list, err := s.svc.store.list(ctx, account)
	if err != nil {
		return nil, s.fail(ctx, "ListWebhooks", err)
	}
	out := &emailsenderv1.ListWebhooksResponse{}
	for _, e := range list {
		out.Webhooks = append(out.Webhooks, toProto(e))
	}
	return out, nil
}

func (s *server) UpdateWebhook(ctx context.Context, req *emailsenderv1.UpdateWebhookRequest) (*emailsenderv1.UpdateWebhookResponse, error) {
	resp, err := s.update(ctx, req)
	return resp, s.fail(ctx, "UpdateWebhook", err)
}

func (s *server) update(ctx context.Context, req *emailsenderv1.UpdateWebhookRequest) (*emailsenderv1.UpdateWebhookResponse, error) {
	account, err := accountOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	if req.Url != nil {
		if err := checkURL(req.GetUrl()); err != nil {
			return nil, err
		}
	}
	if len(req.GetDescription()) > maxDescription {
		return nil, apierr.InvalidField("description", "at most %d bytes", maxDescription)
	}
	var types []string
	if f := req.GetFilter(); f != nil {
		if types, err = checkFilter(f.GetEventTypes(), f.GetTags()); err != nil {
			return nil, err
		}
	}
	now := s.svc.now()
	e, err := s.svc.store.update(ctx, account, id, now, func(e *endpoint) error {
		if req.Url != nil {
			e.URL = req.GetUrl()
		}
		if req.Description != nil {
			e.Description = req.GetDescription()
		}
		if f := req.GetFilter(); f != nil {
			e.EventTypes, e.Tags = types, f.GetTags()
		}
		if req.Enabled != nil {
			switch {
			case req.GetEnabled() && !e.Enabled:
				e.Enabled, e.DisabledReason, e.DisabledAt, e.FailingSince = true, "", nil, nil
			case !req.GetEnabled() && e.Enabled:
				e.Enabled, e.DisabledReason, e.DisabledAt = false, "disabled by a call", &now
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if e.Enabled {
		s.svc.wake()
	}
	return &emailsenderv1.UpdateWebhookResponse{Webhook: toProto(e)}, nil
}

func (s *server) DeleteWebhook(ctx context.Context, req *emailsenderv1.DeleteWebhookRequest) (*emailsenderv1.DeleteWebhookResponse, error) {
	account, err := accountOf(ctx)
	if err != nil {
		return nil, s.fail(ctx, "DeleteWebhook", err)
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, s.fail(ctx, "DeleteWebhook", err)
	}
	if err := s.svc.store.delete(ctx, account, id); err != nil {
		return nil, s.fail(ctx, "DeleteWebhook", err)
	}
	return &emailsenderv1.DeleteWebhookResponse{}, nil
}

func (s *server) RotateWebhookSecret(ctx context.Context, req *emailsenderv1.RotateWebhookSecretRequest) (*emailsenderv1.RotateWebhookSecretResponse, error) {
	resp, err := s.rotate(ctx, req)
	return resp, s.fail(ctx, "RotateWebhookSecret", err)
}

func (s *server) rotate(ctx context.Context, req *emailsenderv1.RotateWebhookSecretRequest) (*emailsenderv1.RotateWebhookSecretResponse, error) {
	account, err := accountOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	ttl := defaultPreviousTTL
	if d := req.GetPreviousSecretTtl(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 || d.AsDuration() > maxPreviousTTL {
			return nil, apierr.InvalidField("previous_secret_ttl", "want 0 to %s", maxPreviousTTL)
		}
		ttl = d.AsDuration()
	}
	secret, sealed, err := s.seal(id)
	if err != nil {
		return nil, err
	}
	now := s.svc.now()
	e, err := s.svc.store.update(ctx, account, id, now, func(e *endpoint) error {
		exp := now.Add(ttl)
		e.PreviousSecret, e.PreviousExpiresAt, e.Secret = e.Secret, &exp, sealed
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &emailsenderv1.RotateWebhookSecretResponse{Webhook: toProto(e), Secret: secret}, nil
}

func (s *server) SendTestWebhook(ctx context.Context, req *emailsenderv1.SendTestWebhookRequest) (*emailsenderv1.SendTestWebhookResponse, error) {
	resp, err := s.test(ctx, req)
	return resp, s.fail(ctx, "SendTestWebhook", err)
}

func (s *server) test(ctx context.Context, req *emailsenderv1.SendTestWebhookRequest) (*emailsenderv1.SendTestWebhookResponse, error) {
	account, err := accountOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	e, err := s.svc.store.get(ctx, s.svc.store.pool, account, id, false)
	if err != nil {
		return nil, err
	}
	now := s.svc.now()
	secrets, err := s.svc.openSecrets(e, now)
	if err != nil {
		return nil, fmt.Errorf("test webhook: %w", err)
	}
	evID := uuid.NewString()
	body, err := Payload{Type: TestType, Timestamp: now.UTC(), Data: Data{
		EventID: evID, MessageID: "", Recipient: "test@example.com", Status: "DELIVERED", Event: "TEST", OccurredAt: now.UTC(),
	}}.Encode()
	if err != nil {
		return nil, err
	}
	d := delivery{ID: uuid.NewString(), EndpointID: id, AccountID: account, EventID: evID, EventType: TestType, Payload: body, At: now}
	a := s.svc.post(ctx, e, secrets, d.ID, body)
	a.State = "failed"
	if a.StatusCode >= 200 && a.StatusCode < 300 {
		a.State = "succeeded"
	}
	if err := s.svc.store.recordTest(context.WithoutCancel(ctx), d, a); err != nil {
		return nil, err
	}
	return &emailsenderv1.SendTestWebhookResponse{Delivery: &emailsenderv1.WebhookDelivery{
		Id: d.ID, WebhookId: id, EventType: TestType, Recipient: "test@example.com", State: a.State, Attempts: 1,
		CreatedAt: timestamppb.New(now), AttemptLog: []*emailsenderv1.WebhookAttempt{attemptProto(a)},
	}}, nil
}

func attemptProto(a attempt) *emailsenderv1.WebhookAttempt {
	return &emailsenderv1.WebhookAttempt{At: timestamppb.New(a.At), StatusCode: int32(a.StatusCode),
		Latency: durationpb.New(a.Latency), ResponseSnippet: a.Snippet, Error: a.Error}
}

func (s *server) ListWebhookDeliveries(ctx context.Context, req *emailsenderv1.ListWebhookDeliveriesRequest) (*emailsenderv1.ListWebhookDeliveriesResponse, error) {
	resp, err := s.listDeliveries(ctx, req)
	return resp, s.fail(ctx, "ListWebhookDeliveries", err)
}

func (s *server) listDeliveries(ctx context.Context, req *emailsenderv1.ListWebhookDeliveriesRequest) (*emailsenderv1.ListWebhookDeliveriesResponse, error) {
	account, err := accountOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("webhook_id", req.GetWebhookId())
	if err != nil {
		return nil, err
	}
	if st := req.GetState(); st != "" && st != "pending" && st != "succeeded" && st != "failed" {
		return nil, apierr.InvalidField("state", "want pending, succeeded or failed")
	}
	size := int(req.GetPageSize())
	switch {
	case size <= 0:
		size = defaultDeliveryPage
	case size > maxDeliveryPage:
		size = maxDeliveryPage
	}
	var (
		afterAt *time.Time
		afterID string
	)
	if tok := req.GetPageToken(); tok != "" {
		at, did, err := decodeToken(tok)
		if err != nil {
			return nil, err
		}
		afterAt, afterID = &at, did
	}
	// The endpoint must be the caller's: another account's is not found.
	if _, err := s.svc.store.get(ctx, s.svc.store.pool, account, id, false); err != nil {
		return nil, err
	}
	list, err := s.svc.store.deliveries(ctx, account, id, req.GetState(), size+1, afterAt, afterID)
	if err != nil {
		return nil, err
	}
	out := &emailsenderv1.ListWebhookDeliveriesResponse{}
	if len(list) > size {
		list = list[:size]
		last := list[size-1]
		out.NextPageToken = encodeToken(last.CreatedAt, last.ID)
	}
	for _, d := range list {
		pd := &emailsenderv1.WebhookDelivery{
			Id: d.ID, WebhookId: d.EndpointID, EventType: d.EventType, MessageId: d.MessageID, Recipient: d.Recipient,
			State: d.State, Attempts: int32(d.Attempts), CreatedAt: timestamppb.New(d.CreatedAt),
		}
		if d.State == "pending" {
			pd.NextAttemptAt = timestamppb.New(d.NextAttemptAt)
		}
		for _, a := range d.Log {
			pd.AttemptLog = append(pd.AttemptLog, attemptProto(a))
		}
		out.Deliveries = append(out.Deliveries, pd)
	}
	return out, nil
}

func encodeToken(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id))
}

func decodeToken(tok string) (time.Time, string, error) {
	bad := apierr.InvalidField("page_token", "not a page token of this list")
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return time.Time{}, "", bad
	}
	ts, id, ok := strings.Cut(string(b), "|")
	if !ok {
		return time.Time{}, "", bad
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || !isUUID(id) {
		return time.Time{}, "", bad
	}
	return at, id, nil
}

func (s *server) ReplayWebhookDeliveries(ctx context.Context, req *emailsenderv1.ReplayWebhookDeliveriesRequest) (*emailsenderv1.ReplayWebhookDeliveriesResponse, error) {
	resp, err := s.replay(ctx, req)
	return resp, s.fail(ctx, "ReplayWebhookDeliveries", err)
}

func (s *server) replay(ctx context.Context, req *emailsenderv1.ReplayWebhookDeliveriesRequest) (*emailsenderv1.ReplayWebhookDeliveriesResponse, error) {
	account, err := accountOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("webhook_id", req.GetWebhookId())
	if err != nil {
		return nil, err
	}
	var (
		did        string
		start, end time.Time
	)
	switch {
	case req.GetDeliveryId() != "":
		if did, err = parseID("delivery_id", req.GetDeliveryId()); err != nil {
			return nil, err
		}
	case req.GetStart() != nil && req.GetEnd() != nil:
		start, end = req.GetStart().AsTime(), req.GetEnd().AsTime()
		if !start.Before(end) {
			return nil, apierr.InvalidField("end", "want after start")
		}
	default:
		return nil, apierr.InvalidField("delivery_id", "give a delivery_id, or start and end")
	}
	if _, err := s.svc.store.get(ctx, s.svc.store.pool, account, id, false); err != nil {
		return nil, err
	}
	n, err := s.svc.store.replay(ctx, account, id, did, start, end, s.svc.now())
	if err != nil {
		return nil, err
	}
	if did != "" && n == 0 {
		return nil, errNotFound
	}
	s.svc.wake()
	return &emailsenderv1.ReplayWebhookDeliveriesResponse{Replayed: n}, nil
}
