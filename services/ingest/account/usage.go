package account

import (
	"context"

	"github.com/namirasoft/email-sender/pkg/usage"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// ListUsage lists the caller's API calls, newest first (pkg/usage records
// them; the query is scoped to the caller's account in SQL).
func (s *Server) ListUsage(ctx context.Context, req *emailsenderv1.ListUsageRequest) (*emailsenderv1.ListUsageResponse, error) {
	resp, err := usage.ListUsage(ctx, s.d.DB, req)
	if err != nil {
		return nil, mapErr(ctx, s.log, "list usage", err)
	}
	return resp, nil
}
