package mux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// body builds a message body of uint32s and strings.
func body(fields ...any) []byte {
	var b []byte
	for _, f := range fields {
		switch v := f.(type) {
		case Type:
			b = binary.BigEndian.AppendUint32(b, uint32(v))
		case uint32:
			b = binary.BigEndian.AppendUint32(b, v)
		case int:
			b = binary.BigEndian.AppendUint32(b, uint32(v))
		case string:
			b = appendString(b, v)
		}
	}
	return b
}

// wireMessages are messages in OpenSSH's encoding, as PROTOCOL.mux lays
// them out, with what Parse makes of them.
var wireMessages = []struct {
	body []byte
	want Message
}{
	{body(Hello, 4), Message{Type: Hello, Version: 4}},
	{body(AliveCheck, 7), Message{Type: AliveCheck, ID: 7}},
	{body(Terminate, 1), Message{Type: Terminate, ID: 1}},
	{body(OpenFwd, 2, FwdLocal, "", 8080, "web", 80),
		Message{Type: OpenFwd, ID: 2, Forward: Forward{Kind: FwdLocal, ListenPort: 8080, ConnectHost: "web", ConnectPort: 80}}},
	{body(CloseFwd, 3, FwdRemote, "/tmp/r.sock", StreamLocal, "/tmp/l.sock", StreamLocal),
		Message{Type: CloseFwd, ID: 3, Forward: Forward{Kind: FwdRemote, ListenHost: "/tmp/r.sock", ListenPort: StreamLocal, ConnectHost: "/tmp/l.sock", ConnectPort: StreamLocal}}},
	{body(OpenFwd, 4, FwdDynamic, "*", 1080, "", 0),
		Message{Type: OpenFwd, ID: 4, Forward: Forward{Kind: FwdDynamic, ListenHost: "*", ListenPort: 1080}}},
	{body(OK, 5), Message{Type: OK, ID: 5}},
	{body(Failure, 6, "port not forwarded"), Message{Type: Failure, ID: 6, Reason: "port not forwarded"}},
	{body(PermissionDenied, 6, "Permission denied"), Message{Type: PermissionDenied, ID: 6, Reason: "Permission denied"}},
	{body(Alive, 0, 4242), Message{Type: Alive, PID: 4242}},
	{body(RemotePort, 9, 41071), Message{Type: RemotePort, ID: 9, Port: 41071}},
	{body(SessionOpened, 1, 3), Message{Type: SessionOpened, ID: 1, Session: 3}},
	{body(ExitMessage, 3, 255), Message{Type: ExitMessage, ID: 3, Status: 255}},
	{body(TTYAllocFail, 3), Message{Type: TTYAllocFail, ID: 3}},
	{body(ProxyOK, 1), Message{Type: ProxyOK, ID: 1}},
	{body(StopListening, 1), Message{Type: StopListening, ID: 1}},
	{body(Proxy, 1), Message{Type: Proxy, ID: 1}},
}

func TestParseAndMarshal(t *testing.T) {
	for _, tc := range wireMessages {
		got, err := Parse(tc.body)
		require.NoError(t, err, "%x", tc.body)
		assert.Equal(t, tc.want, got)
		assert.Equal(t, tc.body, got.Marshal(), "%#08x marshals as OpenSSH lays it out", uint32(tc.want.Type))
	}
}

