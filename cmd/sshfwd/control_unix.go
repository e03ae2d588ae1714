//go:build unix

package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// listenControl listens on the Unix socket path as ssh's master does:
// readable and writable by this user only, bound under a temporary name
// and linked into place, so that no client finds a socket there that does
// not answer yet, and no other master's socket is replaced. A socket left
// by a master that is gone is removed first; one whose master answers is
// errControlExists. Closing the listener removes the socket.
func listenControl(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, errControlExists
	} else if errors.Is(err, syscall.ECONNREFUSED) {
		os.Remove(path)
	}
	suffix := make([]byte, 8)
	rand.Read(suffix)
	tmp := path + "." + hex.EncodeToString(suffix)
	// The umask is the process's, so this runs before the forwards'
	// goroutines create any file.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", tmp)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	err = os.Link(tmp, path)
	os.Remove(tmp)
	if err != nil {
		ul.Close()
		if errors.Is(err, fs.ErrExist) {
			return nil, errControlExists
		}
		return nil, err
	}
	return &controlListener{UnixListener: ul, path: path}, nil
}

// controlListener removes its socket when it closes.
type controlListener struct {
	*net.UnixListener
	path string
}

func (l *controlListener) Close() error {
	err := l.UnixListener.Close()
	os.Remove(l.path)
	return err
}
