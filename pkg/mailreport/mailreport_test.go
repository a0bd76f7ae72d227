package mailreport

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/namirasoft/email-sender/pkg/bounce"
)

// predicted is the class a corpus sample gets: its first failed
// recipient's for a DSN or plain bounce, complaint for an ARF abuse
// report, auto_reply for an automatic reply, "none" for anything else.
func predicted(r Report) string {
	switch r.Kind {
	case AutoReply:
		return string(bounce.AutoReply)
	case DSN, ARF, PlainBounce:
		for _, rc := range r.Recipients {
			if rc.Class != "" {
				return string(rc.Class)
			}
		}
	}
	return "none"
}

// Every sample of testdata/corpus (see its README for where the formats come
// from) is classified into its directory's class; the confusion table
// (rows: expected, columns: predicted) is logged.
func TestCorpusConfusion(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*", "*.eml"))
	if err != nil || len(files) < 25 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	classes := []string{}
	for _, c := range bounce.Classes() {
		classes = append(classes, string(c))
	}
	cols := append(append([]string{}, classes...), "none")
	table := map[string]map[string]int{}
	correct := 0
	for _, f := range files {
		want := filepath.Base(filepath.Dir(f))
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(raw)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		got := predicted(r)
		if table[want] == nil {
			table[want] = map[string]int{}
		}
		table[want][got]++
		if got == want {
			correct++
		} else {
			t.Errorf("%s: classified %s (kind %s, recipients %+v), want %s", f, got, r.Kind, r.Recipients, want)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "confusion table (rows expected, columns predicted), %d/%d correct:\n%-17s", correct, len(files), "")
	for _, c := range cols {
		fmt.Fprintf(&b, " %16s", c)
	}
	b.WriteString("\n")
	rows := append([]string{}, classes...)
	for _, r := range rows {
		fmt.Fprintf(&b, "%-17s", r)
		for _, c := range cols {
			fmt.Fprintf(&b, " %16d", table[r][c])
		}
		b.WriteString("\n")
	}
	t.Log("\n" + b.String())
}

func mustParse(t *testing.T, path string) Report {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "corpus", path))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseDSNFields(t *testing.T) {
	t.Parallel()
	r := mustParse(t, "hard_bounce/postfix-user-unknown.eml")
	if r.Kind != DSN || r.ReportingMTA != "mx.example.net" || len(r.ID) != 64 {
		t.Fatalf("report %+v", r)
	}
	if len(r.Recipients) != 1 {
		t.Fatalf("recipients %+v", r.Recipients)
	}
	rc := r.Recipients[0]
	want := Recipient{Final: "jane@example.org", Original: "jane@example.org", Action: "failed", Status: "5.1.1",
		Diagnostic: "smtp; 550 5.1.1 <jane@example.org>: Recipient address rejected: User unknown in virtual mailbox table", Class: bounce.Hard}
	if rc != want {
		t.Fatalf("recipient\n got %+v\nwant %+v", rc, want)
	}
	if r.OriginalMessageID != "<0192f1c4-7a1e-7b1e-9c1e-1e2f3a4b5c6d@example.com>" {
		t.Fatalf("original message id %q", r.OriginalMessageID)
	}
	// Folded Diagnostic-Code lines are joined.
	r = mustParse(t, "hard_bounce/gmail-no-such-user.eml")
	if d := r.Recipients[0].Diagnostic; !strings.Contains(d, "does not exist. Please try 550-5.1.1 double-checking") {
		t.Fatalf("diagnostic %q", d)
	}
}

func TestParseARF(t *testing.T) {
	t.Parallel()
	r := mustParse(t, "complaint/rfc5965-abuse.eml")
	if r.Kind != ARF || r.ReportingMTA != "SomeGenerator/1.0" || len(r.Recipients) != 1 ||
		r.Recipients[0].Final != "jane@example.org" || r.Recipients[0].Class != bounce.Complaint {
		t.Fatalf("report %+v", r)
	}
	// No Original-Rcpt-To: the original's To.
	r = mustParse(t, "complaint/yahoo-fbl.eml")
	if len(r.Recipients) != 1 || r.Recipients[0].Final != "jane@yahoo.example" {
		t.Fatalf("recipients %+v", r.Recipients)
	}
	// not-spam is no complaint.
	raw, _ := os.ReadFile(filepath.Join("testdata", "corpus", "complaint", "aol-fraud.eml"))
	r, err := Parse([]byte(strings.Replace(string(raw), "Feedback-Type: fraud", "Feedback-Type: not-spam", 1)))
	if err != nil || r.Kind != ARF || r.Recipients[0].Class != "" {
		t.Fatalf("not-spam: %+v %v", r, err)
	}
}

