package mailservers

import (
	"testing"

	"github.com/namirasoft/email-sender/pkg/testkit/testca"
)

// CA is the test certificate authority the servers present certificates of.
type CA = testca.CA

// NewCA makes a CA and a server certificate (testca.New).
func NewCA(t testing.TB) *CA { return testca.New(t) }
