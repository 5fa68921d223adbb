"""bptt_core: the small, verified engine behind the book *Backpropagation Through Time*.

The model (the book's notation, after D2L; seed 003 writes U, W, V, s_t for W_hx, W_hh, W_qh, h_t)::

    a_t = W_hx x_t + W_hh h_{t-1} [+ b_h]   pre-activation
    h_t = φ(a_t)                           φ ∈ {"identity", "tanh"}
    o_t = W_qh h_t [+ b_q]                 output
    L   = 1/(T·B) Σ_t Σ_b l(o_tb, y_tb)   mean loss over time steps and batch examples

for t = 1..T, with h_0 given (zeros by default). Parameters are a dict
``{"W_hx": (h, d), "W_hh": (h, h), "W_qh": (q, h)}`` of float64 arrays; as in the sources there are no
biases, unless the dict also holds ``b_h`` (h,) and/or ``b_q`` (q,): then every gradient includes them.
One sequence has ``xs`` of shape (T, d); a mini-batch has (T, B, d).

Array index conventions: ``hs[t]`` is h_t for t = 0..T (``hs[0]`` = h_0); ``os[t-1]`` is o_t and
``dL_dh[t-1]`` is dL/dh_t for t = 1..T. Total derivatives are written d (dL/dh_t), partial ones ∂.

Only numpy is imported. Plotting and widgets live elsewhere (the chapters and ``bptt_viz``).
"""
from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ACTIVATIONS", "LOSSES", "PARAM_NAMES", "BIAS_NAMES", "BPTTOverflowWarning",
    "Forward", "Gradient", "Subsequence", "Sliding", "TBPTT", "Randomized",
    "forward", "bptt", "bptt_checkpointed", "loss_value", "numerical_gradient", "random_params",
    "spectral_radius", "with_spectral_radius", "clip_by_global_norm",
    "gradient_norms", "gradient_profile", "state_jacobian", "jacobian_norms", "connectivity",
    "backprop_states", "state_sensitivities", "rtrl",
    "recurrent_matrix", "power_norms", "clip_by_value", "train", "Training", "Workspace",
    "train_stream", "StreamTraining",
]

ACTIVATIONS = ("identity", "tanh")
LOSSES = ("softmax_ce", "mse")
PARAM_NAMES = ("W_hx", "W_hh", "W_qh")
BIAS_NAMES = ("b_h", "b_q")


class BPTTOverflowWarning(RuntimeWarning):
    """Issued once per call when a value left the float64 range (the exploding regime).

    Overflowed entries are reported as ±inf (+inf where inf − inf lost the sign); never NaN.
    """


# --------------------------------------------------------------------------------------------
# Input checking: every message names the argument, what was expected and what came.
# --------------------------------------------------------------------------------------------

def _fail(name, expected, got):
    raise ValueError(f"{name}: expected {expected}, got {got}")


def _float_array(name, value):
    """`value` as a finite float64 array, or a ValueError naming `name`."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        _fail(name, "an array of real numbers", type(value).__name__)
    if not _all_finite(arr):
        _fail(name, "finite values", f"{np.size(arr) - np.isfinite(arr).sum()} non-finite entries")
    return arr


def _all_finite(arr):
    """True if no entry is inf or NaN; a sum first, so that large inputs need no full-size temporary."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(arr.sum())) or bool(np.isfinite(arr).all())


def _check_params(params):
    """The three weight matrices as float64 arrays, with shapes (h, d), (h, h), (q, h), and the
    optional biases b_h (h,) and b_q (q,)."""
    if (not isinstance(params, dict) or not set(PARAM_NAMES) <= set(params)
            or not set(params) <= set(PARAM_NAMES + BIAS_NAMES)):
        got = sorted(params, key=str) if isinstance(params, dict) else type(params).__name__
        _fail("params", f"a dict with the keys {list(PARAM_NAMES)} and optionally {list(BIAS_NAMES)}", got)
    p = {k: _float_array(f"params['{k}']", params[k]) for k in PARAM_NAMES + BIAS_NAMES if k in params}
    for k in PARAM_NAMES:
        if p[k].ndim != 2:
            _fail(f"params['{k}']", "a 2-D matrix", f"shape {p[k].shape}")
    h = p["W_hh"].shape[0]
    if p["W_hh"].shape != (h, h):
        _fail("params['W_hh']", "a square matrix (h, h)", f"shape {p['W_hh'].shape}")
    if p["W_hx"].shape[0] != h:
        _fail("params['W_hx']", f"shape (h, d) with h = {h} (from W_hh)", f"shape {p['W_hx'].shape}")
    if p["W_qh"].shape[1] != h:
        _fail("params['W_qh']", f"shape (q, h) with h = {h} (from W_hh)", f"shape {p['W_qh'].shape}")
    for k, n, src in (("b_h", h, "W_hh"), ("b_q", p["W_qh"].shape[0], "W_qh")):
        if k in p and p[k].shape != (n,):
            _fail(f"params['{k}']", f"a vector of shape ({n},) (from {src})", f"shape {p[k].shape}")
    return p


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        _fail(name, f"one of {list(choices)}", repr(value))
    return value


def _check_xs(xs, d):
    xs = _float_array("xs", xs)
    if xs.ndim not in (2, 3) or xs.shape[0] < 1 or xs.shape[-1] != d or 0 in xs.shape:
        _fail("xs", f"shape (T, d) or (T, B, d) with T, B >= 1 and d = {d} (columns of W_hx)",
              f"shape {xs.shape}")
    return xs


def _check_h0(h0, batch_shape, h):
    """h_0 of shape `batch_shape` + (h,); zeros when None."""
    if h0 is None:
        return np.zeros(batch_shape + (h,))
    h0 = _float_array("h0", h0)
    if h0.shape != batch_shape + (h,):
        _fail("h0", f"shape {batch_shape + (h,)} (batch shape of xs, then h)", f"shape {h0.shape}")
    return h0


def _check_ys(ys, loss, xs_shape, q):
    """Integer labels in [0, q) of shape (T, [B]) for softmax_ce; targets (T, [B,] q) for mse."""
    lead = xs_shape[:-1]
    if loss == "mse":
        ys = _float_array("ys", ys)
        if ys.shape != lead + (q,):
            _fail("ys", f"mse targets of shape {lead + (q,)} (xs's (T, [B]), then q)", f"shape {ys.shape}")
        return ys
    ys = np.asarray(ys)
    if ys.dtype.kind not in "iu":
        _fail("ys", "integer class labels (an integer dtype)", f"dtype {ys.dtype}")
    if ys.shape != lead:
        _fail("ys", f"labels of shape {lead} (xs's (T, [B]))", f"shape {ys.shape}")
    if ys.size and (ys.min() < 0 or ys.max() >= q):
        _fail("ys", f"labels in [0, {q - 1}] (q = {q} outputs)", f"labels from {ys.min()} to {ys.max()}")
    return ys.astype(np.intp, copy=False)


def _check_int(name, value, least):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        _fail(name, f"an integer >= {least}", repr(value))
    return int(value)


def _check_positive(name, value, upper=None):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value) and value > 0
    if not ok or (upper is not None and value > upper):
        _fail(name, "a real number in (0, 1]" if upper == 1 else "a finite real number > 0", repr(value))
    return float(value)


def _check_problem(params, xs, ys, h0, activation, loss):
    """Every argument of a gradient computation, checked and converted (see the _check_* helpers)."""
    p = _check_params(params)
    xs = _check_xs(xs, p["W_hx"].shape[1])
    activation = _check_choice("activation", activation, ACTIVATIONS)
    loss = _check_choice("loss", loss, LOSSES)
    ys = _check_ys(ys, loss, xs.shape, p["W_qh"].shape[0])
    h0 = _check_h0(h0, xs.shape[1:-1], p["W_hh"].shape[0])
    return p, xs, ys, h0, activation, loss


# --------------------------------------------------------------------------------------------
# Overflow: report it, never let it turn into NaN.
# --------------------------------------------------------------------------------------------

class _Overflow:
    """Collects what overflowed during one call, then warns once."""

    def __init__(self):
        self.what = []

    def check(self, name, arr):
        """Replace NaN (from inf − inf or 0·inf; inputs are finite) by +inf and note overflow."""
        if not _all_finite(arr):
            self.what.append(name)
            arr[np.isnan(arr)] = np.inf
        return arr

    def warn(self):
        if self.what:
            warnings.warn(f"float64 overflow in {', '.join(self.what)} (exploding regime); "
                          "overflowed entries are ±inf", BPTTOverflowWarning, stacklevel=4)


# --------------------------------------------------------------------------------------------
# The model: forward pass and losses.
# --------------------------------------------------------------------------------------------

@dataclass
class Forward:
    """hs: (T+1, [B,] h) with hs[0] = h_0; os: (T, [B,] q)."""
    hs: np.ndarray
    os: np.ndarray


def _phi(a, activation):
    """h_t = φ(a_t)."""
    return np.tanh(a) if activation == "tanh" else a


