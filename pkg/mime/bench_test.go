package mime_test

import (
	"strings"
	"testing"
	"time"

	"github.com/namirasoft/email-sender/pkg/mime"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// BenchmarkRaw builds the bytes the SMTP provider sends, per message, for the
// sizes `make bench` uses end to end.
func BenchmarkRaw(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		m := &emailsenderv1.EmailMessage{
			From:     &emailsenderv1.Address{Address: "sender@example.com", Name: "Bench Sender"},
			To:       []*emailsenderv1.Address{{Address: "someone@example.com", Name: "Bench Recipient"}},
			Subject:  "Benchmark message",
			TextBody: strings.Repeat("the quick brown fox jumps over the lazy dog\n", size/44+1)[:size],
		}
		o := mime.Options{MessageID: "01a217e2-79aa-7801-8bb3-cde6d072edcc", Date: time.Unix(1_800_000_000, 0)}
		b.Run(map[int]string{1 << 10: "1KB", 100 << 10: "100KB"}[size], func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := mime.Raw(m, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCanonicalAddress is the envelope address conversion done per sender
// and recipient of every delivery.
func BenchmarkCanonicalAddress(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mime.CanonicalAddress("someone@example.com"); err != nil {
			b.Fatal(err)
		}
	}
}
