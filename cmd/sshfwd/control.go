package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sshfwd/sshfwd/internal/mux"
	"github.com/sshfwd/sshfwd/sshconfig"
)

// controlTimeout bounds the connection to a master and each request of
// -O but forward, whose remote forwards wait for the server.
const controlTimeout = 10 * time.Second

// control sends the -O command to the master at cfg's ControlPath, an
// OpenSSH ssh -M or an sshfwd -M, and says what it answered in ssh's words:
// check prints the master's PID, forward and cancel ask for each forward
// of the command line and the files (forward printing the port a remote
// forward of port 0 got on stdout), exit asks the master to exit. It
// returns the exit status.
func control(cmd string, cfg *sshconfig.Config, forwards []forward, std streams, log *logger) int {
	if cfg.ControlPath == "" {
		log.Infof(`No ControlPath specified for "-O" command`)
		return exitFailure
	}
	c, err := mux.Dial(cfg.ControlPath, controlTimeout)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			log.Infof("Control socket connect(%s): %s", cfg.ControlPath, strerror(err))
		} else {
			log.Infof("sshfwd: ControlMaster %s: %v", cfg.ControlPath, err)
		}
		return exitFailure
	}
	defer c.Close()
	switch cmd {
	case "check":
		c.SetDeadline(time.Now().Add(controlTimeout))
		r, err := c.Do(mux.Message{Type: mux.AliveCheck})
		if err == nil && r.Type != mux.Alive {
			err = answerError(r)
		}
		if err != nil {
			log.Infof("sshfwd: master alive check failed: %v", err)
			return exitFailure
		}
		// The answer is what was asked for, which -q does not silence.
		fmt.Fprintf(std.err, "Master running (pid=%d)\n", r.PID)
	case "exit":
		c.SetDeadline(time.Now().Add(controlTimeout))
		r, err := c.Do(mux.Message{Type: mux.Terminate})
		switch {
		case errors.Is(err, io.EOF):
			// The master went before its answer, as OpenSSH's may.
		case err != nil:
			log.Infof("sshfwd: termination request failed: %v", err)
			return exitFailure
		case r.Type != mux.OK:
			log.Infof("sshfwd: termination request failed: %v", answerError(r))
			return exitFailure
		}
		log.Infof("Exit request sent.")
	case "forward", "cancel":
		status := 0
		for _, f := range forwards {
			if err := controlForward(c, cmd == "cancel", f, std.out, log); err != nil {
				log.Infof("sshfwd: %s %s: %v", cmd, describeForward(f), err)
				status = exitFailure
			}
		}
		return status
	}
	return 0
}

// controlForward asks the master to open or cancel f.
func controlForward(c *mux.Client, cancel bool, f forward, stdout io.Writer, log *logger) error {
	req := mux.Message{Type: mux.OpenFwd, Forward: toMux(f)}
	if cancel {
		req.Type = mux.CloseFwd
	}
	log.Debugf("Requesting %s %s", map[bool]string{false: "forwarding of", true: "cancellation of"}[cancel], describeForward(f))
	// Remote forwards wait for the server's answer, which the master
	// bounds.
	c.SetDeadline(time.Now().Add(controlTimeout + muxRequestTimeout))
	r, err := c.Do(req)
	switch {
	case err != nil:
		return err
	case r.Type == mux.OK:
	case r.Type == mux.RemotePort && !cancel:
		log.Debugf("Allocated port %d for remote forward to %s", r.Port, destination(f.to()))
		fmt.Fprintf(stdout, "%d\n", r.Port)
	default:
		return answerError(r)
	}
	return nil
}

// answerError words a master's refusal as ssh does.
func answerError(r mux.Message) error {
	switch r.Type {
	case mux.PermissionDenied:
		return fmt.Errorf("Master refused request: %s", r.Reason)
	case mux.Failure:
		return fmt.Errorf("request failed: %s", r.Reason)
	}
	return fmt.Errorf("unexpected response from master 0x%08x", uint32(r.Type))
}
