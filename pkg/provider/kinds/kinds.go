// Package kinds is the registry of provider kinds: the one list of them and,
// per kind, everything the services need of it. One entry (Kind) carries the
// kind's name, its settings schema (the stored JSON, the API message, their
// validation), its sender, its check of credentials, the worker's defaults
// for it and, where the provider reports asynchronously, its feedback parser.
// Ingest (PutProvider, VerifyProvider, AddSender, the admin bootstrap), the
// worker and the report take each kind from here; none of them names a kind's
// settings.
//
// # Adding a kind
//
//  1. A package pkg/provider/<kind> with:
//     - const Kind, the name configurations use;
//     - Settings and Secret, the settings and secret JSON, with
//     (*Settings).Normalize(Secret) error applying the defaults and
//     reporting a *provider.FieldError that names the API field (never a
//     secret value), and Secret.Fields() naming the secret fields set;
//     - FromAPI(*emailsenderv1.<Kind>Settings, Secret) (Settings, Secret) and
//     Settings.API() *emailsenderv1.<Kind>Settings;
//     - New(...) returning a provider.Sender that passes providertest, with
//     Check(ctx, provider.Config) provider.Verification;
//     - where the provider reports later (bounces...), a
//     provider.FeedbackParser.
//  2. One entry in All, built with the helpers below.
//  3. The API message <Kind>Settings and a field named for the kind in the
//     settings oneof of emailsender.v1.PutProviderRequest and Provider
//     (`make proto`).
//
// kinds_test.go checks that every entry provides all of it. The worker's
// WORKER_<KIND>_CONCURRENCY and WORKER_<KIND>_PROVIDER_RATE variables and
// WORKER_PROVIDERS follow the list.
package kinds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/gmail"
	"github.com/namirasoft/email-sender/pkg/provider/sandbox"
	"github.com/namirasoft/email-sender/pkg/provider/ses"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/verp"
)

// Config is the operator's side of the senders, one definition embedded in
// the configuration of every service that builds them (ingest for
// VerifyProvider and AddSender, the worker): the outbound network policy and
// the endpoints of the API-based kinds. These are not tenant settings: a
// tenant's provider configuration cannot choose where ingest and the workers
// connect beyond its SMTP host, which the guard vets.
type Config struct {
	// Config is OUTBOUND_ALLOW_NETS: the non-public networks tenants' hosts
	// may reach (unset: the public internet only).
	netguard.Config
	// SESEndpoint replaces the regional SES endpoint (an emulator).
	SESEndpoint string `env:"SES_ENDPOINT" help:"SES API endpoint for every ses provider, instead of the regional one (an emulator in tests and the dev stack); operator setting, not a provider setting"`
	// GmailTokenURL replaces Google's OAuth 2.0 token endpoint.
	GmailTokenURL string `env:"GMAIL_TOKEN_URL" help:"OAuth 2.0 token endpoint for every gmail provider (default Google's; an emulator in tests)"`
	// GmailAPIEndpoint replaces the Gmail API's base URL.
	GmailAPIEndpoint string `env:"GMAIL_API_ENDPOINT" help:"Gmail API base URL for every gmail provider (default Google's; an emulator in tests)"`
	// Bounce is BOUNCE_DOMAIN and BOUNCE_KEY: the signed envelope senders
	// (VERP) of SMTP sends, whose reports the inbound service reads.
	Bounce verp.Config
}

