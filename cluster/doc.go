// Package cluster decides who is in a run and keeps the run going when
// that changes: membership, rendezvous and control, and the elastic agent
// that supervises a node's worker processes (`macdist launch`), in the
// manner of torchrun's elastic agent.
//
// # Membership
//
// Every node runs a launch agent that gossips with hashicorp/memberlist
// (SWIM: a dead node is declared within seconds). The gossip is encrypted
// with AES-256-GCM under a key derived from the cluster key (--cluster-key
// or $MACDIST_CLUSTER_KEY); a node with another key can neither join nor be
// heard. The key is required unless every address is loopback, and nothing
// listens beyond loopback unless --bind asks for it. A node's metadata
// (NodeMeta) carries its control address, process count, devices, config
// hash, start time, and the generation it finished.
//
// # Control and rendezvous
//
// Every agent serves the gRPC service of controlpb (generated code is
// committed; `make proto` regenerates it) on its gossip port + 1 (with
// port 0, as `launch --standalone` binds, a gossip port whose next one is
// free), so that either address finds it. Every call
// carries a token derived from the key, checked by interceptors (a wrong
// token is Unauthenticated). With a key, the transport is TLS 1.3 with an
// Ed25519 identity derived from the key as well, pinned by the clients:
// neither the token nor the ring secret crosses the network in clear, and a
// server without the key fails the handshake. Secrets are derived with
// HMAC-SHA256 under distinct labels, so none reveals another.
//
// A standalone launch makes up a random key, so that other users of the
// machine can neither join its gossip nor call its control service. Its
// agent publishes that key (AgentConfig.PublishKey, PublishLocalKey) in a
// directory only its user can read, $XDG_RUNTIME_DIR/macdist or
// /tmp/macdist-UID, named by the control port, and removes it when it
// stops; `macdist status` at a loopback address without a key reads it
// (LocalKey), passing over the file of an agent that is gone.
//
// The coordinator is the oldest alive member (start time, then name): it
// changes only when it dies, and a late joiner never takes it over. Its
// Rendezvous runs rounds: an agent's Join blocks until the round closes,
// which happens when at least MIN nodes joined and either every alive
// member with the run's config hash joined, MAX joined, or a last call
// (--last-call) passed since MIN was reached. Below MIN for --rdzv-timeout,
// Join fails with a message naming who came. Closing assigns ranks in the
// natural order of node names (node-2 before node-10) times local rank, so
// the same nodes always get the same ranks; the generation number
// (monotonic across coordinator changes, since every agent records the
// generations it ran); every worker's ring address; and a fresh random ring
// token for the collective's handshake, so that workers of an older
// generation or another run cannot connect. A joiner whose config hash
// differs is refused with the settings that differ, by name and value; a
// node that would exceed MAX waits as a spare.
//
// # Workers
//
// Before joining, the agent binds one TCP listener per local process and
// reports their addresses; the worker (`macdist node`) inherits its
// listener as fd 3, so no port is chosen twice and nothing races to bind.
// Its place in the generation comes in the environment (WorkerSpec.Env,
// read by WorkerFromEnv); fd 4 is a pipe for "step N" reports. Workers run
// in their own process group with a parent-death signal, and also watch
// their parent: a dead agent leaves no worker behind. Rank 0's output goes
// to the agent's; the other ranks' stdout is dropped and their stderr is
// prefixed with their rank.
//
// # Elastic recovery
//
// An agent ends its generation when a worker exits with an error, when a
// node of the generation leaves the membership without having finished,
// or when its heartbeat (every 500 ms) learns that the coordinator opened a
// new round (a node failed elsewhere, or a late joiner arrived while the
// run had room). It then stops its workers (SIGTERM and SIGCONT, so a
// stopped one goes too; SIGKILL after a grace period), which abort their
// rings, and joins the next round. A stalled peer is caught by the ring's
// own timeout (--ring-timeout), which fails the step on its neighbours.
// Only failures of this node's own workers count against --max-restarts;
// a lost or added node does not.
//
// After a restart the rank holding the newest complete checkpoint (rank 0,
// or a survivor when rank 0's node was lost) broadcasts it (parameters,
// optimizer state, progress) to the other ranks (train.Broadcaster). Rank 0
// writes the checkpoints; with several nodes it also sends each to the first
// worker of every other node, which keeps a copy in its own run directory
// (--checkpoint-copies, on by default; a copy already there, in a shared
// directory, is left alone). So the nodes need not share a file system: a
// run that loses the node of rank 0 resumes from a survivor's copy.
// --batch is the global batch; each of R ranks takes batch/R (refused if
// it does not divide), so a checkpoint resumes unchanged on another world
// size; --scale-lr keeps the batch per rank and multiplies the learning
// rate by R instead (train then refuses to resume across a change of R,
// since the hashed settings change).
//
// A node whose workers finished announces it (NodeMeta.Done) and lingers
// until the other nodes of its generation finished or left, so that its
// leaving is not mistaken for a failure.
//
// # Metrics
//
// With `launch --metrics-addr`, the agent serves macdist_world_size,
// macdist_generation, macdist_restarts_total and macdist_members_alive,
// one series per rank it hosts (labels rank and node); it outlives the
// workers, so restarts stay visible between generations.
package cluster
