package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// asm is a small label assembler over x/net/bpf instructions. Classic BPF
// jumps are relative and forward-only, and conditional ones reach at most
// 255 instructions: the filter builder keeps conditional targets local and
// uses unconditional jumps (32-bit) to go far. resolve reports a jump that
// breaks either rule, which would be a bug in the builder.
type asm struct {
	ins    []bpf.Instruction
	labels []int // label -> instruction index; -1 until marked
	fixups []fixup
}

type fixup struct {
	at         int // index of the jump instruction
	jt, jf, ja int // labels; -1 means "next instruction" (jt/jf) or unused
}

const next = -1

func (a *asm) label() int {
	a.labels = append(a.labels, -1)
	return len(a.labels) - 1
}

func (a *asm) mark(l int) { a.labels[l] = len(a.ins) }

func (a *asm) emit(ins ...bpf.Instruction) { a.ins = append(a.ins, ins...) }

// jump emits an unconditional jump to label l.
func (a *asm) jump(l int) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), jt: next, jf: next, ja: l})
	a.emit(bpf.Jump{})
}

// jumpIf emits a conditional jump on A; jt and jf are labels or next.
func (a *asm) jumpIf(cond bpf.JumpTest, val uint32, jt, jf int) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), jt: jt, jf: jf, ja: next})
	a.emit(bpf.JumpIf{Cond: cond, Val: val})
}

// dropIf emits "if cond, return 0": a jump over a local ret.
func (a *asm) dropIf(cond bpf.JumpTest, val uint32) {
	a.emit(bpf.JumpIf{Cond: cond, Val: val, SkipTrue: 0, SkipFalse: 1}, bpf.RetConstant{Val: 0})
}

func (a *asm) resolve() ([]bpf.Instruction, error) {
	dist := func(at, l int) (int, error) {
		if l == next {
			return 0, nil
		}
		target := a.labels[l]
		if target < 0 {
			return 0, fmt.Errorf("bpf: label %d never marked", l)
		}
		d := target - at - 1
		if d < 0 {
			return 0, fmt.Errorf("bpf: backward jump at %d", at)
		}
		return d, nil
	}
	for _, f := range a.fixups {
		if f.ja != next {
			d, err := dist(f.at, f.ja)
			if err != nil {
				return nil, err
			}
			a.ins[f.at] = bpf.Jump{Skip: uint32(d)}
			continue
		}
		t, err := dist(f.at, f.jt)
		if err != nil {
			return nil, err
		}
		e, err := dist(f.at, f.jf)
		if err != nil {
			return nil, err
		}
		if t > 255 || e > 255 {
			return nil, fmt.Errorf("bpf: conditional jump at %d reaches %d/%d instructions (max 255)", f.at, t, e)
		}
		j := a.ins[f.at].(bpf.JumpIf)
		j.SkipTrue, j.SkipFalse = uint8(t), uint8(e)
		a.ins[f.at] = j
	}
	return a.ins, nil
}
