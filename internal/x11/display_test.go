package x11

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const xquartz = "/private/tmp/com.apple.launchd.AbC123/org.xquartz:0"

func TestParseDisplay(t *testing.T) {
	tests := []struct {
		in      string
		want    Display
		str     string
		local   bool
		network string
		address string
	}{
		{":0", Display{}, ":0.0", true, "unix", "/tmp/.X11-unix/X0"},
		{":1.2", Display{Number: 1, Screen: 2}, ":1.2", true, "unix", "/tmp/.X11-unix/X1"},
		{":010", Display{Number: 10}, ":10.0", true, "unix", "/tmp/.X11-unix/X10"},
		{"::3", Display{Number: 3}, ":3.0", true, "unix", "/tmp/.X11-unix/X3"},
		{"unix:10", Display{Host: "unix", Number: 10}, "unix:10.0", true, "unix", "/tmp/.X11-unix/X10"},
		{"unix:10.1", Display{Host: "unix", Number: 10, Screen: 1}, "unix:10.1", true, "unix", "/tmp/.X11-unix/X10"},
		{"localhost:10.0", Display{Host: "localhost", Number: 10}, "localhost:10.0", false, "tcp", "localhost:6010"},
		{"example.org:2", Display{Host: "example.org", Number: 2}, "example.org:2.0", false, "tcp", "example.org:6002"},
		{"my_host-1:0.3", Display{Host: "my_host-1", Screen: 3}, "my_host-1:0.3", false, "tcp", "my_host-1:6000"},
		{"192.0.2.7:59535", Display{Host: "192.0.2.7", Number: 59535}, "192.0.2.7:59535.0", false, "tcp", "192.0.2.7:65535"},
		{"[::1]:5", Display{Host: "::1", Number: 5}, "[::1]:5.0", false, "tcp", "[::1]:6005"},
		{"::1:5.1", Display{Host: "::1", Number: 5, Screen: 1}, "[::1]:5.1", false, "tcp", "[::1]:6005"},
		{"[fe80::1%eth0]:0", Display{Host: "fe80::1%eth0"}, "[fe80::1%eth0]:0.0", false, "tcp", "[fe80::1%eth0]:6000"},
		{"[::ffff:10.0.0.1]:4", Display{Host: "::ffff:10.0.0.1", Number: 4}, "[::ffff:10.0.0.1]:4.0", false, "tcp", "[::ffff:10.0.0.1]:6004"},
		{xquartz, Display{Path: xquartz}, xquartz, true, "unix", xquartz},
		{xquartz + ".1", Display{Path: xquartz, Screen: 1}, xquartz + ".1", true, "unix", xquartz},
		{"/tmp/dir.d/sock:7", Display{Path: "/tmp/dir.d/sock:7", Number: 7}, "/tmp/dir.d/sock:7", true, "unix", "/tmp/dir.d/sock:7"},
		{"/tmp/a:b/sock:2.3", Display{Path: "/tmp/a:b/sock:2", Number: 2, Screen: 3}, "/tmp/a:b/sock:2.3", true, "unix", "/tmp/a:b/sock:2"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDisplay(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.str, got.String())
			assert.Equal(t, tt.local, got.IsLocal())
			network, address := got.Network()
			assert.Equal(t, tt.network, network)
			assert.Equal(t, tt.address, address)

			again, err := ParseDisplay(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, again)
		})
	}
}

func TestParseDisplayErrors(t *testing.T) {
	tests := []string{
		"",
		"0",
		"localhost",
		":",
		"unix:",
		"host:",
		":.0",
		":0.",
		":-1",
		":+1",
		": 1",
		":1 ",
		":0x10",
		":1.2.3",
		":1.-2",
		":59536",
		":65535",
		":99999999999999999999999999",
		":1.65536",
		":1\x00",
		"\x00:1",
		"host:1junk",
		"host name:1",
		"host/x:1",
		"-host:1",
		".host:1",
		"[::1:1",
		"[::1]x:1",
		"[localhost]:1",
		"[192.0.2.1]:1",
		"1::2::3:1",
		"fe80::1%e]th0:1",
		"/tmp/sock",
		"/tmp/sock:",
		"/tmp/sock:x",
		"/tmp/sock:0/x",
		"/tmp/sock:0.",
		"\xff:1",
		strings.Repeat("a", 254) + ":1",
	}
	for _, in := range tests {
		t.Run(strconv.Quote(in), func(t *testing.T) {
			d, err := ParseDisplay(in)
			require.Error(t, err, "parsed as %#v", d)
			assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: "), err.Error())
			assert.Equal(t, Display{}, d)
		})
	}
}

