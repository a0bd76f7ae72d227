//go:build corpus

// The external measurement of the classifier: an opt-in test (build tag
// corpus) that classifies a directory of real-world reports whose expected
// outcome someone else decided, and prints how often we agree. It is not
// part of make test: the samples are public mail of other projects, which
// this repository does not carry.
//
//	MAILREPORT_CORPUS_DIR     a directory of .eml files (e.g. the maildir/bsd
//	                          of github.com/sisimai/set-of-emails)
//	MAILREPORT_CORPUS_EXPECT  the expected outcomes: a tab-separated file
//	                          (file, index, status, reply code, reason,
//	                          hard bounce, feedback type; "#" comments), or
//	                          the fact/ directory of github.com/sisimai/go-sisimai,
//	                          whose *_test.go public lists are read for it
//	MAILREPORT_CORPUS_MIN     optional: fail below this accuracy (0..1)
//
//	go test -tags corpus -count=1 -run TestExternalCorpus -v ./mailreport/
//
// The reasons are Sisimai's names; sisimaiClass below maps them onto our
// classes (a class name of ours is taken as itself). One row of the
// expectations is one recipient of one file; our prediction for the i-th
// recipient is the class of the report's i-th recipient, else the report's
// first class (a plain bounce names no recipients of its own).
package mailreport

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/namirasoft/email-sender/pkg/bounce"
)

// none is the column of "no class": a delivered recipient, a feedback report
// that is no complaint, mail that is no report at all.
const none = "none"

// sisimaiClass maps a Sisimai reason onto our class; "" leaves the row out
// of the score (Sisimai could not decide either). The judgement calls:
//
//   - filtered: Sisimai's own description is "almost the same as
//     userunknown" (5.2.0/5.2.1 after DATA, "Unknown user"): hard.
//   - suspend: a disabled or suspended mailbox (5.2.1, "account disabled"):
//     hard, as pkg/bounce treats a disabled mailbox.
//   - rejected (the envelope sender refused), norelaying, requireptr,
//     securityerror, syntaxerror, toomanyconn, speeding, failedstarttls:
//     the sender's problem, policy_block.
//   - spamdetected, virusdetected, contenterror, notcompliantrfc,
//     mesgtoobig, emailtoolarge, exceedlimit: this message's problem,
//     message_rejected.
//   - notaccept: hard when Sisimai calls it a hard bounce (null MX, 5xx),
//     else soft.
//   - feedback: a complaint when the feedback type is one (abuse, fraud,
//     virus, other, opt-out), else none (auth-failure, not-spam).
func sisimaiClass(reason string, hard bool, feedbackType string) string {
	switch reason {
	case "userunknown", "hostunknown", "hasmoved", "filtered", "suspend":
		return string(bounce.Hard)
	case "notaccept":
		if hard {
			return string(bounce.Hard)
		}
		return string(bounce.Soft)
	case "mailboxfull", "expired", "networkerror", "systemerror", "systemfull", "mailererror":
		return string(bounce.Soft)
	case "blocked", "badreputation", "authfailure", "requireptr", "rejected", "norelaying", "securityerror",
		"policyviolation", "toomanyconn", "speeding", "syntaxerror", "failedstarttls":
		return string(bounce.Policy)
	case "spamdetected", "virusdetected", "contenterror", "mesgtoobig", "emailtoolarge", "exceedlimit", "notcompliantrfc":
		return string(bounce.Message)
	case "vacation":
		return string(bounce.AutoReply)
	case "feedback":
		switch strings.ToLower(feedbackType) {
		case "abuse", "fraud", "virus", "other", "opt-out":
			return string(bounce.Complaint)
		}
		return none
	case "delivered":
		return none
	case "onhold", "undefined":
		return ""
	}
	if bounce.Class(reason).Valid() || reason == none {
		return reason
	}
	return ""
}

// expectation is one expected recipient outcome.
type expectation struct {
	file   string
	index  int
	status string
	reason string
	class  string // ours; "" unscored
}

