package mac

import (
	"fmt"
	"math"
	"sort"
)

// Schedule gives the learning rate of each step (counted from 0).
type Schedule interface {
	LR(step int) float64
}

// Constant is a fixed learning rate.
type Constant float64

func (c Constant) LR(int) float64 { return float64(c) }

// Cosine anneals from Base to Floor over Steps steps, as PyTorch's
// CosineAnnealingLR with T_max = Steps and eta_min = Floor; it stays at
// Floor afterwards.
type Cosine struct {
	Base, Floor float64
	Steps       int
}

func (c Cosine) LR(step int) float64 {
	if step >= c.Steps {
		return c.Floor
	}
	return c.Floor + (c.Base-c.Floor)*(1+math.Cos(math.Pi*float64(step)/float64(c.Steps)))/2
}

// MultiStep multiplies Base by Gamma at each milestone, as PyTorch's MultiStepLR.
type MultiStep struct {
	Base       float64
	Milestones []int
	Gamma      float64
}

func (m MultiStep) LR(step int) float64 {
	lr := m.Base
	for _, s := range m.Milestones {
		if step >= s {
			lr *= m.Gamma
		}
	}
	return lr
}

// Warmup ramps linearly over Steps steps up to what Then gives, and follows
// Then (shifted, so it starts at its step 0) afterwards. The first step
// takes Then's rate times 1/Steps, never 0.
type Warmup struct {
	Steps int
	Then  Schedule
}

func (w Warmup) LR(step int) float64 {
	if step < w.Steps {
		return w.Then.LR(0) * float64(step+1) / float64(w.Steps)
	}
	return w.Then.LR(step - w.Steps)
}

// NewSchedule builds a schedule by name: "constant", "cosine" (to floor over
// total steps), or "multistep" (×0.1 at 50% and 75% of total), with warmup
// steps in front when warmup > 0. total counts the warmup.
func NewSchedule(name string, base, floor float64, total, warmup int) (Schedule, error) {
	if base < 0 || math.IsNaN(base) {
		return nil, fmt.Errorf("mac: learning rate %v is negative", base)
	}
	if warmup < 0 || (total > 0 && warmup > total) {
		return nil, fmt.Errorf("mac: warmup %d outside [0, total steps %d]", warmup, total)
	}
	rest := total - warmup
	var s Schedule
	switch name {
	case "constant", "":
		s = Constant(base)
	case "cosine":
		if rest <= 0 {
			return nil, fmt.Errorf("mac: cosine schedule needs a positive number of steps after warmup, got %d", rest)
		}
		s = Cosine{Base: base, Floor: floor, Steps: rest}
	case "multistep":
		ms := []int{rest / 2, rest * 3 / 4}
		sort.Ints(ms)
		s = MultiStep{Base: base, Milestones: ms, Gamma: 0.1}
	default:
		return nil, fmt.Errorf("mac: unknown schedule %q (want constant, cosine or multistep)", name)
	}
	if warmup > 0 {
		s = Warmup{Steps: warmup, Then: s}
	}
	return s, nil
}
