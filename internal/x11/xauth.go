package x11

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
)

// Address families of Xauthority entries, with the values of X.h and
// libXau's Xauth.h.
const (
	FamilyInternet      uint16 = 0
	FamilyDECnet        uint16 = 1
	FamilyChaos         uint16 = 2
	FamilyInternet6     uint16 = 6
	FamilyLocalHost     uint16 = 252
	FamilyKrb5Principal uint16 = 253
	FamilyNetname       uint16 = 254
	FamilyLocal         uint16 = 256
	FamilyWild          uint16 = 65535
)

// maxField is the longest address, number, name or data an entry can hold:
// each is preceded by a 16-bit length.
const maxField = 65535

// AuthEntry is one entry of an Xauthority file.
type AuthEntry struct {
	// Family says how to read Address: FamilyLocal holds a host name,
	// FamilyInternet 4 and FamilyInternet6 16 raw address bytes.
	Family uint16
	// Address is the host the entry is for, in the form Family says.
	Address string
	// Number is the display number in decimal, or "" for every display.
	Number string
	// Name is the authorization protocol, such as "MIT-MAGIC-COOKIE-1".
	Name string
	// Data is the secret the protocol sends, such as the 16-byte cookie.
	Data []byte
}

// ReadAuthority reads every entry of an Xauthority file in file order. An
// empty input has no entries; input that ends inside an entry is an error,
// because libXau would stop there and a half-read cookie is useless.
func ReadAuthority(r io.Reader) ([]AuthEntry, error) {
	br := bufio.NewReader(r)
	var entries []AuthEntry
	for i := 0; ; i++ {
		var fam [2]byte
		n, err := io.ReadFull(br, fam[:])
		if err == io.EOF && n == 0 {
			return entries, nil
		}
		if err != nil {
			return nil, authReadError(i, "family", err)
		}
		e := AuthEntry{Family: uint16(fam[0])<<8 | uint16(fam[1])}
		var addr, num, name []byte
		for _, f := range []struct {
			what string
			dst  *[]byte
		}{{"address", &addr}, {"number", &num}, {"name", &name}, {"data", &e.Data}} {
			*f.dst, err = readCounted(br)
			if err != nil {
				return nil, authReadError(i, f.what, err)
			}
		}
		e.Address, e.Number, e.Name = string(addr), string(num), string(name)
		entries = append(entries, e)
	}
}

// readCounted reads one field: a 16-bit big-endian length, then the bytes.
func readCounted(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, int(l[0])<<8|int(l[1]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func authReadError(entry int, field string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("sshfwd: xauthority: entry %d truncated in its %s", entry, field)
	}
	return fmt.Errorf("sshfwd: xauthority: entry %d, reading %s: %w", entry, field, err)
}

// WriteAuthority writes entries in the Xauthority format. Every entry is
// checked before anything is written, so that an entry too long for the
// format never leaves a file cut in the middle.
func WriteAuthority(w io.Writer, entries []AuthEntry) error {
	for i, e := range entries {
		for _, f := range []struct {
			what string
			n    int
		}{{"address", len(e.Address)}, {"number", len(e.Number)}, {"name", len(e.Name)}, {"data", len(e.Data)}} {
			if f.n > maxField {
				return fmt.Errorf("sshfwd: xauthority: entry %d: %s is %d bytes, longer than %d", i, f.what, f.n, maxField)
			}
		}
	}
	bw := bufio.NewWriter(w)
	for _, e := range entries {
		// bufio.Writer keeps its first error and returns it from Flush, so
		// the writes need no checks of their own.
		_, _ = bw.Write([]byte{byte(e.Family >> 8), byte(e.Family)})
		for _, f := range []string{e.Address, e.Number, e.Name, string(e.Data)} {
			_, _ = bw.Write([]byte{byte(len(f) >> 8), byte(len(f))})
			_, _ = bw.WriteString(f)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("sshfwd: xauthority: write: %w", err)
	}
	return nil
}

// AuthorityPath returns the Xauthority file libXau would use: $XAUTHORITY,
// else .Xauthority in $HOME, else "" when neither is set.
func AuthorityPath() string {
	if p := os.Getenv("XAUTHORITY"); p != "" {
		return p
	}
	if home := os.Getenv("HOME"); home != "" {
		return filepath.Join(home, ".Xauthority")
	}
	return ""
}

// FindAuth returns the entry an X client would send to display d, where
// hostname is this machine's name as os.Hostname reports it (xauth files
// the local displays under it).
//
// An entry applies when its Number is the display number or empty and its
// address matches; a FamilyWild entry matches any address. As in libXau,
// the first entry in file order that applies wins, whatever its protocol.
//
// The address to match depends on the display:
//   - a local display (Unix socket) matches FamilyLocal entries for hostname;
//   - a TCP display on a loopback host ("localhost", 127.0.0.0/8, ::1) is
//     treated as local first, as libxcb and xauth do, so FamilyLocal entries
//     for hostname and FamilyWild entries are looked for first; failing
//     those, a loopback IP literal also matches a FamilyInternet or
//     FamilyInternet6 entry holding that address;
//   - a TCP display on another IP literal matches FamilyInternet (4 bytes,
//     also for an IPv4-mapped IPv6 literal) or FamilyInternet6 (16 bytes);
//   - a TCP display on another host name matches only FamilyWild entries:
//     FindAuth does not resolve names, so it cannot know their addresses.
func FindAuth(entries []AuthEntry, d Display, hostname string) (AuthEntry, bool) {
	number := strconv.Itoa(d.Number)
	localMatch := func(e AuthEntry) bool {
		return e.Family == FamilyLocal && e.Address == hostname
	}

	var ipMatch func(AuthEntry) bool
	loopback := d.Host == "localhost"
	if !d.IsLocal() {
		if ip, err := netip.ParseAddr(d.Host); err == nil {
			ip = ip.WithZone("").Unmap()
			loopback = ip.IsLoopback()
			family := FamilyInternet6
			if ip.Is4() {
				family = FamilyInternet
			}
			raw := string(ip.AsSlice())
			ipMatch = func(e AuthEntry) bool {
				return e.Family == family && e.Address == raw
			}
		}
	}

	var passes []func(AuthEntry) bool
	switch {
	case d.IsLocal():
		passes = append(passes, localMatch)
	case loopback:
		passes = append(passes, localMatch)
		if ipMatch != nil {
			passes = append(passes, ipMatch)
		}
	case ipMatch != nil:
		passes = append(passes, ipMatch)
	default:
		passes = append(passes, func(AuthEntry) bool { return false })
	}

	for _, match := range passes {
		for _, e := range entries {
			if e.Number != "" && e.Number != number {
				continue
			}
			if e.Family == FamilyWild || match(e) {
				return e, true
			}
		}
	}
	return AuthEntry{}, false
}
