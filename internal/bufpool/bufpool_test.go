package bufpool

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGetSizes(t *testing.T) {
	for _, tc := range []struct{ n, size int }{
		{0, Small}, {1, Small}, {Small, Small}, {Small + 1, Packet},
		{Packet, Packet}, {Packet + 1, Large}, {Large, Large}, {10 * Large, Large},
	} {
		b := Get(tc.n)
		assert.Equal(t, tc.size, len(b), "Get(%d)", tc.n)
		assert.Equal(t, tc.size, cap(b), "Get(%d)", tc.n)
		Put(b)
	}
}

func TestPutRestoresLength(t *testing.T) {
	b := Get(Packet)
	Put(b[:10])
	for range 100 {
		got := Get(Packet)
		assert.Equal(t, Packet, len(got))
		Put(got)
	}
	Put(make([]byte, 1000)) // not ours: dropped, no panic
}

func TestNext(t *testing.T) {
	for _, tc := range []struct{ size, n, want int }{
		{Small, 0, Small}, {Small, Small - 1, Small}, {Small, Small, Packet},
		{Packet, Packet, Large}, {Packet, 100, Small}, {Large, Large, Large}, {Large, Large - 1, Small},
	} {
		assert.Equal(t, tc.want, Next(tc.size, tc.n), "Next(%d, %d)", tc.size, tc.n)
	}
}
