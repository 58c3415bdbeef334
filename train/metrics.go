package train

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/macdist/macdist/collective"
)

// metrics are the run's Prometheus series, on a registry of their own so
// that several runs in one process (tests) do not collide. MetricsTable in
// docs/metrics.md describes each; keep the two in step.
type metrics struct {
	reg *prometheus.Registry
	srv *http.Server
	ln  net.Listener

	stepTime, dataWait, optTime, ckptTime prometheus.Histogram

	loss, acc, testLoss, testAcc, lr, epoch, step prometheus.Gauge
	samples, steps, nanSkips, checkpoints         prometheus.Counter
}

// Step times range from a fraction of a millisecond (an MLP on a GPU) to
// tens of seconds (a large model on a CPU): 2× buckets cover it.
var timeBuckets = prometheus.ExponentialBuckets(0.0005, 2, 18)

// allReduceCounters is what a Reducer that counts its traffic offers
// (collective.StepReducer does).
type allReduceCounters interface {
	Counters() collective.BucketCounters
}

// newMetrics makes the run's series, every one labelled with the rank, and
// the all-reduce series when red counts its traffic (red may be nil).
func newMetrics(info map[string]string, rank int, red any) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"rank": strconv.Itoa(rank)}, m.reg)
	hist := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: "macdist_" + name, Help: help, Buckets: timeBuckets})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: "macdist_" + name, Help: help})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "macdist_" + name, Help: help})
	}
	m.stepTime = hist("step_seconds", "Wall time of a training step without the wait for data: forward, backward, all-reduce and optimizer.")
	m.dataWait = hist("data_wait_seconds", "Time a step waited for its batch from the loader.")
	m.optTime = hist("optimizer_step_seconds", "Time of the optimizer's Step (preconditioning and update).")
	m.ckptTime = hist("checkpoint_seconds", "Time to write one checkpoint, MANIFEST included.")
	m.loss = gauge("train_loss", "Loss of the last training batch.")
	m.acc = gauge("train_accuracy", "Accuracy of the last training batch, in [0, 1].")
	m.testLoss = gauge("test_loss", "Evaluation loss after the last finished epoch.")
	m.testAcc = gauge("test_accuracy", "Evaluation accuracy after the last finished epoch, in [0, 1].")
	m.lr = gauge("learning_rate", "Learning rate of the last step.")
	m.epoch = gauge("epoch", "Current epoch, from 1.")
	m.step = gauge("step", "Training steps taken in the run, resumed ones included.")
	m.samples = counter("samples_total", "Training samples processed by this process.")
	m.steps = counter("steps_total", "Training steps taken by this process.")
	m.nanSkips = counter("nan_skipped_steps_total", "Steps the optimizer skipped because a loss, gradient or statistic was NaN or infinite.")
	m.checkpoints = counter("checkpoints_total", "Checkpoints written.")
	runInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "macdist_run_info", Help: "Always 1; its labels describe the run.", ConstLabels: info,
	})
	runInfo.Set(1)
	reg.MustRegister(m.stepTime, m.dataWait, m.optTime, m.ckptTime,
		m.loss, m.acc, m.testLoss, m.testAcc, m.lr, m.epoch, m.step,
		m.samples, m.steps, m.nanSkips, m.checkpoints, runInfo)
	if c, ok := red.(allReduceCounters); ok {
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "macdist_allreduce_seconds_total",
				Help: "Time spent in the all-reduce of gradients and statistics, overlapped with backward or not."},
				func() float64 { return c.Counters().ReduceSeconds }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "macdist_allreduce_bytes_total",
				Help: "Bytes of gradients and statistics all-reduced by this rank."},
				func() float64 { return float64(c.Counters().Bytes) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "macdist_allreduce_buckets",
				Help: "All-reduce collectives per step (gradient buckets)."},
				func() float64 { return float64(c.Counters().Buckets) }),
		)
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// serve listens on addr and serves /metrics until close. Listening
// happens here, so that a taken port fails the run before training.
func (m *metrics) serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("train: --metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	m.ln = ln
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			// Nothing to do: the run goes on without its metrics endpoint.
			_ = err
		}
	}()
	return nil
}

// addr is where metrics are served, with the real port when addr was ":0".
func (m *metrics) addr() string {
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

func (m *metrics) close() {
	if m.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
}
