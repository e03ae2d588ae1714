package socks_test

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sshfwd/sshfwd/internal/socks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// trailer stands for the tunnel data a client may send right after its
// request; ReadRequest must leave it unread.
const trailer = "GET / HTTP/1.0\r\n\r\n"

// cat joins byte slices and strings into one message.
func cat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			b = append(b, p...)
		case []byte:
			b = append(b, p...)
		case byte:
			b = append(b, p)
		case int:
			b = append(b, byte(p))
		default:
			panic("cat: unexpected part")
		}
	}
	return b
}

// noAuth is a SOCKS5 method offer of "no authentication required" only.
var noAuth = []byte{5, 1, 0}

func TestReadRequest(t *testing.T) {
	long := strings.Repeat("u", 255)
	tests := []struct {
		name    string
		in      []byte
		want    socks.Request
		written []byte
	}{
		{
			name: "socks4 connect",
			in:   cat(4, 1, 0x1F, 0x90, 127, 0, 0, 1, "bob", 0),
			want: socks.Request{Version: 4, Command: socks.Connect, Host: "127.0.0.1", Port: 8080, UserID: "bob"},
		},
		{
			name: "socks4 empty userid",
			in:   cat(4, 1, 0, 80, 10, 1, 2, 3, 0),
			want: socks.Request{Version: 4, Command: socks.Connect, Host: "10.1.2.3", Port: 80},
		},
		{
			name: "socks4 longest userid",
			in:   cat(4, 1, 0, 80, 10, 1, 2, 3, long, 0),
			want: socks.Request{Version: 4, Command: socks.Connect, Host: "10.1.2.3", Port: 80, UserID: long},
		},
		{
			name: "socks4 address 0.0.0.0 is not 4a",
			in:   cat(4, 1, 0, 80, 0, 0, 0, 0, 0),
			want: socks.Request{Version: 4, Command: socks.Connect, Host: "0.0.0.0", Port: 80},
		},
		{
			name: "socks4 bind",
			in:   cat(4, 2, 0, 21, 192, 0, 2, 1, "x", 0),
			want: socks.Request{Version: 4, Command: socks.Bind, Host: "192.0.2.1", Port: 21, UserID: "x"},
		},
		{
			name: "socks4a host name",
			in:   cat(4, 1, 0, 80, 0, 0, 0, 1, "bob", 0, "example.com", 0),
			want: socks.Request{Version: 4, Command: socks.Connect, Host: "example.com", Port: 80, UserID: "bob"},
		},
		{
			name: "socks4a longest host name",
			in:   cat(4, 1, 0, 80, 0, 0, 0, 255, 0, strings.Repeat("h", 255), 0),
			want: socks.Request{Version: 4, Command: socks.Connect, Host: strings.Repeat("h", 255), Port: 80},
		},
		{
			name:    "socks5 ipv4",
			in:      cat(noAuth, 5, 1, 0, 1, 127, 0, 0, 1, 0xFF, 0xFF),
			want:    socks.Request{Version: 5, Command: socks.Connect, Host: "127.0.0.1", Port: 65535},
			written: []byte{5, 0},
		},
		{
			name:    "socks5 ipv6",
			in:      cat(noAuth, 5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22),
			want:    socks.Request{Version: 5, Command: socks.Connect, Host: "2001:db8::1", Port: 22},
			written: []byte{5, 0},
		},
		{
			name:    "socks5 domain name",
			in:      cat(noAuth, 5, 1, 0, 3, 9, "localhost", 0, 80),
			want:    socks.Request{Version: 5, Command: socks.Connect, Host: "localhost", Port: 80},
			written: []byte{5, 0},
		},
		{
			name:    "socks5 domain name that is an address stays as sent",
			in:      cat(noAuth, 5, 1, 0, 3, 8, "::ffff:1", 0, 80),
			want:    socks.Request{Version: 5, Command: socks.Connect, Host: "::ffff:1", Port: 80},
			written: []byte{5, 0},
		},
		{
			name:    "socks5 no-auth offered among others",
			in:      cat(5, 3, 2, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 0, 1),
			want:    socks.Request{Version: 5, Command: socks.Connect, Host: "1.2.3.4", Port: 1},
			written: []byte{5, 0},
		},
		{
			name:    "socks5 bind",
			in:      cat(noAuth, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0),
			want:    socks.Request{Version: 5, Command: socks.Bind, Host: "0.0.0.0", Port: 0},
			written: []byte{5, 0},
		},
		{
			name:    "socks5 udp associate",
			in:      cat(noAuth, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0),
			want:    socks.Request{Version: 5, Command: socks.UDPAssociate, Host: "0.0.0.0", Port: 0},
			written: []byte{5, 0},
		},
		{
			name:    "socks5 unknown command",
			in:      cat(noAuth, 5, 9, 0, 3, 1, "h", 0, 7),
			want:    socks.Request{Version: 5, Command: 9, Host: "h", Port: 7},
			written: []byte{5, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(cat(tt.in, trailer))
			var w bytes.Buffer
			req, err := socks.ReadRequest(r, &w)
			require.NoError(t, err)
			assert.Equal(t, tt.want, *req)
			assert.Equal(t, tt.written, w.Bytes())
			rest, _ := io.ReadAll(r)
			assert.Equal(t, trailer, string(rest), "bytes after the handshake")
		})
	}
}

func TestReadRequestErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		is      error
		version int // of the *RequestError; -1 when it is an I/O error
		reply   socks.Reply
		written []byte
	}{
		{name: "empty", in: nil, is: io.EOF, version: -1},
		{name: "http", in: []byte("GET / HTTP/1.1\r\n"), is: socks.ErrVersion},
		{name: "tls", in: []byte{0x16, 3, 1}, is: socks.ErrVersion},
		{name: "socks4 truncated", in: cat(4, 1, 0, 80, 127), is: io.ErrUnexpectedEOF, version: -1},
		{name: "socks4 no NUL", in: cat(4, 1, 0, 80, 127, 0, 0, 1, "bob"), is: io.ErrUnexpectedEOF, version: -1},
		{
			name: "socks4 userid too long", in: cat(4, 1, 0, 80, 127, 0, 0, 1, strings.Repeat("u", 256), 0),
			is: socks.ErrMalformed, version: 4, reply: socks.GeneralFailure,
		},
		{
			name: "socks4a host too long", in: cat(4, 1, 0, 80, 0, 0, 0, 1, 0, strings.Repeat("h", 256), 0),
			is: socks.ErrMalformed, version: 4, reply: socks.GeneralFailure,
		},
		{
			name: "socks4a empty host", in: cat(4, 1, 0, 80, 0, 0, 0, 1, 0, 0),
			is: socks.ErrMalformed, version: 4, reply: socks.GeneralFailure,
		},
		{
			name: "socks4a host with space", in: cat(4, 1, 0, 80, 0, 0, 0, 1, 0, "a b", 0),
			is: socks.ErrMalformed, version: 4, reply: socks.GeneralFailure,
		},
		{
			name: "socks4a host with newline", in: cat(4, 1, 0, 80, 0, 0, 0, 1, 0, "a\nb", 0),
			is: socks.ErrMalformed, version: 4, reply: socks.GeneralFailure,
		},
		{
			name: "socks4a host not UTF-8", in: cat(4, 1, 0, 80, 0, 0, 0, 1, 0, "a\xffb", 0),
			is: socks.ErrMalformed, version: 4, reply: socks.GeneralFailure,
		},
		{
			name: "socks4a host truncated", in: cat(4, 1, 0, 80, 0, 0, 0, 1, 0, "exam"),
			is: io.ErrUnexpectedEOF, version: -1,
		},
		{
			name: "socks5 username/password only", in: cat(5, 1, 2),
			is: socks.ErrNoAcceptableMethod, written: []byte{5, 0xFF},
		},
		{
			name: "socks5 no methods", in: cat(5, 0),
			is: socks.ErrNoAcceptableMethod, written: []byte{5, 0xFF},
		},
		{name: "socks5 methods truncated", in: cat(5, 3, 0), is: io.ErrUnexpectedEOF, version: -1},
		{
			name: "socks5 request version 4", in: cat(noAuth, 4, 1, 0, 1, 1, 2, 3, 4, 0, 80),
			is: socks.ErrMalformed, version: 5, reply: socks.GeneralFailure, written: []byte{5, 0},
		},
		{
			name: "socks5 reserved byte set", in: cat(noAuth, 5, 1, 1, 1, 1, 2, 3, 4, 0, 80),
			is: socks.ErrMalformed, version: 5, reply: socks.GeneralFailure, written: []byte{5, 0},
		},
		{
			name: "socks5 unknown address type", in: cat(noAuth, 5, 1, 0, 2, 1, 2, 3, 4, 0, 80),
			is: socks.ErrMalformed, version: 5, reply: socks.AddressTypeNotSupported, written: []byte{5, 0},
		},
		{
			name: "socks5 empty domain name", in: cat(noAuth, 5, 1, 0, 3, 0, 0, 80),
			is: socks.ErrMalformed, version: 5, reply: socks.GeneralFailure, written: []byte{5, 0},
		},
		{
			name: "socks5 domain name with NUL", in: cat(noAuth, 5, 1, 0, 3, 3, "a\x00b", 0, 80),
			is: socks.ErrMalformed, version: 5, reply: socks.GeneralFailure, written: []byte{5, 0},
		},
		{
			name: "socks5 domain name truncated", in: cat(noAuth, 5, 1, 0, 3, 10, "local"),
			is: io.ErrUnexpectedEOF, version: -1, written: []byte{5, 0},
		},
		{
			name: "socks5 port truncated", in: cat(noAuth, 5, 1, 0, 1, 1, 2, 3, 4, 0),
			is: io.ErrUnexpectedEOF, version: -1, written: []byte{5, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w bytes.Buffer
			req, err := socks.ReadRequest(bytes.NewReader(tt.in), &w)
			assert.Nil(t, req)
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.is)
			assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: socks"), "error %q", err)
			assert.Equal(t, tt.written, w.Bytes())
			var re *socks.RequestError
			if tt.version < 0 {
				assert.False(t, errors.As(err, &re), "I/O error reported as *RequestError: %v", err)
				return
			}
			require.ErrorAs(t, err, &re)
			assert.Equal(t, tt.version, re.Version)
			assert.Equal(t, tt.reply, re.Reply)
		})
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestReadRequestWriteFails(t *testing.T) {
	_, err := socks.ReadRequest(bytes.NewReader(cat(noAuth, 5, 1, 0, 1, 1, 2, 3, 4, 0, 80)), failWriter{})
	assert.ErrorIs(t, err, io.ErrClosedPipe)
	assert.ErrorContains(t, err, "sshfwd: socks: writing method selection")
}

