package bounce

import "testing"

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    Report
		want Class
	}{
		{"user unknown by code", Report{Action: "failed", Status: "5.1.1", Diagnostic: "smtp; 550 5.1.1 <a@b>: Recipient address rejected: User unknown"}, Hard},
		{"generic status, specific diagnostic", Report{Action: "failed", Status: "5.0.0", Diagnostic: "smtp; 550 5.1.1 user unknown"}, Hard},
		{"generic code, hard text", Report{Action: "failed", Status: "5.0.0", Diagnostic: "smtp; 550 Requested action not taken: mailbox unavailable"}, Hard},
		{"null MX", Report{Action: "failed", Status: "5.1.10", Diagnostic: "smtp; 556 5.1.10 Recipient address has null MX"}, Hard},
		{"no such domain", Report{Action: "failed", Status: "5.4.4", Diagnostic: "X-Postfix; Host or domain name not found"}, Hard},
		{"mailbox full permanent", Report{Action: "failed", Status: "5.2.2", Diagnostic: "smtp; 552 5.2.2 mailbox full"}, Soft},
		{"mailbox full by text", Report{Action: "failed", Status: "5.0.0", Diagnostic: "smtp; 550 Mailbox is full"}, Soft},
		{"delayed", Report{Action: "delayed", Status: "4.4.1", Diagnostic: "X-Postfix; connect to mx.example.org: Connection timed out"}, Soft},
		{"delayed by policy", Report{Action: "delayed", Status: "4.7.0", Diagnostic: "smtp; 421 4.7.0 rate limited"}, Policy},
		{"spamhaus", Report{Action: "failed", Status: "5.7.1", Diagnostic: "smtp; 554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org"}, Policy},
		{"blocklisted generic", Report{Action: "failed", Status: "5.0.0", Diagnostic: "smtp; 550 IP listed in dnsbl"}, Policy},
		{"dmarc", Report{Action: "failed", Status: "5.7.26", Diagnostic: "smtp; 550-5.7.26 unauthenticated email is not accepted"}, Policy},
		{"too large", Report{Action: "failed", Status: "5.3.4", Diagnostic: "smtp; 552 5.3.4 Message size exceeds fixed limit"}, Message},
		{"content with policy code", Report{Action: "failed", Status: "5.7.0", Diagnostic: "smtp; 552 5.7.0 This message was blocked because its content presents a potential security issue"}, Message},
		{"media", Report{Action: "failed", Status: "5.6.1", Diagnostic: "smtp; 554 5.6.1 unsupported media"}, Message},
		{"transient code", Report{Action: "failed", Status: "4.2.0", Diagnostic: "smtp; 450 4.2.0 try later"}, Soft},
		{"basic 550 only", Report{Action: "failed", Status: "", Diagnostic: "smtp; 550 no"}, Hard},
		{"basic 552 only", Report{Action: "failed", Status: "", Diagnostic: "smtp; 552 no room"}, Soft},
		{"basic 451 only", Report{Action: "", Status: "", Diagnostic: "451 local error"}, Soft},
		{"the remote's code over the reporter's Status", Report{Action: "failed", Status: "5.1.1", Diagnostic: "smtp; 550 5.7.1 IP address blocklisted"}, Policy},
		{"words over a borrowed hard code", Report{Action: "failed", Status: "5.1.1", Diagnostic: "smtp; 550 5.1.1 <a@b> - 192.0.2.1 has sent to too many recipients this hour"}, Policy},
		{"unknown user over a policy code", Report{Action: "failed", Status: "5.7.1", Diagnostic: "smtp; 550 5.7.1 <a@b>: Recipient address rejected: User unknown"}, Hard},
		{"mailbox full over a hard code", Report{Action: "failed", Status: "5.1.1", Diagnostic: "smtp; 552 sorry, mailbox is over quota (#5.1.1)"}, Soft},
		{"temporary code keeps an unknown user soft", Report{Action: "failed", Status: "4.1.1", Diagnostic: "smtp; 450 4.1.1 <a@b>: Recipient address rejected: User unknown"}, Soft},
		{"temporary generic code, hard words", Report{Action: "failed", Status: "4.0.0", Diagnostic: "smtp; DNS Error: Domain name not found: example.invalid"}, Soft},
		{"sender's address refused", Report{Action: "failed", Status: "5.1.8", Diagnostic: "smtp; 501 5.1.8 Domain of sender address does not exist"}, Policy},
		{"remote system trouble", Report{Action: "failed", Status: "5.3.0", Diagnostic: "smtp; 554 5.3.0 Recipient address rejected: local delivery agent failed"}, Soft},
		{"routing loop", Report{Action: "failed", Status: "5.4.6", Diagnostic: "smtp; 554 5.4.6 Too many hops"}, Soft},
		{"delivery time expired", Report{Action: "failed", Status: "5.4.7", Diagnostic: ""}, Soft},
		{"protocol error", Report{Action: "failed", Status: "5.5.2", Diagnostic: "smtp; 501 5.5.2 Syntax error in parameters"}, Policy},
		{"5.5.0 is generic", Report{Action: "failed", Status: "5.5.0", Diagnostic: "smtp; 550 5.5.0 Requested action not taken: mailbox unavailable"}, Hard},
		{"Exchange Online directory-based edge block", Report{Action: "failed", Status: "5.4.1", Diagnostic: "smtp;550 5.4.1 Recipient address rejected: Access denied. AS(201806281)"}, Hard},
		{"phrase across the lines of a reply", Report{Action: "failed", Status: "5.7.1", Diagnostic: "smtp; 550-5.7.1 Messages with multiple 550 5.7.1 addresses in From: header are not accepted."}, Message},
		{"context when the diagnostic is silent", Report{Action: "failed", Status: "5.0.0", Context: "save to /var/mail/jane: mailbox is full: retry timeout exceeded"}, Soft},
		{"no context over a reply code", Report{Action: "failed", Status: "5.0.0", Diagnostic: "smtp; 550 nope", Context: "mailbox is full"}, Hard},
		{"nothing known", Report{}, Soft},
		{"failed, nothing else", Report{Action: "failed"}, Hard},
	} {
		if got := Classify(tc.r); got != tc.want {
			t.Errorf("%s: Classify(%+v) = %s, want %s", tc.name, tc.r, got, tc.want)
		}
	}
}

