package socks_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sshfwd/sshfwd/internal/socks"
)

// FuzzReadRequest feeds arbitrary bytes to ReadRequest: it must not panic,
// must stop at the end of the handshake, and must return only requests and
// errors that keep the package's promises.
func FuzzReadRequest(f *testing.F) {
	f.Add(cat(4, 1, 0, 80, 127, 0, 0, 1, "bob", 0))
	f.Add(cat(4, 1, 0, 80, 0, 0, 0, 1, 0, "example.com", 0, "tunnel"))
	f.Add(cat(4, 2, 0, 80, 0, 0, 0, 0, 0))
	f.Add(cat(noAuth, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80))
	f.Add(cat(noAuth, 5, 1, 0, 3, 9, "localhost", 0, 80, "tunnel"))
	f.Add(cat(noAuth, 5, 1, 0, 4, make([]byte, 16), 0, 80))
	f.Add(cat(noAuth, 5, 2, 0, 2, 1, 2, 3, 4, 0, 80))
	f.Add(cat(noAuth, 5, 1, 0, 3, 0, 0, 80))
	f.Add(cat(5, 2, 2, 0, 5, 3, 1, 0, 1, 0, 0, 0, 0, 0, 0))
	f.Add(cat(5, 1, 2))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var w bytes.Buffer
		req, err := socks.ReadRequest(r, &w)
		consumed := data[:len(data)-r.Len()]
		if w.Len() > 2 {
			t.Fatalf("wrote %x, more than a method selection", w.Bytes())
		}
		if err != nil {
			if req != nil {
				t.Fatalf("request %+v with error %v", req, err)
			}
			if !strings.HasPrefix(err.Error(), "sshfwd: socks") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			var re *socks.RequestError
			if errors.As(err, &re) && re.Version != 0 {
				if _, err := socks.AppendReply(nil, re.Version, re.Reply, netip.AddrPort{}); err != nil {
					t.Fatalf("RequestError %+v cannot be answered: %v", re, err)
				}
			}
			return
		}
		checkRequest(t, req)
		if req.Version == socks.Version5 && !bytes.Equal(w.Bytes(), []byte{5, 0}) {
			t.Fatalf("SOCKS5 request accepted after writing %x", w.Bytes())
		}
		// The request is all in the consumed prefix: reading that alone
		// gives the same request, so nothing after it was needed.
		again, err := socks.ReadRequest(bytes.NewReader(consumed), &bytes.Buffer{})
		if err != nil || *again != *req {
			t.Fatalf("consumed prefix %x reads as %+v, %v; want %+v", consumed, again, err, req)
		}
	})
}

// checkRequest fails t when req breaks the promises of Request.
func checkRequest(t *testing.T, req *socks.Request) {
	t.Helper()
	if req.Version != socks.Version4 && req.Version != socks.Version5 {
		t.Fatalf("version %d", req.Version)
	}
	if req.Port < 0 || req.Port > 65535 {
		t.Fatalf("port %d", req.Port)
	}
	if req.Host == "" || len(req.Host) > 255 || !utf8.ValidString(req.Host) || strings.ContainsAny(req.Host, "\x00 \n\r\t") {
		t.Fatalf("host %q", req.Host)
	}
	if len(req.UserID) > 255 || strings.IndexByte(req.UserID, 0) >= 0 {
		t.Fatalf("userid %q", req.UserID)
	}
	if req.Version == socks.Version5 && req.UserID != "" {
		t.Fatalf("SOCKS5 request with userid %q", req.UserID)
	}
}

// encodeRequest is a SOCKS client's side of the handshake: SOCKS4 with an
// IPv4 address, SOCKS4a with anything else (0.0.0.x included, since that is
// the 4a marker), SOCKS5 with the address type that fits host.
func encodeRequest(version int, cmd socks.Command, host string, port uint16, user string) []byte {
	addr, err := netip.ParseAddr(host)
	isIP := err == nil && addr.Zone() == ""
	var b []byte
	if version == socks.Version4 {
		b = append(b, 4, byte(cmd))
		b = binary.BigEndian.AppendUint16(b, port)
		if ip := addr.AsSlice(); isIP && addr.Is4() && (ip[0] != 0 || ip[1] != 0 || ip[2] != 0 || ip[3] == 0) {
			b = append(b, ip...)
			b = append(b, user...)
			return append(b, 0)
		}
		b = append(b, 0, 0, 0, 1)
		b = append(b, user...)
		b = append(b, 0)
		b = append(b, host...)
		return append(b, 0)
	}
	b = append(b, noAuth...)
	b = append(b, 5, byte(cmd), 0)
	switch {
	case isIP && addr.Is4():
		b = append(b, 1)
		b = append(b, addr.AsSlice()...)
	case isIP:
		b = append(b, 4)
		b = append(b, addr.AsSlice()...)
	default:
		b = append(b, 3, byte(len(host)))
		b = append(b, host...)
	}
	return binary.BigEndian.AppendUint16(b, port)
}

