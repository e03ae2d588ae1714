package x11

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A setup as xcb sends it on a little-endian machine, written out byte by
// byte from the protocol's encoding so that the test does not lean on
// Marshal: 'l', unused, 11, 0, name length 18, data length 16, unused, the
// name padded by 2 to 20 bytes, then the 16-byte cookie.
var lsbSetup = []byte{
	'l', 0, 11, 0, 0, 0, 18, 0, 16, 0, 0, 0,
	'M', 'I', 'T', '-', 'M', 'A', 'G', 'I', 'C', '-', 'C', 'O', 'O', 'K', 'I', 'E', '-', '1', 0, 0,
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
}

// The same in big-endian order with a 5-byte name and 3-byte data, to check
// padding of both fields.
var msbSetup = []byte{
	'B', 0, 0, 11, 0, 0, 0, 5, 0, 3, 0, 0,
	'a', 'b', 'c', 'd', 'e', 0, 0, 0,
	1, 2, 3, 0,
}

func TestReadSetup(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want Setup
	}{
		{"lsb cookie", lsbSetup, Setup{ByteOrder: LSBFirst, Major: 11, AuthName: "MIT-MAGIC-COOKIE-1", AuthData: cookie1}},
		{"msb padded", msbSetup, Setup{ByteOrder: MSBFirst, Major: 11, AuthName: "abcde", AuthData: []byte{1, 2, 3}}},
		{"no auth", []byte{'B', 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0}, Setup{ByteOrder: MSBFirst, Major: 11, AuthData: []byte{}}},
		{"minor version and junk in unused bytes", []byte{'l', 0xee, 11, 0, 7, 1, 0, 0, 0, 0, 0xee, 0xee}, Setup{ByteOrder: LSBFirst, Major: 11, Minor: 0x0107, AuthData: []byte{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The X stream after the setup must stay in the reader.
			const rest = "rest of the X stream"
			r := bytes.NewReader(append(append([]byte{}, tt.in...), rest...))
			got, err := ReadSetup(r)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			left, err := io.ReadAll(r)
			require.NoError(t, err)
			assert.Equal(t, rest, string(left))

			got, err = ReadSetup(iotest.OneByteReader(bytes.NewReader(tt.in)))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestReadSetupErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		message string
	}{
		{"empty", nil, "closed inside the header"},
		{"short header", lsbSetup[:11], "closed inside the header"},
		{"short name", lsbSetup[:20], "closed inside the authorization"},
		{"missing name padding", lsbSetup[:31], "closed inside the authorization"},
		{"short data", lsbSetup[:len(lsbSetup)-1], "closed inside the authorization"},
		{"missing data padding", msbSetup[:len(msbSetup)-1], "closed inside the authorization"},
		{"byte order zero", []byte{0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0}, "byte order 0x00"},
		{"byte order b", []byte{'b', 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0}, "byte order 0x62"},
		{"byte order L", []byte{'L', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "byte order 0x4c"},
		{"too long", []byte{'B', 0, 0, 11, 0, 0, 0xff, 0xff, 0, 1, 0, 0}, "limit"},
		{"too long lsb", []byte{'l', 0, 11, 0, 0, 0, 0, 0x80, 0, 0x80, 0, 0}, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadSetup(bytes.NewReader(tt.in))
			require.Error(t, err)
			assert.Equal(t, Setup{}, got)
			assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: "), err.Error())
			assert.Contains(t, err.Error(), tt.message)
		})
	}

	t.Run("reader error", func(t *testing.T) {
		boom := errors.New("reset")
		_, err := ReadSetup(io.MultiReader(bytes.NewReader(lsbSetup[:14]), iotest.ErrReader(boom)))
		require.Error(t, err)
		assert.ErrorIs(t, err, boom)
		assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: "), err.Error())
	})

	t.Run("largest accepted", func(t *testing.T) {
		// 12 bytes of header leave MaxSetupLen-12 for name and data; a name
		// of 4096 bytes with data of the rest fills it exactly.
		s := Setup{ByteOrder: MSBFirst, Major: 11, AuthName: strings.Repeat("n", 4096), AuthData: bytes.Repeat([]byte{7}, MaxSetupLen-12-4096)}
		b := s.Marshal()
		require.Len(t, b, MaxSetupLen)
		require.Equal(t, len(b), s.Len())
		got, err := ReadSetup(bytes.NewReader(b))
		require.NoError(t, err)
		assert.Equal(t, s, got)

		s.AuthData = append(s.AuthData, 7)
		_, err = ReadSetup(bytes.NewReader(s.Marshal()))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "limit")
	})
}

func TestReadSetupLimit(t *testing.T) {
	// lsbSetup is 48 bytes long: a limit of 48 takes it, 47 refuses it
	// from its header alone.
	got, err := ReadSetupLimit(bytes.NewReader(lsbSetup), len(lsbSetup))
	require.NoError(t, err)
	assert.Equal(t, cookie1, got.AuthData)

	cr := &countingReader{r: bytes.NewReader(lsbSetup)}
	_, err = ReadSetupLimit(cr, len(lsbSetup)-1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "47-byte limit")
	assert.Equal(t, setupHeaderLen, cr.n, "a refused request is not read beyond its header")

	// A limit beyond MaxSetupLen is MaxSetupLen.
	big := Setup{ByteOrder: LSBFirst, AuthData: make([]byte, MaxSetupLen)}.Marshal()
	_, err = ReadSetupLimit(bytes.NewReader(big), 1<<20)
	require.Error(t, err)
}

// TestReadSetupTakesMemoryAsBytesArrive declares the largest request and
// sends only its header: ReadSetup must not make room for what was only
// declared. Without the incremental read it allocates MaxSetupLen.
func TestReadSetupTakesMemoryAsBytesArrive(t *testing.T) {
	hdr := []byte{'l', 0, 11, 0, 0, 0, 0xf4, 0x1f, 0xf4, 0x1f, 0, 0} // 8180 + 8180 bytes
	alloc := allocated(func() { ReadSetup(bytes.NewReader(hdr)) })
	assert.Less(t, alloc, uint64(1024), "bytes allocated for a request that sent only its header")
}

// allocated returns the bytes of heap that f allocated, measured around it;
// other goroutines allocating at the same time only make it larger.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestSetupMarshal(t *testing.T) {
	tests := []struct {
		name string
		in   Setup
		want []byte
	}{
		{"lsb cookie", Setup{ByteOrder: LSBFirst, Major: 11, AuthName: "MIT-MAGIC-COOKIE-1", AuthData: cookie1}, lsbSetup},
		{"msb padded", Setup{ByteOrder: MSBFirst, Major: 11, AuthName: "abcde", AuthData: []byte{1, 2, 3}}, msbSetup},
		{"version bytes", Setup{ByteOrder: MSBFirst, Major: 0x0102, Minor: 0x0304}, []byte{'B', 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0}},
		{"unknown byte order is msb", Setup{ByteOrder: 'x', Major: 11, AuthName: "a"}, []byte{'B', 0, 0, 11, 0, 0, 0, 1, 0, 0, 0, 0, 'a', 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.in.Marshal())
		})
	}

	t.Run("oversized fields are cut", func(t *testing.T) {
		s := Setup{ByteOrder: LSBFirst, AuthName: strings.Repeat("n", 70000), AuthData: make([]byte, 70000)}
		b := s.Marshal()
		assert.Len(t, b, 12+65536+65536)
		assert.Equal(t, []byte{0xff, 0xff, 0xff, 0xff}, b[6:10])
	})
}

