// Package bounce is the one bounce taxonomy of every provider: what a report
// about a message that did not arrive (a DSN, an SES bounce event) or an
// abuse report means for the address, in our own names.
//
//	Class             examples                               the address
//	hard_bounce       no such user, bad domain (5.1.x, 5.4.4) suppressed
//	soft_bounce       mailbox full, deferred (4.x.x, x.2.2)   suppressed after N in a row (pkg/suppression)
//	policy_block      blocklisted, unauthenticated (x.7.x)    never suppressed: the sender's problem
//	message_rejected  too large, content or virus (5.3.4, x.6) never suppressed: this message's problem
//	auto_reply        out of office (RFC 3834)                ignored
//	complaint         abuse report (ARF, RFC 5965)            suppressed
//
// Classify decides from the enhanced status code (RFC 3463) and the
// diagnostic text: words that name the cause outright (a blocklist, a full
// mailbox, an unknown user) decide first, since servers often borrow a code
// for the wrong cause; then a specific code (the remote server's own, in
// the diagnostic, over the reporting MTA's Status); then the diagnostic's
// words for a generic code ("5.0.0"), then the report's surrounding text
// when the diagnostic has neither words of use nor a reply code, and the
// code's first digit decides the rest. A temporary code (4.x.x) never makes
// a hard bounce. FromSES maps SES's bounce types into the same names.
//
// The rules are measured against real reports of other projects
// (pkg/mailreport's opt-in corpus test, see its testdata/corpus/README.md).
package bounce

import (
	"regexp"
	"strings"
)

// Class is one kind of bounce (or complaint) in our own names; its string is
// what events carry as their error_class.
type Class string

// The classes.
const (
	Hard      Class = "hard_bounce"
	Soft      Class = "soft_bounce"
	Policy    Class = "policy_block"
	Message   Class = "message_rejected"
	AutoReply Class = "auto_reply"
	Complaint Class = "complaint"
)

// Classes lists every class, in the order of the package doc.
func Classes() []Class { return []Class{Hard, Soft, Policy, Message, AutoReply, Complaint} }

// Valid reports whether c is one of the classes.
func (c Class) Valid() bool {
	for _, k := range Classes() {
		if c == k {
			return true
		}
	}
	return false
}

// Event is the delivery event type of the class ("BOUNCED", "COMPLAINED"), ""
// for auto-replies, which change nothing.
func (c Class) Event() string {
	switch c {
	case Hard, Soft, Policy, Message:
		return "BOUNCED"
	case Complaint:
		return "COMPLAINED"
	}
	return ""
}

// Suppress is the suppression reason the class adds at once ("bounce",
// "complaint"), "" when it adds none. Soft bounces suppress only after a
// streak (pkg/suppression counts it); policy blocks and rejected messages
// never do: the address is fine.
func (c Class) Suppress() string {
	switch c {
	case Hard:
		return "bounce"
	case Complaint:
		return "complaint"
	}
	return ""
}

// Describe is the class in words for a recipient's detail.
func (c Class) Describe() string {
	switch c {
	case Hard:
		return "hard bounce"
	case Soft:
		return "soft bounce"
	case Policy:
		return "policy or reputation block"
	case Message:
		return "message rejected"
	case AutoReply:
		return "auto-reply"
	case Complaint:
		return "complaint"
	}
	return string(c)
}

// Verdict says what becomes of the address of a class: "address suppressed",
// "not suppressed", ...
func (c Class) Verdict() string {
	switch c {
	case Hard, Complaint:
		return "address suppressed"
	case Soft:
		return "not suppressed"
	case Policy, Message:
		return "address not suppressed"
	}
	return "ignored"
}

var (
	// enhanced matches an enhanced status code (RFC 3463) in text.
	enhanced = regexp.MustCompile(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)
	// basic matches a three-digit SMTP reply code at the start of text or
	// after "smtp;" and spaces.
	basic = regexp.MustCompile(`(?:^|[;\s])([245]\d\d)[\s:-]`)
)

// Code is a parsed enhanced status code: class (2, 4, 5), subject, detail.
type Code struct {
	Class, Subject, Detail string
}

// String is the code as written: "5.1.1", "" for none.
func (c Code) String() string {
	if c.Class == "" {
		return ""
	}
	return c.Class + "." + c.Subject + "." + c.Detail
}

