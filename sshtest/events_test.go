package sshtest

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/wire"
)

// brief is what a test checks of an event.
func brief(e Event) string {
	s := fmt.Sprintf("%v %s %s", e.Kind, e.Type, e.Target)
	if e.ByServer {
		s += " by server"
	}
	switch {
	case errors.Is(e.Err, ErrNotPermitted):
		s += ": not permitted"
	case errors.Is(e.Err, ErrLimit):
		s += ": limit"
	case e.Err != nil:
		s += ": refused"
	}
	return s
}

// TestEvents does one of each thing a client asks for and checks that the
// events report them in order, with what they named and how they ended.
func TestEvents(t *testing.T) {
	echo := echoServer(t, "tcp", "127.0.0.1:0")
	cfg, ev := recordEvents(&Config{
		MaxSessions: 1,
		PermitOpenCallback: func(_ ssh.ConnMetadata, req OpenRequest) bool {
			return req.Addr.String() == echo.Addr().String()
		},
	})
	srv := newServer(t, cfg)
	client, err := srv.Dial()
	require.NoError(t, err)

	l, err := client.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := portOf(t, l.Addr())
	echoAccepted(t, l)
	c, err := dialTCP("127.0.0.1", port)
	require.NoError(t, err)
	roundTrip(t, c, []byte("forwarded"))
	c.Close()

	c, err = client.Dial("tcp", echo.Addr().String())
	require.NoError(t, err)
	roundTrip(t, c, []byte("direct"))
	c.Close()
	_, err = client.Dial("tcp", "127.0.0.1:1")
	require.Error(t, err)

	sess, err := client.NewSession()
	require.NoError(t, err)
	require.NoError(t, sess.Setenv("LANG", "C"))
	_, _, err = client.OpenChannel(wire.Session, nil)
	require.Error(t, err, "a second session past MaxSessions")
	require.NoError(t, sess.Run("true"))
	require.NoError(t, client.Close())
	require.Eventually(t, func() bool { return len(ev.of(EventDisconnect, "")) == 1 }, 5*time.Second, 5*time.Millisecond)

	ev.mu.Lock()
	all := ev.all
	ev.mu.Unlock()
	var got []string
	for _, e := range all {
		got = append(got, brief(e))
	}
	assert.Equal(t, []string{
		"connect  ",
		"auth none : refused",
		"auth publickey ",
		"global-request tcpip-forward 127.0.0.1:0",
		"channel-open forwarded-tcpip 127.0.0.1:" + strconv.Itoa(port) + " by server",
		"channel-open direct-tcpip " + echo.Addr().String(),
		"channel-open direct-tcpip 127.0.0.1:1: not permitted",
		"channel-open session ",
		"session-request env LANG",
		"channel-open session : limit",
		"session-request exec true",
		"disconnect  ",
	}, got)

	for _, e := range all {
		assert.Same(t, all[0].Conn, e.Conn)
		if e.Kind != EventConnect {
			assert.Equal(t, "sshtest", e.User, "%v", e)
		}
	}
	forwarded := ev.last(t, EventChannelOpen, wire.ForwardedTCPIP)
	host, _, err := net.SplitHostPort(forwarded.Origin)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host, "the originator of a forwarded connection")
	assert.Equal(t, "0.0.0.0:0", ev.last(t, EventChannelOpen, wire.DirectTCPIP).Origin, "the originator x/crypto names")
}

func TestEventString(t *testing.T) {
	srv := newServer(t, nil)
	client := dial(t, srv)
	c := onlyConn(t, srv)
	e := Event{Kind: EventChannelOpen, Conn: c, User: "u", Type: wire.DirectTCPIP, Target: "h:1", Origin: "o:2",
		Err: fmt.Errorf("%w: opening h:1", ErrNotPermitted)}
	assert.Equal(t, client.LocalAddr().String()+` channel-open user="u" type="direct-tcpip" target="h:1" origin="o:2": sshtest: not permitted: opening h:1`, e.String())
	assert.Equal(t, "EventKind(99)", EventKind(99).String())
	assert.Equal(t, `auth type="none"`, Event{Kind: EventAuth, Type: "none"}.String(), "an Event without a Conn")
}
