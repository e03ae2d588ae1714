package bench_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/sshfwd/sshfwd"
	"github.com/sshfwd/sshfwd/bench"
	"github.com/sshfwd/sshfwd/internal/peers"
	"github.com/sshfwd/sshfwd/internal/relay"
	"github.com/sshfwd/sshfwd/sshtest"
)

// roleEnv, set in the environment of this test binary, makes it play one of
// the roles below in a process of its own instead of running tests, so that
// the work or the memory of that role is not counted in the process a
// benchmark measures. A role answers on standard output: a first line when
// it is ready, then one line per line it reads from standard input, "error
// ..." when something failed. It ends when its standard input does.
const roleEnv = "SSHFWD_BENCH_ROLE"

// keyEnv holds the public key, in authorized_keys format, that the sshtest
// role accepts.
const keyEnv = "SSHFWD_BENCH_KEY"

// forwardEnv holds, JSON-encoded, the forwardSpec of the forwarder role.
const forwardEnv = "SSHFWD_BENCH_FORWARD"

var roles = map[string]func(in *bufio.Scanner) error{
	"sshtest":   serveSSHTest,
	"greeter":   serveGreeter,
	"visitor":   visitGreeters,
	"forwarder": serveForward,
}

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(playRole(role))
	}
	goleak.VerifyTestMain(m)
}

// roleProfileEnv, set in the environment of bench/run or go test, names a
// file that a role writes its CPU profile to: how to see where sshtest
// spends its time, since the -cpuprofile of go test covers only the
// process that measures.
const roleProfileEnv = "SSHFWD_BENCH_ROLE_CPUPROFILE"

// playRole plays role until its standard input ends and returns the exit
// code.
func playRole(role string) int {
	if path := os.Getenv(roleProfileEnv); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: CPU profile: %v\n", role, err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if err := roles[role](bufio.NewScanner(os.Stdin)); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %s: %v\n", role, err)
		return 1
	}
	return 0
}

// serveSSHTest runs an sshtest server that accepts the key in keyEnv and
// says "ADDRESS HOSTKEY".
func serveSSHTest(in *bufio.Scanner) error {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(os.Getenv(keyEnv)))
	if err != nil {
		return err
	}
	srv := sshtest.NewServer(&sshtest.Config{
		AuthorizedKeys: []ssh.PublicKey{pub},
		// BenchmarkConcurrent opens 1,000 streams on one connection, four
		// times the channels sshtest allows one by default.
		MaxChannels: 2000,
	})
	defer srv.Close()
	fmt.Printf("%s %s", srv.Addr(), ssh.MarshalAuthorizedKey(srv.HostKey()))
	for in.Scan() {
	}
	return nil
}

// forwardSpec is what the forwarder role forwards, and through which SSH
// server.
type forwardSpec struct {
	Client  string // "xcrypto" for the reference, x/crypto's Client.Dial; else sshfwd
	Server  string // the SSH server's address, or a Delay's in front of it
	User    string
	KeyFile string // the client key, in OpenSSH's format
	HostKey string // the server's public key, in authorized_keys format
	Cipher  string
	Target  string // ForwardLocal's remote address; "" serves SOCKS instead
}

// clientConfig returns the client configuration spec describes.
func (spec forwardSpec) clientConfig() (*ssh.ClientConfig, error) {
	pem, err := os.ReadFile(spec.KeyFile)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, err
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(spec.HostKey))
	if err != nil {
		return nil, err
	}
	return &ssh.ClientConfig{
		User:            spec.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		Config:          ssh.Config{Ciphers: []string{spec.Cipher}},
		Timeout:         peers.StartTimeout,
	}, nil
}

