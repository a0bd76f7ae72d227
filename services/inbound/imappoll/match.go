package imappoll

import (
	"bytes"
	"net/mail"
	"strings"

	"github.com/google/uuid"

	"github.com/namirasoft/email-sender/pkg/mailreport"
	"github.com/namirasoft/email-sender/pkg/verp"
)

// envelopeHeaders carry the address a mail was delivered to, as delivery
// agents record it; To last (a DSN's To is the envelope sender).
var envelopeHeaders = []string{"Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Rcpt-To", "To"}

// match finds the message a mailbox's mail is about: the verified bounce
// address it was delivered to, when it names one (at the operator's bounce
// domain, or at the mailbox's account's own: such an address's mac binds
// the account), else the id in the Message-ID (<id@domain>) of the original
// it returns. Neither: nil, "".
func match(signer *verp.Signer, account string, raw []byte) (*verp.Token, string) {
	owner := func(string) (string, bool) { return account, account != "" }
	if m, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
		for _, h := range envelopeHeaders {
			for _, v := range m.Header[h] {
				for _, a := range addresses(v) {
					if tok, err := signer.ParseOwned(a, owner); err == nil {
						return &tok, ""
					}
				}
			}
		}
	}
	rep, err := mailreport.Parse(raw)
	if err != nil {
		return nil, ""
	}
	id := strings.Trim(strings.TrimSpace(rep.OriginalMessageID), "<>")
	local, _, ok := strings.Cut(id, "@")
	if !ok {
		return nil, ""
	}
	u, err := uuid.Parse(local)
	if err != nil {
		return nil, ""
	}
	return nil, u.String()
}

// addresses are the addresses of a header value (a list, or one bare).
func addresses(v string) []string {
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = a.Address
		}
		return out
	}
	return []string{strings.Trim(strings.TrimSpace(v), "<>")}
}
