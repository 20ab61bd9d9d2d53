package capture

import (
	"cmp"
	"slices"

	"golang.org/x/net/bpf"
)

// A set of 32-bit values (ports, IPv4 addresses, one word of IPv6
// addresses) is checked in the kernel as sorted, disjoint spans. When the
// exact spans do not fit the filter's instruction budget, the spans
// separated by the smallest gaps are merged: the kernel then lets through
// some values in those gaps, never fewer than the exact set, and the
// user-space check (specSet) drops what the spec does not name.

// span is the closed range lo..hi.
type span struct{ lo, hi uint32 }

// spansOf turns sorted, distinct values into maximal runs.
func spansOf(vals []uint32) []span {
	var out []span
	for _, v := range vals {
		if n := len(out); n > 0 && out[n-1].hi+1 == v {
			out[n-1].hi = v
			continue
		}
		out = append(out, span{v, v})
	}
	return out
}

// merger closes the gaps between spans, smallest first.
type merger struct {
	sp    []span
	order []int // gap i lies between sp[i] and sp[i+1]; smallest first
}

func newMerger(sp []span) *merger {
	m := &merger{sp: sp, order: make([]int, max(len(sp)-1, 0))}
	for i := range m.order {
		m.order[i] = i
	}
	slices.SortStableFunc(m.order, func(x, y int) int {
		return cmp.Compare(sp[x+1].lo-sp[x].hi, sp[y+1].lo-sp[y].hi)
	})
	return m
}

// spans returns the set as k spans (1 <= k <= len(sp)): the len(sp)-k
// smallest gaps closed, which covers the fewest extra values k spans can.
func (m *merger) spans(k int) []span {
	if k >= len(m.sp) {
		return m.sp
	}
	closed := make([]bool, len(m.sp))
	for _, g := range m.order[:len(m.sp)-k] {
		closed[g] = true
	}
	out := make([]span, 0, k)
	for i, s := range m.sp {
		if i > 0 && closed[i-1] {
			out[len(out)-1].hi = s.hi
			continue
		}
		out = append(out, s)
	}
	return out
}

// fitSpans returns the most exact spans for vals whose check costs at
// most budget instructions, and their cost. ok is false when not even
// one span fits: the caller then skips the check.
func fitSpans(vals []uint32, budget int) (sp []span, cost int, ok bool) {
	exact := spansOf(vals)
	if c := spansCost(exact); c <= budget {
		return exact, c, true
	}
	m := newMerger(exact)
	if c := spansCost(m.spans(1)); c > budget {
		return nil, 0, false
	}
	// The cost grows with the number of spans: find the most that fit.
	lo, hi := 1, len(exact)-1 // spans(lo) fits, spans(hi+1) does not
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if spansCost(m.spans(mid)) <= budget {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	sp = m.spans(lo)
	return sp, spansCost(sp), true
}

// leafSpans is how many spans a leaf of the search tree tests in a row:
// small enough that a packet costs few comparisons, large enough that the
// tree's own jumps stay a minor share of the program.
const leafSpans = 8

// spansCost is the number of instructions inSpans emits for sp.
func spansCost(sp []span) int {
	if len(sp) <= leafSpans {
		n := 2 // the leaf's hit and miss jumps
		for _, s := range sp {
			if s.lo == s.hi {
				n++
			} else {
				n += 2
			}
		}
		return n
	}
	m := len(sp) / 2
	return 2 + spansCost(sp[:m]) + spansCost(sp[m:])
}

// inSpans emits "if A is in one of sp, go to acc, else to rej": a binary
// search tree over the spans with short linear leaves. A is not changed.
// acc and rej may be anywhere after the code (they are reached by
// unconditional jumps); every conditional jump stays within its leaf or
// node, far inside the 255 instructions it can reach.
func inSpans(a *asm, sp []span, acc, rej int) {
	if len(sp) <= leafSpans {
		hit, miss := a.label(), a.label()
		for _, s := range sp {
			if s.lo == s.hi {
				a.jumpIf(bpf.JumpEqual, s.lo, hit, next)
				continue
			}
			// Above this span: on to the next one. Else below it (in the
			// gap before it, the spans being sorted) or in it.
			over := a.label()
			a.jumpIf(bpf.JumpGreaterThan, s.hi, over, next)
			a.jumpIf(bpf.JumpGreaterOrEqual, s.lo, hit, miss)
			a.mark(over)
		}
		a.mark(miss)
		a.jump(rej)
		a.mark(hit)
		a.jump(acc)
		return
	}
	m := len(sp) / 2
	right, left := a.label(), a.label()
	// Left: sp[:m], every value up to sp[m-1].hi; right: the rest.
	toRight := a.label()
	a.jumpIf(bpf.JumpGreaterThan, sp[m-1].hi, toRight, left)
	a.mark(toRight)
	a.jump(right)
	a.mark(left)
	inSpans(a, sp[:m], acc, rej)
	a.mark(right)
	inSpans(a, sp[m:], acc, rej)
}

// spanSet reports whether v is in sp: what inSpans tests, in Go.
func spanSet(sp []span, v uint32) bool {
	i, _ := slices.BinarySearchFunc(sp, v, func(s span, v uint32) int {
		if s.hi < v {
			return -1
		}
		if s.lo > v {
			return 1
		}
		return 0
	})
	return i < len(sp) && sp[i].lo <= v && v <= sp[i].hi
}