func TestSetupWithAuth(t *testing.T) {
	orig := Setup{ByteOrder: LSBFirst, Major: 11, Minor: 2, AuthName: "MIT-MAGIC-COOKIE-1", AuthData: []byte{1, 2, 3}}
	real := []byte{9, 8, 7, 6}
	got := orig.WithAuth("XDM-AUTHORIZATION-1", real)

	assert.Equal(t, Setup{ByteOrder: LSBFirst, Major: 11, Minor: 2, AuthName: "XDM-AUTHORIZATION-1", AuthData: []byte{9, 8, 7, 6}}, got)
	assert.Equal(t, "MIT-MAGIC-COOKIE-1", orig.AuthName, "the receiver must not change")
	assert.Equal(t, []byte{1, 2, 3}, orig.AuthData, "the receiver must not change")
	real[0] = 0
	assert.Equal(t, byte(9), got.AuthData[0], "the data must be copied")

	parsed, err := ReadSetup(bytes.NewReader(got.Marshal()))
	require.NoError(t, err)
	assert.Equal(t, got, parsed)
}

func TestRefuseReply(t *testing.T) {
	tests := []struct {
		name   string
		order  byte
		major  uint16
		minor  uint16
		reason string
		want   []byte
	}{
		{"msb", MSBFirst, 11, 0, "No protocol specified\n",
			append([]byte{0, 22, 0, 11, 0, 0, 0, 6}, "No protocol specified\n\x00\x00"...)},
		{"lsb", LSBFirst, 11, 0, "denied",
			append([]byte{0, 6, 11, 0, 0, 0, 2, 0}, "denied\x00\x00"...)},
		{"aligned reason has no padding", LSBFirst, 11, 1, "abcd",
			append([]byte{0, 4, 11, 0, 1, 0, 1, 0}, "abcd"...)},
		{"empty reason", MSBFirst, 11, 0, "", []byte{0, 0, 0, 11, 0, 0, 0, 0}},
		{"unknown order is msb", 0, 0x0102, 0x0304, "x", []byte{0, 1, 1, 2, 3, 4, 0, 1, 'x', 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, RefuseReply(tt.order, tt.major, tt.minor, tt.reason))
		})
	}

	t.Run("long ascii reason is cut to 255", func(t *testing.T) {
		b := RefuseReply(MSBFirst, 11, 0, strings.Repeat("r", 300))
		require.Len(t, b, 8+256)
		assert.Equal(t, byte(255), b[1])
		assert.Equal(t, []byte{0, 64}, b[6:8])
		assert.Equal(t, strings.Repeat("r", 255)+"\x00", string(b[8:]))
	})
	t.Run("long utf8 reason is cut at a character", func(t *testing.T) {
		// 254 ASCII bytes then a 3-byte character that would straddle 255.
		reason := strings.Repeat("r", 254) + "€" + "tail"
		b := RefuseReply(MSBFirst, 11, 0, reason)
		require.Len(t, b, 8+256)
		assert.Equal(t, byte(254), b[1])
		got := string(b[8 : 8+int(b[1])])
		assert.True(t, utf8.ValidString(got))
		assert.Equal(t, strings.Repeat("r", 254), got)
	})
}

