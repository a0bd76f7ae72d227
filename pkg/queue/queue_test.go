package queue

import (
	"testing"
	"time"
)

func TestStreamConfigDefaults(t *testing.T) {
	c := StreamConfig{}.WithDefaults()
	if c.Replicas != 1 || c.DuplicateWindow != 2*time.Hour || c.MaxMsgSize != 16<<20 || c.EventMaxAge != 7*24*time.Hour || c.InboundMaxBytes != 1<<30 {
		t.Fatalf("defaults: %+v", c)
	}
	if got := (StreamConfig{Replicas: 3, MaxMsgSize: 1 << 20}).WithDefaults(); got.Replicas != 3 || got.MaxMsgSize != 1<<20 {
		t.Fatalf("set values kept: %+v", got)
	}
}
