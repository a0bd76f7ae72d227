// Package sendjob reads a send job as the worker fetches it from EMAIL_SEND:
// it decodes the bytes and works out the envelope the provider gets.
package sendjob

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// ErrNoMessageID marks a send job that names no message.
var ErrNoMessageID = errors.New("send job without message id")

// Decode decodes a send job. A job without a message id cannot be
// attributed to a message, so it is as undecodable as garbage.
func Decode(data []byte) (*queuev1.SendJob, error) {
	job := &queuev1.SendJob{}
	if err := proto.Unmarshal(data, job); err != nil {
		return nil, fmt.Errorf("decode send job: %w", err)
	}
	if job.GetMessageId() == "" {
		return nil, ErrNoMessageID
	}
	return job, nil
}

// Addresses returns every to, cc and bcc address of the job, lower-cased
// and de-duplicated: what the suppression list is looked up for.
func Addresses(job *queuev1.SendJob) []string {
	all, _ := Recipients(job)
	return all
}

// Recipients returns the envelope (every to, cc and bcc address, lower-cased,
// de-duplicated) and the suppressed addresses left out of it: those of
// suppressed (the account's suppression list, looked up at delivery) and
// those the job names (ingest looked them up at acceptance before it left
// that to the worker).
func Recipients(job *queuev1.SendJob, suppressed ...string) (envelope, left []string) {
	sup := map[string]bool{}
	for _, s := range job.GetSuppressed() {
		sup[strings.ToLower(s)] = true
	}
	for _, s := range suppressed {
		sup[strings.ToLower(s)] = true
	}
	seen := map[string]bool{}
	m := job.GetMessage()
	for _, list := range [][]*v1.Address{m.GetTo(), m.GetCc(), m.GetBcc()} {
		for _, a := range list {
			addr := strings.ToLower(a.GetAddress())
			if seen[addr] {
				continue
			}
			seen[addr] = true
			if sup[addr] {
				left = append(left, addr)
			} else {
				envelope = append(envelope, addr)
			}
		}
	}
	return envelope, left
}
