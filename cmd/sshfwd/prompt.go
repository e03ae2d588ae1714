package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/term"

	"github.com/sshfwd/sshfwd/sshconfig"
)

// terminalPrompts makes opts ask its questions on the controlling
// terminal, as ssh does: passphrases and passwords without echo, the
// answers of keyboard-interactive with the echo the server asks for, and
// yes or no for an unknown host key. Without a terminal the callbacks stay
// nil, so nothing is asked and unknown hosts are refused. It returns what
// closes the terminal.
func terminalPrompts(opts *sshconfig.Options) (closeTTY func()) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return func() {}
	}
	p := &prompter{tty: tty, lines: bufio.NewReader(tty)}
	opts.PassphraseCallback = func(file string) ([]byte, error) {
		s, err := p.ask(fmt.Sprintf("Enter passphrase for key '%s': ", file), false)
		return []byte(s), err
	}
	opts.PasswordCallback = func(user, host string) (string, error) {
		return p.ask(fmt.Sprintf("%s@%s's password: ", user, host), false)
	}
	opts.KeyboardInteractiveCallback = func(name, instruction string, questions []string, echos []bool) ([]string, error) {
		for _, line := range []string{name, instruction} {
			if line != "" {
				p.say(line)
			}
		}
		answers := make([]string, len(questions))
		for i, q := range questions {
			var err error
			if answers[i], err = p.ask(q, echos[i]); err != nil {
				return nil, err
			}
		}
		return answers, nil
	}
	opts.HostKeyConfirmCallback = func(message string) (bool, error) {
		q := message + " "
		for {
			a, err := p.ask(q, true)
			if err != nil {
				return false, err
			}
			switch strings.ToLower(strings.TrimSpace(a)) {
			case "yes":
				return true, nil
			case "no":
				return false, nil
			}
			q = "Please type 'yes' or 'no': "
		}
	}
	return func() { tty.Close() }
}

// prompter asks questions on the terminal, one at a time.
type prompter struct {
	mu    sync.Mutex // one question at a time
	tty   *os.File
	lines *bufio.Reader // the terminal's input, for answers shown as typed
}

// say writes a line to the terminal.
func (p *prompter) say(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.tty, line)
}

// ask writes question and reads the answer, shown as typed when echo is
// set.
func (p *prompter) ask(question string, echo bool) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.tty, question)
	if echo {
		line, err := p.lines.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("reading the terminal: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	b, err := term.ReadPassword(int(p.tty.Fd()))
	fmt.Fprintln(p.tty)
	if err != nil {
		return "", fmt.Errorf("reading the terminal: %w", err)
	}
	return string(b), nil
}
