package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sshfwd/sshfwd/sshconfig"
)

func TestHelp(t *testing.T) {
	out, errs, code := runToEnd(t, "-h")
	assert.Equal(t, 0, code)
	assert.Empty(t, errs)
	assert.True(t, strings.HasPrefix(out, synopsis()+"\n"), out)
	for _, r := range helpRows() {
		assert.Contains(t, out, "\n  "+r.option+"\n", "every option is listed")
		assert.Contains(t, strings.Join(strings.Fields(out), " "), r.means, "with its meaning")
	}
	for _, line := range strings.Split(out, "\n") {
		assert.LessOrEqual(t, len(line), 80, "%q", line)
	}
}

func TestOptionMeanings(t *testing.T) {
	var keys []string
	for k := range optionMeanings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := sshconfig.Keywords()
	slices.Sort(want)
	assert.Equal(t, want, keys, "a meaning for every ssh_config option sshconfig reads, and no other")
	letters := map[byte]bool{}
	for _, f := range flagSpecs {
		assert.False(t, letters[f.letter], "-%c twice", f.letter)
		letters[f.letter] = true
		assert.NotEmpty(t, f.means)
	}
}

// readmeRows returns the rows of the option table in the README's section
// on the command.
func readmeRows(t *testing.T) []helpRow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(b), "### The `sshfwd` command\n")
	require.True(t, ok, "the README has a section on the command")
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\| (.*) \\|$")
	var rows []helpRow
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		rows = append(rows, helpRow{m[1], strings.ReplaceAll(m[2], `\|`, "|")})
	}
	return rows
}

// TestReadmeTableMatchesHelp checks the README's table of options against
// the options the code defines, which -h prints.
func TestReadmeTableMatchesHelp(t *testing.T) {
	assert.Equal(t, helpRows(), readmeRows(t))
}

func TestVersion(t *testing.T) {
	out, errs, code := runToEnd(t, "-V")
	assert.Equal(t, 0, code)
	assert.Empty(t, out)
	assert.Regexp(t, `^sshfwd \S+, golang.org/x/crypto v\d+\.\d+\.\d+, go\d\S*\n$`, errs)
}

func TestPrintConfig(t *testing.T) {
	home := isolate(t)
	config := writeConfig(t, "Host lab\n  HostName 192.0.2.7\n  User alice\n  Port 2200\n  LocalForward 9090 db:5432\n  ProxyJump bastion\n  Compression yes\n")
	args := []string{"-G", "-F", config, "-o", "ServerAliveInterval=1m", "-o", "GlobalKnownHostsFile=none", "-4", "-g", "-S", "/tmp/cm",
		"-L", "8080:[::1]:80", "-L", "127.0.0.1:8081:/run/x.sock", "-R", "0:localhost:22", "-R", "1080", "-D", "*:1081", "lab"}
	out, errs, code := runToEnd(t, args...)
	assert.Equal(t, 0, code, errs)
	assert.Empty(t, errs, "nothing connects")
	got := strings.Split(strings.TrimSpace(out), "\n")
	for _, want := range []string{
		"host lab", "user alice", "hostname 192.0.2.7", "port 2200", "addressfamily inet", "gatewayports yes",
		"serveraliveinterval 60", "stricthostkeychecking ask", "connecttimeout none", "controlpath /tmp/cm",
		"localforward 8080 [::1]:80", "localforward [127.0.0.1]:8081 /run/x.sock", "remoteforward 0 [localhost]:22",
		"remoteforward 1080 [socks]:0", "dynamicforward [*]:1081", "localforward 9090 [db]:5432",
		"identityfile " + filepath.Join(home, ".ssh", "id_rsa"), "proxyjump bastion", "globalknownhostsfile none",
	} {
		assert.Contains(t, got, want)
	}
	assert.Less(t, slices.Index(got, "localforward 8080 [::1]:80"), slices.Index(got, "localforward 9090 [db]:5432"),
		"the command line's forwards come first")
	for _, line := range got {
		assert.Regexp(t, `^[a-z0-9]+ \S`, line, "a lower-case keyword and its value, as ssh -G prints")
	}
	assert.NotContains(t, out, "compression", "only what sshfwd acts on")
	verbose, errs, _ := runToEnd(t, append([]string{"-v"}, args...)...)
	assert.Equal(t, out, verbose, "-v's notes go to stderr")
	assert.Contains(t, errs, "Compression yes: golang.org/x/crypto/ssh has no compression")
}
