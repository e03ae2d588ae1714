package peers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Xvfb is a running virtual X server that accepts local (unix socket)
// connections authenticated with an MIT-MAGIC-COOKIE-1 cookie. It does not
// listen on TCP (Xvfb cannot restrict TCP to loopback).
type Xvfb struct {
	Display       int    // display number N
	DisplayString string // ":N", the value for DISPLAY
	Socket        string // "/tmp/.X11-unix/XN"
	AuthFile      string // Xauthority file holding the cookie, the value for XAUTHORITY
	Cookie        string // the MIT-MAGIC-COOKIE-1 data, 32 lowercase hex digits
	Log           string // Xvfb's output

	mu   sync.Mutex
	proc *proc
}

// First display number tried by StartXvfb, and how many it tries.
const (
	firstDisplay = 90
	displayTries = 50
)

// Display numbers handed out by this process; other processes are detected
// through their lock files and Xvfb's own refusal.
var (
	displayMu   sync.Mutex
	displayUsed = map[int]bool{}
)

// StartXvfb starts /usr/bin/Xvfb on the first free display from :90 up,
// with a fresh random cookie written by xauth into AuthFile, and waits until
// the display's unix socket accepts connections. The server is stopped by a
// t.Cleanup. The test is skipped (or failed, see [Require]) when Xvfb or
// xauth is not installed.
func StartXvfb(t testing.TB) *Xvfb {
	t.Helper()
	Require(t, XvfbBin, XauthBin)

	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		t.Fatalf("peers: cookie: %v", err)
	}
	dir := t.TempDir()
	x := &Xvfb{
		Cookie:   hex.EncodeToString(raw),
		AuthFile: filepath.Join(dir, "Xauthority"),
		Log:      filepath.Join(dir, "Xvfb.log"),
	}
	t.Cleanup(x.Stop)

	for tries := 0; tries < displayTries; tries++ {
		n, ok := reserveDisplay()
		if !ok {
			break
		}
		err := x.start(n)
		if err == nil {
			return x
		}
		if !errors.Is(err, errDisplayTaken) {
			t.Fatalf("peers: start Xvfb :%d: %v\n--- Xvfb log %s ---\n%s", n, err, x.Log, readLog(x.Log))
		}
		// Another process holds it: keep it marked as used.
		displayMu.Lock()
		displayUsed[n] = true
		displayMu.Unlock()
		t.Logf("peers: display :%d is taken, trying another", n)
	}
	t.Fatalf("peers: no free X display in :%d..:%d", firstDisplay, firstDisplay+displayTries-1)
	return nil
}

// reserveDisplay returns a display number not used by this process and
// without a lock file or socket, and marks it used.
func reserveDisplay() (int, bool) {
	displayMu.Lock()
	defer displayMu.Unlock()
	for n := firstDisplay; n < firstDisplay+displayTries; n++ {
		if displayUsed[n] {
			continue
		}
		if exists(lockFile(n)) || exists(socketFile(n)) {
			continue
		}
		displayUsed[n] = true
		return n, true
	}
	return 0, false
}

func releaseDisplay(n int) {
	displayMu.Lock()
	defer displayMu.Unlock()
	delete(displayUsed, n)
}

func lockFile(n int) string   { return fmt.Sprintf("/tmp/.X%d-lock", n) }
func socketFile(n int) string { return fmt.Sprintf("/tmp/.X11-unix/X%d", n) }

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

var errDisplayTaken = errors.New("display already in use")

func (x *Xvfb) start(n int) error {
	display := ":" + strconv.Itoa(n)

	// A fresh auth file for this display number.
	_ = os.Remove(x.AuthFile)
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, XauthBin, "-q", "-f", x.AuthFile,
		"add", display, "MIT-MAGIC-COOKIE-1", x.Cookie).CombinedOutput()
	if err != nil {
		return fmt.Errorf("xauth add: %v: %s", err, out)
	}

	logf, err := os.OpenFile(x.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	var logStart int64
	if fi, err := logf.Stat(); err == nil {
		logStart = fi.Size()
	}
	fmt.Fprintf(logf, "=== peers: starting Xvfb %s at %s\n", display, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(XvfbBin, display,
		"-auth", x.AuthFile,
		"-nolisten", "tcp",
		"-noreset",
		"-screen", "0", "1280x1024x24")
	cmd.Dir = filepath.Dir(x.AuthFile)
	cmd.Stdout = logf
	cmd.Stderr = logf
	p, err := startProc(cmd)
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.proc = p
	x.Display = n
	x.DisplayString = display
	x.Socket = socketFile(n)
	x.mu.Unlock()

	err = waitReady(p, func() error {
		// Another test process may have started an Xvfb on the same
		// display a moment earlier; its socket would answer too. The
		// lock file says whose display it is.
		if b, err := os.ReadFile(lockFile(n)); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(p.cmd.Process.Pid) {
			return fmt.Errorf("display :%d is not locked by our Xvfb yet", n)
		}
		c, err := net.DialTimeout("unix", x.Socket, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err == nil {
		return nil
	}
	x.Stop()
	if errors.Is(err, errExited) && strings.Contains(logSince(x.Log, logStart), "already active") {
		return fmt.Errorf("%w: %v", errDisplayTaken, err)
	}
	return err
}

// Env returns "DISPLAY=:N" and "XAUTHORITY=AuthFile", to append to an
// exec.Cmd's environment.
func (x *Xvfb) Env() []string {
	return []string{"DISPLAY=" + x.DisplayString, "XAUTHORITY=" + x.AuthFile}
}

// ReadLog returns the current contents of Xvfb's log file.
func (x *Xvfb) ReadLog() string { return readLog(x.Log) }

// Stop terminates the server (SIGTERM, so it removes its lock file and
// socket; SIGKILL after StartTimeout) and waits for it. It is safe to call
// more than once and is registered with t.Cleanup by [StartXvfb].
func (x *Xvfb) Stop() {
	x.mu.Lock()
	p := x.proc
	x.proc = nil
	n := x.Display
	x.mu.Unlock()
	if p == nil {
		return
	}
	pid := p.cmd.Process.Pid
	p.stop(syscall.SIGTERM, StartTimeout)
	// If it had to be killed, remove what it left behind, but only if the
	// lock file is still ours.
	if b, err := os.ReadFile(lockFile(n)); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
		_ = os.Remove(lockFile(n))
		_ = os.Remove(socketFile(n))
	}
	releaseDisplay(n)
}