func TestParseLenient(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		want Message
	}{
		{"hello with extensions", body(Hello, 4, "ext@example.com", "value", "other", ""), Message{Type: Hello, Version: 4}},
		{"a type of the future", body(Type(0x10000042), 9, "whatever"), Message{Type: 0x10000042, ID: 9}},
		{"a session request, whose fields are not needed",
			body(NewSession, 2, "", 0, 0, 0, 0, 0xffffffff, "xterm", "uptime", "LANG=C"), Message{Type: NewSession, ID: 2}},
		{"trailing bytes", body(AliveCheck, 1, "more"), Message{Type: AliveCheck, ID: 1}},
	} {
		got, err := Parse(tc.body)
		if assert.NoError(t, err, tc.name) {
			assert.Equal(t, tc.want, got, tc.name)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"short type", []byte{0, 0, 1}},
		{"hello without version", body(Hello)},
		{"hello with half an extension", body(Hello, 4, "name")},
		{"request without id", body(AliveCheck)},
		{"forward cut short", body(OpenFwd, 1, FwdLocal, "", 8080, "web")},
		{"listen port out of range", body(OpenFwd, 1, FwdLocal, "", 70000, "web", 80)},
		{"connect port out of range", body(CloseFwd, 1, FwdLocal, "", 80, "web", 0xffffffff)},
		{"string longer than the message", append(body(Failure, 1, 100), "short"...)},
		{"failure without reason", body(Failure, 1)},
		{"allocated port 0", body(RemotePort, 1, 0)},
		{"allocated port out of range", body(RemotePort, 1, 70000)},
		{"allocated socket", body(RemotePort, 1, StreamLocal)},
		{"alive without pid", body(Alive, 1)},
	} {
		_, err := Parse(tc.body)
		assert.ErrorIs(t, err, ErrMalformed, tc.name)
	}
}

func TestReadWrite(t *testing.T) {
	var buf bytes.Buffer
	m := Message{Type: OpenFwd, ID: 1, Forward: Forward{Kind: FwdRemote, ListenPort: 0, ConnectHost: "localhost", ConnectPort: 22}}
	require.NoError(t, Write(&buf, &m))
	assert.Equal(t, uint32(buf.Len()-4), binary.BigEndian.Uint32(buf.Bytes()), "the length comes first")
	got, err := Read(&buf)
	require.NoError(t, err)
	assert.Equal(t, m, got)

	_, err = Read(bytes.NewReader(binary.BigEndian.AppendUint32(nil, MaxMessage+1)))
	assert.ErrorIs(t, err, ErrMalformed, "a length above MaxMessage is refused before the body is read")
	_, err = Read(bytes.NewReader(append(binary.BigEndian.AppendUint32(nil, 10), "short"...)))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

// FuzzParse feeds arbitrary bodies to the parser, which both sides of the
// socket use: it must never panic, and what it accepts must come out the
// same after a round through Marshal.
func FuzzParse(f *testing.F) {
	for _, tc := range wireMessages {
		f.Add(tc.body)
	}
	f.Add(body(Hello, 4, "ext", "value"))
	f.Add(body(OpenFwd, 1, FwdLocal, "", 70000, "web", 80))
	f.Add(body(RemotePort, 1, 0))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := Parse(m.Marshal())
		if err != nil {
			t.Fatalf("%+v marshals to something Parse refuses: %v", m, err)
		}
		if again != m {
			t.Fatalf("round trip changed %+v into %+v", m, again)
		}
	})
}

// socketPath returns a path for a Unix socket in a short directory of its
// own, removed when the test ends: socket paths are limited to about 100
// bytes, which a test's TempDir can exceed.
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mux")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}

// fakeHandler records what a Server asks of it and answers as told.
type fakeHandler struct {
	mu         sync.Mutex // guards the fields below
	opened     []Forward
	closed     []Forward
	terminated int
	openErr    error
	openPort   uint32
}

func (h *fakeHandler) OpenForward(f Forward) (uint32, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.opened = append(h.opened, f)
	return h.openPort, h.openErr
}

func (h *fakeHandler) CloseForward(f Forward) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, g := range h.opened {
		if g == f {
			h.opened = append(h.opened[:i], h.opened[i+1:]...)
			h.closed = append(h.closed, f)
			return nil
		}
	}
	return errors.New("port not forwarded")
}

func (h *fakeHandler) Terminate() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.terminated++
}

func (h *fakeHandler) state() (opened, closed []Forward, terminated int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Forward(nil), h.opened...), append([]Forward(nil), h.closed...), h.terminated
}

