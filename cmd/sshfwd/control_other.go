//go:build !unix

package main

import (
	"errors"
	"net"
)

// listenControl fails: a master's socket is made as ssh makes it, with a
// umask and a hard link, which this system does not offer.
func listenControl(string) (net.Listener, error) {
	return nil, errors.New("-M is not supported on this system")
}
