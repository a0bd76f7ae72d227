package report

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// TestListSubjectBound: a subject search reads at most the bound per call
// and says where it stopped, so that paging on finds every match once.
func TestListSubjectBound(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	account, other := uuid.NewString(), uuid.NewString()
	base := time.Now().Add(-time.Hour)
	// 30 messages, newest last; every 7th is an "Invoice", and a few have
	// LIKE's special characters.
	subjects := map[int]string{}
	var ids []string
	for i := range 30 {
		subj := fmt.Sprintf("Shipping note %d", i)
		switch {
		case i%7 == 0:
			subj = fmt.Sprintf("Your INVOICE %d", i)
		case i == 5:
			subj = "100% off_today"
		case i == 6:
			subj = "1000 offXtoday"
		}
		subjects[i] = subj
		at := base.Add(time.Duration(i) * time.Second)
		id, err := partition.NewMessageID(at)
		require.NoError(t, err)
		ids = append(ids, id.String())
		_, err = db.Pool.Exec(ctx, `INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, subject, recipient_count, size_bytes, created_at, updated_at)
			VALUES ($1, $2, $3, 'sandbox', 4, 'a@example.com', $4, 1, 3, $5, $5)`, id, account, uuid.New(), subj, at)
		require.NoError(t, err)
	}
	id, err := partition.NewMessageID(base)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, subject, recipient_count, size_bytes, created_at, updated_at)
		VALUES ($1, $2, $3, 'sandbox', 4, 'a@example.com', 'Your invoice (other account)', 1, 3, $4, $4)`, id, other, uuid.New(), base)
	require.NoError(t, err)

	s := &store{pool: db.Pool, subjectScan: 10}
	// search pages through like ListMessages (server.go) with pageSize.
	search := func(text string, pageSize int) (pages [][]string) {
		f := listFilter{subject: likeContains(text), limit: pageSize + 1}
		for range 20 {
			msgs, scanEnd, err := s.listScan(ctx, account, f)
			require.NoError(t, err)
			var page []string
			for _, m := range msgs {
				page = append(page, m.GetSubject())
			}
			switch {
			case len(msgs) > pageSize:
				pages = append(pages, page[:pageSize])
				f.afterID = msgs[pageSize-1].GetMessageId()
			case scanEnd != "":
				pages = append(pages, page)
				f.afterID = scanEnd
			default:
				return append(pages, page)
			}
		}
		t.Fatal("no end")
		return nil
	}
	// 10 read per call: 3 calls read 30, the 4th finds the end.
	require.Equal(t, [][]string{{"Your INVOICE 28", "Your INVOICE 21"}, {"Your INVOICE 14"}, {"Your INVOICE 7", "Your INVOICE 0"}, nil},
		search("invoice", 50))
	// A full page stops early and goes on after its last message.
	require.Equal(t, [][]string{{"Your INVOICE 28"}, {"Your INVOICE 21"}, {"Your INVOICE 14"}, {"Your INVOICE 7"}, {"Your INVOICE 0"}},
		search("Invoice", 1))
	// % and _ are text, not wildcards.
	var flat []string
	for _, p := range search("0% off_", 50) {
		flat = append(flat, p...)
	}
	require.Equal(t, []string{"100% off_today"}, flat)
}
