package validate

import (
	"strings"
	"testing"

	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// FuzzAddress runs addresses, display names and custom headers through the
// whole validation: it never panics, an accepted address is canonical (it
// validates again to itself), and nothing with CR or LF is ever accepted into a
// header.
func FuzzAddress(f *testing.F) {
	f.Add("jane@example.com", "Jane", "X-Tag", "v")
	f.Add(`"jane doe"@bücher.example`, "Jörg", "X-A", "b")
	f.Add("jane@example.com\r\nBcc: evil@x.com", "a\nb", "Bcc", "x\r\ny")
	f.Add("a@b", "", "Content-Type", "text/html")
	f.Fuzz(func(t *testing.T, addr, name, hname, hvalue string) {
		req := &emailsenderv1.SendEmailRequest{Message: &emailsenderv1.EmailMessage{
			From:     &emailsenderv1.Address{Address: "sender@example.com"},
			To:       []*emailsenderv1.Address{{Address: addr, Name: name}},
			TextBody: "hi",
			Headers:  []*emailsenderv1.Header{{Name: hname, Value: hvalue}},
		}}
		got, err := SendEmail(req, Limits{}, now)
		if err != nil {
			return
		}
		to := got.Message.GetTo()[0]
		for _, s := range []string{to.GetAddress(), to.GetName(), hname, hvalue} {
			if strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("accepted %q with CR, LF or NUL", s)
			}
		}
		again, err := SendEmail(&emailsenderv1.SendEmailRequest{Message: got.Message}, Limits{}, now)
		if err != nil {
			t.Fatalf("normalised message %v does not validate again: %v", got.Message, err)
		}
		if a := again.Message.GetTo()[0].GetAddress(); a != to.GetAddress() {
			t.Fatalf("address %q normalises to %q, then to %q", addr, to.GetAddress(), a)
		}
		if again.Recipients[0] != got.Recipients[0] {
			t.Fatalf("recipient %v changes to %v on a second pass", got.Recipients[0], again.Recipients[0])
		}
	})
}
