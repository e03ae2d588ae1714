package sshfwd

import (
	"context"
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/internal/x11"
)

func TestCheckX11Request(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  X11Request
		ok   bool
	}{
		{"defaults filled in", X11Request{AuthProtocol: mitMagicCookie, AuthCookie: "0123456789abcdef0123456789abcdef"}, true},
		{"upper-case hex", X11Request{AuthProtocol: mitMagicCookie, AuthCookie: "ABCDEF"}, true},
		{"odd cookie", X11Request{AuthProtocol: mitMagicCookie, AuthCookie: "0"}, false},
		{"non-hex cookie", X11Request{AuthProtocol: mitMagicCookie, AuthCookie: "0g"}, false},
		{"space in protocol", X11Request{AuthProtocol: "MIT MAGIC", AuthCookie: "00"}, false},
		{"tab in protocol", X11Request{AuthProtocol: "MIT\tMAGIC", AuthCookie: "00"}, false},
		{"NUL in protocol", X11Request{AuthProtocol: "MIT\x00", AuthCookie: "00"}, false},
		{"negative screen", X11Request{AuthProtocol: mitMagicCookie, AuthCookie: "00", ScreenNumber: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkX11Request(tc.req)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
	if strconv.IntSize == 64 {
		// A variable, because the constants would not compile for 32-bit ints.
		var largest int64 = math.MaxUint32
		assert.NoError(t, checkX11Request(X11Request{AuthProtocol: mitMagicCookie, AuthCookie: "00", ScreenNumber: int(largest)}))
		assert.Error(t, checkX11Request(X11Request{AuthProtocol: mitMagicCookie, AuthCookie: "00", ScreenNumber: int(largest + 1)}))
	}
}

// x11Forwarding returns a Session with no connection whose ForwardX11 calls
// are fs, for testing which X clients claimX11 lets through.
func x11Forwarding(fs ...*x11Forward) *Session {
	return &Session{x11Forwards: fs}
}

func TestClaimX11(t *testing.T) {
	fake := []byte("0123456789abcdef")
	setup := func(name string, data []byte) x11.Setup {
		return x11.Setup{ByteOrder: x11.LSBFirst, Major: 11, AuthName: name, AuthData: data}
	}
	active := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()

	t.Run("many", func(t *testing.T) {
		f := &x11Forward{ctx: active, proto: mitMagicCookie, fake: fake}
		s := x11Forwarding(f)
		for range 3 {
			got, why := s.claimX11(setup(mitMagicCookie, fake))
			assert.Same(t, f, got, why)
		}
	})
	t.Run("single", func(t *testing.T) {
		f := &x11Forward{ctx: active, proto: mitMagicCookie, fake: fake, single: true}
		s := x11Forwarding(f)
		got, why := s.claimX11(setup(mitMagicCookie, fake))
		require.Same(t, f, got, why)
		got, why = s.claimX11(setup(mitMagicCookie, fake))
		assert.Nil(t, got)
		assert.Equal(t, "sshfwd: X11 forwarding was for a single connection", why)
	})
	t.Run("each its own cookie", func(t *testing.T) {
		other := []byte("fedcba9876543210")
		f := &x11Forward{ctx: active, proto: mitMagicCookie, fake: fake, single: true}
		g := &x11Forward{ctx: active, proto: mitMagicCookie, fake: other}
		s := x11Forwarding(f, g)
		got, _ := s.claimX11(setup(mitMagicCookie, other))
		assert.Same(t, g, got)
		got, _ = s.claimX11(setup(mitMagicCookie, fake))
		assert.Same(t, f, got)
	})
	for _, tc := range []struct {
		name  string
		f     *x11Forward
		setup x11.Setup
	}{
		{"wrong cookie", &x11Forward{ctx: active, proto: mitMagicCookie, fake: fake}, setup(mitMagicCookie, []byte("0123456789abcdeF"))},
		{"short cookie", &x11Forward{ctx: active, proto: mitMagicCookie, fake: fake}, setup(mitMagicCookie, fake[:15])},
		{"wrong protocol", &x11Forward{ctx: active, proto: mitMagicCookie, fake: fake}, setup("XDM-AUTHORIZATION-1", fake)},
		{"no authorization", &x11Forward{ctx: active, proto: mitMagicCookie, fake: fake}, setup("", nil)},
		{"forwarding ended", &x11Forward{ctx: ended, proto: mitMagicCookie, fake: fake}, setup(mitMagicCookie, fake)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := x11Forwarding(tc.f).claimX11(tc.setup)
			assert.Nil(t, got)
			assert.Equal(t, "sshfwd: wrong X11 authorization", why)
		})
	}
}
