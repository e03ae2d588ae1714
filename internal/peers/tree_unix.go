//go:build unix

package peers

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// killTree freezes pid and all of its descendants with SIGSTOP (so none can
// fork while the tree is being walked) and then kills the descendants with
// SIGKILL. pid itself is left stopped for the caller to kill and reap.
// Descendants are found through the parent PID in /proc/PID/stat.
func killTree(pid int) {
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	seen := map[int]bool{pid: true}
	var desc []int
	for changed := true; changed; {
		changed = false
		for child, parent := range parentMap() {
			if seen[parent] && !seen[child] {
				seen[child] = true
				desc = append(desc, child)
				_ = syscall.Kill(child, syscall.SIGSTOP)
				changed = true
			}
		}
	}
	for _, d := range desc {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
}

// parentMap returns child PID -> parent PID for all processes in /proc.
func parentMap() map[int]int {
	m := map[int]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return m
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Format: "pid (comm) state ppid ..."; comm may contain spaces
		// and parentheses, so parse after the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		m[pid] = ppid
	}
	return m
}
