package sshfwd

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// fakeNewChannel is an incoming channel for the router, with no connection
// behind it.
type fakeNewChannel struct {
	typ      string
	extra    []byte
	rejected ssh.RejectionReason
}

func (f *fakeNewChannel) Accept() (ssh.Channel, <-chan *ssh.Request, error) {
	panic("the router must not accept channels itself")
}
func (f *fakeNewChannel) Reject(r ssh.RejectionReason, _ string) error { f.rejected = r; return nil }
func (f *fakeNewChannel) ChannelType() string                          { return f.typ }
func (f *fakeNewChannel) ExtraData() []byte                            { return f.extra }

// routerOnly is a Session with forwards but no connection, for testing
// where channels go.
func routerOnly(forwards ...*remoteForward) *Session {
	s := &Session{done: make(chan struct{}), acceptQ: newQueue(), x11Q: newQueue(), channels: map[*Channel]struct{}{}}
	for _, f := range forwards {
		if f.q == nil {
			f.q = s.acceptQ
		}
		s.forwards = append(s.forwards, f)
	}
	return s
}

func tcpip(host string, port uint32) []byte {
	return ssh.Marshal(&wire.TCPIP{Host: host, Port: port, OriginHost: "192.0.2.1", OriginPort: 40000})
}

func TestPlace(t *testing.T) {
	localhost := &remoteForward{addr: "localhost", port: 8080, requested: 8080}
	any := &remoteForward{addr: "", port: 9090, requested: 9090}
	twinA := &remoteForward{addr: "10.0.0.1", port: 7070, requested: 7070}
	twinB := &remoteForward{addr: "10.0.0.2", port: 7070, requested: 7070}
	pending := &remoteForward{addr: "127.0.0.1", port: 0, pending: true}
	chosen := &remoteForward{addr: "10.1.1.1", port: 5555}
	chosenTwinA := &remoteForward{addr: "10.2.2.2", port: 5556}
	chosenTwinB := &remoteForward{addr: "10.2.2.2", port: 5557}
	sock := &remoteForward{addr: "/tmp/s.sock", unix: true}
	s := routerOnly(localhost, any, twinA, twinB, pending, chosen, chosenTwinA, chosenTwinB, sock)

	for _, tc := range []struct {
		name   string
		typ    string
		extra  []byte
		want   *remoteForward
		reason ssh.RejectionReason
		port   int // the port AcceptForward reports, when not the one sent
	}{
		{"exact", wire.ForwardedTCPIP, tcpip("localhost", 8080), localhost, 0, 0},
		{"other spelling", wire.ForwardedTCPIP, tcpip("127.0.0.1", 8080), localhost, 0, 0},
		{"wildcard spelled 0.0.0.0", wire.ForwardedTCPIP, tcpip("0.0.0.0", 9090), any, 0, 0},
		{"two on one port, exact", wire.ForwardedTCPIP, tcpip("10.0.0.2", 7070), twinB, 0, 0},
		{"two on one port, ambiguous", wire.ForwardedTCPIP, tcpip("10.0.0.3", 7070), nil, ssh.Prohibited, 0},
		{"port 0 still pending", wire.ForwardedTCPIP, tcpip("localhost", 6060), pending, 0, 0},
		{"port 0 still pending, sent as port 0", wire.ForwardedTCPIP, tcpip("127.0.0.1", 0), pending, 0, 0},
		{"nobody asked", wire.ForwardedTCPIP, tcpip("10.9.9.9", 5050), nil, ssh.Prohibited, 0},
		{"port 0 from asyncssh: the forward asked with port 0", wire.ForwardedTCPIP, tcpip("10.1.1.1", 0), chosen, 0, 5555},
		{"port 0, two forwards asked with port 0", wire.ForwardedTCPIP, tcpip("10.2.2.2", 0), nil, ssh.Prohibited, 0},
		{"port 0, none asked with port 0 there", wire.ForwardedTCPIP, tcpip("10.0.0.1", 0), nil, ssh.Prohibited, 0},
		{"port too big", wire.ForwardedTCPIP, tcpip("localhost", 70000), nil, ssh.ConnectionFailed, 0},
		{"malformed", wire.ForwardedTCPIP, []byte{0, 0, 0, 9, 'x'}, nil, ssh.ConnectionFailed, 0},
		{"trailing junk", wire.ForwardedTCPIP, append(tcpip("localhost", 8080), 0), nil, ssh.ConnectionFailed, 0},
		{"unix", wire.ForwardedStreamLocal, ssh.Marshal(&wire.ForwardedStreamLocalMsg{SocketPath: "/tmp/s.sock"}), sock, 0, 0},
		{"unix nobody asked", wire.ForwardedStreamLocal, ssh.Marshal(&wire.ForwardedStreamLocalMsg{SocketPath: "/tmp/t.sock"}), nil, ssh.Prohibited, 0},
		{"x11 not requested", wire.X11, ssh.Marshal(&wire.X11OpenMsg{OriginAddr: "127.0.0.1", OriginPort: 1}), nil, ssh.Prohibited, 0},
		{"x11 malformed", wire.X11, []byte{1}, nil, ssh.ConnectionFailed, 0},
		{"other type", "session", nil, nil, ssh.UnknownChannelType, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, reason, why := s.place(&fakeNewChannel{typ: tc.typ, extra: tc.extra})
			assert.Equal(t, tc.reason, reason, why)
			if tc.reason == 0 {
				assert.Same(t, tc.want, in.fwd)
				if tc.port != 0 {
					assert.Equal(t, tc.port, in.port)
					assert.Equal(t, tc.port, in.local.(*net.TCPAddr).Port)
				}
			} else {
				assert.NotEmpty(t, why)
			}
		})
	}
}