// startServer serves h on a new socket until the test ends, and returns
// the socket's path.
func startServer(t testing.TB, h Handler) string {
	t.Helper()
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	s := &Server{Handler: h}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		assert.NoError(t, s.Close())
		assert.ErrorIs(t, <-done, ErrServerClosed)
	})
	return path
}

func dialClient(t testing.TB, path string) *Client {
	t.Helper()
	c, err := Dial(path, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientAndServer(t *testing.T) {
	h := &fakeHandler{}
	c := dialClient(t, startServer(t, h))

	r, err := c.Do(Message{Type: AliveCheck})
	require.NoError(t, err)
	assert.Equal(t, Message{Type: Alive, ID: 0, PID: uint32(os.Getpid())}, r)

	local := Forward{Kind: FwdLocal, ListenPort: 8080, ConnectHost: "web", ConnectPort: 80}
	r, err = c.Do(Message{Type: OpenFwd, Forward: local})
	require.NoError(t, err)
	assert.Equal(t, Message{Type: OK, ID: 1}, r)

	h.mu.Lock()
	h.openPort = 41071
	h.mu.Unlock()
	remote := Forward{Kind: FwdRemote, ConnectHost: "localhost", ConnectPort: 22}
	r, err = c.Do(Message{Type: OpenFwd, Forward: remote})
	require.NoError(t, err)
	assert.Equal(t, Message{Type: RemotePort, ID: 2, Port: 41071}, r)

	h.mu.Lock()
	h.openPort, h.openErr = 0, errors.New("remote port forwarding failed for listen port 22")
	h.mu.Unlock()
	r, err = c.Do(Message{Type: OpenFwd, Forward: Forward{Kind: FwdRemote, ListenPort: 22, ConnectHost: "h", ConnectPort: 1}})
	require.NoError(t, err)
	assert.Equal(t, Message{Type: Failure, ID: 3, Reason: "remote port forwarding failed for listen port 22"}, r)

	for _, bad := range []Forward{
		{Kind: 9, ListenPort: 1, ConnectHost: "h", ConnectPort: 1},
		{Kind: FwdLocal, ListenPort: 1, ConnectHost: "h"},
		{Kind: FwdRemote, ListenPort: 1},
		{Kind: FwdDynamic, ListenHost: "/tmp/s", ListenPort: StreamLocal},
	} {
		r, err = c.Do(Message{Type: OpenFwd, Forward: bad})
		require.NoError(t, err)
		assert.Equal(t, Message{Type: Failure, ID: r.ID, Reason: "Invalid forwarding request"}, r, "%+v", bad)
	}

	r, err = c.Do(Message{Type: CloseFwd, Forward: local})
	require.NoError(t, err)
	assert.Equal(t, OK, r.Type)
	r, err = c.Do(Message{Type: CloseFwd, Forward: local})
	require.NoError(t, err)
	assert.Equal(t, Message{Type: Failure, ID: r.ID, Reason: "port not forwarded"}, r)

	r, err = c.Do(Message{Type: StopListening})
	require.NoError(t, err)
	assert.Equal(t, Message{Type: Failure, ID: r.ID, Reason: "unsupported request"}, r)

	opened, closed, _ := h.state()
	assert.Equal(t, []Forward{remote, {Kind: FwdRemote, ListenPort: 22, ConnectHost: "h", ConnectPort: 1}}, opened,
		"the invalid requests never reached the handler")
	assert.Equal(t, []Forward{local}, closed)

	r, err = c.Do(Message{Type: Terminate})
	require.NoError(t, err)
	assert.Equal(t, OK, r.Type)
	assert.Eventually(t, func() bool { _, _, n := h.state(); return n == 1 }, 5*time.Second, 10*time.Millisecond)
}

func TestServerRefusesSessions(t *testing.T) {
	path := startServer(t, &fakeHandler{})
	c := rawConn(t, path)
	_, err := Read(c)
	require.NoError(t, err)
	require.NoError(t, Write(c, &Message{Type: Hello, Version: Version}))
	for i, tc := range []struct {
		typ Type
		fds int
	}{{NewSession, 3}, {NewStdioFwd, 2}} {
		require.NoError(t, Write(c, &Message{Type: tc.typ, ID: uint32(i)}))
		// What stands for the descriptors: a byte each.
		_, err := c.Write(make([]byte, tc.fds))
		require.NoError(t, err)
		r, err := Read(c)
		require.NoError(t, err)
		assert.Equal(t, Failure, r.Type)
		assert.Equal(t, uint32(i), r.ID)
		assert.Contains(t, r.Reason, "sshfwd's master opens no sessions")
	}
	require.NoError(t, Write(c, &Message{Type: AliveCheck, ID: 7}))
	r, err := Read(c)
	require.NoError(t, err)
	assert.Equal(t, Alive, r.Type, "the connection goes on after a refusal, the descriptors read")

	p := dialClient(t, path)
	r, err = p.Do(Message{Type: Proxy})
	require.NoError(t, err)
	assert.Equal(t, Failure, r.Type)
	assert.Contains(t, r.Reason, "proxy mode")
	_, err = p.Do(Message{Type: AliveCheck})
	assert.Error(t, err, "a client that asked for proxy mode speaks SSH next: the connection ends")
}

// rawConn connects to path and returns the connection, for speaking the
// protocol wrongly.
func rawConn(t testing.TB, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	return c
}

func TestServerHangsUpOnBadClients(t *testing.T) {
	path := startServer(t, &fakeHandler{})
	for _, tc := range []struct {
		name  string
		first []byte
	}{
		{"no hello", body(AliveCheck, 1)},
		{"old version", body(Hello, 3)},
		{"malformed", body(Hello)},
		{"too long", binary.BigEndian.AppendUint32(nil, MaxMessage+1)},
	} {
		c := rawConn(t, path)
		hello, err := Read(c)
		require.NoError(t, err)
		assert.Equal(t, Message{Type: Hello, Version: Version}, hello, "the master speaks first")
		_, err = c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(tc.first))))
		require.NoError(t, err)
		c.Write(tc.first)
		_, err = Read(c)
		assert.ErrorIs(t, err, io.EOF, tc.name)
	}
	c := rawConn(t, path)
	_, err := Read(c)
	require.NoError(t, err)
	require.NoError(t, Write(c, &Message{Type: Hello, Version: Version}))
	require.NoError(t, Write(c, &Message{Type: Hello, Version: Version}))
	_, err = Read(c)
	assert.ErrorIs(t, err, io.EOF, "a second hello")
}

