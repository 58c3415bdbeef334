// Package cluster will decide who is in a run: membership (memberlist with
// encrypted gossip), rendezvous and control (gRPC with a shared token), and
// the elastic supervisor that, when a node dies, aborts the communicator,
// bumps the generation, re-rendezvouses the survivors and resumes from the
// last complete checkpoint (shared/DESIGN.md, "Parallel training").
//
// Not written yet: it arrives with the multi-node work, after collective/
// has its TCP ring. Until then macdist runs on one node only, and the package
// holds no code.
package cluster
