package submission

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/namirasoft/email-sender/pkg/client/eml"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// idempotencyPrefix marks the idempotency keys submission derives from a
// Message-ID, so they do not meet the keys API clients choose.
const idempotencyPrefix = "smtp-message-id:"

// maxKeyChars is the API's bound on an idempotency key (send.proto).
const maxKeyChars = 255

// envelope is one SMTP transaction's MAIL FROM and RCPT TO.
type envelope struct {
	from  string
	rcpts []string
}

// request is the SendEmail request for raw submitted with env. The header
// From is the message's sender (ingest checks it is a verified sender);
// senderOK says whether the envelope sender may differ from it. The
// envelope's recipients are the recipients: those in the To and Cc (and Bcc)
// headers keep their kind, the others become bcc; a header recipient that
// is not in the envelope is refused, since the service delivers to every
// recipient it is given. The Message-ID is the idempotency key.
func request(env envelope, raw []byte, senderOK func(envFrom string) bool) (*v1.SendEmailRequest, error) {
	m, h, err := eml.Parse(bytes.NewReader(raw))
	if err != nil {
		return nil, reply(554, smtp.EnhancedCode{5, 6, 0}, "Message not readable: "+err.Error())
	}
	if !strings.EqualFold(env.from, m.GetFrom().GetAddress()) && !senderOK(env.from) {
		return nil, reply(550, smtp.EnhancedCode{5, 7, 1}, fmt.Sprintf(
			"Envelope sender <%s> is neither the From header's address <%s> nor a verified sender of the account", env.from, m.GetFrom().GetAddress()))
	}
	inEnvelope := make(map[string]bool, len(env.rcpts))
	for _, r := range env.rcpts {
		inEnvelope[strings.ToLower(r)] = true
	}
	inHeaders := map[string]bool{}
	for _, list := range []struct {
		name  string
		addrs []*v1.Address
	}{{"To", m.GetTo()}, {"Cc", m.GetCc()}, {"Bcc", m.GetBcc()}} {
		for _, a := range list.addrs {
			lower := strings.ToLower(a.GetAddress())
			if !inEnvelope[lower] {
				return nil, reply(550, smtp.EnhancedCode{5, 5, 0}, fmt.Sprintf(
					"%s header address <%s> is not an envelope recipient (RCPT TO): every header recipient is delivered to, so each must be given in RCPT TO", list.name, a.GetAddress()))
			}
			inHeaders[lower] = true
		}
	}
	seen := map[string]bool{}
	for _, r := range env.rcpts {
		lower := strings.ToLower(r)
		if inHeaders[lower] || seen[lower] {
			continue
		}
		seen[lower] = true
		m.Bcc = append(m.Bcc, &v1.Address{Address: r})
	}
	return &v1.SendEmailRequest{Message: m, IdempotencyKey: idempotencyKey(h.Get("Message-ID"))}, nil
}

// idempotencyKey is the key of a Message-ID ("" for none): the id itself,
// or its SHA-256 when it is too long for a key. Ingest scopes keys to the
// account and keeps them 24 h.
func idempotencyKey(messageID string) string {
	id := strings.TrimSpace(messageID)
	if id == "" {
		return ""
	}
	if k := idempotencyPrefix + id; len(k) <= maxKeyChars && printable(id) {
		return k
	}
	sum := sha256.Sum256([]byte(id))
	return idempotencyPrefix + "sha256:" + hex.EncodeToString(sum[:])
}

// printable reports whether s is UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