// rawMaster answers one client on a new socket with hello, then with what
// answer returns for each request.
func rawMaster(t testing.TB, hello Message, answer func(req Message) Message) string {
	t.Helper()
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if Write(c, &hello) != nil {
			return
		}
		for {
			req, err := Read(c)
			if err != nil {
				return
			}
			if req.Type != Hello {
				r := answer(req)
				Write(c, &r)
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return path
}

func TestClientChecksTheMaster(t *testing.T) {
	_, err := Dial(rawMaster(t, Message{Type: Hello, Version: 3}, nil), 5*time.Second)
	assert.ErrorContains(t, err, "mux protocol version 3, want 4")
	_, err = Dial(rawMaster(t, Message{Type: OK}, nil), 5*time.Second)
	assert.ErrorContains(t, err, "hello expected")

	c := dialClient(t, rawMaster(t, Message{Type: Hello, Version: Version}, func(req Message) Message {
		return Message{Type: OK, ID: req.ID + 1}
	}))
	_, err = c.Do(Message{Type: AliveCheck})
	assert.ErrorContains(t, err, "answer to request 1, want 0")

	_, err = Dial(filepath.Join(t.TempDir(), "none"), 5*time.Second)
	var op *net.OpError
	assert.ErrorAs(t, err, &op, "a socket that is not there is the dialer's error, for the caller to word")
}
