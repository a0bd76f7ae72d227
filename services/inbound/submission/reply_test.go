package submission

import (
	"errors"
	"testing"

	"github.com/emersion/go-smtp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/apierr"
)

func TestReplyOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code int
		enh  smtp.EnhancedCode
	}{
		{"bad key", status.Error(codes.Unauthenticated, "invalid credentials"), 535, smtp.EnhancedCode{5, 7, 8}},
		{"scope", status.Error(codes.PermissionDenied, `the credential lacks the "send" scope`), 550, smtp.EnhancedCode{5, 7, 1}},
		{"unverified sender", apierr.Field(codes.FailedPrecondition, "message.from.address", "not a verified sender").Err(), 550, smtp.EnhancedCode{5, 7, 1}},
		{"no provider", apierr.Field(codes.FailedPrecondition, "provider_id", "no default provider").Err(), 554, smtp.EnhancedCode{5, 3, 0}},
		{"bad sender syntax", apierr.Field(codes.InvalidArgument, "message.from.address", "bad").Err(), 553, smtp.EnhancedCode{5, 1, 7}},
		{"bad recipient syntax", apierr.Field(codes.InvalidArgument, "message.bcc[0].address", "bad").Err(), 553, smtp.EnhancedCode{5, 1, 3}},
		{"no body", apierr.Field(codes.InvalidArgument, "message.text_body", "required").Err(), 554, smtp.EnhancedCode{5, 6, 0}},
		{"too large", apierr.Field(codes.ResourceExhausted, "message", "over the limit").Err(), 552, smtp.EnhancedCode{5, 3, 4}},
		{"attachment too large", apierr.Field(codes.ResourceExhausted, "message.attachments[1].content", "over").Err(), 552, smtp.EnhancedCode{5, 3, 4}},
		{"too many recipients", apierr.Field(codes.ResourceExhausted, "message.to", "over").Err(), 452, smtp.EnhancedCode{4, 5, 3}},
		{"rate limit", status.Error(codes.ResourceExhausted, "rate limit of 10 exceeded"), 451, smtp.EnhancedCode{4, 7, 1}},
		{"key reused", apierr.Field(codes.AlreadyExists, "idempotency_key", "other request").Err(), 554, smtp.EnhancedCode{5, 6, 0}},
		{"unavailable", status.Error(codes.Unavailable, "down"), 451, smtp.EnhancedCode{4, 3, 0}},
		{"internal", status.Error(codes.Internal, "internal error"), 451, smtp.EnhancedCode{4, 3, 0}},
		{"transport", errors.New("connection refused"), 451, smtp.EnhancedCode{4, 3, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := replyOf(tc.err)
			if got.Code != tc.code || got.EnhancedCode != tc.enh {
				t.Errorf("replyOf = %d %v %q, want %d %v", got.Code, got.EnhancedCode, got.Message, tc.code, tc.enh)
			}
		})
	}
}