// Options are c as the senders take it, with logger; an error names the
// variable that is wrong.
func (c Config) Options(logger *slog.Logger) (Options, error) {
	g, err := netguard.New(c.Config)
	if err != nil {
		return Options{}, err
	}
	for name, u := range map[string]string{"SES_ENDPOINT": c.SESEndpoint, "GMAIL_TOKEN_URL": c.GmailTokenURL, "GMAIL_API_ENDPOINT": c.GmailAPIEndpoint} {
		if err := provider.CheckHTTPURL(u); err != nil {
			return Options{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	signer, err := c.Bounce.Signer()
	if err != nil {
		return Options{}, err
	}
	return Options{Logger: logger, Guard: g, SESEndpoint: c.SESEndpoint, GmailTokenURL: c.GmailTokenURL, GmailAPIEndpoint: c.GmailAPIEndpoint,
		VERP: signer}, nil
}

// Options are what every kind's sender is built with.
type Options struct {
	// Logger for connection events; never given secrets or content.
	Logger *slog.Logger
	// Guard vets every address a sender connects to on a tenant's behalf
	// (pkg/netguard). Nil allows public addresses only.
	Guard *netguard.Guard
	// SESEndpoint, GmailTokenURL and GmailAPIEndpoint are the operator's
	// endpoint overrides (Config); empty: the providers' own.
	SESEndpoint, GmailTokenURL, GmailAPIEndpoint string
	// VERP signs the envelope senders of SMTP sends (nil: the From address).
	VERP *verp.Signer
}

// Kind is one provider kind.
type Kind struct {
	// Name is the kind as configurations name it (the package's Kind), and
	// the name of its field in the API's settings oneofs.
	Name string
	// Schema is the kind's settings: stored JSON, API message, validation.
	Schema Schema
	// New builds the kind's sender: safe for concurrent use, a
	// provider.Verifier, an io.Closer where it holds connections.
	New func(Options) provider.Sender
	// Verify checks a configuration's credentials with s (a sender New
	// built), sending nothing: ingest's VerifyProvider.
	Verify func(ctx context.Context, s provider.Sender, cfg provider.Config) provider.Verification
	// SenderVerified, when the provider keeps verified sender identities of
	// its own (SES), reports with s (a sender New built) whether one covers a
	// sender address (or, when isDomain, a whole domain): ingest's AddSender
	// then needs no mailed code, and only such kinds can add whole domains.
	// Such a sender is verified for sends through that configuration only.
	// Nil for the others.
	SenderVerified func(ctx context.Context, s provider.Sender, cfg provider.Config, sender string, isDomain bool) (bool, error)
	// Worker are the worker's defaults for the kind.
	Worker Worker
	// Feedback parses the provider's asynchronous reports (SES events
	// delivered by SNS) for the report; nil when the provider sends none.
	Feedback provider.FeedbackParser
}

// Worker are a kind's worker defaults, overridden by
// WORKER_<KIND>_CONCURRENCY and WORKER_<KIND>_PROVIDER_RATE.
type Worker struct {
	// Concurrency is the deliveries in flight for the kind; 0 means
	// WORKER_CONCURRENCY.
	Concurrency int
	// ProviderRate is the sends per second per configuration of the kind; 0
	// means WORKER_PROVIDER_RATE.
	ProviderRate float64
}

// Stored is a configuration's settings in their stored form.
type Stored struct {
	// Settings is the settings JSON (provider_configs.settings).
	Settings []byte
	// Secret is the secret JSON to seal; nil when no secret field is set.
	Secret []byte
	// SecretFields names the secret fields that are set.
	SecretFields []string
}

// Schema is a kind's settings schema, one definition for the API, the admin
// bootstrap and the sender. Errors are *provider.FieldError naming API fields;
// no error quotes a secret.
type Schema struct {
	// Normalize validates settings and secret JSON (secret nil when none),
	// applies the defaults and returns their stored form.
	Normalize func(settings, secret []byte) (Stored, error)
	// FromAPI validates the kind's API message (the field named for the kind
	// of PutProviderRequest's settings oneof) and returns its stored form;
	// secret fields left empty keep their values in stored, the stored secret
	// JSON (nil when none).
	FromAPI func(msg proto.Message, stored []byte) (Stored, error)
	// ToAPI is the API message (the field of Provider's settings oneof) of
	// stored settings JSON, without secrets.
	ToAPI func(settings []byte) proto.Message
}

// All is every kind.
func All() []Kind {
	return []Kind{
		{
			Name:   smtp.Kind,
			Schema: schema(smtp.FromAPI, smtp.Settings.API),
			New: func(o Options) provider.Sender {
				return smtp.New(smtp.Options{Logger: o.Logger, Guard: o.Guard, VERP: o.VERP})
			},
			Verify: check((*smtp.Sender).Check),
		},
		{
			Name:   ses.Kind,
			Schema: schema(ses.FromAPI, ses.Settings.API),
			New: func(o Options) provider.Sender {
				return ses.New(ses.Options{Logger: o.Logger, Guard: o.Guard, Endpoint: o.SESEndpoint})
			},
			Verify:         check((*ses.Sender).Check),
			SenderVerified: senderVerified((*ses.Sender).SenderVerified),
			Feedback:       ses.ParseFeedback,
		},
		{
			Name:   gmail.Kind,
			Schema: schema(gmail.FromAPI, gmail.Settings.API),
			New: func(o Options) provider.Sender {
				return gmail.New(gmail.Options{Logger: o.Logger, Guard: o.Guard, TokenURL: o.GmailTokenURL, APIEndpoint: o.GmailAPIEndpoint})
			},
			Verify: check((*gmail.Sender).Check),
		},
		{
			Name:   sandbox.Kind,
			Schema: schema(sandbox.FromAPI, sandbox.Settings.API),
			New:    func(Options) provider.Sender { return sandbox.New() },
			Verify: check(sandbox.Sender.Check),
		},
	}
}

// Lookup returns the kind named name.
func Lookup(name string) (Kind, bool) {
	for _, k := range All() {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}

// Names lists the kinds' names, in All's order.
func Names() []string {
	var out []string
	for _, k := range All() {
		out = append(out, k.Name)
	}
	return out
}

// OneOf lists the kinds' names for a message: "smtp, ses, gmail or sandbox".
func OneOf() string {
	n := Names()
	if len(n) < 2 {
		return strings.Join(n, "")
	}
	return strings.Join(n[:len(n)-1], ", ") + " or " + n[len(n)-1]
}

// Senders builds the sender of every kind; close closes those that hold
// connections.
func Senders(o Options) (senders map[string]provider.Sender, close func() error) {
	senders = map[string]provider.Sender{}
	var closers []io.Closer
	for _, k := range All() {
		s := k.New(o)
		senders[k.Name] = s
		if c, ok := s.(io.Closer); ok {
			closers = append(closers, c)
		}
	}
	return senders, func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c.Close())
		}
		return errors.Join(errs...)
	}
}

// VerifyFunc checks one configuration's credentials (Kind.Verify with its
// sender).
type VerifyFunc func(ctx context.Context, cfg provider.Config) provider.Verification

// SenderVerifiedFunc is Kind.SenderVerified with its sender.
type SenderVerifiedFunc func(ctx context.Context, cfg provider.Config, sender string, isDomain bool) (bool, error)

// Checks are a kind's checks that send nothing, bound to a sender.
type Checks struct {
	Verify VerifyFunc
	// SenderVerified is nil for kinds that keep no identities.
	SenderVerified SenderVerifiedFunc
}

// Verifiers builds every kind's checks (of credentials, of sender
// identities), each kind with a sender of its own; close closes those
// senders.
func Verifiers(o Options) (verifiers map[string]Checks, close func() error) {
	senders, close := Senders(o)
	verifiers = map[string]Checks{}
	for _, k := range All() {
		s, verify, identity := senders[k.Name], k.Verify, k.SenderVerified
		c := Checks{Verify: func(ctx context.Context, cfg provider.Config) provider.Verification {
			return verify(ctx, s, cfg)
		}}
		if identity != nil {
			c.SenderVerified = func(ctx context.Context, cfg provider.Config, sender string, isDomain bool) (bool, error) {
				return identity(ctx, s, cfg, sender, isDomain)
			}
		}
		verifiers[k.Name] = c
	}
	return verifiers, close
}

// senderVerified adapts a sender's SenderVerified method to
// Kind.SenderVerified.
func senderVerified[S provider.Sender](f func(S, context.Context, provider.Config, string, bool) (bool, error)) func(context.Context, provider.Sender, provider.Config, string, bool) (bool, error) {
	return func(ctx context.Context, s provider.Sender, cfg provider.Config, sender string, isDomain bool) (bool, error) {
		typed, ok := s.(S)
		if !ok {
			return false, fmt.Errorf("cannot check sender identities with a %T", s)
		}
		return f(typed, ctx, cfg, sender, isDomain)
	}
}

// check adapts a sender's Check method (a method expression) to Kind.Verify.
func check[S provider.Sender](f func(S, context.Context, provider.Config) provider.Verification) func(context.Context, provider.Sender, provider.Config) provider.Verification {
	return func(ctx context.Context, s provider.Sender, cfg provider.Config) provider.Verification {
		typed, ok := s.(S)
		if !ok {
			return provider.Verification{Detail: fmt.Sprintf("cannot verify with a %T", s)}
		}
		return f(typed, ctx, cfg)
	}
}

// settings is what schema needs of a kind's *Settings.
type settings[S, Sec any] interface {
	*S
	Normalize(Sec) error
}

// secret is what schema needs of a kind's Secret.
type secret interface {
	Fields() []string
}

// schema builds a kind's Schema from its typed settings: fromAPI reads the
// API message, api writes it.
func schema[S any, Sec secret, M proto.Message, PS settings[S, Sec]](fromAPI func(M, Sec) (S, Sec), api func(S) M) Schema {
	store := func(s S, sec Sec) (Stored, error) {
		if err := PS(&s).Normalize(sec); err != nil {
			return Stored{}, err
		}
		var (
			out Stored
			err error
		)
		if out.Settings, err = json.Marshal(s); err != nil {
			return Stored{}, fmt.Errorf("encode settings: %w", err)
		}
		if out.SecretFields = sec.Fields(); len(out.SecretFields) > 0 {
			if out.Secret, err = json.Marshal(sec); err != nil {
				return Stored{}, errors.New("encode secret") // never the encoder's error: it could quote the secret
			}
		}
		return out, nil
	}
	return Schema{
		Normalize: func(settingsJSON, secretJSON []byte) (Stored, error) {
			var (
				s   S
				sec Sec
			)
			if len(settingsJSON) > 0 {
				if err := json.Unmarshal(settingsJSON, &s); err != nil {
					return Stored{}, provider.Invalid("settings", "%s", err)
				}
			}
			if len(secretJSON) > 0 {
				// The decoder's error could quote the secret; never pass it on.
				if err := json.Unmarshal(secretJSON, &sec); err != nil {
					return Stored{}, provider.Invalid("secret", "is not a JSON object of the kind's secret fields")
				}
			}
			return store(s, sec)
		},
		FromAPI: func(msg proto.Message, stored []byte) (Stored, error) {
			m, ok := msg.(M)
			if !ok {
				return Stored{}, provider.Invalid("settings", "a %T is not these settings", msg)
			}
			var prev Sec
			_ = json.Unmarshal(stored, &prev) // a stored secret of another shape keeps nothing
			s, sec := fromAPI(m, prev)
			return store(s, sec)
		},
		ToAPI: func(settingsJSON []byte) proto.Message {
			var s S
			_ = json.Unmarshal(settingsJSON, &s)
			return api(s)
		},
	}
}
