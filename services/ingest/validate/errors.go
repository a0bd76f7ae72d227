package validate

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/apierr"
)

// Error is one rejected field.
type Error struct {
	// Field is the path from the request root, e.g. "message.to[2].address".
	Field string
	// Code is INVALID_ARGUMENT for syntax, RESOURCE_EXHAUSTED for limits.
	Code        codes.Code
	Description string
}

func (e *Error) Error() string { return e.Field + ": " + e.Description }

// WithPrefix returns a copy of e whose field path starts with prefix, e.g.
// "messages[3]." for an item of a batch.
func (e *Error) WithPrefix(prefix string) *Error {
	c := *e
	c.Field = prefix + e.Field
	return &c
}

// GRPCStatus is the status the API answers with: e's code, a message naming the
// field, and a BadRequest detail with the field violation.
func (e *Error) GRPCStatus() *status.Status {
	return FieldStatus(e.Code, e.Field, e.Description)
}

// FieldStatus builds a status naming field, with a BadRequest detail
// (apierr.Field).
func FieldStatus(code codes.Code, field, description string) *status.Status {
	return apierr.Field(code, field, description)
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Field: field, Code: codes.InvalidArgument, Description: fmt.Sprintf(format, args...)}
}

func exhausted(field, format string, args ...any) *Error {
	return &Error{Field: field, Code: codes.ResourceExhausted, Description: fmt.Sprintf(format, args...)}
}
