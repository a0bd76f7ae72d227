package sandbox

import (
	"context"

	"github.com/namirasoft/email-sender/pkg/provider"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Kind is the provider kind configurations name this provider by.
const Kind = "sandbox"

// Settings are a sandbox configuration's settings: none (the JSON {}).
type Settings struct{}

// Secret is a sandbox configuration's secret: none.
type Secret struct{}

// Fields names the secret fields that are set: none.
func (Secret) Fields() []string { return nil }

// Normalize accepts the empty settings.
func (*Settings) Normalize(Secret) error { return nil }

// FromAPI is the settings of the API's SandboxSettings: none.
func FromAPI(*emailsenderv1.SandboxSettings, Secret) (Settings, Secret) { return Settings{}, Secret{} }

// API is the API's SandboxSettings.
func (Settings) API() *emailsenderv1.SandboxSettings { return &emailsenderv1.SandboxSettings{} }

// Check is Verify as ingest's VerifyProvider records it: always OK.
func (s Sender) Check(ctx context.Context, cfg provider.Config) provider.Verification {
	if err := s.Verify(ctx, cfg); err != nil {
		return provider.Verification{Detail: err.Error()}
	}
	return provider.Verification{OK: true, Healthy: provider.Healthy(), Detail: Kind + ": ok, nothing to log in to"}
}
