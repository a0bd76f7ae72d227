// Package kinds is the registry of provider kinds: the one list of them and
// how each builds its sender. A new kind is a package under pkg/provider (a
// provider.Sender that passes providertest), its settings shape in
// pkg/providerconfig, and one entry in All; kinds_test.go lists what an entry
// must provide.
package kinds

import (
	"errors"
	"io"
	"log/slog"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/gmail"
	"github.com/namirasoft/email-sender/pkg/provider/sandbox"
	"github.com/namirasoft/email-sender/pkg/provider/ses"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/providerconfig"
)

// Options are what every kind's sender is built with.
type Options struct {
	// Logger for connection events; never given secrets or content.
	Logger *slog.Logger
}

// Kind is one provider kind.
type Kind struct {
	// Name is the kind as configurations name it (providerconfig.Kind*).
	Name string
	// New builds the kind's sender: safe for concurrent use, a
	// provider.Verifier too where the kind can check credentials, an
	// io.Closer where it holds connections.
	New func(Options) provider.Sender
}

// All is every kind.
func All() []Kind {
	return []Kind{
		{Name: providerconfig.KindSandbox, New: func(Options) provider.Sender { return sandbox.New() }},
		{Name: providerconfig.KindSMTP, New: func(o Options) provider.Sender { return smtp.New(smtp.Options{Logger: o.Logger}) }},
		{Name: providerconfig.KindSES, New: func(o Options) provider.Sender { return ses.New(ses.Options{Logger: o.Logger}) }},
		{Name: providerconfig.KindGmail, New: func(o Options) provider.Sender { return gmail.New(gmail.Options{Logger: o.Logger}) }},
	}
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