func TestFromSES(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ, sub, status, diag string
		want                   Class
	}{
		{"Permanent", "General", "5.1.1", "smtp; 550 5.1.1 user unknown", Hard},
		{"Permanent", "General", "", "", Hard},
		{"Permanent", "NoEmail", "", "", Hard},
		{"Permanent", "Suppressed", "5.1.1", "Amazon SES has suppressed sending to this address", Hard},
		{"Permanent", "OnAccountSuppressionList", "", "", Hard},
		{"Permanent", "General", "5.7.1", "smtp; 550 5.7.1 blocked by policy", Policy},
		{"Permanent", "General", "5.3.4", "smtp; 552 5.3.4 message too big", Message},
		{"Transient", "MailboxFull", "5.2.2", "", Soft},
		{"Transient", "MessageTooLarge", "", "", Message},
		{"Transient", "ContentRejected", "", "", Message},
		{"Transient", "AttachmentRejected", "", "", Message},
		{"Transient", "General", "4.4.7", "", Soft},
		{"Transient", "General", "4.7.0", "smtp; 421 4.7.0 reputation", Policy},
		{"Undetermined", "Undetermined", "", "", Soft},
	} {
		if got := FromSES(tc.typ, tc.sub, tc.status, tc.diag); got != tc.want {
			t.Errorf("FromSES(%s/%s, %q, %q) = %s, want %s", tc.typ, tc.sub, tc.status, tc.diag, got, tc.want)
		}
	}
}

func TestClassProperties(t *testing.T) {
	t.Parallel()
	for _, c := range Classes() {
		if !c.Valid() {
			t.Errorf("%s not valid", c)
		}
		switch c {
		case Hard, Complaint:
			if c.Suppress() == "" {
				t.Errorf("%s suppresses nothing", c)
			}
		default:
			if c.Suppress() != "" {
				t.Errorf("%s suppresses at once", c)
			}
		}
	}
	if Class("nope").Valid() {
		t.Error("unknown class valid")
	}
	if AutoReply.Event() != "" || Complaint.Event() != "COMPLAINED" || Policy.Event() != "BOUNCED" {
		t.Error("event types")
	}
	if got := ParseCode("5.0.0", "smtp; 550 5.1.1 x").String(); got != "5.1.1" {
		t.Errorf("ParseCode = %s", got)
	}
	if got := ParseCode("5.0.000").String(); got != "5.0.0" {
		t.Errorf("ParseCode generic = %s", got)
	}
}