// Formats of real reports the external measurement (see the corpus README)
// found misread, each in a sample of our own: what the parser must make of
// them beyond the class (the kind, whom the report names, the diagnostic).
func TestParseRealFormats(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path       string
		kind       Kind
		final      string // the one recipient named
		diagnostic string // a part of its diagnostic
	}{
		// A multipart/report whose delivery-status boundary is indented: the
		// fields are read from the text, so only the failed recipient counts
		// (the text names another one, still being tried).
		{"hard_bounce/broken-boundary.eml", DSN, "jane@example.org", "550 no such user here"},
		// No Diagnostic-Code: the text's line naming the recipient.
		{"policy_block/opensmtpd-no-diagnostic.eml", DSN, "jane@example.org", "550 5.7.26 Unauthenticated mail"},
		// Only Original-Recipient, in a multipart/mixed.
		{"hard_bounce/mixed-original-recipient-only.eml", DSN, "jane@example.org", "550 Unknown user"},
		// A Diagnostic-Code whose reply lines are not indented.
		{"policy_block/unindented-multiline-diagnostic.eml", DSN, "jane@example.org", "is not permitted to 550 relay for you"},
		// Exim marks its bounces Auto-Submitted: still a bounce.
		{"hard_bounce/exim-plain-auto-submitted.eml", PlainBounce, "", "550 5.1.1 <jane@example.org>: no mailbox"},
		// The reply line, not a number in the returned message.
		{"hard_bounce/plain-code-with-colon.eml", PlainBounce, "", "550: : User unknown"},
	} {
		r := mustParse(t, tc.path)
		if r.Kind != tc.kind || len(r.Recipients) != 1 {
			t.Errorf("%s: kind %s, recipients %+v", tc.path, r.Kind, r.Recipients)
			continue
		}
		if rc := r.Recipients[0]; rc.Final != tc.final || !strings.Contains(rc.Diagnostic, tc.diagnostic) {
			t.Errorf("%s: recipient %+v, want %q with %q", tc.path, rc, tc.final, tc.diagnostic)
		}
		if r.Kind == PlainBounce && strings.Contains(r.Text, "Message-ID") {
			t.Errorf("%s: the text of a plain bounce goes on into the returned message: %q", tc.path, r.Text)
		}
	}
	// Sendmail's answer to a verification is no failure.
	raw, _ := os.ReadFile(filepath.Join("testdata", "corpus", "hard_bounce", "postfix-user-unknown.eml"))
	ok := strings.NewReplacer("Action: failed", "Action: deliverable", "Status: 5.1.1", "Status: 2.1.5").Replace(string(raw))
	if r, err := Parse([]byte(ok)); err != nil || r.Kind != DSN || r.Recipients[0].Class != "" {
		t.Fatalf("deliverable: %+v %v", r, err)
	}
}

func TestParseOther(t *testing.T) {
	t.Parallel()
	for name, raw := range map[string]string{
		"a person":         "From: jane@example.org\nTo: b+x@bounces.example.net\nSubject: Re: Hello\n\nPlease stop.\n",
		"report of a kind": "From: a@b.example\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=disposition-notification; boundary=b\n\n--b\nContent-Type: text/plain\n\nread\n--b--\n",
	} {
		r, err := Parse([]byte(raw))
		if err != nil || r.Kind != Other {
			t.Errorf("%s: %+v %v", name, r, err)
		}
	}
	if _, err := Parse([]byte("no header at all")); err == nil {
		t.Error("garbage parsed")
	}
	// Truncated after the status part: still read.
	raw, _ := os.ReadFile(filepath.Join("testdata", "corpus", "hard_bounce", "exim-unknown-user.eml"))
	cut := string(raw)[:strings.Index(string(raw), "Content-Type: text/rfc822-headers")+40]
	r, err := Parse([]byte(cut))
	if err != nil || r.Kind != DSN || r.Recipients[0].Class != bounce.Hard {
		t.Fatalf("truncated: %+v %v", r, err)
	}
}

func BenchmarkParseDSN(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "corpus", "hard_bounce", "postfix-user-unknown.eml"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}
