// Package mac holds the optimizers of macdist: MAC (Seung, Lee and Ko,
// "MAC: An Efficient Gradient Preconditioning using Mean Activation
// Approximated Curvature", ICDM 2025), the baselines it is compared with,
// and learning-rate schedules.
//
// MAC approximates a layer's Fisher block with the outer product of its
// mean input row ā alone, so that the preconditioned gradient of a Linear or
// Conv2d layer has a closed form (Sherman–Morrison):
//
//	V = Gw − (Gw·m̂)·m̂ᵀ / (λ + ‖m̂‖²)
//
// with Gw = [∇W | ∇b] and m̂ the bias-corrected EMA of ā. It costs one GEMV
// and one rank-1 update per layer and keeps one vector per layer, so its
// state is within a fraction of a percent of momentum SGD's. The first layer
// uses its full input covariance, computed once before training
// (CovarianceAccumulator, SetFirstLayerCovariance), and the value rows of a
// fused attention qkv projection use a vector built from the attention
// scores. shared/MAC.md states every rule; the tests hold the code to it
// with a closed form, a float64 inverse and replays of PyTorch runs.
//
// # Attention
//
// For the fused qkv projection of an attention layer (nn.AttentionTapped),
// the Q and K rows of Gw use the layer's ordinary m̂ and the V rows their
// own m̂_V, the bias-corrected EMA (same β, count and refresh schedule) of
//
//	ā_V = X̄ᵀ·t̄
//
// where, over the attention's batch of sequences of N tokens, X̄[j] is
// token j's input row (with the trailing 1) averaged over the sequences,
// and t̄[j] is the softmax attention that key j receives averaged over the
// sequences, the heads and the queries (Σ t̄ = 1). For a ViT the sequences
// are the images and the tokens their patches and class token.
//
// Window attention (Swin) is the same rule with the windows as the
// sequences, as the authors' code finds each Swin block's heads the way it
// finds a ViT's: the block's input [B, H, W, d] (after norm1) is rolled by
// the block's shift and cut into B·nW windows of N = ws² tokens, so X̄[j]
// is the input row at window position j averaged over every window of
// every image (after the roll: position j of a shifted window holds the
// tokens that the roll brought there), and t̄[j] is the attention that
// window position j receives, averaged over windows, heads and query
// positions, from the softmax that the layer computes, relative position
// bias and shift mask included (a masked pair's logit is lowered by 100,
// so it contributes practically nothing). The qkv layer's ordinary ā is
// the mean of the same window rows, which is the mean of the block's input
// tokens.
//
// Across ranks t̄ is averaged first (EarlyStats), then each rank's X̄ᵀ·t̄
// with the other statistics (Stats): every rank has the same number of
// sequences, so both are the full batch's means.
//
// # Baselines
//
// SGD and AdamW (torch.optim's semantics), KFAC (A and G factors with EMA
// from identity, π-damping, KL clipping, inverses on the host in float64),
// Eva (vectors ā and ḡ) and FOOF (Gw·(E[aaᵀ] + λI)⁻¹) implement the same
// Optimizer and read the layers' nn.KFACTapped taps; New and DefaultOptions
// build any of them by name, as the command line does.
//
// # One step
//
// An Optimizer is driven in a fixed order, the same for every method:
// BeginStep before the forward pass (it switches the layers' taps on for the
// steps that collect statistics, every TCov steps, and off otherwise), then
// forward and backward, then Stats, then Step(lr). Stats returns the step's
// statistics as one flat vector in a fixed order, or nil. That vector is the
// seam for data parallelism: a trainer that all-reduces it to its mean
// across ranks, together with the gradients, gives every replica exactly
// the update one process would compute on the whole batch, and keeps the
// preconditioners of all replicas identical (the authors' code does not
// synchronise them, and its replicas drift).
//
// # Robustness
//
// Hyperparameters are checked at construction and errors name the field.
// A step whose gradients or statistics hold a NaN or an Inf is skipped
// without touching parameters or state, and counted; after MaxNonFinite
// such steps in a row Step returns an error wrapping ErrNonFinite. State and
// SetState (SaveState and LoadState for files) carry everything a resumed
// run needs to continue exactly.
package mac
