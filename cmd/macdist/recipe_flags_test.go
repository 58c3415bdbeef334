package main

import (
	"io"
	"reflect"
	"testing"

	"github.com/macdist/macdist/train"
)

// TestRecipeFlags: the recipe's flags reach their Config fields, and the
// defaults are timm's where the feature is off.
func TestRecipeFlags(t *testing.T) {
	fs := newFlagSet("train", io.Discard)
	c := train.DefaultConfig()
	trainFlags(fs, &c)
	if c.ModelEMADecay != 0.9998 || c.MixupProb != 1 || c.MixupSwitchProb != 0.5 {
		t.Errorf("defaults: EMA decay %v, mixup prob %v, switch prob %v", c.ModelEMADecay, c.MixupProb, c.MixupSwitchProb)
	}
	err := parse(fs, []string{
		"--no-decay-bn-bias", "--clip-grad", "1.5", "--grad-accum-steps", "4", "--model-ema", "--model-ema-decay", "0.999",
		"--mixup", "0.8", "--cutmix", "1", "--mixup-prob", "0.9", "--mixup-switch-prob", "0.4",
		"--auto-augment", "rand-m9-mstd0.5", "--random-erase", "0.25", "--repeated-aug", "3", "--layer-decay", "0.65",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := train.DefaultConfig()
	want.NoDecayBNBias, want.ClipGrad, want.GradAccumSteps, want.ModelEMA, want.ModelEMADecay = true, 1.5, 4, true, 0.999
	want.Mixup, want.Cutmix, want.MixupProb, want.MixupSwitchProb = 0.8, 1, 0.9, 0.4
	want.AutoAugment, want.RandomErase, want.RepeatedAug, want.LayerDecay = "rand-m9-mstd0.5", 0.25, 3, 0.65
	for _, f := range []string{"NoDecayBNBias", "ClipGrad", "GradAccumSteps", "ModelEMA", "ModelEMADecay", "Mixup", "Cutmix",
		"MixupProb", "MixupSwitchProb", "AutoAugment", "RandomErase", "RepeatedAug", "LayerDecay"} {
		got, w := reflect.ValueOf(c).FieldByName(f).Interface(), reflect.ValueOf(want).FieldByName(f).Interface()
		if got != w {
			t.Errorf("%s = %v, want %v", f, got, w)
		}
	}
}
