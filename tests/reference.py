"""An independent, loop-by-loop definition of what `bptt_core.bptt` must return.

Biases b_h and b_q are added when `params` holds them (a plain `+`, no shared code with the core).

A truncated gradient is the exact gradient of a *surrogate objective*: for the loss at step s, the
backward step h_i → h_{i-1} carries a weight E[s-1, i-1] (0 = cut, 1 = kept, 1/π = randomized),
realised as h_{i-1} ← base_{i-1} + E·(h_{i-1} − base_{i-1}), where `base` is the trajectory at the
unperturbed parameters. At the base point the values are unchanged, but the derivative that flows
through that step is scaled by E. Finite differences of this function (with respect to the parameters,
or to a perturbation added to h_t) therefore give the truncated gradients and dL/dh_t with no
reference to the core's backward code.
"""
import numpy as np

import bptt_core as bc


def run_states(params, xs, h0, activation):
    """Plain loop: h_t = φ(W_hx x_t + W_hh h_{t-1})."""
    h, hs = h0, [h0]
    for x in xs:
        a = x @ params["W_hx"].T + h @ params["W_hh"].T + params.get("b_h", 0.0)
        h = np.tanh(a) if activation == "tanh" else a
        hs.append(h)
    return hs


def step_loss(o, y, loss):
    if loss == "mse":
        return 0.5 * np.sum((o - y) ** 2)
    o = np.atleast_2d(o)
    y = np.atleast_1d(y)
    m = o.max(axis=1, keepdims=True)
    logp = o - m - np.log(np.exp(o - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].sum()


def edge_weights(kind, T, k=None, w=None):
    """E[s-1, i-1]: weight of the step h_i → h_{i-1} in the backward pass of the loss l_s."""
    s, i = np.indices((T, T)) + 1
    if kind == "full":
        return np.ones((T, T))
    if kind == "subsequence":             # cut where i - 1 is a multiple of k (a chunk boundary)
        return np.broadcast_to(np.where((i - 1) % k == 0, 0.0, 1.0), (T, T)).copy()
    if kind == "sliding":                 # l_s reaches steps s-k+1..s; the step into h_{s-k} is cut
        return np.where(i >= s - k + 2, 1.0, 0.0)
    if kind == "tbptt":                   # every k1 steps, the block's losses go back k2 steps from its end
        end = ((s - 1) // k[0] + 1) * k[0]  # the block's nominal last step (past T for a last, short block)
        return np.where(i >= end - k[1] + 2, 1.0, 0.0)
    if kind == "randomized":
        return np.broadcast_to(w, (T, T)).copy()
    raise AssertionError(kind)


def surrogate(params0, xs, ys, h0, activation, loss, E, mask=None):
    """f(params, bumps) = 1/(T·B) Σ_s l_s with weighted backward steps; bumps[t-1] is added to h_t.
    With a boolean `mask` (T, [B]) only those steps count, and the mean is over them."""
    xs = np.asarray(xs, float)
    T = len(xs)
    B = xs.shape[1] if xs.ndim == 3 else 1
    base = run_states(params0, xs, h0, activation)

    def f(params, bumps=None):
        total = 0.0
        for s in range(1, T + 1):
            h = h0
            for i in range(1, s + 1):
                prev = base[i - 1] + E[s - 1, i - 1] * (h - base[i - 1])
                a = xs[i - 1] @ params["W_hx"].T + prev @ params["W_hh"].T + params.get("b_h", 0.0)
                h = np.tanh(a) if activation == "tanh" else a
                if bumps is not None:
                    h = h + bumps[i - 1]
            if mask is None:
                total += step_loss(h @ params["W_qh"].T + params.get("b_q", 0.0), ys[s - 1], loss)
            else:
                keep = np.atleast_1d(mask[s - 1])
                o = np.atleast_2d(h @ params["W_qh"].T + params.get("b_q", 0.0))[keep]
                y = np.asarray(ys[s - 1])
                y = np.atleast_1d(y)[keep] if loss == "softmax_ce" else np.atleast_2d(y)[keep]
                total += step_loss(o, y, loss) if keep.any() else 0.0
        return total / (T * B if mask is None else int(np.sum(mask)))

    return f


def rel_err(a, b):
    """‖a − b‖ / max(‖a‖, ‖b‖), over all entries of two arrays or two dicts with the same keys."""
    if isinstance(a, dict):
        assert set(a) == set(b)
        a, b = (np.concatenate([g[k].ravel() for k in sorted(a)]) for g in (a, b))
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


def problem(T, batch, loss="softmax_ce", seed=0, biases=False, d=3, h=4, q=3, rho=0.95):
    """A random problem for the core tests: params (with biases if asked), xs of shape (T, [batch,] d),
    an initial state h0 and targets ys (labels for softmax_ce, vectors for mse)."""
    rng = np.random.default_rng(seed)
    params = bc.random_params(d, h, q, rho=rho, seed=seed)
    if biases:
        params["b_h"], params["b_q"] = rng.normal(scale=0.3, size=h), rng.normal(scale=0.3, size=q)
    lead = (T,) if batch is None else (T, batch)
    xs = rng.normal(size=lead + (d,))
    h0 = rng.normal(scale=0.5, size=lead[1:] + (h,))
    ys = rng.integers(0, q, size=lead) if loss == "softmax_ce" else rng.normal(size=lead + (q,))
    return params, xs, ys, h0