// oneByteReader hands out one byte per Read, as a slow client would.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func TestReadRequestSlowClient(t *testing.T) {
	in := bytes.NewReader(cat(noAuth, 5, 1, 0, 3, 9, "localhost", 0, 80, trailer))
	req, err := socks.ReadRequest(oneByteReader{in}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, socks.Request{Version: 5, Command: socks.Connect, Host: "localhost", Port: 80}, *req)
	assert.Equal(t, len(trailer), in.Len())
}

func TestAppendReply(t *testing.T) {
	tests := []struct {
		name    string
		version int
		code    socks.Reply
		bound   netip.AddrPort
		want    []byte
	}{
		{"socks4 granted", 4, socks.Succeeded, netip.AddrPort{}, []byte{0, 0x5A, 0, 0, 0, 0, 0, 0}},
		{"socks4 rejected", 4, socks.ConnectionRefused, netip.AddrPort{}, []byte{0, 0x5B, 0, 0, 0, 0, 0, 0}},
		{"socks4 rejected for any failure", 4, socks.NotAllowed, netip.AddrPort{}, []byte{0, 0x5B, 0, 0, 0, 0, 0, 0}},
		{
			"socks4 bound address", 4, socks.Succeeded, netip.MustParseAddrPort("10.0.0.1:1080"),
			[]byte{0, 0x5A, 0x04, 0x38, 10, 0, 0, 1},
		},
		{
			"socks4 mapped address", 4, socks.Succeeded, netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"),
			[]byte{0, 0x5A, 0, 1, 10, 0, 0, 1},
		},
		{"socks5 succeeded", 5, socks.Succeeded, netip.AddrPort{}, []byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"socks5 general failure", 5, socks.GeneralFailure, netip.AddrPort{}, []byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"socks5 not allowed", 5, socks.NotAllowed, netip.AddrPort{}, []byte{5, 2, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"socks5 network unreachable", 5, socks.NetworkUnreachable, netip.AddrPort{}, []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"socks5 host unreachable", 5, socks.HostUnreachable, netip.AddrPort{}, []byte{5, 4, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"socks5 connection refused", 5, socks.ConnectionRefused, netip.AddrPort{}, []byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"socks5 command not supported", 5, socks.CommandNotSupported, netip.AddrPort{}, []byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"socks5 address type not supported", 5, socks.AddressTypeNotSupported, netip.AddrPort{}, []byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0}},
		{
			"socks5 bound ipv4", 5, socks.Succeeded, netip.MustParseAddrPort("192.0.2.7:40000"),
			[]byte{5, 0, 0, 1, 192, 0, 2, 7, 0x9C, 0x40},
		},
		{
			"socks5 bound mapped ipv4", 5, socks.Succeeded, netip.MustParseAddrPort("[::ffff:192.0.2.7]:1"),
			[]byte{5, 0, 0, 1, 192, 0, 2, 7, 0, 1},
		},
		{
			"socks5 bound ipv6", 5, socks.Succeeded, netip.MustParseAddrPort("[2001:db8::2]:443"),
			[]byte{5, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x01, 0xBB},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := socks.AppendReply([]byte("prefix"), tt.version, tt.code, tt.bound)
			require.NoError(t, err)
			assert.Equal(t, cat("prefix", tt.want), got)

			var w recordWriter
			require.NoError(t, socks.WriteReply(&w, tt.version, tt.code, tt.bound))
			assert.Equal(t, [][]byte{tt.want}, w.writes, "one Write per reply")
		})
	}
}

