package x11

import (
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf8"
)

// Byte-order bytes that open a connection setup.
const (
	MSBFirst byte = 'B'
	LSBFirst byte = 'l'
)

// setupHeaderLen is the fixed part of the setup request, before the
// authorization name and data.
const setupHeaderLen = 12

// MaxSetupLen bounds the setup request ReadSetup accepts. Real cookies are
// 16 bytes and protocol names a few dozen; the largest authorization any X
// server implements (a Kerberos ticket) fits many times over. A longer
// request is not from an honest client.
const MaxSetupLen = 16 << 10

// firstChunk is how much of the authorization ReadSetupLimit makes room for
// before any of it arrived: a request declaring more than it sends holds
// little more than it sent.
const firstChunk = 64

// Setup is the connection setup request an X client sends first, which
// carries the authorization the X server checks.
type Setup struct {
	// ByteOrder is MSBFirst or LSBFirst; the whole X stream that follows
	// uses it.
	ByteOrder byte
	// Major and Minor are the protocol version the client speaks (11.0).
	Major, Minor uint16
	// AuthName is the authorization protocol, such as "MIT-MAGIC-COOKIE-1".
	AuthName string
	// AuthData is the secret of that protocol.
	AuthData []byte
}

// pad4 rounds n up to a multiple of 4, the alignment of every X field.
func pad4(n int) int {
	return (n + 3) &^ 3
}

func byteOrder(b byte) (binary.ByteOrder, bool) {
	switch b {
	case MSBFirst:
		return binary.BigEndian, true
	case LSBFirst:
		return binary.LittleEndian, true
	}
	return nil, false
}

// ReadSetup reads one connection setup request of at most MaxSetupLen
// bytes from r. It reads exactly the bytes of the request and nothing after
// them, because what follows is the client's X stream, which must reach the
// server untouched; r therefore should not be wrapped in a buffer by the
// caller either if the rest is to be copied from it.
func ReadSetup(r io.Reader) (Setup, error) {
	return ReadSetupLimit(r, MaxSetupLen)
}

// ReadSetupLimit is ReadSetup for a request of at most limit bytes (at most
// MaxSetupLen, whatever limit says). A longer request is refused as soon as
// its header declares it, with nothing more read. Memory is taken as the
// bytes arrive, never more than twice what did: a peer that declares a long
// request and sends little of it holds little.
func ReadSetupLimit(r io.Reader, limit int) (Setup, error) {
	limit = min(limit, MaxSetupLen)
	var hdr [setupHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Setup{}, setupReadError("header", err)
	}
	order, ok := byteOrder(hdr[0])
	if !ok {
		return Setup{}, fmt.Errorf("sshfwd: x11 setup: byte order 0x%02x is neither 'B' nor 'l'", hdr[0])
	}
	s := Setup{
		ByteOrder: hdr[0],
		Major:     order.Uint16(hdr[2:]),
		Minor:     order.Uint16(hdr[4:]),
	}
	nameLen := int(order.Uint16(hdr[6:]))
	dataLen := int(order.Uint16(hdr[8:]))
	total := setupLen(nameLen, dataLen)
	if total > limit {
		return Setup{}, fmt.Errorf("sshfwd: x11 setup: %d bytes of authorization name and %d of data exceed the %d-byte limit", nameLen, dataLen, limit)
	}
	body, err := readGrowing(r, total-setupHeaderLen)
	if err != nil {
		return Setup{}, setupReadError("authorization", err)
	}
	s.AuthName = string(body[:nameLen])
	dataOff := pad4(nameLen)
	s.AuthData = body[dataOff : dataOff+dataLen : dataOff+dataLen]
	return s, nil
}

// readGrowing reads exactly n bytes from r into a buffer that starts small
// and doubles only when what arrived fills it.
func readGrowing(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, firstChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = append(make([]byte, 0, min(n, 2*cap(buf))), buf...)
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < n {
			return nil, err
		}
	}
	return buf, nil
}

// setupLen is the length of a setup request with an authorization name and
// data of these lengths.
func setupLen(nameLen, dataLen int) int {
	return setupHeaderLen + pad4(nameLen) + pad4(dataLen)
}

// Len returns the length of the request Marshal encodes.
func (s Setup) Len() int {
	return setupLen(min(len(s.AuthName), maxField), min(len(s.AuthData), maxField))
}

func setupReadError(part string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("sshfwd: x11 setup: connection closed inside the %s", part)
	}
	return fmt.Errorf("sshfwd: x11 setup: reading the %s: %w", part, err)
}

// Marshal encodes the request in its own byte order, with zero padding. A
// ByteOrder other than LSBFirst is written as MSBFirst, and a name or data
// longer than 65535 bytes is cut to that length, because the format cannot
// say more and Marshal has no error to return.
func (s Setup) Marshal() []byte {
	order := binary.ByteOrder(binary.BigEndian)
	first := MSBFirst
	if s.ByteOrder == LSBFirst {
		order, first = binary.LittleEndian, LSBFirst
	}
	name := s.AuthName
	if len(name) > maxField {
		name = name[:maxField]
	}
	data := s.AuthData
	if len(data) > maxField {
		data = data[:maxField]
	}
	b := make([]byte, s.Len())
	b[0] = first
	order.PutUint16(b[2:], s.Major)
	order.PutUint16(b[4:], s.Minor)
	order.PutUint16(b[6:], uint16(len(name)))
	order.PutUint16(b[8:], uint16(len(data)))
	copy(b[setupHeaderLen:], name)
	copy(b[setupHeaderLen+pad4(len(name)):], data)
	return b
}

// WithAuth returns a copy of s carrying another authorization, as sshfwd
// does when it swaps the fake cookie it handed out for the real one. The
// data is copied so that later changes to either slice stay apart.
func (s Setup) WithAuth(name string, data []byte) Setup {
	s.AuthName = name
	s.AuthData = append([]byte(nil), data...)
	return s
}

// maxReason is the longest reason a Failed reply can carry: its length is
// a single byte.
const maxReason = 255

// RefuseReply builds the X server's "Failed" reply to a connection setup,
// in the client's byte order, so that the client reports reason instead of
// a bare closed connection. A byteOrder other than LSBFirst is taken as
// MSBFirst. A reason longer than 255 bytes is cut to fit, at a UTF-8
// character boundary so that the client does not print a broken character.
func RefuseReply(byteOrder byte, major, minor uint16, reason string) []byte {
	order := binary.ByteOrder(binary.BigEndian)
	if byteOrder == LSBFirst {
		order = binary.LittleEndian
	}
	if len(reason) > maxReason {
		cut := maxReason
		// Backing off more than a character's length would mean reason is
		// not UTF-8 at all, and then any cut is as good as another.
		for cut > maxReason-utf8.UTFMax && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	padded := pad4(len(reason))
	b := make([]byte, 8+padded)
	b[0] = 0 // Failed
	b[1] = byte(len(reason))
	order.PutUint16(b[2:], major)
	order.PutUint16(b[4:], minor)
	order.PutUint16(b[6:], uint16(padded/4))
	copy(b[8:], reason)
	return b
}