func TestDisplayStringScreenZeroPath(t *testing.T) {
	// libxcb refuses a ".0" suffix on a socket path, so String must not add
	// one even though it does for every other form.
	d := Display{Path: "/run/x:0"}
	assert.Equal(t, "/run/x:0", d.String())
	d.Screen = 2
	assert.Equal(t, "/run/x:0.2", d.String())
}

func TestDialUnixPath(t *testing.T) {
	// Unix socket paths are limited to about 100 bytes, which t.TempDir can
	// exceed; a short directory under the system temp dir stays below.
	dir, err := os.MkdirTemp("", "x11")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "org.test:0")

	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- err.Error()
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		_, err = c.Read(buf)
		if err != nil {
			accepted <- err.Error()
			return
		}
		accepted <- string(buf)
	}()

	d, err := ParseDisplay(sock + ".1")
	require.NoError(t, err)
	require.Equal(t, sock, d.Path)
	c, err := d.Dial(context.Background())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	assert.Equal(t, "hello", <-accepted)
}

func TestDialTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if port < BaseTCPPort {
		t.Skipf("listener got port %d, below the X11 base port", port)
	}
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		done <- err
	}()

	d, err := ParseDisplay("127.0.0.1:" + strconv.Itoa(port-BaseTCPPort))
	require.NoError(t, err)
	c, err := d.Dial(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ln.Addr().String(), c.RemoteAddr().String())
	c.Close()
	require.NoError(t, <-done)
}

func TestDialErrors(t *testing.T) {
	dir, err := os.MkdirTemp("", "x11")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })

	t.Run("no socket", func(t *testing.T) {
		d := Display{Path: filepath.Join(dir, "missing:0")}
		c, err := d.Dial(context.Background())
		require.Error(t, err)
		assert.Nil(t, c)
		assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: "), err.Error())
		assert.ErrorContains(t, err, "missing:0")
	})
	t.Run("bad number", func(t *testing.T) {
		for _, n := range []int{-1, MaxDisplayNumber + 1} {
			c, err := Display{Host: "127.0.0.1", Number: n}.Dial(context.Background())
			require.Error(t, err)
			assert.Nil(t, c)
			assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: "), err.Error())
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c, err := Display{Host: "127.0.0.1", Number: 1}.Dial(ctx)
		require.Error(t, err)
		assert.Nil(t, c)
		assert.True(t, errors.Is(err, context.Canceled), err.Error())
	})
}

func FuzzParseDisplay(f *testing.F) {
	for _, s := range []string{
		":0", ":0.0", ":10.1", "unix:0", "unix:12.3", "localhost:10.0",
		"host.example.com:1", "10.0.0.1:0", "[::1]:0", "::1:0.1", "::0",
		"[fe80::1%eth0]:2", xquartz, xquartz + ".2", "/tmp/s:1", "",
		":", ":x", ":1.", ":-1", ":65535", "a b:1", "[::1:0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDisplay(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "sshfwd: ") {
				t.Fatalf("error %q lacks the sshfwd: prefix", err)
			}
			if d != (Display{}) {
				t.Fatalf("error %v came with a non-zero Display %#v", err, d)
			}
			return
		}
		if d.Number < 0 || d.Number > MaxDisplayNumber || d.Screen < 0 {
			t.Fatalf("%q: out-of-range %#v", s, d)
		}
		back, err := ParseDisplay(d.String())
		if err != nil {
			t.Fatalf("%q: String() %q does not parse: %v", s, d.String(), err)
		}
		if back != d {
			t.Fatalf("%q: round trip through %q gave %#v, want %#v", s, d.String(), back, d)
		}
		network, address := d.Network()
		if d.IsLocal() != (network == "unix") {
			t.Fatalf("%q: IsLocal %v but network %q", s, d.IsLocal(), network)
		}
		if network == "tcp" {
			host, port, err := net.SplitHostPort(address)
			if err != nil || host != d.Host || port != strconv.Itoa(BaseTCPPort+d.Number) {
				t.Fatalf("%q: address %q does not split back to %q and port %d (%v)", s, address, d.Host, BaseTCPPort+d.Number, err)
			}
		}
	})
}
