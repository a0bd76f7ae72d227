package ingest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/services/ingest"
)

// A Config built in Go gets the environment's defaults from WithDefaults,
// and they come from one place, the env tags (of ingest.Config and of the
// sub-packages' configs it holds): no second copy can drift.
func TestConfigDefaultsAreTheTags(t *testing.T) {
	t.Parallel()
	var fromEnv ingest.Config
	require.NoError(t, envconfig.LoadFrom(&fromEnv, func(string) (string, bool) { return "", false }))
	zero, err := ingest.Config{}.WithDefaults()
	require.NoError(t, err)

	require.Equal(t, fromEnv.Send, zero.Send)
	require.Equal(t, fromEnv.Relay, zero.Relay)
	require.Equal(t, fromEnv.Deleter, zero.Deleter)
	require.Equal(t, fromEnv.Account, zero.Account)

	// The rest, but for what a Config built in Go leaves unset on purpose:
	// the listen addresses (empty: off, or the caller's listener), the
	// derived request limit, and the shared connection, logging and API
	// configs (with tests of their own).
	got := fromEnv
	got.HTTPAddr, got.MetricsAddr, got.OperatorAddr = "", "", ""
	got.GRPCMaxRecvBytes = zero.GRPCMaxRecvBytes
	got.Postgres, got.NATS, got.Log, got.Metrics, got.API, got.Outbound = zero.Postgres, zero.NATS, zero.Log, zero.Metrics, zero.API, zero.Outbound
	require.Equal(t, got, zero)
	require.Equal(t, fromEnv.NATS.StreamReplicas, zero.NATS.StreamReplicas)

	// The derived limit is what an unset INGEST_GRPC_MAX_RECV_BYTES means.
	loaded, err := fromEnv.WithDefaults()
	require.NoError(t, err)
	require.Equal(t, zero.DefaultMaxRecvBytes(), loaded.GRPCMaxRecvBytes)
}
