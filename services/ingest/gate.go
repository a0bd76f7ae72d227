package ingest

import (
	"maps"

	"github.com/namirasoft/email-sender/pkg/limits"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/account"
	"github.com/namirasoft/email-sender/services/ingest/send"
	"github.com/namirasoft/email-sender/services/ingest/templates"
)

// MethodScopes is the scope each API method served by ingest needs:
// SendService methods "send"; AccountService methods "admin" except ListUsage
// ("read"). A method missing here needs "admin" (auth.Authorize), so a method
// added later is closed until it is given a scope.
func MethodScopes() map[string]string {
	m := send.Scopes()
	maps.Copy(m, account.Scopes())
	maps.Copy(m, templates.Scopes())
	return m
}

// quotaSends counts the messages of the daily quota: every message a
// SendEmail or SendBatch asks to send (and a template's test send) is
// reserved before the call, and those not accepted (the call failed, or the
// batch item was rejected) are given back. A request answered from its idempotency key counts again.
var quotaSends = limits.Sends{
	Messages: func(req any) int {
		switch r := req.(type) {
		case *emailsenderv1.SendEmailRequest:
			return 1
		case *emailsenderv1.SendBatchRequest:
			return len(r.GetMessages())
		case *emailsenderv1.SendTestTemplateRequest:
			return 1
		}
		return 0
	},
	Rejected: func(resp any, err error, n int) int {
		if err != nil {
			return n
		}
		if r, ok := resp.(*emailsenderv1.SendBatchResponse); ok {
			rejected := 0
			for _, res := range r.GetResults() {
				if res.GetAccepted() == nil {
					rejected++
				}
			}
			return rejected + max(0, n-len(r.GetResults()))
		}
		return 0
	},
}