def _dphi(hs, activation, out=None):
    """φ'(a_t) from h_t: 1 − h_t² for tanh; None (meaning 1) for identity. Written into `out` if given."""
    if activation != "tanh":
        return None
    out = np.multiply(hs, hs, out=out)
    return np.subtract(1.0, out, out=out)


def _rows(a):
    """`a` as a 2-D array of rows (time and batch folded together), so that one product covers all t."""
    return a.reshape(-1, a.shape[-1])


def _states(W_hx, W_hh, xs, h0, activation, out=None, b_h=None):
    """h_t = φ(W_hx x_t + W_hh h_{t-1} [+ b_h]), t = 1..T; returns hs with hs[0] = h0 (written into `out`
    if given). The input projection W_hx x_t (+ b_h) is one matrix product for all t; only the recurrence loops.
    """
    hs = np.empty((xs.shape[0] + 1,) + h0.shape) if out is None else out
    hs[0] = h0
    np.matmul(_rows(xs), W_hx.T, out=_rows(hs[1:]))
    if b_h is not None:
        hs[1:] += b_h
    step = np.empty(h0.shape)
    for t in range(1, len(hs)):
        hs[t] += np.matmul(hs[t - 1], W_hh.T, out=step)
        if activation == "tanh":
            np.tanh(hs[t], out=hs[t])
    return hs


def _outputs(p, hs, out=None):
    """o_t = W_qh h_t [+ b_q] for the given states (rows of any leading shape)."""
    os = np.empty(hs.shape[:-1] + p["W_qh"].shape[:1]) if out is None else out
    np.matmul(_rows(hs), p["W_qh"].T, out=_rows(os))
    if "b_q" in p:
        os += p["b_q"]
    return os


def forward(params, xs, h0=None, activation="tanh"):
    """Forward pass: h_t = φ(W_hx x_t + W_hh h_{t-1} [+ b_h]), o_t = W_qh h_t [+ b_q]
    (chapter "The unrolled RNN")."""
    p = _check_params(params)
    xs = _check_xs(xs, p["W_hx"].shape[1])
    activation = _check_choice("activation", activation, ACTIVATIONS)
    h0 = _check_h0(h0, xs.shape[1:-1], p["W_hh"].shape[0])
    over = _Overflow()
    with np.errstate(all="ignore"):
        hs = over.check("hidden states", _states(p["W_hx"], p["W_hh"], xs, h0, activation, b_h=p.get("b_h")))
        os = over.check("outputs", hs[1:] @ p["W_qh"].T if "b_q" not in p else _outputs(p, hs[1:]))
    over.warn()
    return Forward(hs, os)


def _softmax_ce(os, ys, mask=None):
    """l = −log ŷ[y] with ŷ = softmax(o); ∂l/∂o = ŷ − onehot(y), written over `os`. An infinite logit
    gives the limit. Steps where `mask` is False contribute neither loss nor gradient."""
    hi, lo = os.max(), os.min()
    z = os
    if hi - lo < 600.0:                      # one shift for all rows: exp cannot overflow or reach 0
        z -= hi
    else:                                    # per-row shift; inf − inf marks a tie with an infinite max
        z -= os.max(axis=-1, keepdims=True)
        z[np.isnan(z)] = 0.0
    rows = z.reshape(-1, z.shape[-1])
    label = (np.arange(len(rows)), ys.ravel())
    picked = rows[label]
    np.exp(z, out=z)
    total = z.sum(axis=-1, keepdims=True)
    per_row = np.log(total).ravel() - picked
    z /= total                               # ŷ
    rows[label] -= 1.0
    if mask is not None:
        per_row = per_row * mask.ravel()
        z *= mask[..., None]
    return float(per_row.sum()), z


def _loss_terms(os, ys, loss, mask=None):
    """(Σ l(o_t, y_t), ∂l/∂o_t for every t): softmax_ce: −log ŷ[y], ∂l/∂o = ŷ − onehot(y);
    mse: ½‖o − y‖², ∂l/∂o = o − y. ∂l/∂o is written over `os`. Steps where `mask` is False count for nothing."""
    if loss == "mse":
        r = np.subtract(os, ys, out=os)
        if mask is not None:
            r *= mask[..., None]
        return 0.5 * float(np.sum(r * r)), r
    return _softmax_ce(os, ys, mask)


def _mean_scale(xs, mask=None):
    """1/(T·B): the factor of D2L's mean loss (B = 1 for one sequence); 1/(number of steps counted)
    when a mask selects the steps that carry a loss."""
    if mask is not None:
        return 1.0 / int(mask.sum())
    return 1.0 / (xs.shape[0] * int(np.prod(xs.shape[1:-1])))


