package msgstatus

import "testing"

func TestKeyOrdering(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cur, next  Status
		curA, nxtA int
		applies    bool
	}{
		{"queued to sending", Queued, Sending, 0, 1, true},
		{"sending to retrying same attempt", Sending, Retrying, 1, 1, true},
		{"retrying to sending next attempt", Retrying, Sending, 1, 2, true},
		{"late sending of earlier attempt ignored", Sending, Retrying, 2, 1, false},
		{"sent beats sending", Sending, Sent, 3, 3, true},
		{"sending after sent ignored", Sent, Sending, 1, 2, false},
		{"redelivered sent ignored", Sent, Sent, 1, 1, false},
		{"delivered after sent", Sent, Delivered, 1, 0, true},
		{"sent after delivered ignored", Delivered, Sent, 0, 1, false},
		{"complaint after delivered", Delivered, Complained, 0, 0, true},
		{"failed is final", Failed, Sent, 3, 4, false},
		{"canceled is final", Canceled, Sending, 0, 1, false},
		{"retrying to failed", Retrying, Failed, 5, 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Key(tt.next, tt.nxtA) > Key(tt.cur, tt.curA)
			if got != tt.applies {
				t.Fatalf("applies = %v, want %v", got, tt.applies)
			}
		})
	}
}

func TestSummarise(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []Status
		want Status
	}{
		{"single", []Status{Sent}, Sent},
		{"all delivered", []Status{Delivered, Delivered}, Delivered},
		{"one in flight", []Status{Delivered, Sending}, Sending},
		{"retrying wins over queued", []Status{Queued, Retrying}, Retrying},
		{"mixed terminal success first", []Status{Failed, Delivered}, Delivered},
		{"bounce and delivered", []Status{Bounced, Delivered}, Delivered},
		{"failed and suppressed", []Status{Suppressed, Failed}, Failed},
		{"all suppressed", []Status{Suppressed, Suppressed}, Suppressed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Summarise(tt.in); got != tt.want {
				t.Fatalf("Summarise(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
