package wire

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// messages returns a fresh pointer to each payload type of the package.
func messages() []any {
	return []any{
		&TCPIP{}, &DirectStreamLocalMsg{}, &ForwardedStreamLocalMsg{}, &TCPIPForwardMsg{},
		&TCPIPForwardReply{}, &StreamLocalForwardMsg{}, &X11ReqMsg{}, &X11OpenMsg{},
		&ExecMsg{}, &EnvMsg{}, &ExitStatusMsg{},
	}
}

func TestParseRoundTrip(t *testing.T) {
	in := &TCPIP{Host: "example.com", Port: 443, OriginHost: "192.0.2.1", OriginPort: 40000}
	var out TCPIP
	require.NoError(t, Parse("direct-tcpip", ssh.Marshal(in), &out))
	assert.Equal(t, *in, out)
}

func TestParseErrors(t *testing.T) {
	good := ssh.Marshal(&TCPIP{Host: "h", Port: 1})
	for name, payload := range map[string][]byte{
		"empty":           nil,
		"cut short":       good[:len(good)-1],
		"trailing bytes":  append(append([]byte{}, good...), 0),
		"string too long": {0xff, 0xff, 0xff, 0xff, 'h'},
	} {
		t.Run(name, func(t *testing.T) {
			var m TCPIP
			err := Parse("direct-tcpip", payload, &m)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "malformed direct-tcpip payload")
		})
	}
}

// FuzzParse feeds every payload type bytes as a peer could send them:
// Parse fails or succeeds, never panics, and what it accepts marshals back
// to the same bytes.
func FuzzParse(f *testing.F) {
	f.Add(uint8(0), ssh.Marshal(&TCPIP{Host: "localhost", Port: 22, OriginHost: "::1", OriginPort: 1}))
	f.Add(uint8(6), ssh.Marshal(&X11ReqMsg{AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: "00ff"}))
	f.Add(uint8(4), []byte{0, 0, 0x1f, 0x90})
	f.Add(uint8(9), []byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, kind uint8, payload []byte) {
		msgs := messages()
		msg := msgs[int(kind)%len(msgs)]
		if err := Parse("fuzzed", payload, msg); err != nil {
			return
		}
		back := ssh.Marshal(reflect.ValueOf(msg).Elem().Interface())
		// A bool may be sent as any non-zero byte and comes back as 1.
		if _, isX11 := msg.(*X11ReqMsg); !isX11 && string(back) != string(payload) {
			t.Fatalf("%T accepted %x but marshals to %x", msg, payload, back)
		}
	})
}
