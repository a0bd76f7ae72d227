// Package msgstatus holds the rules of a message's status: which status changes
// apply (events may arrive twice or out of order, and a recipient never moves
// backwards out of a terminal state) and how recipients' statuses summarise into
// the message's.
package msgstatus

import (
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Status is a message or recipient status.
type Status = v1.MessageStatus_Value

// Status values, re-exported for brevity.
const (
	Queued     = v1.MessageStatus_QUEUED
	Scheduled  = v1.MessageStatus_SCHEDULED
	Sending    = v1.MessageStatus_SENDING
	Retrying   = v1.MessageStatus_RETRYING
	Sent       = v1.MessageStatus_SENT
	Delivered  = v1.MessageStatus_DELIVERED
	Bounced    = v1.MessageStatus_BOUNCED
	Complained = v1.MessageStatus_COMPLAINED
	Failed     = v1.MessageStatus_FAILED
	Canceled   = v1.MessageStatus_CANCELED
	Suppressed = v1.MessageStatus_SUPPRESSED
)

// class orders statuses coarsely: a higher class always wins.
func class(s Status) int64 {
	switch s {
	case Queued, Scheduled:
		return 0
	case Sending, Retrying:
		return 1
	case Sent:
		return 2
	case Delivered:
		return 3
	case Bounced:
		return 4
	case Complained:
		return 5
	case Failed, Canceled, Suppressed:
		return 6
	}
	return -1
}

// Terminal reports whether s ends the message's delivery: the provider accepted
// it or it will never be sent. (SENT may still be followed by DELIVERED, BOUNCED
// or COMPLAINED feedback.)
func Terminal(s Status) bool { return class(s) >= 2 }

// Final reports whether nothing can follow s.
func Final(s Status) bool { return class(s) == 6 }

// Key orders one status change of a recipient. A change applies only when its key
// is greater than the recipient's current key. Within the in-flight class, later
// attempts win, and within an attempt RETRYING follows SENDING.
func Key(s Status, attempt int) int64 {
	c := class(s)
	if c < 0 {
		return -1
	}
	var phase int64
	if c == 1 {
		if s == Retrying {
			phase = 1
		}
		if attempt < 0 {
			attempt = 0
		}
		return c<<40 | int64(attempt)<<8 | phase
	}
	return c << 40
}

// summaryOrder is the precedence among terminal recipient statuses when they
// differ: the most successful outcome names the message; each recipient keeps
// its own status.
var summaryOrder = []Status{Sent, Delivered, Complained, Bounced, Failed, Suppressed, Canceled}

// Summarise returns the message status for its recipients' statuses. While any
// recipient is in flight the message is in flight (SENDING before RETRYING before
// QUEUED/SCHEDULED); once all are terminal, a single common status names the
// message, else the first of SENT, DELIVERED, COMPLAINED, BOUNCED, FAILED,
// SUPPRESSED, CANCELED that occurs.
func Summarise(recipients []Status) Status {
	if len(recipients) == 0 {
		return v1.MessageStatus_VALUE_UNSPECIFIED
	}
	seen := map[Status]bool{}
	for _, s := range recipients {
		seen[s] = true
	}
	for _, s := range []Status{Sending, Retrying, Queued, Scheduled} {
		if seen[s] {
			return s
		}
	}
	if len(seen) == 1 {
		return recipients[0]
	}
	for _, s := range summaryOrder {
		if seen[s] {
			return s
		}
	}
	return recipients[0]
}
