package peers

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Paths of Debian's dropbear-bin.
const (
	DropbearBin    = "/usr/sbin/dropbear"
	DropbearKeyBin = "/usr/bin/dropbearkey"
)

func init() {
	debianPackages["dropbear"] = "dropbear-bin"
	debianPackages["dropbearkey"] = "dropbear-bin"
}

// Dropbear is a running dropbear SSH server on 127.0.0.1 with one host key.
// Password logins are off, and the tests offer no public key, so dropbear
// never reads a user's authorized_keys: it serves the key exchange and
// refuses every login.
type Dropbear struct {
	Addr    string // "127.0.0.1:port"
	Port    int
	HostKey string // the host key file, in dropbear's format
	Log     string // dropbear's stderr (-E)

	proc *proc
}

// StartDropbear starts /usr/sbin/dropbear in the foreground on a free port
// of 127.0.0.1 with a fresh host key of keyType ("ed25519", "ecdsa",
// "rsa"), made by dropbearkey, and waits for its banner. It is stopped by
// its PID in a t.Cleanup. The test is skipped (or failed, see [Require])
// when dropbear is not installed.
func StartDropbear(t testing.TB, keyType string) *Dropbear {
	t.Helper()
	Require(t, DropbearBin, DropbearKeyBin)
	dir := t.TempDir()
	d := &Dropbear{HostKey: filepath.Join(dir, "host_"+keyType), Log: filepath.Join(dir, "dropbear.log")}
	if out, err := exec.Command(DropbearKeyBin, "-t", keyType, "-f", d.HostKey).CombinedOutput(); err != nil {
		t.Fatalf("peers: dropbearkey: %v\n%s", err, out)
	}
	const attempts = 5
	for i := 1; ; i++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("peers: free port: %v", err)
		}
		d.Port, d.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = d.start()
		if err == nil {
			t.Cleanup(d.Stop)
			return d
		}
		if i < attempts && strings.Contains(readLog(d.Log), "Address already in use") {
			continue
		}
		t.Fatalf("peers: start dropbear: %v\n--- log ---\n%s", err, readLog(d.Log))
	}
}

// start runs dropbear on d.Port: -F foreground, -E log to stderr, -s no
// password logins, -r the host key, -p the address.
func (d *Dropbear) start() error {
	logf, err := os.Create(d.Log)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(DropbearBin, "-F", "-E", "-s", "-r", d.HostKey, "-p", d.Addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProc(cmd)
	if err != nil {
		return err
	}
	if err := waitReady(p, func() error { return probeSSH(d.Addr) }); err != nil {
		p.stop(syscall.SIGKILL, StartTimeout)
		return err
	}
	d.proc = p
	return nil
}

// ReadLog returns what dropbear has logged.
func (d *Dropbear) ReadLog() string { return readLog(d.Log) }

// Stop ends dropbear and the child it forked for each connection, by
// their PIDs, and waits for it.
func (d *Dropbear) Stop() {
	if d.proc != nil && !d.proc.exited() {
		killTree(d.proc.cmd.Process.Pid)
	}
	if d.proc != nil {
		d.proc.stop(syscall.SIGKILL, StartTimeout)
	}
}
