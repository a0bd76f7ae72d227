package submission

import (
	"strings"

	"github.com/emersion/go-smtp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// reply is an SMTP reply.
func reply(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	// A reply line carries no CR or LF: the text comes from ingest's status.
	msg = strings.NewReplacer("\r", " ", "\n", " ").Replace(msg)
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// Replies the session answers with itself.
var (
	errAuthRequired    = reply(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required (AUTH PLAIN or LOGIN with an API key as the password)")
	errEncryptFirst    = reply(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism: STARTTLS first")
	errAuthFailed      = reply(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
	errAuthThrottled   = reply(454, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentications from this address; try again later")
	errAuthUnavailable = reply(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure; try again later")
	errTooLarge        = reply(552, smtp.EnhancedCode{5, 3, 4}, "Message too big")
)

// accepted is the answer to an accepted message: its id in the service.
func accepted(id string) *smtp.SMTPError {
	return reply(250, smtp.EnhancedCode{2, 0, 0}, "OK <"+id+">")
}

// replyOf is the SMTP reply to a failed ingest call: the precise status
// (RFC 3463) of the gRPC code and, where the status names the field at
// fault, of the field, with ingest's message as the text. Permanent
// failures are 5xx, what may succeed later (limits, unavailability) 4xx.
func replyOf(err error) *smtp.SMTPError {
	st := status.Convert(err)
	msg := st.Message()
	field := fieldOf(st)
	switch st.Code() {
	case codes.Unauthenticated:
		return reply(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid: "+msg)
	case codes.PermissionDenied:
		return reply(550, smtp.EnhancedCode{5, 7, 1}, msg)
	case codes.InvalidArgument:
		switch {
		case isSenderField(field):
			return reply(553, smtp.EnhancedCode{5, 1, 7}, msg)
		case isRecipientField(field):
			return reply(553, smtp.EnhancedCode{5, 1, 3}, msg)
		}
		return reply(554, smtp.EnhancedCode{5, 6, 0}, msg)
	case codes.FailedPrecondition:
		if isSenderField(field) {
			// Not a verified sender of the account.
			return reply(550, smtp.EnhancedCode{5, 7, 1}, msg)
		}
		// No usable provider: the account's configuration.
		return reply(554, smtp.EnhancedCode{5, 3, 0}, msg)
	case codes.ResourceExhausted:
		switch {
		case field == "":
			// The account's rate limit or daily quota: later.
			return reply(451, smtp.EnhancedCode{4, 7, 1}, msg)
		case isRecipientField(field):
			return reply(452, smtp.EnhancedCode{4, 5, 3}, msg)
		case field == "message" || strings.HasPrefix(field, "message.attachments"):
			return reply(552, smtp.EnhancedCode{5, 3, 4}, msg)
		}
		return reply(554, smtp.EnhancedCode{5, 6, 0}, msg)
	case codes.AlreadyExists:
		// The Message-ID (idempotency key) came with another message.
		return reply(554, smtp.EnhancedCode{5, 6, 0}, "Message-ID already used within 24 h for a different message: "+msg)
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted, codes.Internal, codes.Unknown:
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporarily unable to accept the message; try again later")
	}
	return reply(554, smtp.EnhancedCode{5, 3, 0}, msg)
}

// fieldOf is the field the status's BadRequest detail names, or "".
func fieldOf(st *status.Status) string {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

func isSenderField(f string) bool { return strings.HasPrefix(f, "message.from") }

func isRecipientField(f string) bool {
	for _, p := range []string{"message.to", "message.cc", "message.bcc"} {
		if strings.HasPrefix(f, p) {
			return true
		}
	}
	return false
}
