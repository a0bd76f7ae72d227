package smtp

import (
	"context"
	"net"
	"os"
	"strings"
	"time"

	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/verp"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// reversePath is the envelope sender of m (MAIL FROM), "" for the null
// reverse-path <>. That is the From address, except for automatic replies:
// RFC 3834 §3.3 asks them to go with a null reverse-path, so that they can
// never cause a bounce loop, and a message marked "Auto-Submitted:
// auto-replied" gets <>.
func reversePath(m *emailsenderv1.EmailMessage) (string, error) {
	for _, h := range m.GetHeaders() {
		if strings.EqualFold(h.GetName(), "Auto-Submitted") {
			v := strings.ToLower(strings.TrimSpace(h.GetValue()))
			if v == "auto-replied" || strings.HasPrefix(v, "auto-replied;") {
				return "", nil
			}
		}
	}
	return mime.CanonicalAddress(m.GetFrom().GetAddress())
}

// bounceAddress is the VERP envelope sender of a message: bound to its
// recipient when the envelope has one, else to the message (the report then
// names the recipient); at the account's verified bounce domain when cfg
// names one, else at the operator's.
func bounceAddress(s *verp.Signer, cfg provider.Config, messageID string, rcpts []string) (string, error) {
	rcpt := ""
	if len(rcpts) == 1 {
		rcpt = strings.ToLower(rcpts[0])
	}
	return s.AddressAt(cfg.BounceDomain, cfg.AccountID, messageID, rcpt)
}

// hostFQDN is this host's fully qualified name, or "" when it has none (the
// caller then says EHLO with its address literal).
func hostFQDN() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	if fqdn(h) {
		return strings.ToLower(h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if cname, err := net.DefaultResolver.LookupCNAME(ctx, h); err == nil {
		if c := strings.TrimSuffix(cname, "."); fqdn(c) {
			return strings.ToLower(c)
		}
	}
	return ""
}

// fqdn: a dotted name other than localhost's.
func fqdn(h string) bool {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	return strings.Contains(h, ".") && h != "localhost.localdomain" && !strings.HasSuffix(h, ".localhost") && net.ParseIP(h) == nil
}

// addressLiteral is the EHLO argument for a host without a name: its address
// on this connection (RFC 5321 §4.1.3).
func addressLiteral(local net.Addr) string {
	ta, ok := local.(*net.TCPAddr)
	if !ok || ta.IP == nil {
		return "[127.0.0.1]"
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return "[" + ip4.String() + "]"
	}
	return "[IPv6:" + ta.IP.String() + "]"
}
