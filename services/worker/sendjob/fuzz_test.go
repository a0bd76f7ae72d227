package sendjob

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// FuzzSendJob decodes arbitrary bytes as a send job, as the worker does with
// what it fetches: it never panics; a decoded job re-encodes to the same job;
// and its envelope is exactly the job's to, cc and bcc addresses, lower-cased
// and without duplicates, less the suppressed ones, which are reported apart.
func FuzzSendJob(f *testing.F) {
	for _, job := range []*queuev1.SendJob{
		{MessageId: "01a217e2-79aa-7801-8bb3-cde6d072edcc"},
		sampleJob(),
	} {
		b, err := proto.Marshal(job)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x00})
	f.Add([]byte("\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		job, err := Decode(data)
		if err != nil {
			return
		}
		if job.GetMessageId() == "" {
			t.Fatal("decoded a job without message id")
		}
		b, err := proto.Marshal(job)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := Decode(b)
		if err != nil || !proto.Equal(job, again) {
			t.Fatalf("job does not survive a round trip: %v", err)
		}

		envelope, suppressed := Recipients(job)
		want := map[string]bool{}
		m := job.GetMessage()
		for _, a := range append(append(append([]*v1.Address(nil), m.GetTo()...), m.GetCc()...), m.GetBcc()...) {
			want[strings.ToLower(a.GetAddress())] = true
		}
		sup := map[string]bool{}
		for _, s := range job.GetSuppressed() {
			sup[strings.ToLower(s)] = true
		}
		got := map[string]bool{}
		for _, r := range envelope {
			if got[r] || sup[r] || !want[r] {
				t.Fatalf("envelope %q: duplicate, suppressed or not a recipient of the job", r)
			}
			got[r] = true
		}
		for _, r := range suppressed {
			if got[r] || !sup[r] || !want[r] {
				t.Fatalf("suppressed %q: duplicate, not suppressed or not a recipient of the job", r)
			}
			got[r] = true
		}
		if len(got) != len(want) {
			t.Fatalf("envelope %v + suppressed %v miss recipients of %v", envelope, suppressed, want)
		}
	})
}

func sampleJob() *queuev1.SendJob {
	return &queuev1.SendJob{
		MessageId: "01a217e2-79aa-7801-8bb3-cde6d072edcc", AccountId: "01a217e2-79aa-7801-8bb3-cde6d072edcd",
		ProviderId: "01a217e2-79aa-7801-8bb3-cde6d072edce", ProviderKind: "sandbox",
		Message: &v1.EmailMessage{
			From:    &v1.Address{Address: "sender@example.com", Name: "Sender"},
			To:      []*v1.Address{{Address: "Jane@Example.com", Name: "Jane"}, {Address: "jane@example.com"}},
			Cc:      []*v1.Address{{Address: "bounce+x@example.com"}},
			Bcc:     []*v1.Address{{Address: "\"quoted local\"@bücher.example"}},
			Subject: "Hello", TextBody: "Hi",
		},
		Suppressed: []string{"BOUNCE+x@example.com"},
	}
}
