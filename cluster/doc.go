// Package cluster decides who is in a run: membership (memberlist with
// encrypted gossip), rendezvous and control (gRPC with a shared token), and
// the elastic supervisor that, when a node dies, aborts the communicator,
// bumps the generation, re-rendezvouses the survivors and resumes from the
// last complete checkpoint (shared/DESIGN.md, "Parallel training").
package cluster