// generic reports whether the code says no more than its class does.
func (c Code) generic() bool { return c.Class == "" || c.Subject == "0" && c.Detail == "0" }

// ParseCode finds the most specific enhanced status code in the texts (a
// DSN's Status field, its Diagnostic-Code): the first one that is not
// generic (x.0.0), else the first one.
func ParseCode(texts ...string) Code {
	var first Code
	for _, t := range texts {
		for _, m := range enhanced.FindAllStringSubmatch(t, -1) {
			c := Code{m[1], trimZeros(m[2]), trimZeros(m[3])}
			if !c.generic() {
				return c
			}
			if first.Class == "" {
				first = c
			}
		}
	}
	return first
}

func trimZeros(s string) string {
	t := strings.TrimLeft(s, "0")
	if t == "" {
		return "0"
	}
	return t
}

// Report is what a bounce report says about one recipient.
type Report struct {
	// Action is the DSN Action ("failed", "delayed", ...), "" when unknown.
	Action string
	// Status is the DSN Status or the provider's status ("5.1.1").
	Status string
	// Diagnostic is the remote server's answer or the reporting MTA's words.
	Diagnostic string
	// Context is the human-readable text around it (a plain bounce's
	// explanation, a DSN's text part): its wording is heard only when the
	// code and the diagnostic say nothing beyond permanent or temporary.
	Context string
}

// Classify is the class of a bounce report. It returns no AutoReply or
// Complaint: those are kinds of reports (an out-of-office message, an ARF
// report), not of bounce, and the parser of the report says so itself.
//
// The remote server's own code (in the diagnostic) is trusted over the
// reporting MTA's Status, which MTAs often fill in by guess; a specific code
// decides unless the diagnostic's words name the cause outright (a
// blocklist, a full mailbox, an unknown user: see strong), since a code
// borrowed for the wrong cause is common and suppressing a good address is
// the costly mistake.
func Classify(r Report) Class {
	action := strings.ToLower(strings.TrimSpace(r.Action))
	code := ParseCode(r.Diagnostic, r.Status)
	text := words(r.Diagnostic)
	if action == "delayed" {
		// Still being tried: whatever went wrong is not final.
		if byText(text) == Policy || code.Subject == "7" {
			return Policy
		}
		return Soft
	}
	if s := byStrong(text); s != "" && (s != Hard || code.Class != "4") {
		// Named outright; a temporary code keeps an unknown user soft (the
		// server said to try again).
		return s
	}
	if c, ok := byCode(code); ok {
		// Text can move a policy code to message-level (content, virus):
		// neither suppresses.
		if c == Policy && byText(text) == Message {
			return Message
		}
		return c
	}
	// Words decide from here on; a temporary code keeps them from
	// suppressing at once.
	temporary := code.Class == "4" || code.Class == "" && basicClass(r.Diagnostic) == '4'
	if c := byText(text); c != "" {
		return demote(c, temporary)
	}
	if basicClass(r.Diagnostic) == 0 {
		// The diagnostic has no words of use and not even a reply code:
		// the text around it may say (a bounce's "mailbox is full: retry
		// timeout exceeded").
		if c := byText(words(r.Context)); c != "" {
			return demote(c, temporary)
		}
	}
	switch {
	case code.Class == "4":
		return Soft
	case code.Class == "5":
		return Hard
	}
	// No enhanced code: the basic reply code of the diagnostic.
	if m := basic.FindStringSubmatch(r.Diagnostic); m != nil {
		switch m[1][0] {
		case '4':
			return Soft
		case '5':
			if m[1] == "552" {
				// 552: exceeded storage allocation (RFC 5321 §4.2.3).
				return Soft
			}
			return Hard
		}
	}
	if action == "failed" {
		return Hard
	}
	// Nothing says it is permanent: do not suppress on a guess.
	return Soft
}

// basicClass is the first digit of the diagnostic's basic reply code, 0
// for none.
func basicClass(diagnostic string) byte {
	if m := basic.FindStringSubmatch(diagnostic); m != nil {
		return m[1][0]
	}
	return 0
}

// demote turns a hard bounce the words said into a soft one when the code
// said the failure is temporary.
func demote(c Class, temporary bool) Class {
	if c == Hard && temporary {
		return Soft
	}
	return c
}