// serveForward runs ForwardLocal, or ServeSOCKS, on a loopback port as
// forwardEnv says, and says the port's address: sshfwd in a process of its
// own, as ssh -L and ssh -D are, so that what its forwarding costs is
// measured alone. For the reference client it forwards with x/crypto's
// Client.Dial instead.
func serveForward(in *bufio.Scanner) error {
	var spec forwardSpec
	if err := json.Unmarshal([]byte(os.Getenv(forwardEnv)), &spec); err != nil {
		return err
	}
	cfg, err := spec.clientConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	if spec.Client == "xcrypto" {
		c, err := ssh.Dial("tcp", spec.Server, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		go func() { done <- forwardXCrypto(c, ln, spec.Target) }()
		stop = func() {
			c.Close()
			ln.Close()
		}
	} else {
		s, err := sshfwd.Dial(ctx, "tcp", spec.Server, cfg)
		if err != nil {
			return err
		}
		defer s.Close()
		go func() {
			if spec.Target == "" {
				done <- s.ServeSOCKS(ctx, ln)
			} else {
				done <- s.ForwardLocal(ctx, ln, spec.Target)
			}
		}()
	}
	fmt.Println(ln.Addr())
	for in.Scan() {
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// forwardXCrypto forwards every connection accepted on ln to target through
// c as plainly as x/crypto allows, with Client.Dial and the relay sshfwd
// uses, until Accept fails; then it waits for the relays, which end with c.
func forwardXCrypto(c *ssh.Client, ln net.Listener, target string) error {
	var relays sync.WaitGroup
	defer relays.Wait()
	for {
		local, err := ln.Accept()
		if err != nil {
			return err
		}
		relays.Go(func() {
			remote, err := c.Dial("tcp", target)
			if err != nil {
				local.Close()
				return
			}
			relay.Relay(local, remote)
		})
	}
}

// serveGreeter runs a Greeter and says its address.
func serveGreeter(in *bufio.Scanner) error {
	g, err := bench.NewGreeter()
	if err != nil {
		return err
	}
	defer g.Close()
	fmt.Println(g.Addr())
	for in.Scan() {
	}
	return nil
}

// visitGreeters holds connections to Greeters. "visit ADDRESS N" opens N
// more to ADDRESS and visits each; "close" closes them all.
func visitGreeters(in *bufio.Scanner) error {
	var conns []net.Conn
	fmt.Println("ready")
	for in.Scan() {
		var err error
		switch f := strings.Fields(in.Text()); {
		case len(f) == 3 && f[0] == "visit":
			var n int
			if n, err = strconv.Atoi(f[2]); err == nil {
				var more []net.Conn
				more, err = visitMany(f[1], n)
				conns = append(conns, more...)
			}
		case len(f) == 1 && f[0] == "close":
			for _, c := range conns {
				c.Close()
			}
			conns = nil
		default:
			err = fmt.Errorf("unknown request %q", in.Text())
		}
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println("ok")
	}
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// visitMany opens n connections to the Greeter at addr, 64 at a time, and
// visits each. It returns those it opened, even when some failed.
func visitMany(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, 64) {
		wg.Go(func() {
			for i := range next {
				if conns[i], errs[i] = net.Dial("tcp", addr); errs[i] == nil {
					errs[i] = bench.Visit(conns[i])
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	var opened []net.Conn
	for _, c := range conns {
		if c != nil {
			opened = append(opened, c)
		}
	}
	return opened, errors.Join(errs...)
}

// child is this test binary running a role.
type child struct {
	role   string
	cmd    *exec.Cmd
	in     io.WriteCloser
	lines  chan string   // what it says; closed at the end of its output
	exited chan struct{} // closed once it has been reaped
}

// startChild starts this test binary in role, with env added to its
// environment, and returns it and its first line. A cleanup ends it by
// closing its input, or kills it by its PID if it does not exit in time.
// Its standard error is this process's.
func startChild(b testing.TB, role string, env ...string) (*child, string) {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(b, err)
	out, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	c := &child{role: role, cmd: cmd, in: in, lines: make(chan string, 1), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		cmd.Wait()
		close(c.exited)
	}()
	b.Cleanup(c.stop)
	return c, c.ask(b, "", peers.StartTimeout)
}

func (c *child) stop() {
	c.in.Close()
	timeout := time.NewTimer(peers.StartTimeout)
	defer timeout.Stop()
	lines := c.lines
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				lines = nil
			}
		case <-c.exited:
			return
		case <-timeout.C:
			c.cmd.Process.Kill()
		}
	}
}

// ask sends request, unless it is empty, and returns the child's answer,
// failing if there is none within timeout or it says "error".
func (c *child) ask(b testing.TB, request string, timeout time.Duration) string {
	b.Helper()
	if request != "" {
		_, err := fmt.Fprintln(c.in, request)
		require.NoError(b, err)
	}
	select {
	case line, ok := <-c.lines:
		if !ok {
			b.Fatalf("bench: the %s process ended", c.role)
		}
		if strings.HasPrefix(line, "error") {
			b.Fatalf("bench: the %s process says: %s", c.role, line)
		}
		return line
	case <-time.After(timeout):
		b.Fatalf("bench: the %s process did not answer %q in %v", c.role, request, timeout)
	}
	return ""
}

// startSSHTest starts an sshtest server in a process of its own, so that
// its work is not done by the process it is measured from, as sshd's is
// not, and returns its address and a client config for it.
func startSSHTest(b testing.TB) (string, *ssh.ClientConfig) {
	b.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(b, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(b, err)
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	_, hello := startChild(b, "sshtest", keyEnv+"="+key)
	addr, hostKey, ok := strings.Cut(hello, " ")
	require.True(b, ok, "the sshtest process said %q", hello)
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKey))
	require.NoError(b, err)
	return addr, &ssh.ClientConfig{
		User:            "bench",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(pub),
		Timeout:         peers.StartTimeout,
	}
}

// startSSHD starts OpenSSH's sshd with the package defaults.
func startSSHD(b testing.TB) *peers.SSHD {
	b.Helper()
	peers.Require(b, peers.SSHDBin)
	return peers.StartSSHD(b, peers.SSHDOptions{})
}

// cpuTime returns the CPU time, user and system, this process has used.
func cpuTime(b testing.TB) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// withCipher returns a copy of cfg that offers only cipher.
func withCipher(cfg *ssh.ClientConfig, cipher string) *ssh.ClientConfig {
	c := *cfg
	c.Ciphers = []string{cipher}
	return &c
}

// dial returns a Session that a cleanup closes.
func dial(b testing.TB, addr string, cfg *ssh.ClientConfig) *sshfwd.Session {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peers.StartTimeout)
	defer cancel()
	s, err := sshfwd.Dial(ctx, "tcp", addr, cfg)
	require.NoError(b, err)
	b.Cleanup(func() { s.Close() })
	return s
}

// dialXCrypto returns an x/crypto client that a cleanup closes.
func dialXCrypto(b testing.TB, addr string, cfg *ssh.ClientConfig) *ssh.Client {
	b.Helper()
	c, err := ssh.Dial("tcp", addr, cfg)
	require.NoError(b, err)
	b.Cleanup(func() { c.Close() })
	return c
}

// forwardLocal runs s.ForwardLocal on a new loopback listener to remote and
// returns the listener's address; a cleanup stops it.
func forwardLocal(b testing.TB, s *sshfwd.Session, remote string) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ForwardLocal(ctx, ln, remote) }()
	b.Cleanup(func() {
		cancel()
		<-done
		ln.Close()
	})
	return ln.Addr().String()
}

// A forwarder is a process that forwards a loopback port through an SSH
// server: OpenSSH's ssh -N with -L or -D, or sshfwd's ForwardLocal or
// ServeSOCKS in this test binary started again in the forwarder role.
type forwarder struct {
	addr string // the port it forwards
	pid  int
}

// A forwarderImpl starts a forwarder through d, connecting to server
// (d.Addr, or a Delay in front of it) with cipher, that forwards its port to
// target, or serves SOCKS there when target is empty. A cleanup stops it.
type forwarderImpl struct {
	name  string
	start func(b testing.TB, d *peers.SSHD, server, cipher, target string) forwarder
}

// forwarders are what the benchmarks compare: sshfwd and OpenSSH's ssh.
var forwarders = []forwarderImpl{
	{"sshfwd", childForwarder("sshfwd")},
	{"openssh", startOpenSSH},
}

// References that tell where a difference comes from. oneCPU is sshfwd
// running Go on one thread at a time, as ssh runs, which leaves out what
// the Go scheduler costs in handing goroutines between threads; xcrypto is
// x/crypto's own Client.Dial with the same relay, which shows what any
// forwarder built on x/crypto costs. It serves no SOCKS.
var (
	oneCPU  = forwarderImpl{"sshfwd-gomaxprocs1", childForwarder("sshfwd", "GOMAXPROCS=1")}
	xcrypto = forwarderImpl{"xcrypto", childForwarder("xcrypto")}
)

// childForwarder returns how to start this test binary in the forwarder
// role with client, with env added to its environment.
func childForwarder(client string, env ...string) func(b testing.TB, d *peers.SSHD, server, cipher, target string) forwarder {
	return func(b testing.TB, d *peers.SSHD, server, cipher, target string) forwarder {
		b.Helper()
		spec, err := json.Marshal(forwardSpec{
			Client:  client,
			Server:  server,
			User:    d.User,
			KeyFile: d.KeyFile,
			HostKey: string(ssh.MarshalAuthorizedKey(d.HostKey)),
			Cipher:  cipher,
			Target:  target,
		})
		require.NoError(b, err)
		c, addr := startChild(b, "forwarder", append(env, forwardEnv+"="+string(spec))...)
		return forwarder{addr: addr, pid: c.cmd.Process.Pid}
	}
}

// startOpenSSH runs ssh -N with -L or -D from a free loopback port, waits
// until the port answers and returns it; a cleanup kills ssh by its PID.
func startOpenSSH(b testing.TB, d *peers.SSHD, server, cipher, target string) forwarder {
	b.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", peers.FreePort(b))
	forward := []string{"-D", addr}
	if target != "" {
		forward = []string{"-L", addr + ":" + target}
	}
	_, port, err := net.SplitHostPort(server)
	require.NoError(b, err)
	// ssh takes the first -p it is given, so this one overrides SSHArgs',
	// and the alias finds sshd's key in known_hosts whatever the port.
	args := append([]string{"-p", port, "-o", fmt.Sprintf("HostKeyAlias=[127.0.0.1]:%d", d.Port)}, d.SSHArgs()...)
	args = append(append(args, "-N", "-c", cipher, "-o", "ExitOnForwardFailure=yes"), forward...)
	cmd := peers.SSHCommand(b, context.Background(), append(args, "127.0.0.1")...)
	cmd.Stderr = os.Stderr
	require.NoError(b, cmd.Start())
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	b.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(peers.StartTimeout)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return forwarder{addr: addr, pid: cmd.Process.Pid}
		}
		select {
		case <-exited:
			b.Fatalf("bench: ssh %s exited before listening", forward[0])
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("bench: ssh %s did not listen on %s in %v", forward[0], addr, peers.StartTimeout)
		}
	}
}

