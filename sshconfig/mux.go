package sshconfig

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// The messages of OpenSSH's PROTOCOL.mux (section 11) that this package
// sends or reads, outside proxy mode, which x/crypto speaks.
const (
	muxHello            = 0x00000001
	muxOpenFwd          = 0x10000006
	muxCloseFwd         = 0x10000007
	muxOK               = 0x80000001
	muxPermissionDenied = 0x80000002
	muxFailure          = 0x80000003
	muxRemotePort       = 0x80000007

	muxVersion   = 4
	muxFwdRemote = 2
	// muxStreamLocal in a port field makes the host field beside it a
	// Unix socket path: (unsigned) -2, OpenSSH's PORT_STREAMLOCAL.
	muxStreamLocal = 0xfffffffe

	// maxMuxMessage bounds what is read of one message: the master's
	// answers are a few words.
	maxMuxMessage = 64 << 10
	// muxHandshakeTimeout bounds the hello exchange with the master.
	muxHandshakeTimeout = 10 * time.Second
)

// muxFwdMsg is MUX_C_OPEN_FWD and MUX_C_CLOSE_FWD (PROTOCOL.mux sections 6
// and 7): closing a forward repeats the fields that opened it.
type muxFwdMsg struct {
	Type        uint32
	ID          uint32
	FwdType     uint32
	ListenHost  string
	ListenPort  uint32
	ConnectHost string
	ConnectPort uint32
}

// muxReply is the master's answer to a request: its type, the request id
// it answers, and the allocated port (MUX_S_REMOTE_PORT) or the reason of a
// refusal (MUX_S_FAILURE, MUX_S_PERMISSION_DENIED).
type muxReply struct {
	typ, id, port uint32
	reason        string
}

// writeMux sends one message, its length first.
func writeMux(w io.Writer, body []byte) error {
	_, err := w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(body))))
	if err == nil {
		_, err = w.Write(body)
	}
	return err
}

// readMux reads one message, refusing a length above maxMuxMessage.
func readMux(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxMuxMessage {
		return nil, fmt.Errorf("mux message of %d bytes", size)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// muxReader takes the fields of a message in order, remembering the first
// that is missing.
type muxReader struct {
	b   []byte
	bad bool
}

func (m *muxReader) uint32() uint32 {
	if len(m.b) < 4 {
		m.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(m.b)
	m.b = m.b[4:]
	return v
}

func (m *muxReader) string() string {
	n := m.uint32()
	if m.bad || uint64(n) > uint64(len(m.b)) {
		m.bad = true
		return ""
	}
	s := string(m.b[:n])
	m.b = m.b[n:]
	return s
}

var errMalformedMux = errors.New("malformed mux message")

// parseMuxHello checks the master's MUX_MSG_HELLO and returns its protocol
// version; extensions after it are allowed and ignored.
func parseMuxHello(b []byte) (uint32, error) {
	m := muxReader{b: b}
	typ, version := m.uint32(), m.uint32()
	if m.bad || typ != muxHello {
		return 0, errMalformedMux
	}
	return version, nil
}

// parseMuxReply parses the master's answer to a forward request.
func parseMuxReply(b []byte) (muxReply, error) {
	m := muxReader{b: b}
	r := muxReply{typ: m.uint32(), id: m.uint32()}
	switch r.typ {
	case muxOK:
	case muxRemotePort:
		r.port = m.uint32()
		if r.port == 0 || r.port > 65535 {
			return r, fmt.Errorf("mux: allocated port %d", r.port)
		}
	case muxFailure, muxPermissionDenied:
		r.reason = m.string()
	default:
		return r, fmt.Errorf("mux: unexpected message type %#x", r.typ)
	}
	if m.bad {
		return r, errMalformedMux
	}
	return r, nil
}

// dialMux opens a command-mode connection to the master at path and
// exchanges hellos.
func dialMux(path string) (net.Conn, error) {
	conn, err := net.DialTimeout("unix", path, muxHandshakeTimeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(muxHandshakeTimeout))
	err = writeMux(conn, ssh.Marshal(struct{ Type, Version uint32 }{muxHello, muxVersion}))
	var hello []byte
	if err == nil {
		hello, err = readMux(conn)
	}
	var version uint32
	if err == nil {
		version, err = parseMuxHello(hello)
	}
	if err == nil && version != muxVersion {
		err = fmt.Errorf("mux protocol version %d, want %d", version, muxVersion)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ControlMaster %s: %w", path, err)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// muxRequest sends msg and reads the answer to it.
func muxRequest(conn net.Conn, msg muxFwdMsg) (muxReply, error) {
	if err := writeMux(conn, ssh.Marshal(msg)); err != nil {
		return muxReply{}, err
	}
	b, err := readMux(conn)
	if err != nil {
		return muxReply{}, err
	}
	r, err := parseMuxReply(b)
	if err == nil && r.id != msg.ID {
		err = fmt.Errorf("mux: answer to request %d, want %d", r.id, msg.ID)
	}
	return r, err
}
