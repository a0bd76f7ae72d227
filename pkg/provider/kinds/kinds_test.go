package kinds_test

import (
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/providerconfig"
)

// What a kind must provide: a name the configurations know, a sender, and,
// except for the sandbox (nothing to log in to), a verifier of credentials.
// Each kind's own package runs providertest's conformance suite against a
// real or independent backend.
func TestEveryKind(t *testing.T) {
	t.Parallel()
	known := []string{providerconfig.KindSMTP, providerconfig.KindSES, providerconfig.KindGmail, providerconfig.KindSandbox}
	var names []string
	for _, k := range kinds.All() {
		t.Run(k.Name, func(t *testing.T) {
			require.Contains(t, known, k.Name, "a kind the configurations know")
			s := k.New(kinds.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			require.NotNil(t, s)
			if k.Name != providerconfig.KindSandbox {
				_, ok := s.(provider.Verifier)
				require.True(t, ok, "%s checks credentials (VerifyProvider)", k.Name)
			}
			if c, ok := s.(io.Closer); ok {
				require.NoError(t, c.Close())
			}
		})
		names = append(names, k.Name)
	}
	slices.Sort(names)
	slices.Sort(known)
	require.Equal(t, known, names, "one entry per kind, no more, no less")

	senders, closeAll := kinds.Senders(kinds.Options{})
	require.Len(t, senders, len(known))
	require.NoError(t, closeAll())
}
