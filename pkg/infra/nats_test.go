package infra_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/infra"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/testca"
)

// startSecureNATS runs a nats-server that requires TLS with a client
// certificate and a user name and password.
func startSecureNATS(t *testing.T, ca *testca.CA) string {
	t.Helper()
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: ca.CertFile, KeyFile: ca.KeyFile, CaFile: ca.CAFile, Verify: true})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(),
		Username: "emailsender", Password: "nats-Pa55-word",
		TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 5,
		NoSigs: true, NoLog: true,
	})
	require.NoError(t, err)
	s.Start()
	t.Cleanup(s.Shutdown)
	require.True(t, s.ReadyForConnections(10*time.Second))
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// Every service reaches NATS through infra.Open: with credentials and TLS
// (CA and client certificate) it connects and ensures the streams; with a
// wrong password or without the CA it does not, and says nothing of the
// password.
func TestOpenNATSWithCredentialsAndTLS(t *testing.T) {
	t.Parallel()
	ca := testca.New(t)
	url := startSecureNATS(t, ca)
	cert, key := ca.Client(t, "ingest")
	good := envconfig.NATS{URL: url, User: "emailsender", Password: "nats-Pa55-word", TLSCAFile: ca.CAFile, TLSCertFile: cert, TLSKeyFile: key, StreamReplicas: 1}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := infra.Open(ctx, infra.Config{Service: "ingest", Log: envconfig.Log{Level: "error"}, Postgres: envconfig.Postgres{URL: emptySchema(t)}, NATS: good, Schema: infra.Migrate})
	require.NoError(t, err)
	defer in.Close()
	_, err = in.JetStream.Stream(ctx, queue.SendStream)
	require.NoError(t, err, "streams ensured over the authenticated TLS connection")

	for name, bad := range map[string]func(c *envconfig.NATS){
		"wrong password": func(c *envconfig.NATS) { c.Password = "not-the-Pa55-word" },
		"no CA":          func(c *envconfig.NATS) { c.TLSCAFile = "" },
		"no client cert": func(c *envconfig.NATS) { c.TLSCertFile, c.TLSKeyFile = "", "" },
		"password in URL": func(c *envconfig.NATS) {
			c.URL = strings.Replace(url, "nats://", "nats://emailsender:wrong-Pa55@", 1)
			c.User, c.Password = "", ""
		},
		"no credentials": func(c *envconfig.NATS) { c.User, c.Password = "", "" },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := good
			bad(&c)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			in, err := infra.Open(ctx, infra.Config{Service: "ingest", Log: envconfig.Log{Level: "error"}, Postgres: envconfig.Postgres{URL: emptySchema(t)}, NATS: c, Schema: infra.Migrate})
			if err == nil {
				in.Close()
				t.Fatal("connected")
			}
			require.NotContains(t, err.Error(), "Pa55")
		})
	}
}

func TestNATSOptionsRefusesHalfSettings(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]envconfig.NATS{
		"user without password": {User: "u"},
		"two credentials":       {User: "u", Password: "p", Token: "t"},
		"cert without key":      {TLSCertFile: "/nonexistent.crt"},
		"missing CA file":       {TLSCAFile: "/nonexistent-ca.pem"},
		"missing nkey file":     {NKeyFile: "/nonexistent.nk"},
	} {
		_, err := infra.NATSOptions(c)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), "NATS_", name)
	}
}