// cpu returns the CPU time, user and system, the forwarder has used.
func (f forwarder) cpu(b testing.TB) time.Duration {
	return procCPU(b, f.pid)
}

// procCPU returns the CPU time, user and system, that process pid has used,
// from /proc/PID/stat, in clock ticks of 10 ms (Linux's USER_HZ is 100 for
// user space on every architecture Go runs on).
func procCPU(b testing.TB, pid int) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(b, err)
	// The name in parentheses may hold spaces; the fields after it start
	// with the third, the state. utime and stime are the 14th and 15th.
	_, rest, ok := strings.Cut(string(stat), ") ")
	f := strings.Fields(rest)
	require.True(b, ok && len(f) > 12, "bench: /proc/%d/stat: %q", pid, stat)
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		require.NoError(b, err)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// newSink starts a Sink that a cleanup closes.
func newSink(b testing.TB) *bench.Sink {
	b.Helper()
	k, err := bench.NewSink()
	require.NoError(b, err)
	b.Cleanup(func() { k.Close() })
	return k
}

// raiseFDLimit lifts this process's soft limit on open files to the hard
// limit, which the processes it starts from now on inherit too (Go gives
// children the original soft limit unless the program set its own), and
// skips unless that allows need descriptors per process.
func raiseFDLimit(b testing.TB, need uint64) {
	b.Helper()
	var lim syscall.Rlimit
	require.NoError(b, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Max < need {
		b.Skipf("bench: needs %d open files per process, the hard limit is %d: raise it (ulimit -n %d as root)", need, lim.Max, need)
	}
	lim.Cur = lim.Max
	require.NoError(b, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
}

// waitFor polls cond until it holds, failing after timeout.
func waitFor(b testing.TB, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("bench: %s: not done after %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
