package partition_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/partition"
)

func TestMessageIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		at   time.Time
	}{
		{"now", time.Now()},
		{"a boundary", time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)},
		{"just before a boundary", time.Date(2026, 12, 2, 23, 59, 59, 999_999_999, time.UTC)},
		{"the epoch", time.Unix(0, 0)},
		{"far ahead", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := partition.NewMessageID(tt.at)
			require.NoError(t, err)
			require.EqualValues(t, 7, id.Version())
			require.Equal(t, "RFC4122", id.Variant().String())
			require.True(t, tt.at.Truncate(time.Millisecond).Equal(partition.IDTime(id)), "the id carries its millisecond")

			lo, hi := partition.IDBound(tt.at), partition.IDBound(tt.at.Add(time.Millisecond))
			require.LessOrEqual(t, bytes.Compare(lo[:], id[:]), 0, "at or above its millisecond's bound")
			require.Negative(t, bytes.Compare(id[:], hi[:]), "below the next millisecond's bound")
			from, before := partition.IDsFrom(tt.at), partition.IDsBefore(tt.at)
			require.Negative(t, bytes.Compare(from[:], id[:]))
			require.Negative(t, bytes.Compare(id[:], before[:]))
		})
	}
	a, err := partition.NewMessageID(time.Now())
	require.NoError(t, err)
	b, err := partition.NewMessageID(time.Now())
	require.NoError(t, err)
	require.NotEqual(t, a, b)
}
