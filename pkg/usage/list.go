package usage

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/apierr"
	"github.com/namirasoft/email-sender/pkg/auth"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Querier is what listing needs of a pool or transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Page sizes of ListUsage.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ListUsage answers AccountService.ListUsage for the caller in ctx (set by
// auth): an AccountService implementation's ListUsage can be
//
//	func (s *server) ListUsage(ctx context.Context, req *emailsenderv1.ListUsageRequest) (*emailsenderv1.ListUsageResponse, error) {
//		return usage.ListUsage(ctx, s.pool, req)
//	}
//
// Errors about the request are gRPC statuses; a failure of the database is
// a plain error (never a status carrying its text) for the caller to map with
// apierr.Map: UNAVAILABLE or INTERNAL, its text only in the log.
func ListUsage(ctx context.Context, db Querier, req *emailsenderv1.ListUsageRequest) (*emailsenderv1.ListUsageResponse, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.AccountID == "" {
		return nil, status.Error(codes.Unauthenticated, "no authenticated account")
	}
	return List(ctx, db, p.AccountID, req)
}

func badRequest(field, desc string) error {
	return apierr.Field(codes.InvalidArgument, field, desc).Err()
}

// List returns accountID's records, newest first, filtered by req. The account
// is a condition of the query itself: no filter or page token reaches another
// account's rows.
func List(ctx context.Context, db Querier, accountID string, req *emailsenderv1.ListUsageRequest) (*emailsenderv1.ListUsageResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, badRequest("page_size", "must not be negative")
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	where := []string{"account_id = $1"}
	args := []any{accountID}
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if m := req.GetMethod(); m != "" {
		if strings.HasPrefix(m, "/") {
			where = append(where, "method = "+arg(m))
		} else { // a bare method name, e.g. "SendEmail"
			where = append(where, "right(method, "+arg(len(m)+1)+") = "+arg("/"+m))
		}
	}
	if k := req.GetKeyId(); k != "" {
		where = append(where, "key_id = "+arg(k))
	}
	if r := req.GetResult(); r != "" {
		where = append(where, "result = "+arg(strings.ToUpper(r)))
	}
	if req.GetSince() != nil {
		if err := req.GetSince().CheckValid(); err != nil {
			return nil, badRequest("since", err.Error())
		}
		where = append(where, "at >= "+arg(req.GetSince().AsTime()))
	}
	if req.GetUntil() != nil {
		if err := req.GetUntil().CheckValid(); err != nil {
			return nil, badRequest("until", err.Error())
		}
		where = append(where, "at < "+arg(req.GetUntil().AsTime()))
	}
	if tok := req.GetPageToken(); tok != "" {
		at, id, err := decodeToken(tok)
		if err != nil {
			return nil, badRequest("page_token", "not a token from a previous answer")
		}
		where = append(where, "(at, id) < ("+arg(at)+", "+arg(id)+")")
	}
	q := `SELECT id, at, method, key_id, token_subject, client_ip, user_agent, result, duration_ms
		FROM usage_records WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY at DESC, id DESC LIMIT ` + arg(size+1)
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list usage: %w", err)
	}
	defer rows.Close()
	type row struct {
		id  uuid.UUID
		at  time.Time
		rec *emailsenderv1.UsageRecord
	}
	var out []row
	for rows.Next() {
		var r row
		r.rec = &emailsenderv1.UsageRecord{}
		if err := rows.Scan(&r.id, &r.at, &r.rec.Method, &r.rec.KeyId, &r.rec.TokenSubject, &r.rec.ClientIp,
			&r.rec.UserAgent, &r.rec.Result, &r.rec.DurationMs); err != nil {
			return nil, fmt.Errorf("list usage: %w", err)
		}
		r.rec.Time = timestamppb.New(r.at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list usage: %w", err)
	}
	resp := &emailsenderv1.ListUsageResponse{}
	if len(out) > size {
		last := out[size-1]
		resp.NextPageToken = encodeToken(last.at, last.id)
		out = out[:size]
	}
	for _, r := range out {
		resp.Records = append(resp.Records, r.rec)
	}
	return resp, nil
}

// A page token is the (at, id) of the last record given: 8 bytes of Unix
// microseconds (PostgreSQL's precision) and the 16 bytes of the id.
func encodeToken(at time.Time, id uuid.UUID) string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:8], uint64(at.UnixMicro()))
	copy(b[8:], id[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func decodeToken(s string) (time.Time, uuid.UUID, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 24 {
		return time.Time{}, uuid.UUID{}, fmt.Errorf("bad page token")
	}
	id, err := uuid.FromBytes(b[8:])
	if err != nil {
		return time.Time{}, uuid.UUID{}, err
	}
	return time.UnixMicro(int64(binary.BigEndian.Uint64(b[:8]))), id, nil
}
