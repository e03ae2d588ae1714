package x11

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// authBytes hand-encodes entries so that the reader is checked against the
// format itself, not against WriteAuthority.
func authBytes(entries ...AuthEntry) []byte {
	var b []byte
	field := func(s string) {
		b = append(b, byte(len(s)>>8), byte(len(s)))
		b = append(b, s...)
	}
	for _, e := range entries {
		b = append(b, byte(e.Family>>8), byte(e.Family))
		field(e.Address)
		field(e.Number)
		field(e.Name)
		field(string(e.Data))
	}
	return b
}

var (
	cookie1 = []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	local0  = AuthEntry{Family: FamilyLocal, Address: "box", Number: "0", Name: "MIT-MAGIC-COOKIE-1", Data: cookie1}
	inet10  = AuthEntry{Family: FamilyInternet, Address: "\xc0\x00\x02\x07", Number: "10", Name: "MIT-MAGIC-COOKIE-1", Data: []byte{1, 2, 3}}
	wildAll = AuthEntry{Family: FamilyWild, Name: "XDM-AUTHORIZATION-1", Data: []byte{9}}
)

func TestReadAuthority(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []AuthEntry
	}{
		{"empty", nil, nil},
		{"one", authBytes(local0), []AuthEntry{local0}},
		{"three in order", authBytes(local0, inet10, wildAll), []AuthEntry{local0, inet10, wildAll}},
		{"empty fields", authBytes(AuthEntry{Family: 7}), []AuthEntry{{Family: 7, Data: []byte{}}}},
		{"long field", authBytes(AuthEntry{Family: FamilyLocal, Address: strings.Repeat("h", 65535), Data: []byte{1}}),
			[]AuthEntry{{Family: FamilyLocal, Address: strings.Repeat("h", 65535), Data: []byte{1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadAuthority(bytes.NewReader(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)

			// A reader that hands out one byte at a time must give the
			// same entries: files and pipes return short reads.
			got, err = ReadAuthority(iotest.OneByteReader(bytes.NewReader(tt.in)))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestReadAuthorityErrors(t *testing.T) {
	full := authBytes(local0, inet10)
	one := len(authBytes(local0))
	tests := []struct {
		name    string
		in      []byte
		message string
	}{
		{"half a family", full[:1], "entry 0 truncated in its family"},
		{"no address length", full[:2], "entry 0 truncated in its address"},
		{"short address", full[:5], "entry 0 truncated in its address"},
		{"no number", full[:7], "entry 0 truncated in its number"},
		{"short data", full[:one-1], "entry 0 truncated in its data"},
		{"second entry cut", full[:one+1], "entry 1 truncated in its family"},
		{"second entry name cut", full[:len(full)-len(inet10.Data)-3], "entry 1 truncated in its name"},
		{"length past end", []byte{1, 0, 0xff, 0xff, 'a'}, "entry 0 truncated in its address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadAuthority(bytes.NewReader(tt.in))
			require.Error(t, err)
			assert.Nil(t, got)
			assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: "), err.Error())
			assert.Contains(t, err.Error(), tt.message)
		})
	}

	t.Run("reader error", func(t *testing.T) {
		boom := errors.New("boom")
		r := io.MultiReader(bytes.NewReader(full[:3]), iotest.ErrReader(boom))
		_, err := ReadAuthority(r)
		require.Error(t, err)
		assert.ErrorIs(t, err, boom)
		assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: "), err.Error())
	})
}

func TestWriteAuthority(t *testing.T) {
	entries := []AuthEntry{local0, inet10, wildAll, {Family: FamilyInternet6, Address: strings.Repeat("\x00", 15) + "\x01", Number: "3"}}
	var buf bytes.Buffer
	require.NoError(t, WriteAuthority(&buf, entries))
	assert.Equal(t, authBytes(entries...), buf.Bytes())

	buf.Reset()
	require.NoError(t, WriteAuthority(&buf, nil))
	assert.Zero(t, buf.Len())
}

func TestWriteAuthorityErrors(t *testing.T) {
	big := strings.Repeat("x", 65536)
	tests := []struct {
		name  string
		entry AuthEntry
		field string
	}{
		{"address", AuthEntry{Address: big}, "address"},
		{"number", AuthEntry{Number: big}, "number"},
		{"name", AuthEntry{Name: big}, "name"},
		{"data", AuthEntry{Data: []byte(big)}, "data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteAuthority(&buf, []AuthEntry{local0, tt.entry})
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: "), err.Error())
			assert.Contains(t, err.Error(), "entry 1: "+tt.field)
			assert.Zero(t, buf.Len(), "nothing may be written when an entry is invalid")
		})
	}

	t.Run("writer error", func(t *testing.T) {
		boom := errors.New("disk full")
		err := WriteAuthority(failWriter{boom}, []AuthEntry{local0})
		require.Error(t, err)
		assert.ErrorIs(t, err, boom)
		assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: "), err.Error())
	})
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestAuthorityPath(t *testing.T) {
	tests := []struct {
		name, xauthority, home, want string
	}{
		{"XAUTHORITY wins", "/run/user/1000/xauth_abc", "/home/u", "/run/user/1000/xauth_abc"},
		{"HOME", "", "/home/u", "/home/u/.Xauthority"},
		{"neither", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XAUTHORITY", tt.xauthority)
			t.Setenv("HOME", tt.home)
			assert.Equal(t, tt.want, AuthorityPath())
		})
	}
}

func TestFindAuth(t *testing.T) {
	const host = "box"
	cookie := func(fam uint16, addr, num string, tag byte) AuthEntry {
		return AuthEntry{Family: fam, Address: addr, Number: num, Name: "MIT-MAGIC-COOKIE-1", Data: []byte{tag}}
	}
	var (
		local10     = cookie(FamilyLocal, host, "10", 1)
		localOther  = cookie(FamilyLocal, "otherbox", "10", 2)
		localAnyNum = cookie(FamilyLocal, host, "", 3)
		wild10      = cookie(FamilyWild, "", "10", 4)
		inetLoop10  = cookie(FamilyInternet, "\x7f\x00\x00\x01", "10", 5)
		inet10      = cookie(FamilyInternet, "\xc0\x00\x02\x07", "10", 6)
		inet6Loop10 = cookie(FamilyInternet6, strings.Repeat("\x00", 15)+"\x01", "10", 7)
		inet6Doc10  = cookie(FamilyInternet6, "\x20\x01\x0d\xb8"+strings.Repeat("\x00", 11)+"\x01", "10", 8)
		local11     = cookie(FamilyLocal, host, "11", 9)
		xdm10       = AuthEntry{Family: FamilyLocal, Address: host, Number: "10", Name: "XDM-AUTHORIZATION-1", Data: []byte{10}}
	)
	tests := []struct {
		name    string
		entries []AuthEntry
		display string
		want    *AuthEntry
	}{
		{"local", []AuthEntry{local11, localOther, local10}, ":10", &local10},
		{"unix host", []AuthEntry{local10}, "unix:10.2", &local10},
		{"path form", []AuthEntry{local11, local10}, "/tmp/launch/org.xquartz:10", &local10},
		{"other host name is not ours", []AuthEntry{localOther}, ":10", nil},
		{"wrong number", []AuthEntry{local11}, ":10", nil},
		{"empty number matches", []AuthEntry{local11, localAnyNum}, ":10", &localAnyNum},
		{"wild matches local", []AuthEntry{wild10}, ":10", &wild10},
		{"first match wins", []AuthEntry{wild10, local10}, ":10", &wild10},
		{"first match wins regardless of protocol", []AuthEntry{xdm10, local10}, ":10", &xdm10},
		{"local ignores internet", []AuthEntry{inetLoop10}, ":10", nil},
		{"localhost is local", []AuthEntry{inetLoop10, local10}, "localhost:10.0", &local10},
		{"localhost name does not resolve", []AuthEntry{inetLoop10}, "localhost:10", nil},
		{"127.0.0.1 prefers local", []AuthEntry{inetLoop10, local10}, "127.0.0.1:10", &local10},
		{"127.0.0.1 falls back to internet", []AuthEntry{inet10, inetLoop10}, "127.0.0.1:10", &inetLoop10},
		{"127.0.0.1 wild before internet", []AuthEntry{inetLoop10, wild10}, "127.0.0.1:10", &wild10},
		{"::1 prefers local", []AuthEntry{inet6Loop10, local10}, "[::1]:10", &local10},
		{"::1 falls back to internet6", []AuthEntry{inetLoop10, inet6Loop10}, "[::1]:10", &inet6Loop10},
		{"remote ipv4", []AuthEntry{local10, inetLoop10, inet10}, "192.0.2.7:10", &inet10},
		{"remote ipv4 wrong number", []AuthEntry{inet10}, "192.0.2.7:11", nil},
		{"remote ipv4 no local", []AuthEntry{local10}, "192.0.2.7:10", nil},
		{"remote ipv4 wild", []AuthEntry{wild10}, "192.0.2.7:10", &wild10},
		{"mapped ipv4 is internet", []AuthEntry{inet10}, "[::ffff:192.0.2.7]:10", &inet10},
		{"remote ipv6", []AuthEntry{inet10, inet6Doc10}, "[2001:db8::1]:10", &inet6Doc10},
		{"remote ipv6 bare", []AuthEntry{inet6Doc10}, "2001:db8::1:10", &inet6Doc10},
		{"remote ipv6 zone ignored", []AuthEntry{inet6Loop10}, "[::1%lo]:10", &inet6Loop10},
		{"remote name only wild", []AuthEntry{local10, inet10, wild10}, "example.org:10", &wild10},
		{"remote name nothing", []AuthEntry{local10, inet10}, "example.org:10", nil},
		{"no entries", nil, ":10", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDisplay(tt.display)
			require.NoError(t, err)
			got, ok := FindAuth(tt.entries, d, host)
			if tt.want == nil {
				assert.False(t, ok, "found %#v", got)
				assert.Equal(t, AuthEntry{}, got)
				return
			}
			require.True(t, ok)
			assert.Equal(t, *tt.want, got)
		})
	}
}

// requirePeer returns the path of a real tool the test compares with,
// skipping when it is missing unless SSHFWD_REQUIRE_PEERS=1 demands it.
func requirePeer(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("SSHFWD_REQUIRE_PEERS") == "1" {
			t.Fatalf("%s is required (SSHFWD_REQUIRE_PEERS=1) but missing: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return path
}

func TestRealXauthWrites(t *testing.T) {
	xauth := requirePeer(t, "xauth")
	hostname, err := os.Hostname()
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "Xauthority")
	const hex1 = "00112233445566778899aabbccddeeff"
	const hex2 = "0a0b0c0d"
	const hex3 = "cafe"
	for _, args := range [][]string{
		{"add", ":99", "MIT-MAGIC-COOKIE-1", hex1},
		{"add", "127.0.0.1:12", ".", hex2},
		{"add", "192.0.2.7:5", ".", hex3},
	} {
		out, err := exec.Command(xauth, append([]string{"-q", "-f", file}, args...)...).CombinedOutput()
		require.NoError(t, err, "xauth %v: %s", args, out)
	}

	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	entries, err := ReadAuthority(f)
	require.NoError(t, err)

	want := []AuthEntry{
		{Family: FamilyLocal, Address: hostname, Number: "99", Name: "MIT-MAGIC-COOKIE-1", Data: mustHex(t, hex1)},
		// xauth files a loopback address under the local host name, as
		// libxcb looks it up.
		{Family: FamilyLocal, Address: hostname, Number: "12", Name: "MIT-MAGIC-COOKIE-1", Data: mustHex(t, hex2)},
		{Family: FamilyInternet, Address: "\xc0\x00\x02\x07", Number: "5", Name: "MIT-MAGIC-COOKIE-1", Data: mustHex(t, hex3)},
	}
	assert.Equal(t, want, entries)

	for _, c := range []struct {
		display string
		data    string
	}{{":99", hex1}, {"unix:99.0", hex1}, {"localhost:12.0", hex2}, {"127.0.0.1:12", hex2}, {"192.0.2.7:5", hex3}} {
		d, err := ParseDisplay(c.display)
		require.NoError(t, err)
		e, ok := FindAuth(entries, d, hostname)
		require.True(t, ok, c.display)
		assert.Equal(t, c.data, hex.EncodeToString(e.Data), c.display)
	}
}

func TestRealXauthReads(t *testing.T) {
	xauth := requirePeer(t, "xauth")
	file := filepath.Join(t.TempDir(), "Xauthority")
	entries := []AuthEntry{
		{Family: FamilyLocal, Address: "sshfwd-test", Number: "42", Name: "MIT-MAGIC-COOKIE-1", Data: []byte{0xde, 0xad, 0xbe, 0xef}},
		{Family: FamilyInternet, Address: "\x0a\x01\x02\x03", Number: "7", Name: "MIT-MAGIC-COOKIE-1", Data: []byte{0x01, 0x02}},
	}
	var buf bytes.Buffer
	require.NoError(t, WriteAuthority(&buf, entries))
	require.NoError(t, os.WriteFile(file, buf.Bytes(), 0o600))

	out, err := exec.Command(xauth, "-f", file, "list").CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 2, "%s", out)
	assert.Equal(t, []string{"sshfwd-test/unix:42", "MIT-MAGIC-COOKIE-1", "deadbeef"}, strings.Fields(lines[0]))
	assert.Equal(t, []string{"10.1.2.3:7", "MIT-MAGIC-COOKIE-1", "0102"}, strings.Fields(lines[1]))
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

func FuzzReadAuthority(f *testing.F) {
	f.Add([]byte{})
	f.Add(authBytes(local0))
	f.Add(authBytes(local0, inet10, wildAll))
	f.Add(authBytes(AuthEntry{Family: FamilyInternet6, Address: strings.Repeat("\x00", 15) + "\x01", Number: "10", Name: "MIT-MAGIC-COOKIE-1", Data: cookie1}))
	f.Add(authBytes(local0)[:9])
	f.Add([]byte{1, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		entries, err := ReadAuthority(bytes.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "sshfwd: ") {
				t.Fatalf("error %q lacks the sshfwd: prefix", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := WriteAuthority(&buf, entries); err != nil {
			t.Fatalf("entries that were read do not write: %v", err)
		}
		// Every byte of valid input belongs to some field, so writing the
		// entries back must give the input itself.
		if !bytes.Equal(buf.Bytes(), in) {
			t.Fatalf("write of read entries differs from input:\n got %x\nwant %x", buf.Bytes(), in)
		}
		again, err := ReadAuthority(&buf)
		if err != nil {
			t.Fatalf("reading back what was written: %v", err)
		}
		if len(again) != len(entries) {
			t.Fatalf("read back %d entries, want %d", len(again), len(entries))
		}
		for i := range entries {
			a, b := entries[i], again[i]
			if a.Family != b.Family || a.Address != b.Address || a.Number != b.Number || a.Name != b.Name || !bytes.Equal(a.Data, b.Data) {
				t.Fatalf("entry %d: read back %#v, want %#v", i, b, a)
			}
		}
		for _, s := range []string{":0", "localhost:10.0", "127.0.0.1:1", "[::1]:2", "192.0.2.7:0", "example.org:3"} {
			d, err := ParseDisplay(s)
			if err != nil {
				t.Fatal(err)
			}
			if e, ok := FindAuth(entries, d, "box"); ok {
				if e.Number != "" && e.Number != strconv.Itoa(d.Number) {
					t.Fatalf("FindAuth for %s picked an entry for display %q", s, e.Number)
				}
			}
		}
	})
}
