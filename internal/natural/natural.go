// Package natural orders strings as people read them: runs of digits
// compare by value, so node-2 comes before node-10 and python3.9 before
// python3.12.
package natural

import "strings"

// Less reports whether a sorts before b: byte by byte, except that where
// both have a run of digits the runs compare as numbers of any length
// (leading zeros ignored), and a prefix sorts first.
func Less(a, b string) bool {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			i, j := digits(a), digits(b)
			na, nb := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digits returns the length of the run of digits that s starts with.
func digits(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}
