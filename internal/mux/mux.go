// Package mux speaks the command mode of OpenSSH's connection-sharing
// protocol (PROTOCOL.mux), on both sides of a ControlMaster's socket: the
// messages and their framing, a client that asks a master for forwards,
// checks or ends it, and a server that answers such clients. Proxy mode,
// which x/crypto's ssh.NewControlClientConn speaks, is not here.
//
// Every message is a uint32 length, then a uint32 type and the fields of
// that type in SSH wire format (PROTOCOL.mux section 1). One parser reads
// them all, for the client and for the server alike.
package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the protocol version both sides announce in their hellos.
const Version = 4

// Type is a message type (PROTOCOL.mux section 11). Client requests have
// the 0x10000000 bit, server answers the 0x80000000 bit.
type Type uint32

// The message types.
const (
	Hello         Type = 0x00000001
	NewSession    Type = 0x10000002
	AliveCheck    Type = 0x10000004
	Terminate     Type = 0x10000005
	OpenFwd       Type = 0x10000006
	CloseFwd      Type = 0x10000007
	NewStdioFwd   Type = 0x10000008
	StopListening Type = 0x10000009
	Proxy         Type = 0x1000000f

	OK               Type = 0x80000001
	PermissionDenied Type = 0x80000002
	Failure          Type = 0x80000003
	ExitMessage      Type = 0x80000004
	Alive            Type = 0x80000005
	SessionOpened    Type = 0x80000006
	RemotePort       Type = 0x80000007
	TTYAllocFail     Type = 0x80000008
	ProxyOK          Type = 0x8000000f
)

// The kinds of forward of OpenFwd and CloseFwd.
const (
	FwdLocal   = 1
	FwdRemote  = 2
	FwdDynamic = 3
)

// StreamLocal in a port field makes the host field beside it a Unix socket
// path: (unsigned) -2, OpenSSH's PORT_STREAMLOCAL.
const StreamLocal = 0xfffffffe

// MaxMessage bounds the length of one message, both ways: the largest
// real ones, new sessions with their environment, stay far below it.
const MaxMessage = 256 << 10

// Message is one message of either side. Only the fields of its Type are
// sent and read; the others stay zero.
type Message struct {
	Type Type
	// ID is the request id of a request, and in an answer the id of the
	// request it answers; ExitMessage and TTYAllocFail carry the session
	// id here. Hello has none.
	ID uint32

	Version uint32  // Hello
	Forward Forward // OpenFwd, CloseFwd
	PID     uint32  // Alive
	Port    uint32  // RemotePort: the port the server chose
	Reason  string  // Failure, PermissionDenied
	Session uint32  // SessionOpened
	Status  uint32  // ExitMessage: the exit value
}

// Forward is the forward of OpenFwd and CloseFwd (PROTOCOL.mux sections 6
// and 7); closing repeats the fields that opened it. A port of StreamLocal
// makes its host a socket path. OpenSSH's client sends an empty
// ListenHost for its default address and "*" for every address.
type Forward struct {
	Kind        uint32 // FwdLocal, FwdRemote or FwdDynamic
	ListenHost  string
	ListenPort  uint32
	ConnectHost string
	ConnectPort uint32
}

// Marshal returns m's body, without its length.
func (m *Message) Marshal() []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(m.Type))
	if m.Type == Hello {
		return binary.BigEndian.AppendUint32(b, m.Version)
	}
	b = binary.BigEndian.AppendUint32(b, m.ID)
	switch m.Type {
	case OpenFwd, CloseFwd:
		f := &m.Forward
		b = binary.BigEndian.AppendUint32(b, f.Kind)
		b = appendString(b, f.ListenHost)
		b = binary.BigEndian.AppendUint32(b, f.ListenPort)
		b = appendString(b, f.ConnectHost)
		b = binary.BigEndian.AppendUint32(b, f.ConnectPort)
	case Alive:
		b = binary.BigEndian.AppendUint32(b, m.PID)
	case RemotePort:
		b = binary.BigEndian.AppendUint32(b, m.Port)
	case Failure, PermissionDenied:
		b = appendString(b, m.Reason)
	case SessionOpened:
		b = binary.BigEndian.AppendUint32(b, m.Session)
	case ExitMessage:
		b = binary.BigEndian.AppendUint32(b, m.Status)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// ErrMalformed is wrapped by the error of every message that does not
// parse.
var ErrMalformed = errors.New("malformed mux message")

// Parse reads a message body. A hello's extensions are checked and
// skipped, as no extension is defined. A message of a type this package
// does not know, and one whose fields it does not need (NewSession,
// NewStdioFwd), is returned with its type and id only, so that a server
// can refuse it by its id; fields after those a message has are ignored,
// as OpenSSH ignores them. Ports above 65535 other than StreamLocal are
// malformed, as for OpenSSH.
func Parse(b []byte) (Message, error) {
	r := reader{b: b}
	m := Message{Type: Type(r.uint32())}
	if m.Type == Hello {
		m.Version = r.uint32()
		for !r.bad && len(r.b) > 0 {
			r.string()
			r.string()
		}
		return m, r.err(m.Type)
	}
	m.ID = r.uint32()
	switch m.Type {
	case OpenFwd, CloseFwd:
		f := &m.Forward
		f.Kind = r.uint32()
		f.ListenHost = r.string()
		f.ListenPort = r.port()
		f.ConnectHost = r.string()
		f.ConnectPort = r.port()
	case Alive:
		m.PID = r.uint32()
	case RemotePort:
		if m.Port = r.port(); m.Port == 0 || m.Port == StreamLocal {
			r.bad = true
		}
	case Failure, PermissionDenied:
		m.Reason = r.string()
	case SessionOpened:
		m.Session = r.uint32()
	case ExitMessage:
		m.Status = r.uint32()
	}
	return m, r.err(m.Type)
}

// reader takes the fields of a message in order, remembering whether one
// was missing or out of range.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) uint32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) string() string {
	n := r.uint32()
	if r.bad || uint64(n) > uint64(len(r.b)) {
		r.bad = true
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) port() uint32 {
	p := r.uint32()
	if p > 65535 && p != StreamLocal {
		r.bad = true
	}
	return p
}

func (r *reader) err(t Type) error {
	if r.bad {
		return fmt.Errorf("%w of type %#08x", ErrMalformed, uint32(t))
	}
	return nil
}

// Write sends m, its length first, in one write.
func Write(w io.Writer, m *Message) error {
	body := m.Marshal()
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	_, err := w.Write(append(b, body...))
	return err
}

// Read reads one message, refusing a length above MaxMessage before
// reading the body.
func Read(r io.Reader) (Message, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return Message{}, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > MaxMessage {
		return Message{}, fmt.Errorf("%w: %d bytes", ErrMalformed, size)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return Message{}, err
	}
	return Parse(body)
}
