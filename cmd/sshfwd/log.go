package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// The levels of the log: -q shows nothing, the default warnings and
// errors, each -v one level of ssh's debug lines more.
const (
	levelQuiet = -1
	levelInfo  = 0
	levelDebug = 1
)

// logger writes sshfwd's messages one per line, from any goroutine, as
// ssh's log does: warnings and errors unless -q, and the details of -v
// with their level in front ("debug1: "). Lines carry a timestamp when
// they go to a file or a pipe rather than a terminal, since nothing else
// dates them there.
type logger struct {
	level int

	mu     sync.Mutex // serializes writes; guards w and stamps
	w      io.Writer
	stamps bool
}

func newLogger(w io.Writer, level int) *logger {
	l := &logger{level: level}
	l.setOutput(w)
	return l
}

// setOutput makes the lines go to w from now on.
func (l *logger) setOutput(w io.Writer) {
	f, ok := w.(*os.File)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w, l.stamps = w, !ok || !term.IsTerminal(int(f.Fd()))
}

// Infof logs a warning or an error, which -q silences.
func (l *logger) Infof(format string, args ...any) { l.at(levelInfo, format, args...) }

// Debugf logs what -v shows.
func (l *logger) Debugf(format string, args ...any) { l.at(levelDebug, format, args...) }

// Debug2f logs what -vv shows.
func (l *logger) Debug2f(format string, args ...any) { l.at(levelDebug+1, format, args...) }

func (l *logger) at(level int, format string, args ...any) {
	if l.level < level {
		return
	}
	line := fmt.Sprintf(format, args...)
	if level > levelInfo {
		line = fmt.Sprintf("debug%d: %s", level, line)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stamps {
		line = time.Now().Format("2006-01-02 15:04:05.000 ") + line
	}
	fmt.Fprintln(l.w, line)
}
