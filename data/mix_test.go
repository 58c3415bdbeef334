package data

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/macdist/macdist/internal/fixture"
)

// TestMixupMatchesTimm replays timm's Mixup (batch mode, transcribed in
// testdata/gen/gen_recipe.py) with the same draws: the mixed images, the
// CutMix box and corrected λ, and the soft targets.
func TestMixupMatchesTimm(t *testing.T) {
	f := fixture.Load(t, "recipe")
	for _, name := range []string{"mixup", "cutmix", "cutmix_edge"} {
		t.Run(name, func(t *testing.T) {
			x, shape := fixture.Floats(t, f, name+".x")
			want, _ := fixture.Floats(t, f, name+".x_mixed")
			wantT, _ := fixture.Floats(t, f, name+".targets")
			y := fixture.Labels(t, f, name+".y")
			draw, _ := fixture.Floats(t, f, name+".draw")
			n, c, h, w := shape[0], shape[1], shape[2], shape[3]
			d := MixDraw{Lam: float64(draw[0]), Cutmix: draw[1] == 1}
			if d.Cutmix {
				d.Y0, d.Y1, d.X0, d.X1 = CutmixBox(d.Lam, h, w, int(draw[2]), int(draw[3]))
				box := fixture.Labels(t, f, name+".box")
				if got := []int32{int32(d.Y0), int32(d.Y1), int32(d.X0), int32(d.X1)}; !equal32(got, box) {
					t.Fatalf("box %v, timm's %v", got, box)
				}
				d.Lam = 1 - float64((d.Y1-d.Y0)*(d.X1-d.X0))/float64(h*w)
			}
			if math.Abs(d.Lam-float64(draw[5])) > 1e-6 {
				t.Errorf("λ %v, timm's %v", d.Lam, draw[5])
			}
			got := append([]float32(nil), x...)
			d.Apply(got, n, c, h, w, make([]float32, c*h*w))
			fixture.Close(t, "mixed images", got, want, 1e-6)
			m := Mixup{MixupAlpha: 1, Prob: 1, Smoothing: float64(draw[4]), Classes: 5}
			tg := make([]float32, n*5)
			m.Targets(tg, y, d)
			fixture.Close(t, "targets", tg, wantT, 1e-6)
		})
	}
}

func equal32(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBetaMoments checks the sampler against Beta(a, b)'s mean and
// variance, and Beta(1, 1) against the uniform distribution's quartiles.
func TestBetaMoments(t *testing.T) {
	const n = 200000
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ab := range [][2]float64{{0.2, 0.2}, {0.8, 0.8}, {1, 1}, {2.5, 0.7}} {
		a, b := ab[0], ab[1]
		var s, s2 float64
		q := [3]int{}
		for range n {
			v := Beta(rng, a, b)
			if v < 0 || v > 1 || math.IsNaN(v) {
				t.Fatalf("Beta(%g, %g) drew %v", a, b, v)
			}
			s += v
			s2 += v * v
			for i, edge := range []float64{0.25, 0.5, 0.75} {
				if v < edge {
					q[i]++
				}
			}
		}
		mean, vr := s/n, s2/n-(s/n)*(s/n)
		wantMean := a / (a + b)
		wantVar := a * b / ((a + b) * (a + b) * (a + b + 1))
		// Five standard errors of the mean; the variance to 3%.
		if math.Abs(mean-wantMean) > 5*math.Sqrt(wantVar/n) {
			t.Errorf("Beta(%g, %g): mean %.5f, want %.5f", a, b, mean, wantMean)
		}
		if math.Abs(vr-wantVar) > 0.03*wantVar {
			t.Errorf("Beta(%g, %g): variance %.5f, want %.5f", a, b, vr, wantVar)
		}
		if a == 1 && b == 1 {
			for i, c := range q {
				p := float64(i+1) / 4
				if math.Abs(float64(c)/n-p) > 5*math.Sqrt(p*(1-p)/n) {
					t.Errorf("Beta(1, 1): P(v < %g) = %.4f", p, float64(c)/n)
				}
			}
		}
	}
}

// TestMixupDrawFrequencies checks the choices' distribution over many
// batches: how often a batch is mixed, how often with CutMix, and that
// CutMix's corrected λ is the box's complement.
func TestMixupDrawFrequencies(t *testing.T) {
	const n = 100000
	m := Mixup{MixupAlpha: 0.8, CutmixAlpha: 1, Prob: 0.7, SwitchProb: 0.4, Classes: 10}
	rng := rand.New(rand.NewPCG(3, 4))
	var mixed, cut int
	var cutLam float64
	for range n {
		d := m.Draw(rng, 32, 24)
		if d.Lam == 1 && !d.Cutmix {
			continue
		}
		mixed++
		if d.Cutmix {
			cut++
			cutLam += d.Lam
			if area := (d.Y1 - d.Y0) * (d.X1 - d.X0); math.Abs(d.Lam-(1-float64(area)/(32*24))) > 1e-12 {
				t.Fatalf("CutMix λ %v with a box of %d pixels", d.Lam, area)
			}
		}
	}
	check := func(what string, got, p float64, trials int) {
		if math.Abs(got-p) > 5*math.Sqrt(p*(1-p)/float64(trials)) {
			t.Errorf("%s: %.4f, want %.4f", what, got, p)
		}
	}
	check("mixed share", float64(mixed)/n, 0.7, n)
	check("CutMix share of the mixed", float64(cut)/float64(mixed), 0.4, mixed)
	// timm's box is clipped at the edges, so the pasted share is below
	// the drawn 1−λ (mean ½ for Beta(1, 1)): the corrected λ's mean is above ½.
	if mean := cutLam / float64(cut); mean < 0.5 || mean > 0.75 {
		t.Errorf("mean corrected CutMix λ %.3f, want within (0.5, 0.75)", mean)
	}
}

// TestSeedMixDeterministic: the same (seed, epoch, step, rank) gives the
// same draws, and another rank or step different ones.
func TestSeedMixDeterministic(t *testing.T) {
	draw := func(seed uint64, e, s, r int) float64 {
		p := new(rand.PCG)
		SeedMix(p, seed, e, s, r)
		return rand.New(p).Float64()
	}
	if draw(1, 2, 3, 0) != draw(1, 2, 3, 0) {
		t.Fatal("SeedMix is not deterministic")
	}
	for _, other := range []float64{draw(1, 2, 3, 1), draw(1, 2, 4, 0), draw(1, 3, 3, 0), draw(2, 2, 3, 0)} {
		if other == draw(1, 2, 3, 0) {
			t.Error("two different batches drew the same numbers")
		}
	}
}