func TestExternalCorpus(t *testing.T) {
	dir, src := os.Getenv("MAILREPORT_CORPUS_DIR"), os.Getenv("MAILREPORT_CORPUS_EXPECT")
	if dir == "" || src == "" {
		t.Fatal("set MAILREPORT_CORPUS_DIR (a directory of .eml files) and MAILREPORT_CORPUS_EXPECT (expectations file, or go-sisimai's fact/ directory)")
	}
	exps, err := loadExpectations(src)
	if err != nil {
		t.Fatal(err)
	}
	classes := []string{}
	for _, c := range bounce.Classes() {
		classes = append(classes, string(c))
	}
	cols := append(append([]string{}, classes...), none)
	table := map[string]map[string]int{}
	byReason := map[string]map[string]int{}
	verdicts := map[string]map[string]int{}
	var (
		scored, correct, agree, missing, unscored int
		wrong                                     []string
	)
	parsed := map[string]Report{}
	for _, e := range exps {
		if e.class == "" {
			unscored++
			continue
		}
		r, ok := parsed[e.file]
		if !ok {
			raw, err := os.ReadFile(filepath.Join(dir, e.file))
			if err != nil {
				missing++
				continue
			}
			r, err = Parse(raw)
			if err != nil {
				r = Report{Kind: Other}
			}
			parsed[e.file] = r
		}
		got := predictedAt(r, e.index)
		scored++
		inc(table, e.class, got)
		inc(byReason, e.reason, got)
		inc(verdicts, verdict(e.class), verdict(got))
		if verdict(e.class) == verdict(got) {
			agree++
		}
		if got == e.class {
			correct++
			continue
		}
		diag := ""
		if i := e.index - 1; i < len(r.Recipients) {
			diag = r.Recipients[i].Status + " " + r.Recipients[i].Diagnostic
		} else if len(r.Recipients) > 0 {
			diag = r.Recipients[0].Status + " " + r.Recipients[0].Diagnostic
		}
		if len(diag) > 140 {
			diag = diag[:140]
		}
		wrong = append(wrong, fmt.Sprintf("%-32s #%d %-16s (%s %s) got %-16s kind %-12s %s",
			e.file, e.index, e.class, e.reason, e.status, got, r.Kind, strings.TrimSpace(diag)))
	}
	if scored == 0 {
		t.Fatalf("no sample of %s found in %s", src, dir)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%d recipients of %d files scored (%d rows unscored: onhold/undefined; %d files missing)\n",
		scored, len(parsed), unscored, missing)
	fmt.Fprintf(&b, "class agreement %d/%d = %.1f%%; address verdict agreement %d/%d = %.1f%%\n\n",
		correct, scored, 100*float64(correct)/float64(scored), agree, scored, 100*float64(agree)/float64(scored))
	printTable(&b, "expected \\ predicted", append(append([]string{}, classes...), none), cols, table)
	vs := []string{"suppress", "streak", "never", "ignored"}
	b.WriteString("\naddress verdict (suppress: hard_bounce, complaint; streak: soft_bounce; never: policy_block, message_rejected; ignored: auto_reply, none)\n")
	printTable(&b, "expected \\ predicted", vs, vs, verdicts)
	reasons := make([]string, 0, len(byReason))
	for r := range byReason {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	b.WriteString("\nby the expectation's reason\n")
	printTable(&b, "reason \\ predicted", reasons, cols, byReason)
	sort.Strings(wrong)
	fmt.Fprintf(&b, "\nmisclassified (%d):\n", len(wrong))
	for _, w := range wrong {
		b.WriteString("  " + w + "\n")
	}
	t.Log(b.String())
	if v := os.Getenv("MAILREPORT_CORPUS_MIN"); v != "" {
		min, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("MAILREPORT_CORPUS_MIN: %v", err)
		}
		if acc := float64(correct) / float64(scored); acc < min {
			t.Fatalf("class agreement %.3f below %.3f", acc, min)
		}
	}
}

// predictedAt is our class of the index-th (1-based) recipient of r.
func predictedAt(r Report, index int) string {
	switch r.Kind {
	case AutoReply:
		return string(bounce.AutoReply)
	case Other:
		return none
	}
	if i := index - 1; i >= 0 && i < len(r.Recipients) {
		if c := r.Recipients[i].Class; c != "" {
			return string(c)
		}
		return none
	}
	return predicted(r)
}

// verdict is what becomes of the address of a class.
func verdict(class string) string {
	switch bounce.Class(class) {
	case bounce.Hard, bounce.Complaint:
		return "suppress"
	case bounce.Soft:
		return "streak"
	case bounce.Policy, bounce.Message:
		return "never"
	}
	return "ignored"
}