func TestAppendReplyErrors(t *testing.T) {
	tests := []struct {
		name    string
		version int
		code    socks.Reply
		bound   netip.AddrPort
	}{
		{"socks4 ipv6", 4, socks.Succeeded, netip.MustParseAddrPort("[2001:db8::2]:443")},
		{"unknown version", 6, socks.Succeeded, netip.AddrPort{}},
		{"version 0", 0, socks.GeneralFailure, netip.AddrPort{}},
		{"unassigned code", 5, 0x09, netip.AddrPort{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := socks.AppendReply([]byte("prefix"), tt.version, tt.code, tt.bound)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: socks:"), "error %q", err)
			assert.Equal(t, "prefix", string(got))
			assert.Error(t, socks.WriteReply(io.Discard, tt.version, tt.code, tt.bound))
		})
	}
}

func TestWriteReplyFails(t *testing.T) {
	err := socks.WriteReply(failWriter{}, 5, socks.Succeeded, netip.AddrPort{})
	assert.ErrorIs(t, err, io.ErrClosedPipe)
	assert.ErrorContains(t, err, "sshfwd: socks: writing reply")
}

// recordWriter keeps every Write separately.
type recordWriter struct{ writes [][]byte }

func (w *recordWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func TestStrings(t *testing.T) {
	assert.Equal(t, "CONNECT", socks.Connect.String())
	assert.Equal(t, "BIND", socks.Bind.String())
	assert.Equal(t, "UDP ASSOCIATE", socks.UDPAssociate.String())
	assert.Equal(t, "command 0x09", socks.Command(9).String())
	assert.Equal(t, "connection refused", socks.ConnectionRefused.String())
	assert.Equal(t, "connection not allowed by ruleset", socks.NotAllowed.String())
	assert.Equal(t, "reply 0x09", socks.Reply(9).String())
}