// countingReader records how many bytes were taken from the underlying
// reader, so that the fuzz target can prove ReadSetup never reads ahead,
// and the largest buffer offered to Read beyond what had arrived, which is
// the memory ReadSetup took without having the bytes for it.
type countingReader struct {
	r       io.Reader
	n       int
	offered int // the most that a Read was offered beyond firstChunk and n
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.offered = max(c.offered, len(p)-max(firstChunk, c.n))
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func FuzzReadSetup(f *testing.F) {
	f.Add(lsbSetup)
	f.Add(msbSetup)
	f.Add(append(append([]byte{}, lsbSetup...), 1, 0, 2, 0))
	f.Add([]byte{'B', 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{'l', 0, 11, 0, 0, 0, 0, 0x80, 0, 0x80, 0, 0})
	f.Add([]byte{'x'})
	f.Add([]byte{'l', 0, 11, 0, 0, 0, 0xf4, 0x1f, 0xf4, 0x1f, 0, 0, 'a'})
	f.Fuzz(func(t *testing.T, in []byte) {
		cr := &countingReader{r: bytes.NewReader(in)}
		s, err := ReadSetup(cr)
		// Memory follows what arrived, not what the header declared: no
		// Read is offered more room than the bytes already read, or the
		// first chunk. (The fuzzing engine allocates beside the target, so
		// the heap itself is measured by TestReadSetupTakesMemoryAsBytesArrive.)
		if cr.offered > 0 {
			t.Fatalf("a Read was offered %d bytes beyond what had arrived", cr.offered)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "sshfwd: ") {
				t.Fatalf("error %q lacks the sshfwd: prefix", err)
			}
			return
		}
		b := s.Marshal()
		if cr.n != len(b) {
			t.Fatalf("read %d bytes for a setup of %d", cr.n, len(b))
		}
		if len(b) > MaxSetupLen {
			t.Fatalf("accepted a setup of %d bytes", len(b))
		}
		// Marshal may only differ from the input in unused and padding
		// bytes, which it writes as zero.
		for i := range b {
			if b[i] != in[i] && !(i == 1 || i == 10 || i == 11 || b[i] == 0) {
				t.Fatalf("Marshal byte %d is %#x, input had %#x", i, b[i], in[i])
			}
		}
		back, err := ReadSetup(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("Marshal output does not read back: %v", err)
		}
		if back.ByteOrder != s.ByteOrder || back.Major != s.Major || back.Minor != s.Minor ||
			back.AuthName != s.AuthName || !bytes.Equal(back.AuthData, s.AuthData) {
			t.Fatalf("round trip gave %#v, want %#v", back, s)
		}
		reply := RefuseReply(s.ByteOrder, s.Major, s.Minor, s.AuthName)
		if len(reply)%4 != 0 || len(reply) < 8 || reply[0] != 0 || int(reply[1]) > len(reply)-8 {
			t.Fatalf("malformed refusal %x", reply)
		}
	})
}