// replyPrefix matches the reply code that starts each line of a multi-line
// SMTP reply ("550-5.7.1 "), which joined lines carry in mid-text.
var replyPrefix = regexp.MustCompile(`\s[245]\d\d[- ](?:[245]\.\d{1,3}\.\d{1,3}\s)?`)

// words is text lower-cased for phrase matching, white space collapsed and
// the reply codes of continued lines dropped, so a phrase split over the
// lines of a reply still matches.
func words(s string) string {
	s = " " + strings.Join(strings.Fields(strings.ToLower(s)), " ")
	if first := basic.FindStringIndex(s); first != nil {
		s = s[:first[1]] + replyPrefix.ReplaceAllString(s[first[1]:], " ")
	}
	return strings.TrimSpace(s)
}

// byCode is the class a specific enhanced code decides, false for a generic
// or unknown one (the text decides then).
func byCode(c Code) (Class, bool) {
	if c.generic() {
		return "", false
	}
	if c.Subject == "7" {
		// Security or policy status (RFC 3463 §3.8), temporary or not.
		return Policy, true
	}
	if c.Class == "4" {
		return Soft, true
	}
	switch c.Subject + "." + c.Detail {
	case "1.1", // bad destination mailbox address
		"1.2",  // bad destination system address
		"1.3",  // bad destination mailbox address syntax
		"1.6",  // destination mailbox has moved
		"1.10", // recipient address has null MX (RFC 7505)
		"2.1",  // mailbox disabled
		"4.4":  // unable to route (no MX, no such domain)
		return Hard, true
	case "1.7", // bad sender's mailbox address syntax
		"1.8": // bad sender's system address
		// The sender's address was refused, not the recipient's.
		return Policy, true
	case "2.2": // mailbox full
		return Soft, true
	case "2.3", // message length exceeds administrative limit
		"3.4": // message too big for system
		return Message, true
	case "4.1", // no answer from host
		"4.2", // bad connection
		"4.3", // directory server failure
		"4.5", // mail system congestion
		"4.6", // routing loop detected
		"4.7": // delivery time expired
		// The way there failed, not the address (RFC 3463 §3.5).
		return Soft, true
	}
	switch c.Subject {
	case "3":
		// Mail system status (RFC 3463 §3.4): the remote system's trouble
		// (full, not accepting, misconfigured), not the address's.
		return Soft, true
	case "5":
		if c.Detail != "0" {
			// Protocol status (RFC 3463 §3.6): the sending side's command
			// or syntax was refused. 5.5.0 is generic in practice (many
			// servers answer "550 5.5.0 mailbox unavailable"): text decides.
			return Policy, true
		}
	case "6":
		// Message content or media status (RFC 3463 §3.7).
		return Message, true
	}
	return "", false
}

// strong are the phrases that name a cause outright; they decide over a
// specific code (see Classify). Checked in order.
var strong = []struct {
	class Class
	words []string
}{
	{Policy, []string{"spamhaus", "blacklisted", "blocklisted", "blacklist", "blocklist", "dnsbl", "blocked using",
		"sender address rejected", "domain of sender address", "sender rejected", "receiving mail at a rate",
		"too many recipients this hour", "rate limit"}},
	{Message, []string{"virus", "malware", "message size exceeds", "message too large", "message is too large",
		"not rfc 5322 compliant", "duplicate header", "multiple addresses in from"}},
	{Soft, []string{"mailbox full", "mailbox is full", "over quota", "overquota", "quota exceeded", "exceeded storage",
		"mailfolder is full", "inbox is full"}},
	{Hard, []string{"user unknown", "unknown user", "no such user", "user not found", "unknown recipient", "invalid recipient",
		"not listed in public name & address book", "not listed in domino directory",
		"recipient not found", "no such mailbox", "mailbox not found", "account disabled", "account has been disabled",
		"account is disabled", "disabled recipient", "recipient address rejected: access denied"}},
}

// byStrong is the class the diagnostic names outright, "" when none.
func byStrong(text string) Class {
	for _, p := range strong {
		for _, w := range p.words {
			if strings.Contains(text, w) {
				return p.class
			}
		}
	}
	return ""
}

