package main

import (
	"runtime"
	"runtime/debug"
)

// version is what -V prints: sshfwd's version, that of the SSH
// implementation under it, and Go's, as ssh -V names OpenSSH and OpenSSL.
func version() string {
	v, crypto := "(unknown)", "(unknown)"
	if info, ok := debug.ReadBuildInfo(); ok {
		v = info.Main.Version
		for _, d := range info.Deps {
			if d.Path == "golang.org/x/crypto" {
				crypto = d.Version
			}
		}
	}
	return "sshfwd " + v + ", golang.org/x/crypto " + crypto + ", " + runtime.Version()
}