// FuzzRequestRoundTrip encodes requests as a client would and checks that
// ReadRequest returns what was encoded, or refuses what it must refuse.
func FuzzRequestRoundTrip(f *testing.F) {
	f.Add(false, byte(1), "127.0.0.1", uint16(80), "bob")
	f.Add(false, byte(1), "example.com", uint16(443), "")
	f.Add(false, byte(2), "a b", uint16(1), "")
	f.Add(true, byte(1), "2001:db8::1", uint16(22), "")
	f.Add(true, byte(3), "localhost", uint16(0), "")
	f.Add(true, byte(1), "::ffff:10.0.0.1", uint16(8080), "")
	f.Add(true, byte(1), "", uint16(80), "")
	f.Add(true, byte(1), "bad\xff", uint16(80), "")
	f.Fuzz(func(t *testing.T, v5 bool, cmd byte, host string, port uint16, user string) {
		version := socks.Version4
		if v5 {
			version = socks.Version5
			user = ""
		}
		if len(host) > 255 || len(user) > 255 || strings.IndexByte(user, 0) >= 0 {
			t.Skip("not encodable")
		}
		if version == socks.Version4 && strings.IndexByte(host, 0) >= 0 {
			t.Skip("a NUL ends a SOCKS4a host early")
		}
		in := encodeRequest(version, socks.Command(cmd), host, port, user)
		req, err := socks.ReadRequest(bytes.NewReader(in), &bytes.Buffer{})

		addr, perr := netip.ParseAddr(host)
		isIP := perr == nil && addr.Zone() == ""
		want := host
		if isIP && (version == socks.Version5 || addr.Is4()) {
			want = addr.String()
		}
		valid := isIP || (host != "" && utf8.ValidString(host) && !strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7F }))
		if !valid {
			var re *socks.RequestError
			if !errors.As(err, &re) || !errors.Is(err, socks.ErrMalformed) || re.Version != version {
				t.Fatalf("host %q: got %+v, %v; want a malformed-request error", host, req, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("host %q: %v", host, err)
		}
		wantReq := socks.Request{Version: version, Command: socks.Command(cmd), Host: want, Port: int(port), UserID: user}
		if *req != wantReq {
			t.Fatalf("got %+v, want %+v", *req, wantReq)
		}
	})
}

// FuzzAppendReply checks every reply against a decoder written from the
// protocol descriptions.
func FuzzAppendReply(f *testing.F) {
	f.Add(4, byte(0), []byte{}, uint16(0))
	f.Add(4, byte(5), []byte{10, 0, 0, 1}, uint16(1080))
	f.Add(4, byte(0), make([]byte, 16), uint16(1))
	f.Add(5, byte(0), []byte{192, 0, 2, 7}, uint16(40000))
	f.Add(5, byte(8), []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, uint16(443))
	f.Add(5, byte(9), []byte{}, uint16(0))
	f.Add(6, byte(0), []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, version int, code byte, ip []byte, port uint16) {
		var bound netip.AddrPort
		if addr, ok := netip.AddrFromSlice(ip); ok {
			bound = netip.AddrPortFrom(addr, port)
		}
		b, err := socks.AppendReply(nil, version, socks.Reply(code), bound)
		addr := bound.Addr().Unmap()
		if !addr.IsValid() {
			addr = netip.IPv4Unspecified()
		}
		wantErr := code > 8 || (version != 4 && version != 5) || (version == 4 && !addr.Is4())
		if wantErr {
			if err == nil {
				t.Fatalf("version %d code %d bound %v: encoded %x, want an error", version, code, bound, b)
			}
			if len(b) != 0 || !strings.HasPrefix(err.Error(), "sshfwd: socks:") {
				t.Fatalf("error %v with %x", err, b)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		var gotCode byte
		var gotAddr netip.Addr
		var gotPort uint16
		switch version {
		case 4:
			if len(b) != 8 || b[0] != 0 {
				t.Fatalf("SOCKS4 reply %x", b)
			}
			wantCD := byte(socks.Rejected4)
			if code == 0 {
				wantCD = socks.Granted4
			}
			if b[1] != wantCD {
				t.Fatalf("SOCKS4 reply %x for code %d", b, code)
			}
			gotCode, gotPort, gotAddr = code, binary.BigEndian.Uint16(b[2:4]), netip.AddrFrom4([4]byte(b[4:8]))
		case 5:
			if len(b) < 4 || b[0] != 5 || b[2] != 0 {
				t.Fatalf("SOCKS5 reply %x", b)
			}
			switch {
			case b[3] == 1 && len(b) == 10:
				gotAddr = netip.AddrFrom4([4]byte(b[4:8]))
			case b[3] == 4 && len(b) == 22:
				gotAddr = netip.AddrFrom16([16]byte(b[4:20]))
			default:
				t.Fatalf("SOCKS5 reply %x", b)
			}
			gotCode, gotPort = b[1], binary.BigEndian.Uint16(b[len(b)-2:])
		}
		if gotCode != code || gotAddr != addr.WithZone("") || gotPort != bound.Port() {
			t.Fatalf("reply %x decodes as %d %v:%d; want %d %v:%d", b, gotCode, gotAddr, gotPort, code, addr, bound.Port())
		}
	})
}
