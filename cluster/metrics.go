package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// agentMetrics are the run's shape as this node's agent sees it, one
// series per rank the node hosts (label rank), so that they line up with
// the training metrics every rank serves. The agent serves them rather
// than the workers because it outlives generations: restarts and members
// alive stay visible while no worker runs.
type agentMetrics struct {
	reg                                *prometheus.Registry
	world, generation, restarts, alive *prometheus.GaugeVec
	ln                                 net.Listener
	srv                                *http.Server
}

func newAgentMetrics() *agentMetrics {
	m := &agentMetrics{reg: prometheus.NewRegistry()}
	vec := func(name, help string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "macdist_" + name, Help: help}, []string{"rank", "node"})
		m.reg.MustRegister(g)
		return g
	}
	m.world = vec("world_size", "Ranks in the current generation.")
	m.generation = vec("generation", "The current generation: it goes up at every rendezvous.")
	m.restarts = vec("restarts_total", "Restarts of this node's workers after failures (lost or added nodes not counted).")
	m.alive = vec("members_alive", "Alive members of the cluster, as this node's gossip sees them.")
	return m
}

// set replaces the series by those of the ranks [base, base+procs).
func (m *agentMetrics) set(node string, base, procs, world int, gen int64, restarts, alive int) {
	for _, v := range []*prometheus.GaugeVec{m.world, m.generation, m.restarts, m.alive} {
		v.Reset()
	}
	for r := base; r < base+procs; r++ {
		l := prometheus.Labels{"rank": strconv.Itoa(r), "node": node}
		m.world.With(l).Set(float64(world))
		m.generation.With(l).Set(float64(gen))
		m.restarts.With(l).Set(float64(restarts))
		m.alive.With(l).Set(float64(alive))
	}
}

func (m *agentMetrics) serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster: --metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	m.ln = ln
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the run goes on without its metrics
		}
	}()
	return nil
}

func (m *agentMetrics) close() {
	if m.srv != nil {
		m.srv.Close()
	}
}
