package sshfwd_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeExamplesAreTested checks that every Go snippet in README.md
// stands, line for line, in a test file of this repository, where an
// Example or a test runs it, or in an example program, which its own test
// runs.
func TestReadmeExamplesAreTested(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	var sources []string
	require.NoError(t, filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		tested := strings.HasSuffix(path, "_test.go") ||
			(strings.HasPrefix(path, "examples"+string(filepath.Separator)) && filepath.Base(path) == "main.go")
		if err == nil && !d.IsDir() && tested {
			b, err := os.ReadFile(path)
			if err == nil {
				sources = append(sources, string(b))
			}
		}
		return err
	}))
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	require.NotEmpty(t, blocks, "README.md has no Go examples")
	for _, b := range blocks {
		snippet := b[1]
		found := false
		for _, src := range sources {
			if strings.Contains(src, snippet) {
				found = true
				break
			}
		}
		assert.True(t, found, "README snippet is in no test file:\n%s", snippet)
	}
}
