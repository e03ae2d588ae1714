package sshfwd

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestSupervisorBackoff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max time.Duration
		want     []time.Duration // before jitter, for attempts 0, 1, ...
	}{
		{"defaults", 0, 0, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}},
		{"capped", 100 * time.Millisecond, 300 * time.Millisecond, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}},
		{"min above max", time.Minute, time.Second, []time.Duration{time.Second, time.Second}},
	} {
		sv := &Supervisor{MinBackoff: tc.min, MaxBackoff: tc.max}
		for n, want := range tc.want {
			for range 50 {
				got := sv.backoff(n)
				assert.LessOrEqual(t, got, want, "%s: attempt %d", tc.name, n)
				assert.GreaterOrEqual(t, got, want-want/5, "%s: attempt %d", tc.name, n)
			}
		}
	}
	sv := &Supervisor{}
	got := sv.backoff(1000)
	assert.True(t, got >= 48*time.Second && got <= time.Minute, "many attempts do not overflow: %v", got)
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		1500 * time.Millisecond: "1.5s",
		50 * time.Millisecond:   "0.05s",
		time.Minute:             "60s",
		1234 * time.Millisecond: "1.23s",
		1890 * time.Millisecond: "1.89s",
		2*time.Second + 1:       "2s",
	} {
		assert.Equal(t, want, seconds(d))
	}
}
