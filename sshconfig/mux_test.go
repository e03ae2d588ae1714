package sshconfig

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd/internal/testnet"
)

// muxBody builds a message body of uint32s and strings.
func muxBody(fields ...any) []byte {
	var b []byte
	for _, f := range fields {
		switch v := f.(type) {
		case uint32:
			b = binary.BigEndian.AppendUint32(b, v)
		case string:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

func TestParseMuxReply(t *testing.T) {
	for _, tc := range []struct {
		body []byte
		want muxReply
	}{
		{muxBody(uint32(muxOK), uint32(7)), muxReply{typ: muxOK, id: 7}},
		{muxBody(uint32(muxRemotePort), uint32(1), uint32(2222)), muxReply{typ: muxRemotePort, id: 1, port: 2222}},
		{muxBody(uint32(muxFailure), uint32(1), "remote port forwarding failed"), muxReply{typ: muxFailure, id: 1, reason: "remote port forwarding failed"}},
		{muxBody(uint32(muxPermissionDenied), uint32(1), "Permission denied"), muxReply{typ: muxPermissionDenied, id: 1, reason: "Permission denied"}},
	} {
		got, err := parseMuxReply(tc.body)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got)
	}
	for _, bad := range [][]byte{
		nil,
		muxBody(uint32(muxOK)),
		muxBody(uint32(muxRemotePort), uint32(1)),
		muxBody(uint32(muxRemotePort), uint32(1), uint32(0)),
		muxBody(uint32(muxRemotePort), uint32(1), uint32(70000)),
		muxBody(uint32(muxFailure), uint32(1)),
		append(muxBody(uint32(muxFailure), uint32(1), uint32(100)), "short"...),
		muxBody(uint32(0x80000004), uint32(1)),
	} {
		_, err := parseMuxReply(bad)
		assert.Error(t, err, "%x", bad)
	}
}

func TestParseMuxHello(t *testing.T) {
	v, err := parseMuxHello(muxBody(uint32(muxHello), uint32(4), "ext", "value"))
	require.NoError(t, err)
	assert.Equal(t, uint32(4), v)
	for _, bad := range [][]byte{nil, muxBody(uint32(muxHello)), muxBody(uint32(muxOK), uint32(4))} {
		_, err := parseMuxHello(bad)
		assert.Error(t, err)
	}
}

func TestReadMux(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, writeMux(&buf, []byte("hello")))
	got, err := readMux(&buf)
	require.NoError(t, err)
	assert.Equal(t, []byte("hello"), got)

	_, err = readMux(bytes.NewReader(binary.BigEndian.AppendUint32(nil, maxMuxMessage+1)))
	assert.ErrorContains(t, err, "mux message of")
	_, err = readMux(bytes.NewReader(append(binary.BigEndian.AppendUint32(nil, 10), "short"...)))
	assert.Error(t, err)
}

// fakeMaster answers the hello on a Unix socket with version, then each
// request with what answer returns for it.
func fakeMaster(t testing.TB, version uint32, answer func(req []byte) []byte) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fm")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	testnet.Serve(t, ln, func(c net.Conn) {
		if _, err := readMux(c); err != nil {
			return
		}
		writeMux(c, muxBody(uint32(muxHello), version))
		for {
			req, err := readMux(c)
			if err != nil {
				return
			}
			writeMux(c, answer(req))
		}
	})
	return path
}

func TestMuxForwardsAgainstFakeMaster(t *testing.T) {
	var mu sync.Mutex // guards asked
	var asked []muxFwdMsg
	requests := func() []muxFwdMsg {
		mu.Lock()
		defer mu.Unlock()
		return append([]muxFwdMsg(nil), asked...)
	}
	master := fakeMaster(t, muxVersion, func(req []byte) []byte {
		var m muxFwdMsg
		if err := ssh.Unmarshal(req, &m); err != nil {
			return muxBody(uint32(muxFailure), uint32(0), "bad request")
		}
		mu.Lock()
		asked = append(asked, m)
		mu.Unlock()
		switch {
		case m.Type == muxCloseFwd:
			return muxBody(uint32(muxOK), m.ID)
		case m.ListenPort == 0:
			return muxBody(uint32(muxRemotePort), m.ID, uint32(4242))
		case m.ListenPort == 1:
			return muxBody(uint32(muxPermissionDenied), m.ID, "no")
		}
		return muxBody(uint32(muxOK), m.ID+1)
	})
	m := newMuxForwards(master)
	real := make(chan ssh.NewChannel)
	merged := make(chan struct{})
	go func() {
		defer close(merged)
		m.merge(real)
	}()
	go func() {
		for range m.in {
		}
	}()

	bound, ok, err := m.open(false, "", 0)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, uint32(4242), bound)
	first := requests()
	require.Len(t, first, 1)
	assert.Equal(t, "*", first[0].ListenHost, "every address, in the master's spelling")
	assert.Equal(t, uint32(muxStreamLocal), first[0].ConnectPort, "pointed at a socket of ours")

	_, ok, err = m.open(false, "127.0.0.1", 1)
	assert.NoError(t, err)
	assert.False(t, ok, "a refusal is a denied request")

	_, ok, err = m.open(false, "127.0.0.1", 2)
	assert.ErrorContains(t, err, "answer to request 2, want 1")
	assert.False(t, ok)

	assert.True(t, m.close(false, "", 4242))
	assert.False(t, m.close(false, "", 4242), "cancelled already")
	all := requests()
	last := all[len(all)-1]
	assert.Equal(t, uint32(muxCloseFwd), last.Type)
	assert.Equal(t, first[0].ConnectHost, last.ConnectHost, "MUX_C_CLOSE_FWD repeats the request")

	close(real)
	<-merged
	_, _, err = m.open(false, "", 0)
	assert.ErrorIs(t, err, errMuxClosed)

	_, err = dialMux(fakeMaster(t, 3, nil))
	assert.ErrorContains(t, err, "mux protocol version 3, want 4")
}

// FuzzParseMuxReply checks that any answer from a master parses or is
// refused with an error, never a panic, and that a port it accepts is one.
func FuzzParseMuxReply(f *testing.F) {
	f.Add(muxBody(uint32(muxOK), uint32(1)))
	f.Add(muxBody(uint32(muxRemotePort), uint32(1), uint32(2222)))
	f.Add(muxBody(uint32(muxFailure), uint32(1), "reason"))
	f.Add(muxBody(uint32(muxHello), uint32(4)))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseMuxReply(b)
		if err == nil && r.typ == muxRemotePort {
			assert.True(t, r.port > 0 && r.port <= 65535)
		}
		parseMuxHello(b)
	})
}