func inc(m map[string]map[string]int, row, col string) {
	if m[row] == nil {
		m[row] = map[string]int{}
	}
	m[row][col]++
}

func printTable(b *strings.Builder, corner string, rows, cols []string, m map[string]map[string]int) {
	fmt.Fprintf(b, "%-22s", corner)
	for _, c := range cols {
		fmt.Fprintf(b, " %9s", abbrev(c))
	}
	fmt.Fprintf(b, " %6s\n", "total")
	for _, r := range rows {
		fmt.Fprintf(b, "%-22s", r)
		total := 0
		for _, c := range cols {
			fmt.Fprintf(b, " %9d", m[r][c])
			total += m[r][c]
		}
		fmt.Fprintf(b, " %6d\n", total)
	}
}

// abbrev shortens a class name to a column heading.
func abbrev(c string) string {
	switch c {
	case string(bounce.Hard):
		return "hard"
	case string(bounce.Soft):
		return "soft"
	case string(bounce.Policy):
		return "policy"
	case string(bounce.Message):
		return "message"
	case string(bounce.AutoReply):
		return "autoreply"
	case string(bounce.Complaint):
		return "complaint"
	}
	return c
}

// loadExpectations reads a tab-separated expectations file, or derives the
// expectations from go-sisimai's fact/ directory when src is a directory.
func loadExpectations(src string) ([]expectation, error) {
	st, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	var rows [][7]string
	if st.IsDir() {
		rows, err = sisimaiFacts(src)
	} else {
		rows, err = tsvRows(src)
	}
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []expectation
	for _, r := range rows {
		idx, err := strconv.Atoi(r[1])
		if err != nil || idx < 1 {
			return nil, fmt.Errorf("%s: index %q of %s", src, r[1], r[0])
		}
		key := r[0] + "#" + r[1]
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, expectation{file: r[0], index: idx, status: r[2], reason: r[4],
			class: sisimaiClass(r[4], r[5] == "true", r[6])})
	}
	return out, nil
}

func tsvRows(path string) ([][7]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][7]string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Split(line, "\t")
		if len(fs) < 5 {
			return nil, fmt.Errorf("%s:%d: want file, index, status, reply, reason[, hard, feedback type]", path, n)
		}
		var r [7]string
		copy(r[:], fs)
		out = append(out, r)
	}
	return out, sc.Err()
}

var (
	// factTest is one TestLhostX/TestRhostX/TestRFC3464/TestARF function of
	// go-sisimai's fact/ tests.
	factTest = regexp.MustCompile(`(?s)func (Test\w+)\(t \*testing\.T\) \{(.*?)\n\}`)
	// factPublic is its public list, and the engine it names.
	factPublic = regexp.MustCompile(`(?s)publiclist := \[\]\[\]IsExpected\{(.*?)\}; EngineTest\(t, "([^"]+)", publiclist, true\)`)
	// factRow is one IsExpected: label, index, status, reply code, reason,
	// hard bounce, another one (the feedback type).
	factRow = regexp.MustCompile(`\{"(\w+)"\s*,\s*(\d+)\s*,\s*"([^"]*)"\s*,\s*"([^"]*)"\s*,\s*"(\w+)"\s*,\s*(true|false)\s*,\s*"([^"]*)"\s*\}`)
)

// sisimaiFacts reads the public lists of go-sisimai's fact/*_test.go: the
// sample of engine E and label L is maildir/bsd/<lhost-|rhost-|>e-L.eml.
func sisimaiFacts(dir string) ([][7]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("%s: no *_test.go (%v)", dir, err)
	}
	var out [][7]string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range factTest.FindAllStringSubmatch(string(src), -1) {
			pm := factPublic.FindStringSubmatch(m[2])
			if pm == nil {
				continue
			}
			prefix := ""
			switch {
			case strings.HasPrefix(m[1], "TestLhost"):
				prefix = "lhost-"
			case strings.HasPrefix(m[1], "TestRhost"):
				prefix = "rhost-"
			}
			for _, e := range factRow.FindAllStringSubmatch(pm[1], -1) {
				out = append(out, [7]string{prefix + strings.ToLower(pm[2]) + "-" + e[1] + ".eml", e[2], e[3], e[4], e[5], e[6], e[7]})
			}
		}
	}
	return out, nil
}
