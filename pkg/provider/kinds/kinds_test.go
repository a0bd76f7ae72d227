package kinds_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/gmail"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/provider/sandbox"
	"github.com/namirasoft/email-sender/pkg/provider/ses"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// settingsField is the field named kind in the settings oneof of m's message.
func settingsField(t *testing.T, m proto.Message, kind string) protoreflect.FieldDescriptor {
	t.Helper()
	d := m.ProtoReflect().Descriptor()
	oneof := d.Oneofs().ByName("settings")
	require.NotNil(t, oneof, "%s has a settings oneof", d.FullName())
	fd := oneof.Fields().ByName(protoreflect.Name(kind))
	require.NotNil(t, fd, "%s's settings oneof has a field %q", d.FullName(), kind)
	require.Equal(t, protoreflect.MessageKind, fd.Kind())
	return fd
}

// What a kind must provide: a name the configurations and the API know, a
// settings schema (API message <-> stored JSON, validation with API field
// names), a sender, a check of credentials, and (optional) a feedback parser.
// Each kind's own package runs providertest's conformance suite against a
// real or independent backend.
func TestEveryKind(t *testing.T) {
	t.Parallel()
	known := []string{smtp.Kind, ses.Kind, gmail.Kind, sandbox.Kind}
	var names []string
	for _, k := range kinds.All() {
		t.Run(k.Name, func(t *testing.T) {
			require.Contains(t, known, k.Name, "a kind the configurations know")

			// The schema: the API's oneof field for the kind, round trip of its
			// zero message through validation and back.
			put := settingsField(t, &emailsenderv1.PutProviderRequest{}, k.Name)
			shown := settingsField(t, &emailsenderv1.Provider{}, k.Name)
			require.NotNil(t, k.Schema.Normalize, "settings validation")
			require.NotNil(t, k.Schema.FromAPI, "settings from the API")
			require.NotNil(t, k.Schema.ToAPI, "settings to the API")
			msg := k.Schema.ToAPI([]byte(`{}`))
			require.Equal(t, put.Message().FullName(), msg.ProtoReflect().Descriptor().FullName())
			require.Equal(t, shown.Message().FullName(), msg.ProtoReflect().Descriptor().FullName())
			st, err := k.Schema.FromAPI(msg, nil)
			if err != nil {
				var fe *provider.FieldError
				require.True(t, errors.As(err, &fe), "errors name the API field: %v", err)
				require.NotEmpty(t, fe.Field)
			} else {
				require.True(t, json.Valid(st.Settings))
				require.NotNil(t, k.Schema.ToAPI(st.Settings))
			}

			s := k.New(kinds.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			require.NotNil(t, s)
			_, ok := s.(provider.Verifier)
			require.True(t, ok, "%s's sender checks credentials", k.Name)
			require.NotNil(t, k.Verify, "%s checks credentials (VerifyProvider)", k.Name)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			v := k.Verify(ctx, s, provider.Config{Kind: k.Name, Settings: []byte(`{}`)})
			require.False(t, v.OK, "a cancelled check with empty settings is not OK")
			require.NotEmpty(t, v.Detail)
			require.GreaterOrEqual(t, k.Worker.Concurrency, 0)
			require.GreaterOrEqual(t, k.Worker.ProviderRate, 0.0)
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
	verifiers, closeAll := kinds.Verifiers(kinds.Options{})
	require.Len(t, verifiers, len(known))
	require.NoError(t, closeAll())

	// Every field of the API's settings oneofs is a kind.
	for _, m := range []proto.Message{&emailsenderv1.PutProviderRequest{}, &emailsenderv1.Provider{}} {
		fields := m.ProtoReflect().Descriptor().Oneofs().ByName("settings").Fields()
		for i := range fields.Len() {
			_, ok := kinds.Lookup(string(fields.Get(i).Name()))
			require.True(t, ok, "%s is a kind", fields.Get(i).FullName())
		}
	}
}

func TestFeedback(t *testing.T) {
	t.Parallel()
	k, ok := kinds.Lookup(ses.Kind)
	require.True(t, ok)
	require.NotNil(t, k.Feedback, "ses reports bounces and complaints")
	for _, name := range []string{smtp.Kind, gmail.Kind, sandbox.Kind} {
		k, _ := kinds.Lookup(name)
		require.Nil(t, k.Feedback, "%s reports nothing later", name)
	}
	k, _ = kinds.Lookup(ses.Kind)
	require.NotNil(t, k.SenderVerified, "ses vouches for its verified identities")
}

func TestSchema(t *testing.T) {
	t.Parallel()
	k, _ := kinds.Lookup(smtp.Kind)
	st, err := k.Schema.FromAPI(&emailsenderv1.SmtpSettings{Host: "smtp.example.com", TlsMode: "implicit", Username: "u", Password: "s3cret"}, nil)
	require.NoError(t, err)
	require.JSONEq(t, `{"host":"smtp.example.com","port":465,"tls":"implicit","username":"u","pool_size":4}`, string(st.Settings))
	require.JSONEq(t, `{"password":"s3cret"}`, string(st.Secret))
	require.Equal(t, []string{"password"}, st.SecretFields)

	// A secret left empty keeps the stored one.
	st, err = k.Schema.FromAPI(&emailsenderv1.SmtpSettings{Host: "h", Username: "u"}, []byte(`{"password":"old"}`))
	require.NoError(t, err)
	require.JSONEq(t, `{"password":"old"}`, string(st.Secret))

	_, err = k.Schema.FromAPI(&emailsenderv1.SmtpSettings{Host: "h", TlsMode: "ssl", Username: "u", Password: "s3cret"}, nil)
	var fe *provider.FieldError
	require.True(t, errors.As(err, &fe))
	require.Equal(t, "tls_mode", fe.Field)
	require.NotContains(t, err.Error(), "s3cret")

	_, err = k.Schema.Normalize([]byte(`{"host":"h","username":"u"}`), []byte(`"s3cret`))
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")

	sb, _ := kinds.Lookup(sandbox.Kind)
	st, err = sb.Schema.FromAPI(&emailsenderv1.SandboxSettings{}, nil)
	require.NoError(t, err)
	require.JSONEq(t, `{}`, string(st.Settings))
	require.Nil(t, st.Secret)

	require.Equal(t, "smtp, ses, gmail or sandbox", kinds.OneOf())
}

// TestConfig: the operator's settings load from the environment (one
// OUTBOUND_ALLOW_NETS, the endpoints) and are checked.
func TestConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"OUTBOUND_ALLOW_NETS": "127.0.0.0/8, ::1", "SES_ENDPOINT": "http://127.0.0.1:4566", "GMAIL_TOKEN_URL": "http://127.0.0.1:9/token"}
	var c kinds.Config
	require.NoError(t, envconfig.LoadFrom(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
	require.Equal(t, []string{"127.0.0.0/8", "::1"}, c.AllowNets)
	o, err := c.Options(nil)
	require.NoError(t, err)
	require.NoError(t, o.Guard.Check(netip.MustParseAddr("127.0.0.1")))
	require.ErrorIs(t, o.Guard.Check(netip.MustParseAddr("10.0.0.1")), netguard.ErrRefused)
	require.Equal(t, "http://127.0.0.1:4566", o.SESEndpoint)

	_, err = kinds.Config{SESEndpoint: "ftp://x"}.Options(nil)
	require.ErrorContains(t, err, "SES_ENDPOINT")
	_, err = kinds.Config{Config: netguard.Config{AllowNets: []string{"nope"}}}.Options(nil)
	require.ErrorContains(t, err, "OUTBOUND_ALLOW_NETS")
}
