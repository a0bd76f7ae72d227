package submission

import (
	"errors"
	"fmt"
	"time"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/envconfig"
)

// Config configures the submission listener. It is off unless Addr or
// TLSAddr is set.
type Config struct {
	// Addr is the submission port (587): STARTTLS, then AUTH.
	Addr string `env:"SUBMISSION_ADDR" help:"SMTP submission listen address, STARTTLS then AUTH (port 587; empty: no submission)"`
	// TLSAddr is the implicit-TLS submission port (465), optional.
	TLSAddr string `env:"SUBMISSION_TLS_ADDR" help:"SMTP submission with implicit TLS (port 465; empty: none)"`
	// Hostname is the name the listener greets with.
	Hostname string `env:"SUBMISSION_HOSTNAME" default:"localhost" help:"host name in the submission greeting and EHLO answer"`
	// TLSCertFile and TLSKeyFile are the listener's certificate: required,
	// unless InsecureAuth.
	TLSCertFile string `env:"SUBMISSION_TLS_CERT_FILE" help:"PEM certificate chain of the submission listener (STARTTLS and implicit TLS)"`
	TLSKeyFile  string `env:"SUBMISSION_TLS_KEY_FILE" help:"PEM private key of SUBMISSION_TLS_CERT_FILE"`
	// InsecureAuth lets clients AUTH without TLS: for a development machine
	// only, since the password is an API key.
	InsecureAuth bool `env:"SUBMISSION_INSECURE_AUTH" help:"allow AUTH without TLS (development only: the password is an API key)"`

	// IngestTarget is ingest's gRPC address: every message is a SendEmail
	// call there with the client's API key.
	IngestTarget string `env:"SUBMISSION_INGEST_TARGET" default:"localhost:8081" help:"ingest's gRPC address; each submitted message is a SendEmail call there with the client's API key"`
	// IngestInsecure talks to ingest in plaintext (a private network);
	// otherwise TLS, with IngestCAFile's roots when set.
	IngestInsecure bool   `env:"SUBMISSION_INGEST_INSECURE" help:"plaintext gRPC to ingest (a private network or development only)"`
	IngestCAFile   string `env:"SUBMISSION_INGEST_CA_FILE" help:"PEM roots that verify ingest's certificate (empty: the system roots)"`

	// MaxMessageBytes is the largest message accepted (SIZE); ingest's
	// MAX_MESSAGE_BYTES bounds the parsed message again.
	MaxMessageBytes int64 `env:"SUBMISSION_MAX_MESSAGE_BYTES" default:"14680064" help:"largest submitted message (bytes, advertised as SIZE; base64 attachments make it ~4/3 of ingest's MAX_MESSAGE_BYTES)"`
	// MaxRecipients bounds RCPT TO per message.
	MaxRecipients int `env:"SUBMISSION_MAX_RECIPIENTS" default:"50" help:"RCPT TO per message"`
	// MaxConnections bounds concurrent connections.
	MaxConnections int `env:"SUBMISSION_MAX_CONNECTIONS" default:"256" help:"concurrent submission connections"`
	// Timeout bounds each SMTP read and write.
	Timeout time.Duration `env:"SUBMISSION_TIMEOUT" default:"60s" help:"submission read and write timeout"`
	// CallTimeout bounds the calls to ingest (AUTH's and SendEmail).
	CallTimeout time.Duration `env:"SUBMISSION_CALL_TIMEOUT" default:"30s" help:"time for ingest to accept a message before the client is told to retry (451 4.3.0)"`
	// ShutdownGrace bounds the drain of open sessions at shutdown.
	ShutdownGrace time.Duration `env:"SUBMISSION_SHUTDOWN_GRACE" default:"10s" help:"how long open submission sessions may finish at shutdown"`

	// Throttle bounds failed AUTHs per client address, here, before ingest
	// is asked.
	Throttle auth.ThrottleConfig
}

// Enabled reports whether a listener is configured.
func (c Config) Enabled() bool { return c.Addr != "" || c.TLSAddr != "" }

// WithDefaults fills unset fields with the defaults the env tags name.
func (c Config) WithDefaults() (Config, error) {
	err := errors.Join(
		envconfig.FillDefaults(&c, "Hostname", "IngestTarget", "MaxMessageBytes", "MaxRecipients", "MaxConnections",
			"Timeout", "CallTimeout", "ShutdownGrace"),
		envconfig.FillDefaults(&c.Throttle, "PerMinute", "Burst"),
	)
	return c, err
}

func (c Config) validate() error {
	var errs []error
	if c.TLSCertFile == "" && !c.InsecureAuth {
		errs = append(errs, errors.New("SUBMISSION_TLS_CERT_FILE and SUBMISSION_TLS_KEY_FILE are required: AUTH carries an API key (SUBMISSION_INSECURE_AUTH=true for development only)"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls: set both SUBMISSION_TLS_CERT_FILE and SUBMISSION_TLS_KEY_FILE, or neither"))
	}
	if c.TLSAddr != "" && c.TLSCertFile == "" {
		errs = append(errs, errors.New("SUBMISSION_TLS_ADDR needs SUBMISSION_TLS_CERT_FILE and SUBMISSION_TLS_KEY_FILE"))
	}
	if c.MaxMessageBytes < 1024 || c.MaxRecipients < 1 || c.MaxConnections < 1 {
		errs = append(errs, errors.New("max message bytes (1024 or more), max recipients and max connections must be positive"))
	}
	if c.Timeout <= 0 || c.CallTimeout <= 0 || c.ShutdownGrace <= 0 {
		errs = append(errs, errors.New("timeouts must be positive"))
	}
	if c.IngestInsecure && c.IngestCAFile != "" {
		errs = append(errs, errors.New("SUBMISSION_INGEST_INSECURE and SUBMISSION_INGEST_CA_FILE exclude each other"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("submission config: %w", err)
	}
	return nil
}
