package ingest_test

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/ingest/send"
	"github.com/namirasoft/email-sender/services/ingest/validate"
)

// Whatever gRPC accepts must fit the HTTP body limit once its bytes are base64.
func TestHTTPMaxBodyFitsTheGRPCLimitInBase64(t *testing.T) {
	t.Parallel()
	for _, cfg := range []ingest.Config{{}, {GRPCMaxRecvBytes: 20 << 20, Send: send.Config{Limits: validate.Limits{MaxMessageBytes: 16 << 20}}}} {
		cfg, err := cfg.WithDefaults()
		require.NoError(t, err)
		require.GreaterOrEqual(t, cfg.HTTPMaxBodyBytes(), int64(base64.StdEncoding.EncodedLen(cfg.GRPCMaxRecvBytes)))
		require.Greater(t, cfg.HTTPMaxBodyBytes(), int64(base64.StdEncoding.EncodedLen(cfg.Send.Limits.MaxMessageBytes)))
	}
}
