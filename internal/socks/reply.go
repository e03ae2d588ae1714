package socks

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
)

// AppendReply appends to b the reply to a request of the given version and
// returns the extended slice. bound is the address the server connected from
// (BND.ADDR and BND.PORT, DSTIP and DSTPORT in SOCKS4); the zero AddrPort
// sends 0.0.0.0:0, which clients of a CONNECT do not look at.
//
// A SOCKS4 reply is 8 bytes: VN 0, CD 0x5A (Succeeded) or 0x5B (any other
// code), DSTPORT, DSTIP; it cannot carry an IPv6 address. A SOCKS5 reply
// (RFC 1928 section 6) is VER, REP, RSV, ATYP, BND.ADDR, BND.PORT.
func AppendReply(b []byte, version int, code Reply, bound netip.AddrPort) ([]byte, error) {
	if code > AddressTypeNotSupported {
		return b, fmt.Errorf("sshfwd: socks: %v is not a reply code", code)
	}
	addr := bound.Addr().Unmap()
	if !addr.IsValid() {
		addr = netip.IPv4Unspecified()
	}
	switch version {
	case Version4:
		if !addr.Is4() {
			return b, fmt.Errorf("sshfwd: socks: SOCKS4 reply cannot carry address %v", addr)
		}
		cd := byte(Rejected4)
		if code == Succeeded {
			cd = Granted4
		}
		b = append(b, 0, cd)
		b = binary.BigEndian.AppendUint16(b, bound.Port())
		return append(b, addr.AsSlice()...), nil
	case Version5:
		atyp := byte(atypIPv6)
		if addr.Is4() {
			atyp = atypIPv4
		}
		b = append(b, Version5, byte(code), 0, atyp)
		b = append(b, addr.AsSlice()...)
		return binary.BigEndian.AppendUint16(b, bound.Port()), nil
	}
	return b, fmt.Errorf("sshfwd: socks: no reply format for version %d", version)
}

// WriteReply writes the reply that AppendReply builds to w, in one Write.
func WriteReply(w io.Writer, version int, code Reply, bound netip.AddrPort) error {
	b, err := AppendReply(make([]byte, 0, 22), version, code, bound)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("sshfwd: socks: writing reply: %w", err)
	}
	return nil
}