// phrase rules, checked in order: the first that matches decides.
var phrases = []struct {
	class Class
	words []string
}{
	{Hard, []string{"recipient address rejected: access denied"}},
	{Policy, []string{"spamhaus", "blacklist", "blocklist", "black list", "block list", "dnsbl", "rbl", "blocked using",
		"listed at", "listed in", "reputation", "poor reputation", "not authorized", "unauthenticated", "dmarc", "spf",
		"dkim", "policy", "spam", "rate limit", "too many", "relay access denied", "relaying denied", "access denied",
		"messages from [", "banned", "refused by recipient", "sender address rejected", "domain of sender address",
		"sender rejected", "unroutable sender", "not verified", "service unavailable", "service not available",
		"not accepting connections", "service refused", "ptr record", "reverse dns", "open relay", "insecure mail relay",
		"not permitted", "not allowed", "frequency limited", "rejected for policy", "protocol violation",
		"improper sequence", "command parameter not implemented", "client host rejected", "rdns", "blocked by",
		"invalid ip", "starttls", "tls negotiation"}},
	{Message, []string{"message size", "too large", "too big", "size limit", "exceeds the maximum", "exceeded google's message size",
		"message length", "virus", "malware", "attachment", "content rejected", "message content", "content presents",
		"message rejected due to content", "not rfc compliant", "header error"}},
	{Soft, []string{"mailbox full", "mailbox is full", "over quota", "overquota", "quota exceeded", "exceeded storage",
		"exceeds allowed size", "insufficient storage", "out of storage", "try again later", "please try later",
		"temporarily", "temporary", "timed out", "connection refused", "deferred", "delayed", "warning message only",
		"retry timeout exceeded", "retry time not reached", "have been failing for", "has been failing for",
		"could not be delivered for", "could not deliver for", "delivery time expired", "message expired", "expired",
		"too long in queue", "giving up", "still trying", "will retry", "requests to connect", "socket error",
		"could not connect", "unable to connect", "host name lookup failure", "too many hops",
		"system error", "internal error", "mailer error", "service currently unavailable", "transaction failed",
		"hop count", "routing loop", "not found, try again", "host not reachable", "mailfolder is full", "inbox is full", "x-unix;", "pipe to |"}},
	{Hard, []string{"user unknown", "unknown user", "no such user", "no such mailbox", "no mailbox", "mailbox not found",
		"mailbox unavailable", "mailbox does not exist", "does not exist", "recipient not found", "recipientnotfound",
		"unknown recipient", "invalid recipient", "recipient address rejected", "address rejected", "unrouteable address",
		"host or domain name not found", "domain not found", "host not found", "no mx", "account disabled",
		"account has been disabled", "is disabled", "account is disabled", "inactive", "not our customer",
		"undeliverable address", "bad destination", "not listed in", "not a registered", "invalid address",
		"no such recipient", "user not found", "address not found", "name service error", "host unknown",
		"no such domain", "domain name not found"}},
}

// byText is the class the diagnostic text's wording says, "" when none.
func byText(text string) Class {
	for _, p := range phrases {
		for _, w := range p.words {
			if strings.Contains(text, w) {
				return p.class
			}
		}
	}
	return ""
}

// FromSES is the class of an SES bounce (bounceType, bounceSubType) for one
// recipient with its status and diagnostic code. SES's types decide where
// they are specific; a Permanent "General" bounce that the remote server
// explained as a policy block or a rejected message is one (never
// suppressed), as is an Undetermined or Transient General bounce whose code
// says so.
func FromSES(bounceType, subType, status, diagnostic string) Class {
	r := Report{Action: "failed", Status: status, Diagnostic: diagnostic}
	switch bounceType {
	case "Permanent":
		switch subType {
		case "NoEmail", "Suppressed", "OnAccountSuppressionList":
			return Hard
		}
		if c := Classify(r); c == Policy || c == Message {
			return c
		}
		return Hard
	case "Transient":
		switch subType {
		case "MailboxFull":
			return Soft
		case "MessageTooLarge", "ContentRejected", "AttachmentRejected":
			return Message
		}
		if c := Classify(r); c == Policy || c == Message {
			return c
		}
		return Soft
	}
	// Undetermined: SES could not tell; neither can we, beyond the code.
	if c := Classify(r); c == Policy || c == Message {
		return c
	}
	return Soft
}
