package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sshfwd/sshfwd/internal/mux"
)

// muxRequestTimeout bounds the wait for the server's answer to a remote
// forward that a client of the master asks for.
const muxRequestTimeout = 30 * time.Second

// errControlExists is returned by listenControl when a master already
// answers on the socket.
var errControlExists = errors.New("control socket in use")

// serveMaster makes this process a ControlMaster on the socket path, as
// ssh -M does: clients check it, add and cancel forwards on fw, and ask it
// to exit, which calls terminate. A socket a live master holds already is
// left to it, with ssh's warning. stop closes the socket and waits for the
// clients' requests.
func serveMaster(ctx context.Context, path string, fw *forwarder, terminate func(), log *logger) (stop func(), err error) {
	if path == "" {
		return nil, errors.New("sshfwd: -M needs a control socket: give -S ctl_path, or ControlPath")
	}
	ln, err := listenControl(path)
	if errors.Is(err, errControlExists) {
		log.Infof("ControlSocket %s already exists, disabling multiplexing", path)
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sshfwd: control socket %s: %w", path, err)
	}
	log.Debugf("setting up multiplex master socket %s", path)
	srv := &mux.Server{Handler: &masterHandler{ctx: ctx, fw: fw, terminate: terminate, log: log}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	return func() {
		srv.Close()
		<-done
	}, nil
}

// masterHandler carries out what the master's clients ask.
type masterHandler struct {
	ctx       context.Context // bounds the requests to the server
	fw        *forwarder
	terminate func()
	log       *logger
}

func (h *masterHandler) OpenForward(m mux.Forward) (uint32, error) {
	f, err := fromMux(m)
	if err != nil {
		h.log.Infof("Invalid forwarding request: %v", err)
		return 0, errors.New("Invalid forwarding request")
	}
	allocated := f.Kind == 'R' && f.Listen.Path == "" && f.Listen.Port == 0
	if a := h.fw.find(f); a != nil {
		if allocated {
			return uint32(a.port), nil
		}
		return 0, nil
	}
	h.log.Debugf("master: request %s", describeForward(f))
	if f.Kind != 'R' {
		if err := h.fw.addLocal(f); err != nil {
			h.log.Infof("requested %s failed: %v", describeForward(f), err)
			return 0, errors.New("Port forwarding failed")
		}
		return 0, nil
	}
	if h.fw.sv.Session() == nil {
		return 0, errNotConnected
	}
	ctx, cancel := context.WithTimeout(h.ctx, muxRequestTimeout)
	defer cancel()
	port, err := h.fw.addRemote(ctx, f)
	if err != nil {
		h.log.Infof("requested %s failed: %v", describeForward(f), err)
		if f.Listen.Path != "" {
			return 0, fmt.Errorf("remote port forwarding failed for listen path %s", f.Listen.Path)
		}
		return 0, fmt.Errorf("remote port forwarding failed for listen port %d", f.Listen.Port)
	}
	if allocated {
		h.log.Infof("Allocated port %d for remote forward to %s", port, destination(f.to()))
		return uint32(port), nil
	}
	return 0, nil
}

func (h *masterHandler) CloseForward(m mux.Forward) error {
	f, err := fromMux(m)
	if err != nil {
		return errors.New("port not forwarded")
	}
	h.log.Debugf("master: request cancel %s", describeForward(f))
	return h.fw.cancel(f)
}

func (h *masterHandler) Terminate() {
	h.log.Debugf("master: terminate request")
	h.terminate()
}

// describeForward names f as ssh's master does in its messages.
func describeForward(f forward) string {
	switch f.Kind {
	case 'L':
		return "local forward " + describe(f.Listen) + " -> " + f.Connect.String()
	case 'D':
		return "dynamic forward " + describe(f.Listen) + " -> *"
	}
	return "remote forward " + describe(f.Listen) + " -> " + destination(f.to())
}

// muxKinds maps the forward kinds of the mux protocol to the options.
var muxKinds = map[uint32]byte{mux.FwdLocal: 'L', mux.FwdRemote: 'R', mux.FwdDynamic: 'D'}

// toMux is f as a master is asked for it, in the spelling of OpenSSH's
// client: an empty listen host for the default address, "*" for every
// address, and "socks" as the destination of a remote SOCKS forward.
func toMux(f forward) mux.Forward {
	var m mux.Forward
	for k, letter := range muxKinds {
		if letter == f.Kind {
			m.Kind = k
		}
	}
	m.ListenHost, m.ListenPort = muxSide(f.Listen, true)
	switch {
	case f.SOCKS && f.Kind == 'R':
		m.ConnectHost = "socks"
	case !f.SOCKS:
		m.ConnectHost, m.ConnectPort = muxSide(f.Connect, false)
	}
	return m
}

func muxSide(e endpoint, listen bool) (string, uint32) {
	switch {
	case e.Path != "":
		return e.Path, mux.StreamLocal
	case listen && e.Host == defaultBind:
		return "", uint32(e.Port)
	case listen && e.Host == "":
		return "*", uint32(e.Port)
	}
	return e.Host, uint32(e.Port)
}

// fromMux is the forward a client asks for, parsed by the command line's
// parser from the spec it stands for, so that it compares equal to the
// command line's forward of the same spec.
func fromMux(m mux.Forward) (forward, error) {
	kind, ok := muxKinds[m.Kind]
	if !ok {
		return forward{}, fmt.Errorf("forwarding type %d", m.Kind)
	}
	side := func(host string, port uint32) string {
		switch {
		case port == mux.StreamLocal:
			return host
		case host == "":
			return strconv.Itoa(int(port))
		}
		return "[" + host + "]:" + strconv.Itoa(int(port))
	}
	spec := side(m.ListenHost, m.ListenPort)
	if kind == 'L' || kind == 'R' && m.ConnectPort != 0 {
		spec += ":" + side(m.ConnectHost, m.ConnectPort)
	}
	return parseForward(kind, spec)
}
