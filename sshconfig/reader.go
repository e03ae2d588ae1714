package sshconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	sshconfigfile "github.com/kevinburke/ssh_config"
)

// maxIncludeDepth bounds nested Include directives, as ssh's 16 does, so
// that a file including itself is an error rather than a loop.
const maxIncludeDepth = 16

// reader gathers the settings of the files for one destination: the
// first value of each option, and every value of the lists.
type reader struct {
	c    *Config
	vals map[string][]setting
}

// Two kinds of line are rewritten before the parser sees them, each into
// one line, so that line numbers stay right: Include, which ssh resolves
// against the home directory given (the parser would use the real one)
// and which ssh applies where it stands, and Match, whose criteria beyond
// host and all the parser does not take. The markers below cannot be
// keywords or host names of a real file.
const (
	includeKey   = "sshfwd%include"
	matchPattern = "sshfwd%match%"
)

// directive is a rewritten Include or Match line: its arguments.
type directive []string

// prepare rewrites the Include and Match lines of src and returns the
// arguments of each, indexed by the number in its marker.
func prepare(src []byte) ([]byte, []directive) {
	var out bytes.Buffer
	var ds []directive
	for i, line := range bytes.Split(src, []byte("\n")) {
		if i > 0 {
			out.WriteByte('\n')
		}
		key, args := splitLine(string(line))
		switch strings.ToLower(key) {
		case "include":
			fmt.Fprintf(&out, "%s %d", includeKey, len(ds))
		case "match":
			fmt.Fprintf(&out, "Host %s%d", matchPattern, len(ds))
		default:
			out.Write(line)
			continue
		}
		ds = append(ds, args)
	}
	return out.Bytes(), ds
}

// splitLine returns a config line's keyword and its arguments, split at
// blanks outside double quotes, up to a # that starts a word.
func splitLine(line string) (string, []string) {
	line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
	if line == "" || line[0] == '#' {
		return "", nil
	}
	end := strings.IndexAny(line, " \t=")
	if end < 0 {
		return line, nil
	}
	key, rest := line[:end], strings.TrimSpace(line[end:])
	rest = strings.TrimSpace(strings.TrimPrefix(rest, "="))
	return key, splitArgs(rest)
}

// splitArgs splits an option's value into words as ssh does: at blanks
// outside double quotes, stopping at a # that begins a word.
func splitArgs(s string) []string {
	var args []string
	var word strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (ch == ' ' || ch == '\t'):
			if inWord {
				args = append(args, word.String())
				word.Reset()
				inWord = false
			}
		case !quoted && ch == '#' && !inWord:
			return args
		default:
			word.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		args = append(args, word.String())
	}
	return args
}

// readFile reads one configuration file; a file that does not exist is
// skipped, as ssh skips a missing ~/.ssh/config.
func (r *reader) readFile(name string, system bool, depth int) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("sshfwd: %s: Include nested too deep", name)
	}
	src, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sshfwd: %w", err)
	}
	text, ds := prepare(src)
	file, err := sshconfigfile.DecodeBytes(text)
	if err != nil {
		return fmt.Errorf("sshfwd: %s: %w", name, err)
	}
	for _, h := range file.Hosts {
		active, err := r.matches(h, ds, name)
		if err != nil {
			return err
		}
		if !active {
			continue
		}
		for _, n := range h.Nodes {
			kv, ok := n.(*sshconfigfile.KV)
			if !ok {
				continue
			}
			where := fmt.Sprintf("%s:%d", name, kv.Pos().Line)
			if kv.Key == includeKey {
				if err := r.include(ds[atoi(kv.Value)], system, depth, where); err != nil {
					return err
				}
				continue
			}
			if err := r.set(kv.Key, kv.Value, where); err != nil {
				return err
			}
		}
	}
	return nil
}

