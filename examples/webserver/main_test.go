package main

import (
	"bytes"
	"context"
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOffline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, nil, &out))
	got := out.String()
	assert.Contains(t, got, "started an embedded SSH server on 127.0.0.1:")
	assert.Contains(t, got, "Sent answer to 127.0.0.1:")
	assert.Contains(t, got, "HTTP/1.1 200 OK\nContent-Type: text/html\nContent-Length: 113\n\n")
	assert.Contains(t, got, "<h1>Hello, World!</h1>")
}

func TestHelloWorldIsTheTutorials(t *testing.T) {
	_, body, ok := bytes.Cut([]byte(helloWorld), []byte("\n\n"))
	require.True(t, ok)
	assert.Len(t, body, 113, "the tutorial's Content-Length")
}

func TestBadFlags(t *testing.T) {
	var out bytes.Buffer
	assert.Error(t, run(context.Background(), []string{"-ssh", "me@host:x"}, &out))
	assert.Error(t, run(context.Background(), []string{"-nosuchflag"}, &out))
	assert.ErrorIs(t, run(context.Background(), []string{"-h"}, &out), flag.ErrHelp, "which exits 0")
	assert.ErrorContains(t, run(context.Background(), []string{"8080"}, &out), "takes flags only")
}
