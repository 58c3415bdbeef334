package train

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
)

// TestEvalCountsEverySampleOnce trains one epoch on 1, 2, 3 and 7
// in-process ranks over sets of 211 training and 101 test samples (neither
// divisible by 2, 3 or 7, so DistributedSampler pads both) and checks the
// epoch's record against `eval` of the run's checkpoint in one process: the
// test loss and accuracy, and — with the learning rate 0 and a model
// without batch statistics or dropout, so that training does not move the
// weights and a sample's loss does not depend on its batch — the train
// loss and accuracy against eval of the training set. Padded samples
// counted (8997/10002 in the issue) shift every one of them.
func TestEvalCountsEverySampleOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("four multi-rank runs")
	}
	const global = 42 // divisible by every world size below
	ctx := context.Background()
	// With --grad-accum-steps, 209 training samples put the padding in
	// the last micro-batch of a full last batch, after real samples.
	for _, tc := range []struct{ world, accum, ntrain int }{{1, 1, 211}, {2, 1, 211}, {3, 1, 211}, {7, 1, 211}, {3, 2, 209}, {7, 3, 209}} {
		world := tc.world
		t.Run(fmt.Sprintf("%d_ranks_accum_%d", world, tc.accum), func(t *testing.T) {
			tmp := t.TempDir()
			dirs := make([]string, world)
			for r := range dirs {
				dirs[r] = filepath.Join(tmp, fmt.Sprint("rank", r))
			}
			errs := runRanks(t, ctx, dirs, false, func(c *Config) {
				c.Data = fmt.Sprintf("synthetic:1x8x8:4:%d:101", tc.ntrain)
				c.Model, c.Optimizer, c.LR, c.Momentum, c.WeightDecay = "mlp", "sgd", 0, 0, 0
				c.Augment, c.LabelSmoothing = "none", 0
				c.Epochs, c.Batch, c.Workers = 1, global/world, 1
				c.GradAccumSteps = tc.accum
			})
			for r, err := range errs {
				if err != nil {
					t.Fatalf("rank %d: %v", r, err)
				}
			}
			recs, err := ReadMetrics(filepath.Join(dirs[0], metricsFile))
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			rec := recs[0]
			test, _, err := Evaluate(ctx, EvalConfig{Checkpoint: dirs[0], Workers: 1})
			if err != nil {
				t.Fatal(err)
			}
			train, _, err := Evaluate(ctx, EvalConfig{Checkpoint: dirs[0], Train: true, Workers: 1})
			if err != nil {
				t.Fatal(err)
			}
			if test.Samples != 101 || train.Samples != tc.ntrain {
				t.Fatalf("eval counted %d test and %d training samples, want 101 and %d", test.Samples, train.Samples, tc.ntrain)
			}
			for _, c := range []struct {
				name      string
				got, want float64
			}{
				{"test_loss", rec.TestLoss, test.Loss},
				{"test_acc", rec.TestAcc, test.Accuracy},
				{"train_loss", rec.TrainLoss, train.Loss},
				{"train_acc", rec.TrainAcc, train.Accuracy},
			} {
				if math.Abs(c.got-c.want) > 1e-6 {
					t.Errorf("%d ranks: %s %.9g, eval says %.9g", world, c.name, c.got, c.want)
				}
			}
			t.Logf("%d ranks: test loss %.6f acc %.6f, train loss %.6f acc %.6f", world, rec.TestLoss, rec.TestAcc, rec.TrainLoss, rec.TrainAcc)
		})
	}
}
