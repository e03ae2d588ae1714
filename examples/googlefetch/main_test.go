package main

import (
	"bytes"
	"flag"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOffline(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(nil, &out))
	got := out.String()
	assert.Contains(t, got, "started an embedded SSH server on 127.0.0.1:")
	assert.Contains(t, got, "opened a direct-tcpip channel to 127.0.0.1:")
	assert.Contains(t, got, "from localhost:5555")
	assert.Contains(t, got, "HTTP/1.1 200 OK\r\n")
	assert.Contains(t, got, "Content-Type: text/html; charset=utf-8\r\n")
	assert.Contains(t, got, "<h1>Hello from a stand-in for www.google.com</h1>")
}

func TestBadFlags(t *testing.T) {
	var out bytes.Buffer
	assert.Error(t, run([]string{"-ssh", "me@host:0"}, &out))
	assert.ErrorContains(t, run([]string{"-F", "none", "-ssh", "me@127.0.0.1:1", "-i", "/nonexistent"}, &out), "refused")
	assert.Error(t, run([]string{"-nosuchflag"}, &out))
	assert.ErrorIs(t, run([]string{"-h"}, &out), flag.ErrHelp, "which exits 0")
	assert.ErrorContains(t, run([]string{"www.example.com"}, &out), "takes flags only")
}
