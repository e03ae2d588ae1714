package sshconfig

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDestination(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Destination
	}{
		{"lab", Destination{Host: "lab"}},
		{"alice@example.com", Destination{User: "alice", Host: "example.com"}},
		{"alice@example.com:2222", Destination{User: "alice", Host: "example.com", Port: 2222}},
		{"ssh://bob@host:22/", Destination{User: "bob", Host: "host", Port: 22}},
		{"ssh://host", Destination{Host: "host"}},
		{"ssh://carol@[2001:db8::2]:2022", Destination{User: "carol", Host: "2001:db8::2", Port: 2022}},
		{"dave@[::1]", Destination{User: "dave", Host: "::1"}},
		{"::1", Destination{Host: "::1"}},
		{"me@x@host", Destination{User: "me@x", Host: "host"}},
	} {
		got, err := ParseDestination(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	for _, bad := range []string{"", "@host", "a@", "host:0", "host:x", "host:70000", "a b@host", "ho\x00st",
		"[::1", "[::1]x", "host:+1", "-oProxyCommand=x", "a@b/c", "ssh://", "us\ter@host"} {
		_, err := ParseDestination(bad)
		if assert.Error(t, err, "%q", bad) {
			assert.True(t, strings.HasPrefix(err.Error(), "sshfwd: destination "), err.Error())
		}
	}
}

func TestDestinationString(t *testing.T) {
	for _, in := range []string{"lab", "alice@example.com", "ssh://alice@example.com:2222", "ssh://[::1]:22"} {
		d, err := ParseDestination(in)
		require.NoError(t, err)
		assert.Equal(t, in, d.String())
	}
}

// FuzzParseDestination checks that any string either parses into a
// destination that prints and parses back to itself, or is refused with an
// error, without panicking.
func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{"lab", "a@b:22", "ssh://u@[::1]:2/", "::1", "[x]:", "a@@b", "ssh://@", "h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDestination(s)
		if err != nil {
			return
		}
		if !utf8.ValidString(s) {
			return
		}
		again, err := ParseDestination(d.String())
		require.NoError(t, err, "%q printed as %q", s, d.String())
		assert.Equal(t, d, again)
	})
}