func TestQueueBounded(t *testing.T) {
	f := &remoteForward{addr: "localhost", port: 8080}
	s := routerOnly(f)
	for range maxQueued {
		require.True(t, s.acceptQ.push(incoming{nc: &fakeNewChannel{}, fwd: f}))
	}
	assert.False(t, s.acceptQ.push(incoming{nc: &fakeNewChannel{}, fwd: f}), "a full queue refuses")
	s.acceptQ.remove(func(in incoming) bool { return in.fwd == f }, "cancelled")
	assert.Empty(t, s.acceptQ.items)
	s.acceptQ.close("closed")
	assert.False(t, s.acceptQ.push(incoming{nc: &fakeNewChannel{}, fwd: f}), "a closed queue refuses")
}

// FuzzPlace feeds the router channel opens as a server could send them:
// whatever the payload, it places or refuses, and never panics.
func FuzzPlace(f *testing.F) {
	types := []string{wire.ForwardedTCPIP, wire.ForwardedStreamLocal, wire.X11, "session"}
	f.Add(uint8(0), tcpip("localhost", 8080))
	f.Add(uint8(0), tcpip("", 0))
	f.Add(uint8(1), ssh.Marshal(&wire.ForwardedStreamLocalMsg{SocketPath: "/tmp/s.sock"}))
	f.Add(uint8(2), ssh.Marshal(&wire.X11OpenMsg{OriginAddr: "127.0.0.1", OriginPort: 6010}))
	f.Add(uint8(2), []byte{0xff, 0xff, 0xff, 0xff})
	f.Add(uint8(3), []byte(nil))
	f.Fuzz(func(t *testing.T, kind uint8, extra []byte) {
		s := routerOnly(
			&remoteForward{addr: "localhost", port: 8080},
			&remoteForward{addr: "", port: 0, pending: true},
			&remoteForward{addr: "/tmp/s.sock", unix: true},
		)
		s.x11Granted = kind&0x80 != 0
		nc := &fakeNewChannel{typ: types[int(kind)%len(types)], extra: extra}
		in, reason, why := s.place(nc)
		if reason != 0 {
			if why == "" {
				t.Fatal("a refusal without a reason")
			}
			return
		}
		if in.local == nil || in.remote == nil {
			t.Fatalf("placed %s without addresses", nc.typ)
		}
		if nc.typ != wire.X11 && in.fwd == nil {
			t.Fatalf("placed %s without a forward", nc.typ)
		}
	})
}
