package train

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/macdist/macdist/kernels"
	"github.com/macdist/macdist/mac"
	"github.com/macdist/macdist/nn"
)

// modelEMA is timm's ModelEmaV2: after every optimizer step, each value of
// the state_dict (weights and BatchNorm's running statistics alike) moves
// to e ← decay·e + (1−decay)·v. It starts as a copy of the model, after
// --init and the broadcast of rank 0's weights; every rank keeps the same.
type modelEMA struct {
	dev    kernels.Device
	params []*nn.Param
	decay  float32
	ema    []kernels.Buffer
	backup []kernels.Buffer // the model's own values while the average is evaluated
}

// emaPrefix names the averaged tensors in the optimizer's checkpoint file,
// as timm's checkpoints name them state_dict_ema.
const emaPrefix = "model_ema."

// EMAFile is the averaged weights' file in final/.
const EMAFile = "model_ema.safetensors"

func newModelEMA(dev kernels.Device, params []*nn.Param, decay float64) *modelEMA {
	e := &modelEMA{dev: dev, params: params, decay: float32(decay)}
	for _, p := range params {
		e.ema = append(e.ema, dev.Alloc(p.Value.Len()))
		e.backup = append(e.backup, dev.Alloc(p.Value.Len()))
	}
	return e
}

// reset copies the model's values.
func (e *modelEMA) reset() {
	for i, p := range e.params {
		e.dev.Copy(e.ema[i], p.Value.Data)
	}
}

// update moves the average one step towards the model.
func (e *modelEMA) update() {
	for i, p := range e.params {
		e.dev.Axpby(e.ema[i], 1-e.decay, p.Value.Data, e.decay)
	}
}

// swap exchanges the model's values with the average's (twice restores).
func (e *modelEMA) swap() {
	for i, p := range e.params {
		e.dev.Copy(e.backup[i], p.Value.Data)
		e.dev.Copy(p.Value.Data, e.ema[i])
		e.dev.Copy(e.ema[i], e.backup[i])
	}
}

// withEMA is an optimizer whose saved state also holds the average, so that
// a checkpoint carries it beside the model and a resumed run continues it
// exactly.
type withEMA struct {
	mac.Optimizer
	e *modelEMA
}

func (o withEMA) State() (*mac.State, error) {
	s, err := o.Optimizer.State()
	if err != nil {
		return nil, err
	}
	for i, p := range o.e.params {
		v := make([]float32, p.Value.Len())
		o.e.dev.Download(v, o.e.ema[i])
		s.Tensors[emaPrefix+p.Name] = v
	}
	return s, nil
}

func (o withEMA) SetState(s *mac.State) error {
	rest := &mac.State{Tensors: map[string][]float32{}, Meta: s.Meta}
	for k, v := range s.Tensors {
		if !strings.HasPrefix(k, emaPrefix) {
			rest.Tensors[k] = v
		}
	}
	for i, p := range o.e.params {
		v, ok := s.Tensors[emaPrefix+p.Name]
		if !ok {
			return fmt.Errorf("train: the checkpoint holds no moving average of %s (--model-ema)", p.Name)
		}
		if len(v) != p.Value.Len() {
			return fmt.Errorf("train: the checkpoint's moving average of %s has %d values, want %d", p.Name, len(v), p.Value.Len())
		}
		o.e.dev.Upload(o.e.ema[i], v)
	}
	return o.Optimizer.SetState(rest)
}

// ckptOpt is the optimizer as checkpoints save and load it.
func (t *trainer) ckptOpt() mac.Optimizer {
	if t.rc.ema != nil {
		return withEMA{t.opt, t.rc.ema}
	}
	return t.opt
}

// evaluateEMA evaluates the averaged weights into rec (test_loss_ema,
// test_acc_ema).
func (t *trainer) evaluateEMA(ctx context.Context, rec *EpochRecord) error {
	if t.rc.ema == nil {
		return nil
	}
	t.rc.ema.swap()
	ev, err := evaluate(ctx, t.dev, t.model, t.testLoader, t.evalLoss, t.cfg.Reducer, t.upload)
	t.rc.ema.swap()
	if err != nil {
		return err
	}
	rec.TestLossEMA, rec.TestAccEMA = finiteOr0(ev.Loss), ev.Accuracy
	return nil
}

// saveEMA writes the averaged weights into final/.
func (t *trainer) saveEMA(dir string) error {
	if t.rc.ema == nil {
		return nil
	}
	t.rc.ema.swap()
	err := nn.SaveParams(t.dev, filepath.Join(dir, EMAFile), t.params)
	t.rc.ema.swap()
	if err != nil {
		return fmt.Errorf("train: final moving average: %w", err)
	}
	return nil
}
