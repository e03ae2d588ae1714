//go:build !unix

package main

import (
	"context"
	"io"
)

func isBackgroundChild() bool { return false }

// startBackground refuses -f: a process of its own that outlives its
// parent's console is made with the setsid of Unix systems.
func startBackground(_ context.Context, _ []string, _ io.Writer, log *logger) int {
	log.Infof("sshfwd: -f is not supported on this system")
	return exitFailure
}

func backgroundReady(bool, *logger) func() { return func() {} }
