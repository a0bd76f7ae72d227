package usage_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/apierr"
	"github.com/namirasoft/email-sender/pkg/usage"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

type failingDB struct{ err error }

func (f failingDB) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, f.err }

// A database failure is a plain error: mapped with apierr, the client gets
// UNAVAILABLE or INTERNAL and none of the database's text.
func TestListDatabaseErrorsAreNotForClients(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range []struct {
		pgCode string
		want   codes.Code
	}{{"57P01", codes.Unavailable}, {"08006", codes.Unavailable}, {"42P01", codes.Internal}} {
		_, err := usage.List(t.Context(), failingDB{&pgconn.PgError{Code: tt.pgCode, Message: `relation "usage_records" secret detail`}},
			"0198c2a4-0000-7000-8000-000000000001", &emailsenderv1.ListUsageRequest{})
		if _, isStatus := status.FromError(err); isStatus {
			t.Fatalf("%s: a database failure came back as a status: %v", tt.pgCode, err)
		}
		st := status.Convert(apierr.Map(t.Context(), log, "list usage", err))
		if st.Code() != tt.want || st.Message() == err.Error() {
			t.Fatalf("%s: got %s %q, want %s without the database's text", tt.pgCode, st.Code(), st.Message(), tt.want)
		}
	}
	_, err := usage.List(t.Context(), failingDB{}, "a", &emailsenderv1.ListUsageRequest{PageSize: -1})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("page_size -1: %v", err)
	}
}
