// Package statustest checks gRPC statuses in tests: the code, and that the
// status names the field at fault, in its message and as its one BadRequest
// field violation (what every API error about bad input must do).
package statustest

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RequireField fails t unless err is a status with code naming field.
func RequireField(t testing.TB, err error, code codes.Code, field string) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, code, st.Code(), "status: %v", st)
	require.Contains(t, st.Message(), field, "message names the field")
	var got []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				got = append(got, v.GetField())
			}
		}
	}
	require.Equal(t, []string{field}, got, "BadRequest field violations of %v", st)
}