def _check_mask(mask, lead):
    """None, or a boolean array of shape (T, [B]) with at least one True."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != lead or not mask.any():
        got = f"dtype {mask.dtype}, shape {mask.shape}, {int(mask.sum()) if mask.dtype == bool else '?'} True"
        _fail("mask", f"a boolean array of shape {lead} (xs's (T, [B])) with at least one True", got)
    return mask


def loss_value(params, xs, ys, *, activation="tanh", loss="softmax_ce", h0=None, mask=None):
    """L = 1/(T·B) Σ_t Σ_b l(o_tb, y_tb), or the mean over the steps where `mask` is True:
    the objective whose gradient `bptt` computes."""
    fw = forward(params, xs, h0, activation)
    loss = _check_choice("loss", loss, LOSSES)
    ys = _check_ys(ys, loss, np.shape(xs), fw.os.shape[-1])
    mask = _check_mask(mask, np.shape(xs)[:-1])
    with np.errstate(all="ignore"):
        total, _ = _loss_terms(fw.os, ys, loss, mask)
    return total * _mean_scale(np.asarray(xs), mask)


# --------------------------------------------------------------------------------------------
# Truncation strategies: they change the backward pass only, never the forward pass.
# --------------------------------------------------------------------------------------------

class Subsequence:
    """Subsequence truncated BPTT (seed 001), D2L's "regular truncation" as its figure draws it,
    Sutskever's TBPTT(k, k), Williams & Peng's BPTT(k; k).

    Steps are split into chunks 1..k, k+1..2k, ...; no gradient crosses a chunk boundary: h_k, h_2k, ...
    are constants for the chunk after them. `bptt` then works chunk by chunk, so its memory does not
    grow with T. Its ``dL_dh[t-1]`` is the derivative of the losses of t's chunk, through that chunk only.
    """

    def __init__(self, k):
        self.k = _check_int("k", k, 1)

    def step_weights(self, T):
        """w[t-1] multiplies the backward step h_t → h_{t-1}: 0 where t-1 ends a chunk, else 1."""
        t = np.arange(1, T + 1)
        return np.where((t - 1) % self.k == 0, 0.0, 1.0)

    def __repr__(self):
        return f"Subsequence(k={self.k})"


class Sliding:
    """k-truncated BPTT (seed 001), Sutskever's TBPTT(1, k), Williams & Peng's BPTT(k; 1).

    The loss at step t back-propagates through steps t, t-1, ..., t-k+1 only (h_{t-k} is a constant
    for it). Costs O(T·k). Its ``dL_dh[t-1]`` sums, over the losses l_s whose window holds t
    (t <= s <= t+k-1), their derivative with respect to h_t inside that window.
    """

    def __init__(self, k):
        self.k = _check_int("k", k, 1)

    def __repr__(self):
        return f"Sliding(k={self.k})"


class TBPTT:
    """General truncation: Sutskever's TBPTT(k1, k2) (2013), Williams & Peng's BPTT(k2; k1) (1990).

    Every k1 steps, the losses of those k1 steps are back-propagated through k2 >= k1 steps. Steps are
    grouped into blocks 1..k1, k1+1..2k1, ...; the backward pass of the block whose nominal last step is
    e = n·k1 starts at h_e (the last block may end earlier, at T), collects the block's losses on its way
    down and stops at h_{e-k2+1}: h_{e-k2} is a constant for it. So l_s reaches h_t for e-k2+1 <= t <= s.
    TBPTT(k, k) is Subsequence(k) and TBPTT(1, k) is Sliding(k); k2 > k1 lets the first losses of a
    block see k2 - k1 steps into the past that Subsequence(k1) cuts. Costs O(T·k2/k1) backward steps.
    Its ``dL_dh[t-1]`` sums, over the blocks whose window holds t, the derivative of their losses with
    respect to h_t inside that window.
    """

    def __init__(self, k1, k2):
        self.k1 = _check_int("k1", k1, 1)
        self.k2 = _check_int("k2", k2, 1)
        if self.k2 < self.k1:
            _fail("k2", f"an integer >= k1 = {self.k1} (each block's losses go back at least through the block)",
                  repr(k2))

    def reach(self, T):
        """lo[s-1]: the earliest step t whose h_t the loss l_s reaches, max(1, e - k2 + 1), for s = 1..T."""
        s = np.arange(1, T + 1)
        return np.maximum(1, ((s - 1) // self.k1 + 1) * self.k1 - self.k2 + 1)

    def __repr__(self):
        return f"TBPTT(k1={self.k1}, k2={self.k2})"


class Randomized:
    """Randomized truncation (D2L 9.7.1.3, after Tallec & Ollivier 2017).

    Every backward step h_t → h_{t-1} is multiplied by ξ_t, with P(ξ_t = 1/π) = π and P(ξ_t = 0) = 1 − π,
    independently; E[ξ_t] = 1, so E[grads] is the full gradient. Each call of `bptt` draws new ξ from
    `rng` (a seed or a numpy Generator). Its ``dL_dh`` holds the derivatives with these weights.
    """

    def __init__(self, pi, rng=None):
        self.pi = _check_positive("pi", pi, upper=1)
        if rng is not None and not isinstance(rng, (numbers.Integral, np.random.Generator)):
            _fail("rng", "None, an integer seed or a numpy Generator", type(rng).__name__)
        self.rng = np.random.default_rng(rng)

    def step_weights(self, T):
        """ξ_t for t = 1..T (ξ_1 multiplies the step into the constant h_0), freshly drawn."""
        return np.where(self.rng.random(T) < self.pi, 1.0 / self.pi, 0.0)

    def __repr__(self):
        return f"Randomized(pi={self.pi})"


def _check_truncation(truncation):
    if truncation is not None and not isinstance(truncation, (Subsequence, Sliding, TBPTT, Randomized)):
        _fail("truncation", "None, Subsequence(k), Sliding(k), TBPTT(k1, k2) or Randomized(pi)", repr(truncation))
    return truncation


def connectivity(truncation, T):
    """C[s-1, t-1]: the factor with which the loss l_s sends gradient to the step that makes h_t.

    Full BPTT: 1 for t <= s. Subsequence: 1 inside s's chunk. Sliding(k): 1 for s-k+1 <= t <= s.
    TBPTT(k1, k2): 1 for e-k2+1 <= t <= s, e the last step of s's block of k1.
    Randomized: the product ξ_{t+1}···ξ_s of one fresh draw. Zero above the diagonal.
    """
    _check_truncation(truncation)
    T = _check_int("T", T, 1)
    s, t = np.indices((T, T))
    if truncation is None:
        return (t <= s).astype(float)
    if isinstance(truncation, Sliding):
        return ((t <= s) & (t > s - truncation.k)).astype(float)
    if isinstance(truncation, TBPTT):
        return ((t <= s) & (t + 1 >= truncation.reach(T)[:, None])).astype(float)
    w = truncation.step_weights(T)
    c = np.ones((T, T))
    for i in range(1, T):                 # edge h_{i+1} → h_i is crossed by every path s > i >= t
        c[i:, :i] *= w[i]
    return np.tril(c)


# --------------------------------------------------------------------------------------------
# The backward pass.
# --------------------------------------------------------------------------------------------

@dataclass
class Gradient:
    """loss: L; grads: dL/dW for W_hx, W_hh, W_qh; dL_dh: (T, [B,] h), dL_dh[t-1] = dL/dh_t
    (see the truncation classes for what it holds when truncated; None if not kept)."""
    loss: float
    grads: dict
    dL_dh: np.ndarray | None


class Workspace:
    """Work arrays that `bptt` reuses from one call to the next: pass the same one to every call of a
    training loop (`train` does), one workspace per thread.

    Without one, each call allocates its hidden states, outputs and φ'(a_t) afresh. glibc hands
    multi-megabyte blocks back to the operating system when they are freed, so the next call
    page-faults them in again: about 14% of a call at the size of benchmarks/bench_speed.py. With one,
    they are allocated once per shape. Nothing `bptt` returns shares memory with a workspace; it holds
    the arrays of the last problem it served until it is dropped.
    """

    def __init__(self):
        self._arrays = {}

    def array(self, name, shape):
        """An uninitialised float64 array of this shape, the same one as last time if the shape is unchanged."""
        a = self._arrays.get(name)
        if a is None or a.shape != shape:
            a = self._arrays[name] = np.empty(shape)
        return a


class _Fresh:
    """The workspace of a call that was given none: every array is new (used as the class itself)."""

    @staticmethod
    def array(name, shape):
        return np.empty(shape)


def _check_workspace(workspace):
    if workspace is None:
        return _Fresh
    if not isinstance(workspace, Workspace):
        _fail("workspace", "None or a bptt_core.Workspace", type(workspace).__name__)
    return workspace


def _backprop_states(W_hh, dL_dh, dphi, weights):
    """dL/dh_t = W_qhᵀ ∂L/∂o_t + w_{t+1} W_hhᵀ δ_{t+1}, δ_t = φ'(a_t) ⊙ dL/dh_t, from t = T down to 1.

    `dL_dh` enters holding W_qhᵀ ∂L/∂o_t and leaves holding dL/dh_t; `dphi` (φ'(a_t), or None for 1)
    is overwritten by δ. Returns (dL_dh, δ). w = 1 (weights None) is full BPTT.
    """
    delta = dL_dh if dphi is None else dphi
    step = np.empty(dL_dh.shape[1:])
    for t in range(len(dL_dh) - 1, -1, -1):
        if dphi is not None:
            np.multiply(dL_dh[t], dphi[t], out=delta[t])
        if t:
            np.matmul(delta[t], W_hh, out=step)
            if weights is not None:
                step *= weights[t]
            dL_dh[t - 1] += step
    return dL_dh, delta


def _weight_grads(xs, hs, dL_do, delta, p=()):
    """dL/dW_qh = Σ_t ∂L/∂o_t h_tᵀ, dL/dW_hx = Σ_t δ_t x_tᵀ, dL/dW_hh = Σ_t δ_t h_{t-1}ᵀ,
    with δ_t = dL/da_t = φ'(a_t) ⊙ dL/dh_t; each sum over t (and b) is one matrix product.
    If the parameters `p` hold biases: dL/db_h = Σ_t δ_t and dL/db_q = Σ_t ∂L/∂o_t."""
    delta = _rows(delta)
    grads = {"W_hx": delta.T @ _rows(xs),
             "W_hh": delta.T @ _rows(hs[:-1]),
             "W_qh": _rows(dL_do).T @ _rows(hs[1:])}
    if "b_h" in p:
        grads["b_h"] = delta.sum(axis=0)
    if "b_q" in p:
        grads["b_q"] = _rows(dL_do).sum(axis=0)
    return grads


def _forward_for_backward(p, xs, ys, h0, activation, loss, scale, mask, ws, keep_dL_dh):
    """The forward pass and what every backward pass starts from: (hs, Σ l, ∂L/∂o_t = ∂l/∂o_t / (T·B),
    φ'(a_t) or None, and W_qhᵀ ∂L/∂o_t, the direct part of dL/dh_t, in a fresh array if it is kept)."""
    lead, h = xs.shape[:-1], h0.shape[-1]
    hs = _states(p["W_hx"], p["W_hh"], xs, h0, activation, out=ws.array("hs", (lead[0] + 1,) + h0.shape),
                 b_h=p.get("b_h"))
    os = _outputs(p, hs[1:], out=ws.array("os", lead + (p["W_qh"].shape[0],)))
    total, dL_do = _loss_terms(os, ys, loss, mask)
    dL_do *= scale
    dL_dh = np.empty(lead + (h,)) if keep_dL_dh else ws.array("dL_dh", lead + (h,))
    np.matmul(_rows(dL_do), p["W_qh"], out=_rows(dL_dh))
    dphi = _dphi(hs[1:], activation, out=ws.array("dphi", lead + (h,))) if activation == "tanh" else None
    return hs, total, dL_do, dphi, dL_dh


def _chunk(p, xs, ys, h0, activation, loss, scale, weights, mask, ws, keep_dL_dh):
    """Forward then backward over one stretch of steps that starts from the constant h0.

    Returns (Σ l, grads, dL/dh, last state). Full BPTT is one chunk of length T.
    """
    hs, total, dL_do, dphi, dL_dh = _forward_for_backward(p, xs, ys, h0, activation, loss, scale, mask, ws,
                                                          keep_dL_dh)
    dL_dh, delta = _backprop_states(p["W_hh"], dL_dh, dphi, weights)
    return total, _weight_grads(xs, hs, dL_do, delta, p), dL_dh, hs[-1].copy()


def _sliding_states(W_hh, dL_dh, dphi, k):
    """dL/dh_t under Sliding(k): Σ_{s=t}^{t+k-1} (dh_s/dh_t)ᵀ W_qhᵀ ∂L/∂o_s, one lag at a time.

    `v[i]` holds the gradient reaching state i from the loss at i + lag, for all i at once (O(T·k)).
    """
    v = dL_dh.copy()
    for lag in range(1, min(k, len(dL_dh))):
        v = v[1:] if dphi is None else v[1:] * dphi[1:len(v)]
        v = v @ W_hh
        dL_dh[:-lag] += v
    return dL_dh


def _bptt_sliding(p, xs, ys, h0, activation, loss, scale, k, mask, ws, keep_dL_dh):
    hs, total, dL_do, dphi, dL_dh = _forward_for_backward(p, xs, ys, h0, activation, loss, scale, mask, ws,
                                                          keep_dL_dh)
    dL_dh = _sliding_states(p["W_hh"], dL_dh, dphi, k)
    delta = dL_dh if dphi is None else np.multiply(dL_dh, dphi, out=dphi)
    return total, _weight_grads(xs, hs, dL_do, delta, p), dL_dh


def _tbptt_states(W_hh, direct, dphi, k1, k2, dL_dh=None):
    """δ_t under TBPTT(k1, k2): one backward pass per block, all blocks side by side, one lag at a time.

    At lag j the pass of the block with nominal end e is at step t = e - j: v = dL/dh_t (inside the
    window) gains W_qhᵀ ∂L/∂o_t while t is in the block (j < k1), δ_t += φ'(a_t) ⊙ v, and
    v ← W_hhᵀ (φ'(a_t) ⊙ v) moves to h_{t-1}; the pass stops after j = k2 - 1. Within one lag the
    blocks sit at distinct steps. `dL_dh`, if given (zeros), receives Σ_blocks v. Returns δ (T, [B,] h).
    """
    T = len(direct)
    ends = np.arange(1, -(-T // k1) + 1) * k1 - 1           # 0-based nominal last step of each block
    v = np.zeros((len(ends),) + direct.shape[1:])
    delta = np.zeros(direct.shape)
    for lag in range(min(k2, ends[-1] + 1)):
        t = ends - lag
        on = np.nonzero((t >= 0) & (t < T))[0]
        t = t[on]
        if lag < k1:
            v[on] += direct[t]
        if dL_dh is not None:
            dL_dh[t] += v[on]
        d = v[on] if dphi is None else v[on] * dphi[t]
        delta[t] += d
        v[on] = d @ W_hh
    return delta


def _bptt_tbptt(p, xs, ys, h0, activation, loss, scale, truncation, mask, ws, keep_dL_dh):
    """TBPTT(k1, k2): the whole forward pass, then `_tbptt_states`; (Σ l, grads, dL/dh or None)."""
    hs, total, dL_do, dphi, direct = _forward_for_backward(p, xs, ys, h0, activation, loss, scale, mask, ws,
                                                           False)
    dL_dh = np.zeros(direct.shape) if keep_dL_dh else None
    delta = _tbptt_states(p["W_hh"], direct, dphi, truncation.k1, truncation.k2, dL_dh)
    return total, _weight_grads(xs, hs, dL_do, delta, p), dL_dh


def _add_grads(acc, g):
    for name in acc:
        acc[name] += g[name]


def bptt(params, xs, ys, *, activation="tanh", loss="softmax_ce", h0=None, truncation=None,
         keep_dL_dh=True, mask=None, workspace=None):
    """Loss, gradients and dL/dh_t by backpropagation through time (chapter "BPTT in detail").

    dL/dh_T = W_qhᵀ ∂L/∂o_T; dL/dh_t = W_qhᵀ ∂L/∂o_t + W_hhᵀ (φ'(a_{t+1}) ⊙ dL/dh_{t+1});
    dL/dW_hx = Σ_t δ_t x_tᵀ, dL/dW_hh = Σ_t δ_t h_{t-1}ᵀ, dL/dW_qh = Σ_t ∂L/∂o_t h_tᵀ,
    δ_t = φ'(a_t) ⊙ dL/dh_t, and L = 1/(T·B) Σ_t Σ_b l(o_tb, y_tb).
    `truncation`: None (full BPTT), Subsequence(k), Sliding(k), TBPTT(k1, k2) or Randomized(pi); the
    forward pass is never truncated. `keep_dL_dh=False` drops dL/dh (so Subsequence runs in memory independent of T).
    `mask` (boolean, shape (T, [B])): only those steps carry a loss, and L is their mean.
    `workspace`: a `Workspace` whose arrays are reused across calls (a training loop's speed-up).
    """
    p, xs, ys, h0, activation, loss = _check_problem(params, xs, ys, h0, activation, loss)
    truncation = _check_truncation(truncation)
    mask = _check_mask(mask, xs.shape[:-1])
    ws = _check_workspace(workspace)
    T, scale = xs.shape[0], _mean_scale(xs, mask)
    with np.errstate(all="ignore"):
        if isinstance(truncation, Sliding) and truncation.k < T:
            total, grads, dL_dh = _bptt_sliding(p, xs, ys, h0, activation, loss, scale, truncation.k, mask,
                                                ws, keep_dL_dh)
        elif isinstance(truncation, TBPTT) and truncation.k1 < T:
            total, grads, dL_dh = _bptt_tbptt(p, xs, ys, h0, activation, loss, scale, truncation, mask, ws,
                                              keep_dL_dh)
        elif isinstance(truncation, Subsequence) and truncation.k < T:
            total, grads, dL_dh = _bptt_chunks(p, xs, ys, h0, activation, loss, scale, truncation.k,
                                               keep_dL_dh, mask, ws)
        else:
            weights = truncation.step_weights(T) if isinstance(truncation, Randomized) else None
            total, grads, dL_dh, _ = _chunk(p, xs, ys, h0, activation, loss, scale, weights, mask, ws,
                                            keep_dL_dh)
        result = Gradient(float(total * scale), grads, dL_dh if keep_dL_dh else None)
        if not (np.isfinite(result.loss) and all(_all_finite(g) for g in grads.values())):
            _report_overflow(result)
    return result


def bptt_checkpointed(params, xs, ys, *, every=None, activation="tanh", loss="softmax_ce", h0=None, mask=None,
                      workspace=None):
    """The full BPTT gradient, exactly, from only every c-th hidden state (gradient checkpointing:
    Chen et al. 2016; Gruslys et al. 2016).

    The forward pass keeps h_0, h_c, h_2c, ... and nothing else. The backward pass takes the segments
    of c steps from the last to the first: it recomputes the segment's states from its checkpoint, runs
    BPTT through them with dL/dh at the segment's last step increased by W_hhᵀ δ_{t+1} carried back from
    the segment after it, and adds the segment's share of every weight gradient. Memory: ⌈T/c⌉
    checkpoints and one segment, O((T/c + c)·B·h). A segment holds four arrays of c·B·h floats or
    fewer (states, φ'(a_t), dL/dh_t, outputs) and a checkpoint one of B·h, so the peak,
    about (T/c + 4c)·B·h floats, is smallest at c = √T / 2, the default (`every=None`). Time: one more
    forward pass than `bptt`. Returns a `Gradient` equal to `bptt`'s up to rounding, with dL_dh None
    (keeping dL/dh_t for every t would cost the O(T) memory this avoids). Arguments as for `bptt`.
    """
    p, xs, ys, h0, activation, loss = _check_problem(params, xs, ys, h0, activation, loss)
    mask = _check_mask(mask, xs.shape[:-1])
    ws = Workspace() if workspace is None else _check_workspace(workspace)
    T = xs.shape[0]
    c = max(1, int(round(np.sqrt(T) / 2))) if every is None else _check_int("every", every, 1)
    ws = _SegmentSpace(ws, c)
    with np.errstate(all="ignore"):
        checkpoints = _checkpoints(p, xs, h0, activation, c, ws)
        total, grads = _checkpointed_backward(p, xs, ys, checkpoints, activation, loss, _mean_scale(xs, mask),
                                              mask, c, ws)
        result = Gradient(float(total * _mean_scale(xs, mask)), grads, None)
        if not (np.isfinite(result.loss) and all(_all_finite(g) for g in grads.values())):
            _report_overflow(result)
    return result


class _SegmentSpace:
    """A workspace for segments of at most c steps: every array is allocated for a full segment, and a
    shorter one (the last) gets the leading part of it, so that it allocates nothing new."""

    def __init__(self, ws, c):
        self.ws, self.c, self.short = ws, c, 0

    def array(self, name, shape):
        return self.ws.array(name, (shape[0] + self.short,) + shape[1:])[:shape[0]]


def _checkpoints(p, xs, h0, activation, c, ws):
    """h_0, h_c, h_2c, ...: the state before each segment of c steps (the forward pass, nothing else kept)."""
    T = xs.shape[0]
    out = np.empty((-(-T // c),) + h0.shape)
    out[0] = h0
    for j in range(1, len(out)):
        seg = xs[(j - 1) * c:j * c]
        hs = _states(p["W_hx"], p["W_hh"], seg, out[j - 1], activation,
                     out=ws.array("hs", (len(seg) + 1,) + h0.shape), b_h=p.get("b_h"))
        out[j] = hs[-1]
    return out


def _checkpointed_backward(p, xs, ys, checkpoints, activation, loss, scale, mask, c, ws):
    """Segments last to first: recompute h_t from the checkpoint, then dL/dh_t = W_qhᵀ ∂L/∂o_t
    (+ W_hhᵀ δ_{t+1} carried in from the next segment at its last step) + W_hhᵀ δ_{t+1} inside it.
    Returns (Σ l, grads)."""
    grads = {name: np.zeros_like(p[name]) for name in p}
    carry, total = np.zeros(checkpoints.shape[1:]), 0.0
    for j in range(len(checkpoints) - 1, -1, -1):
        part = slice(j * c, (j + 1) * c)
        ws.short = c - len(xs[part])
        hs, seg_total, dL_do, dphi, direct = _forward_for_backward(
            p, xs[part], ys[part], checkpoints[j], activation, loss, scale, None if mask is None else mask[part],
            ws, False)
        direct[-1] += carry
        _, delta = _backprop_states(p["W_hh"], direct, dphi, None)
        _add_grads(grads, _weight_grads(xs[part], hs, dL_do, delta, p))
        np.matmul(delta[0], p["W_hh"], out=carry)
        total += seg_total
    return total, grads


def _report_overflow(result):
    """Overflow reaches the loss or the weight gradients whenever it happens anywhere (inf·0 and
    inf − inf give NaN, never a finite number), so checking those small arrays is enough; then the
    NaN left by inf arithmetic becomes +inf everywhere, and one BPTTOverflowWarning names what overflowed."""
    over = _Overflow()
    if not np.isfinite(result.loss):
        over.what.append("the loss")
        result.loss = np.inf
    if result.dL_dh is not None:
        over.check("dL/dh_t", result.dL_dh)
    for name in result.grads:
        over.check(f"dL/d{name}", result.grads[name])
    over.warn()


def _bptt_chunks(p, xs, ys, h0, activation, loss, scale, k, keep_dL_dh, mask, ws):
    """Subsequence(k): run `_chunk` on steps 1..k, k+1..2k, ...; h at a boundary is passed on as a value."""
    grads = {name: np.zeros_like(p[name]) for name in p}
    dL_dh = np.empty(xs.shape[:-1] + (p["W_hh"].shape[0],)) if keep_dL_dh else None
    total, h = 0.0, h0
    for start in range(0, xs.shape[0], k):
        part = slice(start, start + k)
        c_mask = None if mask is None else mask[part]
        c_total, c_grads, c_dL_dh, h = _chunk(p, xs[part], ys[part], h, activation, loss, scale, None, c_mask,
                                              ws, False)
        total += c_total
        _add_grads(grads, c_grads)
        if keep_dL_dh:
            dL_dh[part] = c_dL_dh
    return total, grads, dL_dh


def backprop_states(params, xs, dL_dh_direct, *, h0=None, activation="tanh"):
    """BPTT from any loss of the hidden states (chapters "Scalar form" and "Vector form").

    `dL_dh_direct[t-1]` is the immediate partial ∂L/∂h_t (h_t's own effect on L, later states held
    fixed). Returns (dL/dh_t for t = 1..T, {"W_hx": dL/dW_hx, "W_hh": dL/dW_hh}) with
    dL/dh_t = ∂L/∂h_t + W_hhᵀ (φ'(a_{t+1}) ⊙ dL/dh_{t+1}), dL/dW_hx = Σ_t δ_t x_tᵀ, dL/dW_hh = Σ_t δ_t h_{t-1}ᵀ
    (and dL/db_h = Σ_t δ_t when params holds b_h).
    """
    p = _check_params(params)
    xs = _check_xs(xs, p["W_hx"].shape[1])
    activation = _check_choice("activation", activation, ACTIVATIONS)
    h0 = _check_h0(h0, xs.shape[1:-1], p["W_hh"].shape[0])
    direct = _float_array("dL_dh_direct", dL_dh_direct)
    if direct.shape != xs.shape[:-1] + h0.shape[-1:]:
        _fail("dL_dh_direct", f"shape {xs.shape[:-1] + h0.shape[-1:]} (T, [B,] h)", f"shape {direct.shape}")
    with np.errstate(all="ignore"):
        hs = _states(p["W_hx"], p["W_hh"], xs, h0, activation, b_h=p.get("b_h"))
        dL_dh, delta = _backprop_states(p["W_hh"], direct.copy(), _dphi(hs[1:], activation), None)
        delta = _rows(delta)
        grads = {"W_hx": delta.T @ _rows(xs), "W_hh": delta.T @ _rows(hs[:-1])}
        if "b_h" in p:
            grads["b_h"] = delta.sum(axis=0)
    return dL_dh, grads


def _sensitivity_steps(p, xs, h0, activation):
    """Forward mode (real-time recurrent learning, Williams & Zipser 1989): for t = 1..T yield
    (h_t, dh_t/dW_hx, dh_t/dW_hh, dh_t/db_h or None) from dh_t/dW = diag(φ'(a_t)) (∂a_t/∂W + W_hh dh_{t-1}/dW),
    where ∂a_t[i]/∂W_hx[k, j] = [i = k] x_t[j], ∂a_t[i]/∂W_hh[k, j] = [i = k] h_{t-1}[j] and
    ∂a_t/∂b_h = I. Arrays carry a batch axis: (B, h) states and (B, h, h, d) / (B, h, h, h) / (B, h, h)
    sensitivities."""
    W_hx, W_hh, b_h = p["W_hx"], p["W_hh"], p.get("b_h")
    B, h = h0.shape
    eye = np.eye(h)[None, :, :, None]
    S_hx, S_hh, h_prev = np.zeros((B, h, h, W_hx.shape[1])), np.zeros((B, h, h, h)), h0
    S_b = None if b_h is None else np.zeros((B, h, h))
    for x in xs:
        a_t = x @ W_hx.T + h_prev @ W_hh.T
        h_t = _phi(a_t if b_h is None else a_t + b_h, activation)
        S_hx = (W_hh @ S_hx.reshape(B, h, -1)).reshape(S_hx.shape) + eye * x[:, None, None, :]
        S_hh = (W_hh @ S_hh.reshape(B, h, -1)).reshape(S_hh.shape) + eye * h_prev[:, None, None, :]
        if S_b is not None:
            S_b = W_hh @ S_b + np.eye(h)
        if activation == "tanh":
            S_hx *= (1.0 - h_t * h_t)[:, :, None, None]
            S_hh *= (1.0 - h_t * h_t)[:, :, None, None]
            if S_b is not None:
                S_b *= (1.0 - h_t * h_t)[:, :, None]
        yield h_t, S_hx, S_hh, S_b
        h_prev = h_t


def _batched(xs, h0):
    """xs and h0 with a batch axis (B = 1 for one sequence)."""
    return (xs, h0) if xs.ndim == 3 else (xs[:, None], h0[None])


def state_sensitivities(params, xs, *, h0=None, activation="tanh"):
    """The total derivatives dh_t/dW_hx and dh_t/dW_hh (and dh_t/db_h if params holds b_h) for t = 0..T,
    by forward mode.

    Shapes (T+1, [B,] h) + the parameter's shape; entry [t, (b,) i, k, j] = dh_t[i]/dW[k, j]. Memory
    grows like T·h·(number of parameters): meant for the chapters' small examples.
    """
    p = _check_params(params)
    xs = _check_xs(xs, p["W_hx"].shape[1])
    activation = _check_choice("activation", activation, ACTIVATIONS)
    h0 = _check_h0(h0, xs.shape[1:-1], p["W_hh"].shape[0])
    x3, h03 = _batched(xs, h0)
    steps = list(_sensitivity_steps(p, x3, h03, activation))
    out = {}
    for name, i in (("W_hx", 1), ("W_hh", 2), ("b_h", 3)):
        if steps[0][i] is None:
            continue
        S = np.stack([np.zeros_like(steps[0][i])] + [s[i] for s in steps])
        out[name] = S if xs.ndim == 3 else S[:, 0]
    return out


def rtrl(params, xs, ys, *, activation="tanh", loss="softmax_ce", h0=None):
    """The gradient of L by forward mode (real-time recurrent learning): no stored forward pass,
    but a carried (h × number of parameters) sensitivity per example (chapter "BPTT in detail").

    dL/dW = Σ_t (W_qhᵀ ∂L/∂o_t)ᵀ dh_t/dW for W_hx, W_hh (and b_h); dL/dW_qh = Σ_t ∂L/∂o_t h_tᵀ
    (and dL/db_q = Σ_t ∂L/∂o_t).
    Returns a `Gradient` equal to `bptt`'s (dL_dh is None: forward mode never forms it).
    """
    p, xs, ys, h0, activation, loss = _check_problem(params, xs, ys, h0, activation, loss)
    x3, h03 = _batched(xs, h0)
    y3 = ys if xs.ndim == 3 else ys[:, None]
    scale, total = _mean_scale(xs), 0.0
    grads = {name: np.zeros_like(p[name]) for name in p}
    with np.errstate(all="ignore"):
        for t, (h_t, S_hx, S_hh, S_b) in enumerate(_sensitivity_steps(p, x3, h03, activation)):
            step_loss, dL_do = _loss_terms(h_t @ p["W_qh"].T if "b_q" not in p else _outputs(p, h_t),
                                           y3[t], loss)
            total += step_loss
            dL_do *= scale
            g = (dL_do @ p["W_qh"])[:, None, :]                       # (W_qhᵀ ∂L/∂o_t)ᵀ, per example
            grads["W_hx"] += (g @ S_hx.reshape(*S_hx.shape[:2], -1)).sum(axis=0).reshape(p["W_hx"].shape)
            grads["W_hh"] += (g @ S_hh.reshape(*S_hh.shape[:2], -1)).sum(axis=0).reshape(p["W_hh"].shape)
            grads["W_qh"] += dL_do.T @ h_t
            if S_b is not None:
                grads["b_h"] += (g @ S_b).sum(axis=0)[0]
            if "b_q" in p:
                grads["b_q"] += dL_do.sum(axis=0)
        result = Gradient(float(total * scale), grads, None)
        if not (np.isfinite(result.loss) and all(_all_finite(g) for g in grads.values())):
            _report_overflow(result)
    return result


# --------------------------------------------------------------------------------------------
# Checking by finite differences.
# --------------------------------------------------------------------------------------------

def numerical_gradient(f, params, eps=1e-6):
    """Central differences: ∂f/∂θ_i ≈ (f(θ + ε e_i) − f(θ − ε e_i)) / (2ε), for every entry θ_i.

    `f` maps `params` (a dict of arrays, or one array) to a float; the result has the same structure.
    """
    eps = _check_positive("eps", eps)
    if isinstance(params, dict):
        base = {k: _float_array(f"params['{k}']", v).copy() for k, v in params.items()}
        return {k: _central_differences(lambda a, k=k: f({**base, k: a}), base[k], eps) for k in base}
    return _central_differences(f, _float_array("params", params).copy(), eps)


def _central_differences(f, x, eps):
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


# --------------------------------------------------------------------------------------------
# Spectral radius, clipping, parameters.
# --------------------------------------------------------------------------------------------

def _check_square(name, W):
    W = _float_array(name, W)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.size == 0:
        _fail(name, "a non-empty square matrix", f"shape {W.shape}")
    return W


def spectral_radius(W):
    """ρ(W) = max_i |λ_i(W)| (chapter "Eigenvalue analysis")."""
    return float(np.abs(np.linalg.eigvals(_check_square("W", W))).max())


def with_spectral_radius(W, rho):
    """W · ρ / ρ(W): the same eigenvectors, eigenvalues rescaled so that max |λ| = rho."""
    W = _check_square("W", W)
    rho = _check_positive("rho", rho)
    current = spectral_radius(W)
    if current <= 1e-8 * max(np.linalg.norm(W, 2), np.finfo(float).tiny):
        _fail("W", "a matrix with spectral radius > 0 (it is rescaled)",
              f"spectral radius {current:.3g} (nilpotent or zero)")
    return W * (rho / current)


def _global_norm(grads):
    """‖g‖ = sqrt(Σ_W ‖dL/dW‖²), computed without overflow for huge finite entries."""
    return float(_row_norms(np.concatenate([np.ravel(g) for g in grads.values()])[None])[0])


def _check_grads(grads):
    """A dict of float64 gradient arrays without NaN (±inf from overflow is allowed)."""
    if not isinstance(grads, dict):
        _fail("grads", "a dict of gradient arrays", type(grads).__name__)
    grads = {k: np.asarray(v, dtype=np.float64) for k, v in grads.items()}
    if any(np.isnan(g).any() for g in grads.values()):
        _fail("grads", "gradients without NaN", "NaN entries")
    return grads


def clip_by_global_norm(grads, theta):
    """g ← min(1, θ/‖g‖) g over all parameters together (D2L; Pascanu et al. 2013).

    Returns (clipped grads, ‖g‖ before clipping). If ‖g‖ overflowed, the infinite entries share the
    norm θ equally (their true ratios are lost) and a BPTTOverflowWarning says so.
    """
    theta = _check_positive("theta", theta)
    grads = _check_grads(grads)
    norm = _global_norm(grads)
    if np.isinf(norm):
        warnings.warn("clip_by_global_norm: the gradient norm overflowed; infinite entries share θ",
                      BPTTOverflowWarning, stacklevel=2)
        count = sum(int(np.isinf(g).sum()) for g in grads.values())
        return {k: np.where(np.isinf(g), np.sign(g) * theta / np.sqrt(count), 0.0)
                for k, g in grads.items()}, norm
    factor = min(1.0, theta / norm) if norm > 0 else 1.0
    return {k: g * factor for k, g in grads.items()}, norm


def random_params(d, h, q, *, rho=None, seed=0):
    """W_hx ~ N(0, 1/d), W_hh ~ N(0, 1/h) (rescaled to spectral radius `rho` if given), W_qh ~ N(0, 1/h)."""
    d, h, q = (_check_int(n, v, 1) for n, v in (("d", d), ("h", h), ("q", q)))
    rng = np.random.default_rng(seed)
    W_hh = rng.normal(0.0, 1.0 / np.sqrt(h), (h, h))
    if rho is not None:
        W_hh = with_spectral_radius(W_hh, rho)
    return {"W_hx": rng.normal(0.0, 1.0 / np.sqrt(d), (h, d)), "W_hh": W_hh,
            "W_qh": rng.normal(0.0, 1.0 / np.sqrt(h), (q, h))}


def clip_by_value(grads, c):
    """Each entry clipped to [−c, c] (min-char-rnn clips to ±5): the direction of g changes as soon as
    one entry is clipped, unlike `clip_by_global_norm` (chapter "Remedies")."""
    c = _check_positive("c", c)
    grads = _check_grads(grads)
    return {k: np.clip(g, -c, c) for k, g in grads.items()}


def recurrent_matrix(h, rho, *, kind="normal", coupling=1.0, seed=0):
    """A W_hh with spectral radius `rho` whose eigenvalues all lie on the circle |λ| = rho
    (chapter "Eigenvalue analysis").

    W = rho · Q (R + N) Qᵀ with Q a random orthogonal matrix, R block diagonal with 2×2 rotation
    blocks [[cos α, −sin α], [sin α, cos α]] (and a 1 for an odd h), and N = 0 for kind="normal" (then
    W is rho times an orthogonal matrix) or, for kind="non-normal", strictly upper block triangular with
    N(0, coupling²/h) entries. N does not change the eigenvalues (W is block triangular in the basis Q),
    but it makes W non-normal: ‖W^n‖ can grow for a while although rho < 1. The same seed gives the
    same Q, R and N for every rho, so rho only rescales W.
    """
    h = _check_int("h", h, 1)
    rho = _check_positive("rho", rho)
    kind = _check_choice("kind", kind, ("normal", "non-normal"))
    coupling = _check_positive("coupling", coupling)
    rng = np.random.default_rng(seed)
    Q, r = np.linalg.qr(rng.normal(size=(h, h)))
    Q *= np.sign(np.diag(r))
    R = np.zeros((h, h))
    for i, alpha in zip(range(0, h - 1, 2), rng.uniform(0.0, np.pi, h // 2)):
        R[i:i + 2, i:i + 2] = [[np.cos(alpha), -np.sin(alpha)], [np.sin(alpha), np.cos(alpha)]]
    if h % 2:
        R[-1, -1] = 1.0
    block = np.arange(h) // 2
    N = rng.normal(0.0, coupling / np.sqrt(h), (h, h)) * (block[None, :] > block[:, None])
    return rho * (Q @ (R + (kind == "non-normal") * N) @ Q.T)


def power_norms(W, n):
    """‖W^k‖₂ (largest singular value) for k = 0..n; +inf from the power that overflowed, with a
    BPTTOverflowWarning. ‖W^k‖^(1/k) → ρ(W) (Gelfand), although ‖W^k‖ may first grow when W is non-normal."""
    W = _check_square("W", W)
    n = _check_int("n", n, 0)
    return _product_norms(np.broadcast_to(W, (n,) + W.shape), "W^k")


def _product_norms(factors, what):
    """‖F_1 F_2 ··· F_k‖₂ for k = 0..len(factors) (k = 0: the identity); +inf from the product that
    overflowed, with one BPTTOverflowWarning naming `what`."""
    norms = np.full(len(factors) + 1, np.inf)
    P, over = np.eye(factors.shape[-1]), _Overflow()
    with np.errstate(all="ignore"):
        for k in range(len(factors) + 1):
            if not np.isfinite(P).all():
                over.what.append(what)
                break
            norms[k] = np.linalg.norm(P, 2)
            if k < len(factors):
                P = P @ factors[k]
    over.warn()
    return norms


@dataclass
class Training:
    """What `train` recorded: the loss and the gradient norm (before clipping) at every step, the final
    parameters, and `diverged_at`, the step whose loss or gradient overflowed (None if none did)."""
    losses: np.ndarray
    norms: np.ndarray
    params: dict
    diverged_at: int | None


def train(params, batches, *, lr, clip=None, threshold=None, **kwargs):
    """Plain gradient descent W ← W − lr·g on the batches (xs, ys) in turn, where g is the BPTT gradient,
    optionally clipped first: clip="norm" (g ← min(1, θ/‖g‖) g with θ = threshold) or clip="value"
    (each entry to ±threshold). kwargs go to `bptt`; one `Workspace` serves every step (chapter "Remedies").

    Training stops at the first step whose loss or gradient overflows; that step is `diverged_at` and
    one BPTTOverflowWarning reports it. Losses after it are +inf, never NaN.
    """
    lr, clip, threshold = _check_descent(lr, clip, threshold)
    p = {k: v.copy() for k, v in _check_params(params).items()}
    batches = list(batches)
    if not batches or not all(isinstance(b, (tuple, list)) and len(b) == 2 for b in batches):
        _fail("batches", "a non-empty sequence of (xs, ys) pairs",
              "an empty sequence" if not batches else "an item that is not a pair")
    losses, norms = np.full(len(batches), np.inf), np.full(len(batches), np.inf)
    kwargs.setdefault("workspace", Workspace())
    for step, (xs, ys) in enumerate(batches):
        with warnings.catch_warnings():          # overflow is reported once, below
            warnings.simplefilter("ignore", BPTTOverflowWarning)
            res = bptt(p, xs, ys, keep_dL_dh=False, **kwargs)
            g, norms[step] = _clip_by_norm(res.grads, clip, threshold)
        if not (np.isfinite(res.loss) and np.isfinite(norms[step])):
            warnings.warn(f"train: the loss or the gradient overflowed at step {step}; training stopped",
                          BPTTOverflowWarning, stacklevel=2)
            return Training(losses, norms, p, step)
        losses[step] = res.loss
        _descend(p, g, lr, clip, threshold)
    return Training(losses, norms, p, None)


def _check_descent(lr, clip, threshold):
    """lr > 0; clip None, "norm" or "value", and then threshold > 0."""
    lr = _check_positive("lr", lr)
    if clip is not None:
        clip = _check_choice("clip", clip, ("norm", "value"))
        threshold = _check_positive("threshold", threshold)
    return lr, clip, threshold


def _clip_by_norm(grads, clip, threshold):
    """(g clipped to global norm θ if clip == "norm", else g; ‖g‖ before clipping)."""
    if clip == "norm":
        return clip_by_global_norm(grads, threshold)
    return grads, _global_norm(grads)


def _descend(p, g, lr, clip, threshold):
    """W ← W − lr·g in place, with each entry of g first clipped to ±threshold if clip == "value"."""
    if clip == "value":
        g = clip_by_value(g, threshold)
    for name in p:
        p[name] -= lr * g[name]


@dataclass
class StreamTraining:
    """What `train_stream` recorded: per chunk, the loss and the gradient norm (before clipping); the
    final parameters; `h`, the state after the last chunk trained (pass it as h0 to go on); and
    `diverged_at`, the chunk whose loss or gradient overflowed (None if none did)."""
    losses: np.ndarray
    norms: np.ndarray
    params: dict
    h: np.ndarray
    diverged_at: int | None


def train_stream(params, xs, ys, *, chunk, lr, clip=None, threshold=None, h0=None, activation="tanh",
                 loss="softmax_ce", truncation=None, workspace=None):
    """Stateful training on one long stream (or B parallel streams, xs of shape (N, [B,] d)), the way
    frameworks do it with ``h = h.detach()``: the stream is cut into chunks of `chunk` steps; on each,
    `bptt` (full, or `truncation` inside the chunk) starts from the state the previous chunk ended in,
    carried as a plain value, so no gradient crosses a chunk boundary; then W ← W − lr·g, g clipped as in
    `train`. The state is carried on unchanged although the parameters that made it have since changed.
    Over a whole stream with a tiny lr this is Subsequence(chunk); one `Workspace` serves every chunk.

    Training stops at the first chunk whose loss or gradient overflows (`diverged_at`, one
    BPTTOverflowWarning). Losses after it are +inf, never NaN.
    """
    lr, clip, threshold = _check_descent(lr, clip, threshold)
    p, xs, ys, h, activation, loss = _check_problem(params, xs, ys, h0, activation, loss)
    p = {k: v.copy() for k, v in p.items()}
    chunk = _check_int("chunk", chunk, 1)
    ws = Workspace() if workspace is None else _check_workspace(workspace)
    n = -(-xs.shape[0] // chunk)
    losses, norms = np.full(n, np.inf), np.full(n, np.inf)
    for i in range(n):
        part = slice(i * chunk, (i + 1) * chunk)
        with warnings.catch_warnings():          # overflow is reported once, below
            warnings.simplefilter("ignore", BPTTOverflowWarning)
            res = bptt(p, xs[part], ys[part], activation=activation, loss=loss, h0=h, truncation=truncation,
                       keep_dL_dh=False, workspace=ws)
            g, norms[i] = _clip_by_norm(res.grads, clip, threshold)
        if not (np.isfinite(res.loss) and np.isfinite(norms[i])):
            warnings.warn(f"train_stream: the loss or the gradient overflowed at chunk {i}; training stopped",
                          BPTTOverflowWarning, stacklevel=2)
            return StreamTraining(losses, norms, p, h, i)
        losses[i] = res.loss
        h = ws._arrays["hs"][-1].copy()   # h.detach(): bptt's last states array ends with the chunk's last state
        _descend(p, g, lr, clip, threshold)
    return StreamTraining(losses, norms, p, h, None)


# --------------------------------------------------------------------------------------------
# What the chapters draw: vanishing and exploding gradients.
# --------------------------------------------------------------------------------------------

def _row_norms(a):
    """Euclidean norm of each a[t] (all axes but the first), without overflow for huge finite entries."""
    a = a.reshape(len(a), -1)
    with np.errstate(all="ignore"):
        peak = np.max(np.abs(a), axis=1) if a.shape[1] else np.zeros(len(a))
        safe = np.where(np.isfinite(peak) & (peak > 0), peak, 1.0)
        norms = safe * np.sqrt(np.sum((a / safe[:, None]) ** 2, axis=1))
    return np.where(np.isfinite(peak), np.where(peak > 0, norms, 0.0), np.inf)


def gradient_norms(params, xs, ys, **kwargs):
    """‖dL/dh_t‖ for t = 1..T (Frobenius over batch and hidden units); kwargs go to `bptt`."""
    return _row_norms(bptt(params, xs, ys, **kwargs).dL_dh)


def gradient_profile(params, xs, u, *, h0=None, activation="tanh"):
    """‖dℓ/dh_t‖ for t = 0..T of one sequence, for a loss at the last step only with dℓ/dh_T = u
    (ℓ = uᵀh_T): dℓ/dh_{t-1} = J_tᵀ dℓ/dh_t, J_t = diag(φ'(a_t)) W_hh, so dℓ/dh_t = (dh_T/dh_t)ᵀ u;
    with φ = identity, (W_hhᵀ)^{T-t} u (chapter "Eigenvalue analysis"). O(T·h²): fast enough for a widget.
    +inf from the step where the product overflowed, with a BPTTOverflowWarning."""
    p, xs = _check_sequence(params, xs)
    activation = _check_choice("activation", activation, ACTIVATIONS)
    h = p["W_hh"].shape[0]
    u = _float_array("u", u)                     # (finite values checked there)
    if u.shape != (h,):
        _fail("u", f"a vector of shape ({h},)", f"shape {u.shape}")
    dphi = None
    if activation != "identity":                 # the identity's Jacobians do not depend on the states
        dphi = _dphi(forward(p, xs, h0, activation).hs[1:], activation)
    v = np.zeros((len(xs) + 1, h))
    v[-1] = u
    over = _Overflow()
    with np.errstate(all="ignore"):
        _, delta = _backprop_states(p["W_hh"], v[1:], dphi, None)      # v[t] = dℓ/dh_t, t = 1..T
        v[0] = delta[0] @ p["W_hh"]
        over.check("dℓ/dh_t", v)
    over.warn()
    return _row_norms(v)


def _check_sequence(params, xs):
    """Checked params and xs, where xs must be one sequence (T, d), not a batch."""
    p = _check_params(params)
    xs = _check_xs(xs, p["W_hx"].shape[1])
    if xs.ndim != 2:
        _fail("xs", "one sequence of shape (T, d)", f"shape {xs.shape}")
    return p, xs


def _jacobian_steps(params, xs, h0, activation):
    """J_t = ∂h_t/∂h_{t-1} = diag(φ'(a_t)) W_hh for t = 1..T of one sequence."""
    p, xs = _check_sequence(params, xs)
    fw = forward(p, xs, h0, activation)
    dphi = _dphi(fw.hs[1:], activation)
    if dphi is None:
        return np.broadcast_to(p["W_hh"], (len(xs),) + p["W_hh"].shape)
    return dphi[:, :, None] * p["W_hh"]


def state_jacobian(params, xs, t, k, *, h0=None, activation="tanh"):
    """dh_t/dh_k = J_t J_{t-1} ··· J_{k+1}, J_i = diag(φ'(a_i)) W_hh (the identity when t = k)."""
    T = np.shape(xs)[0] if np.ndim(xs) else 0
    t, k = _check_int("t", t, 0), _check_int("k", k, 0)
    if not k <= t <= T:
        _fail("t, k", f"0 <= k <= t <= T = {T}", f"t = {t}, k = {k}")
    J = _jacobian_steps(params, xs, h0, activation)
    out, over = np.eye(J.shape[-1]), _Overflow()
    with np.errstate(all="ignore"):
        for i in range(k + 1, t + 1):
            out = J[i - 1] @ out
        out = over.check("dh_t/dh_k", out)
    over.warn()
    return out


def jacobian_norms(params, xs, *, h0=None, activation="tanh"):
    """‖dh_T/dh_t‖₂ (largest singular value) for t = 0..T, with dh_T/dh_{t-1} = (dh_T/dh_t) J_t;
    +inf from the step where the product overflowed."""
    J = _jacobian_steps(params, xs, h0, activation)
    return _product_norms(J[::-1], "dh_T/dh_t")[::-1]           # J_T, J_T J_{T-1}, ...


# --- Issue 14: frameworks, padding and memory ---
# Variable-length sequences in one batch: padding, and the two ways of normalising the loss
# (chapter "Frameworks, padding and memory").

__all__ += ["pad_batch", "loss_weights", "bptt_per_sequence", "per_sequence_loss"]


def pad_batch(xs_list, ys_list, *, side="post"):
    """Pad B sequences of lengths T_1..T_B into one batch: (xs (T, B, d), ys, mask (T, B)), T = max T_b.

    `xs_list[b]` has shape (T_b, d); `ys_list[b]` is (T_b,) integer labels (softmax_ce) or (T_b, q)
    targets (mse). Padded inputs are zeros, padded labels 0 (targets zeros); `mask` is True at the
    real steps, so ``bptt(..., mask=mask)`` gives the padded steps no loss. side="post" puts the
    padding after each sequence, side="pre" before it.
    """
    side = _check_choice("side", side, ("post", "pre"))
    if not isinstance(xs_list, (list, tuple)) or not isinstance(ys_list, (list, tuple)) or not xs_list \
            or len(xs_list) != len(ys_list):
        got = (f"{len(xs_list)} inputs and {len(ys_list)} label arrays"
               if isinstance(xs_list, (list, tuple)) and isinstance(ys_list, (list, tuple))
               else f"{type(xs_list).__name__} and {type(ys_list).__name__}")
        _fail("xs_list, ys_list", "two non-empty lists of the same length (one entry per sequence)", got)
    xs_list = [_float_array(f"xs_list[{b}]", x) for b, x in enumerate(xs_list)]
    d = xs_list[0].shape[-1] if xs_list[0].ndim == 2 else None
    for b, x in enumerate(xs_list):
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != d or d == 0:
            _fail(f"xs_list[{b}]", f"shape (T_b, d) with T_b >= 1 and d = {d} (from xs_list[0])", f"shape {x.shape}")
    ys_list = [np.asarray(y) for y in ys_list]
    tail = ys_list[0].shape[1:]
    for b, (x, y) in enumerate(zip(xs_list, ys_list)):
        if y.shape != (len(x),) + tail or y.ndim > 2 or (y.ndim == 1 and y.dtype.kind not in "iu"):
            _fail(f"ys_list[{b}]", f"integer labels of shape ({len(x)},) or targets of shape ({len(x)}, q)"
                  f" like ys_list[0]", f"shape {y.shape}, dtype {y.dtype}")
    T, B = max(len(x) for x in xs_list), len(xs_list)
    xs = np.zeros((T, B, d))
    ys = np.zeros((T, B) + tail, dtype=np.intp if not tail else np.float64)
    mask = np.zeros((T, B), dtype=bool)
    for b, (x, y) in enumerate(zip(xs_list, ys_list)):
        steps = slice(0, len(x)) if side == "post" else slice(T - len(x), T)
        xs[steps, b], ys[steps, b], mask[steps, b] = x, y, True
    return xs, ys, mask


def _check_batch_mask(xs, mask):
    """xs of shape (T, B, d); mask boolean (T, B) with at least one True in every column."""
    xs = np.asarray(xs)
    if xs.ndim != 3:
        _fail("xs", "a padded batch of shape (T, B, d)", f"shape {xs.shape}")
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != xs.shape[:2]:
        _fail("mask", f"a boolean array of shape {xs.shape[:2]} (xs's (T, B))", f"dtype {mask.dtype}, shape {mask.shape}")
    empty = np.flatnonzero(~mask.any(axis=0))
    if empty.size:
        _fail("mask", "at least one True in every column (a sequence with no step has no mean loss)",
              f"no True in column(s) {empty.tolist()}")
    return mask


def loss_weights(mask, per="token"):
    """The weight w_tb with which each step's loss enters L = Σ_t Σ_b w_tb l(o_tb, y_tb) (0 where mask is False).

    per="token": w_tb = 1 / Σ m (every real step counts the same; what ``bptt(..., mask=mask)`` minimises).
    per="sequence": w_tb = 1 / (B · T_b), T_b = Σ_t m_tb (each sequence's mean loss, averaged over the
    batch; what `bptt_per_sequence` minimises): the steps of a short sequence weigh more.
    Both sum to 1.
    """
    per = _check_choice("per", per, ("token", "sequence"))
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.ndim != 2:
        _fail("mask", "a boolean array of shape (T, B)", f"dtype {mask.dtype}, shape {mask.shape}")
    mask = _check_batch_mask(np.empty(mask.shape + (1,)), mask)
    if per == "token":
        return mask / mask.sum()
    return mask / (mask.shape[1] * mask.sum(axis=0))


def bptt_per_sequence(params, xs, ys, mask, *, activation="tanh", loss="softmax_ce", h0=None, truncation=None):
    """Per-sequence normalisation: L = 1/B Σ_b (1/T_b) Σ_t m_tb l(o_tb, y_tb), T_b = Σ_t m_tb, and its
    gradient, for a padded batch xs (T, B, d) with mask (T, B) (see `pad_batch`).

    ``bptt(params, xs, ys, mask=mask)`` is the per-token mean, 1/(Σ m) Σ m l: the two weigh the steps
    differently (`loss_weights`). This one is computed as one `bptt` per sequence (column b, with its
    own mask), the results averaged over b. Returns a `Gradient` whose dL_dh (T, B, h) holds
    dL/dh_tb of this L. Other arguments as for `bptt` (h0 of shape (B, h); a Randomized truncation
    draws afresh for every sequence).
    """
    p, xs, ys, h0, activation, loss = _check_problem(params, xs, ys, h0, activation, loss)
    mask = _check_batch_mask(xs, mask)
    B = xs.shape[1]
    grads = {name: np.zeros_like(p[name]) for name in p}
    dL_dh = np.empty(xs.shape[:2] + (p["W_hh"].shape[0],))
    total = 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BPTTOverflowWarning)
        for b in range(B):
            res = bptt(p, xs[:, b], ys[:, b], activation=activation, loss=loss, h0=h0[b], truncation=truncation,
                       mask=mask[:, b])
            with np.errstate(all="ignore"):      # overflowed sequences: inf - inf gives NaN, made +inf below
                total += res.loss / B
                for name in grads:
                    grads[name] += res.grads[name] / B
                dL_dh[:, b] = res.dL_dh / B
    for g in (*grads.values(), dL_dh):
        g[np.isnan(g)] = np.inf
    over = [w for w in caught if issubclass(w.category, BPTTOverflowWarning)]
    for w in caught:                          # anything else passes through unchanged
        if w not in over:
            warnings.warn(w.message, w.category, stacklevel=2)
    if over:                                  # one warning per call, as bptt gives
        warnings.warn(f"bptt_per_sequence: {over[0].message}", BPTTOverflowWarning, stacklevel=2)
    return Gradient(float(total), grads, dL_dh)


def per_sequence_loss(params, xs, ys, mask, *, activation="tanh", loss="softmax_ce", h0=None):
    """L = 1/B Σ_b (1/T_b) Σ_t m_tb l(o_tb, y_tb): the objective of `bptt_per_sequence` (for finite differences)."""
    fw = forward(params, xs, h0, activation)
    loss = _check_choice("loss", loss, LOSSES)
    ys = _check_ys(ys, loss, np.shape(xs), fw.os.shape[-1])
    w = loss_weights(_check_batch_mask(xs, mask), per="sequence")
    with np.errstate(all="ignore"):
        if loss == "mse":
            return float(np.sum(w * 0.5 * np.sum((fw.os - ys) ** 2, axis=-1)))
        total, _ = _softmax_ce(fw.os, ys, w)
    return total
