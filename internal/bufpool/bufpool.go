// Package bufpool shares copy buffers between every stream of the process,
// in a few fixed sizes, so that a stream holds a buffer only while data
// moves through it.
package bufpool

import "sync"

// The sizes handed out: a small one to wait with, one SSH packet's worth,
// and a large one for bulk writes.
const (
	Small  = 2 << 10
	Packet = 32 << 10
	Large  = 256 << 10
)

var sizes = [...]int{Small, Packet, Large}

var pools [len(sizes)]sync.Pool

// Get returns a buffer of the smallest size class that holds n bytes (the
// largest if none does), with len equal to its capacity.
func Get(n int) []byte {
	i := class(n)
	if p, ok := pools[i].Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, sizes[i])
}

// Put returns a buffer that Get handed out. Buffers of other capacities are
// dropped.
func Put(b []byte) {
	for i, size := range sizes {
		if cap(b) == size {
			b = b[:size]
			pools[i].Put(&b)
			return
		}
	}
}

func class(n int) int {
	for i, size := range sizes {
		if n <= size {
			return i
		}
	}
	return len(sizes) - 1
}

// Next returns the size to read with after a read of n bytes into a buffer
// of size. A full buffer means more is waiting, so the next read takes a
// larger one; a buffer not filled means the reader caught up and the next
// read may wait for long, so it waits on a small one.
func Next(size, n int) int {
	switch {
	case n < size:
		return Small
	case size == Small:
		return Packet
	}
	return Large
}
