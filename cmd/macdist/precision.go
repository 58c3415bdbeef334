package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/kernels/cpu"
)

const precisionUsage = "arithmetic, `fp32|bf16`: bf16 is mixed precision as torch.autocast (convolutions, linear layers and attention products in bf16, the rest in fp32) and needs oneDNN and a CPU with AVX512-BF16 or AMX (see macdist doctor)"

// precisionFlag binds --precision to a string, so that a precision that
// does not exist is a flag error at parse time rather than a failure
// after the data is opened.
type precisionFlag struct{ p *string }

func (f precisionFlag) String() string {
	if f.p == nil {
		return ""
	}
	return *f.p
}

func (f precisionFlag) Set(s string) error {
	if s == "" {
		return fmt.Errorf("want fp32 or bf16")
	}
	if _, err := kernels.ParsePrecision(s); err != nil {
		return err
	}
	*f.p = s
	return nil
}

// precisionVar defines --precision on fs, stored in p (fp32 unless set).
func precisionVar(fs *flag.FlagSet, p *string) {
	if *p == "" {
		*p = "fp32"
	}
	fs.Var(precisionFlag{p}, "precision", precisionUsage)
}

// bf16Line says whether the CPU computes bf16 natively, for doctor.
func bf16Line() string {
	native, isa, err := cpu.BF16Support()
	switch {
	case err != nil:
		return fmt.Sprintf("bf16: unavailable (needs oneDNN: %v); --precision bf16 refuses", err)
	case native:
		return fmt.Sprintf("bf16: native (%s)", isa)
	case !strings.HasPrefix(isa, "avx512_core"):
		return fmt.Sprintf("bf16: not supported by this CPU (ISA %s; needs AVX512-BF16 or AMX); --precision bf16 refuses", isa)
	}
	return fmt.Sprintf("bf16: not supported natively by this CPU (ISA %s); --precision bf16 refuses unless MACDIST_BF16=emulate (oneDNN's emulation: slow, for tests)", isa)
}