// atoi parses the index of a marker that prepare wrote.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// include reads the files an Include names, in order, each pattern's
// matches sorted as glob(3) sorts them. Relative names are taken from
// ~/.ssh, or from the system directory for the system file.
func (r *reader) include(patterns []string, system bool, depth int, where string) error {
	if len(patterns) == 0 {
		return fmt.Errorf("sshfwd: %s: Include without a file", where)
	}
	for _, p := range patterns {
		p, err := r.c.expandPath(p)
		if err != nil {
			return fmt.Errorf("sshfwd: %s: %w", where, err)
		}
		if !filepath.IsAbs(p) {
			dir := filepath.Join(r.c.home, ".ssh")
			if system {
				dir = r.c.systemDir()
			}
			p = filepath.Join(dir, p)
		}
		files, err := filepath.Glob(p)
		if err != nil {
			return fmt.Errorf("sshfwd: %s: Include %s: %w", where, p, err)
		}
		for _, f := range files {
			if err := r.readFile(f, system, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// matches reports whether the settings of block h apply: a Host line's
// patterns match the name given, a Match line's criteria all hold.
func (r *reader) matches(h *sshconfigfile.Host, ds []directive, file string) (bool, error) {
	if len(h.Patterns) == 1 {
		if n, ok := strings.CutPrefix(h.Patterns[0].String(), matchPattern); ok {
			return r.match(ds[atoi(n)], file)
		}
	}
	return h.Matches(r.c.Host), nil
}

// match evaluates a Match line's criteria, each of which may be negated
// with !. The host criterion sees the HostName set so far, user the User
// set so far, as ssh's do. Criteria sshfwd cannot evaluate (exec, canonical,
// final, tagged, localnetwork) make the block not apply, and are reported.
func (r *reader) match(args []string, file string) (bool, error) {
	if len(args) == 0 {
		return false, fmt.Errorf("sshfwd: %s: Match without criteria", file)
	}
	all := true
	for i := 0; i < len(args); i++ {
		crit, negate := strings.CutPrefix(strings.ToLower(args[i]), "!")
		var subject string
		switch crit {
		case "all":
			all = all && !negate
			continue
		case "host":
			subject = r.c.Host
			if v := r.vals["hostname"]; len(v) > 0 {
				subject = strings.ToLower(strings.ReplaceAll(v[0].value, "%h", r.c.Host))
			}
		case "originalhost":
			subject = r.c.Host
		case "user":
			subject = r.c.localUser
			if v := r.vals["user"]; len(v) > 0 {
				subject = v[0].value
			}
		case "localuser":
			subject = r.c.localUser
		case "exec", "canonical", "final", "tagged", "localnetwork":
			r.c.Ignored = append(r.c.Ignored, fmt.Sprintf("%s: Match %s (the block is skipped)", file, strings.Join(args, " ")))
			return false, nil
		default:
			return false, fmt.Errorf("sshfwd: %s: unsupported Match criterion %q", file, args[i])
		}
		if i+1 == len(args) {
			return false, fmt.Errorf("sshfwd: %s: Match %s needs a pattern list", file, crit)
		}
		i++
		if matchList(subject, strings.Split(args[i], ",")) == negate {
			all = false
		}
	}
	return all, nil
}

// set records one value of an option: the first for most, every one for
// the lists. IgnoreUnknown applies to the lines after it, as in ssh.
func (r *reader) set(key, value, where string) error {
	lower := strings.ToLower(key)
	if !actedOn[lower] && !slices.Contains(known, lower) {
		if v := r.vals["ignoreunknown"]; len(v) > 0 && matchList(lower, strings.Split(strings.ToLower(v[0].value), ",")) {
			return nil
		}
		return fmt.Errorf("sshfwd: %s: Bad configuration option: %s", where, key)
	}
	if strings.ContainsRune(value, 0) {
		return fmt.Errorf("sshfwd: %s: NUL byte in %s", where, key)
	}
	if !actedOn[lower] {
		r.c.Ignored = append(r.c.Ignored, fmt.Sprintf("%s: %s %s", where, key, value))
		return nil
	}
	if len(r.vals[lower]) > 0 && !multiple[lower] {
		return nil
	}
	r.vals[lower] = append(r.vals[lower], setting{value, where})
	return nil
}

// matchList reports whether s matches a list of patterns as ssh's
// match_pattern_list does: a negated pattern that matches wins, else any
// pattern that matches.
func matchList(s string, patterns []string) bool {
	found := false
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if neg, ok := strings.CutPrefix(p, "!"); ok {
			if wildcard(s, neg) {
				return false
			}
			continue
		}
		if wildcard(s, p) {
			found = true
		}
	}
	return found
}

// wildcard matches s against a pattern of ssh's kind: * is any run of
// characters, ? one character, and nothing else is special.
func wildcard(s, p string) bool {
	star, mark := -1, 0
	i, j := 0, 0
	for i < len(s) {
		switch {
		case j < len(p) && (p[j] == '?' || p[j] == s[i]):
			i++
			j++
		case j < len(p) && p[j] == '*':
			star, mark = j, i
			j++
		case star >= 0:
			mark++
			i, j = mark, star+1
		default:
			return false
		}
	}
	for j < len(p) && p[j] == '*' {
		j++
	}
	return j == len(p)
}
