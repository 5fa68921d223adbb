"""bptt_gated: the LSTM and the GRU, with BPTT, for Part VI of *Backpropagation Through Time*.

A separate file because it is a separate idea: `bptt_core` is the tanh RNN and everything the book
does with it (truncation, checkpointing, RTRL, spectra); two more cells with their own forward and
backward passes would make it too long to hold in one reader's head. This module reuses the core's
input checks, losses, mask, truncation classes, clipping and overflow warning by import.

LSTM with a forget gate (Gers, Schmidhuber & Cummins 2000; no peepholes), column vectors as in the book::

    f_t = σ(W_fx x_t + W_fh h_{t-1} + b_f)        forget gate
    i_t = σ(W_ix x_t + W_ih h_{t-1} + b_i)        input gate
    g_t = tanh(W_gx x_t + W_gh h_{t-1} + b_g)     candidate
    e_t = σ(W_ex x_t + W_eh h_{t-1} + b_e)        output gate (e, since o_t is the output below)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t              cell state
    h_t = e_t ⊙ tanh(c_t)                         hidden state
    o_t = W_qh h_t + b_q                          output

GRU (Cho et al. 2014, with the reset gate applied before the product with W_nh, as in the paper), in the
convention of Chung et al. (2014), where z_t = 1 takes the candidate::

    z_t = σ(W_zx x_t + W_zh h_{t-1} + b_z)                    update gate
    r_t = σ(W_rx x_t + W_rh h_{t-1} + b_r)                    reset gate
    n_t = tanh(W_nx x_t + W_nh (r_t ⊙ h_{t-1}) + b_n)         candidate h̃_t
    h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ n_t                    convex interpolation
    o_t = W_qh h_t + b_q

Cho et al. and PyTorch's `nn.GRU` write h_t = z_t ⊙ h_{t-1} + (1 − z_t) ⊙ n_t (their z is our 1 − z);
PyTorch also applies r_t after the product: n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn)).

BPTT, from t = T down to 1 (δ*_t = dL/d(pre-activation of gate *), ' = derivative of σ or tanh there)::

    LSTM  dL/dh_t = W_qhᵀ ∂L/∂o_t + Σ_* W_*hᵀ δ*_{t+1}
          dL/dc_t = dL/dh_t ⊙ e_t ⊙ (1 − tanh²c_t) + f_{t+1} ⊙ dL/dc_{t+1}
          δf_t = dL/dc_t ⊙ c_{t-1} ⊙ f_t'   δi_t = dL/dc_t ⊙ g_t ⊙ i_t'   δg_t = dL/dc_t ⊙ i_t ⊙ g_t'
          δe_t = dL/dh_t ⊙ tanh(c_t) ⊙ e_t'
    GRU   dL/dh_t = W_qhᵀ ∂L/∂o_t + (1 − z_{t+1}) ⊙ dL/dh_{t+1} + r_{t+1} ⊙ u_{t+1} + W_zhᵀ δz_{t+1} + W_rhᵀ δr_{t+1}
          δn_t = dL/dh_t ⊙ z_t ⊙ n_t'   δz_t = dL/dh_t ⊙ (n_t − h_{t-1}) ⊙ z_t'   u_t = W_nhᵀ δn_t
          δr_t = u_t ⊙ h_{t-1} ⊙ r_t'
    both  dL/dW_*x = Σ_t δ*_t x_tᵀ, dL/dW_*h = Σ_t δ*_t h_{t-1}ᵀ (GRU's W_nh: Σ_t δn_t (r_t ⊙ h_{t-1})ᵀ),
          dL/db_* = Σ_t δ*_t, dL/dW_qh = Σ_t ∂L/∂o_t h_tᵀ, dL/db_q = Σ_t ∂L/∂o_t

Loss as in `bptt_core`: L = 1/(T·B) Σ_t Σ_b l(o_tb, y_tb) (softmax_ce or mse), or the mean over the steps
where `mask` is True. Shapes: one sequence xs (T, d), a batch (T, B, d); ``hs[t]`` and ``cs[t]`` are
h_t, c_t for t = 0..T; gate arrays, ``os``, ``dL_dh`` and ``dL_dc`` are indexed t-1 for t = 1..T.
Parameters are dicts of float64 arrays: W_*x (h, d), W_*h (h, h), b_* (h,), W_qh (q, h), b_q (q,).
Total derivatives are written d (dL/dh_t, dL/dc_t: every path from the state to L), partial ones ∂.

Rows: arrays hold one row per step and example, so W x_t is computed as x @ Wᵀ, as in `bptt_core`.
Internally the gate matrices are stacked, (f, i, g, e) and (z, r, n), so that one product serves all gates.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

import bptt_core as bc
from bptt_core import BPTTOverflowWarning, Subsequence, Randomized, Training  # noqa: F401 (re-exported)

__all__ = [
    "LSTM_GATES", "GRU_GATES", "LSTM_NAMES", "GRU_NAMES", "KINDS",
    "LSTMForward", "GRUForward", "GatedGradient",
    "init_lstm", "init_gru", "lstm_forward", "gru_forward", "lstm_loss", "gru_loss",
    "lstm_bptt", "gru_bptt", "LSTMCellJacobian", "LSTMStateJacobian", "GRUStateJacobian", "lstm_cell_jacobian",
    "lstm_state_jacobian", "gru_state_jacobian",
    "train_gated",
]

LSTM_GATES = ("f", "i", "g", "e")          # stacking order of the gate matrices
GRU_GATES = ("z", "r", "n")


def _names(gates):
    return tuple(name for gate in gates for name in (f"W_{gate}x", f"W_{gate}h", f"b_{gate}"))


LSTM_NAMES = _names(LSTM_GATES) + ("W_qh", "b_q")
GRU_NAMES = _names(GRU_GATES) + ("W_qh", "b_q")
KINDS = ("lstm", "gru", "tanh")


# --------------------------------------------------------------------------------------------
# Checks (the core's helpers: every message names the argument, what was expected and what came).
# --------------------------------------------------------------------------------------------

def _expected_shapes(names, h, d, q):
    """W_*x (h, d), W_*h (h, h), b_* (h,), W_qh (q, h), b_q (q,)."""
    shapes = {"W_qh": (q, h), "b_q": (q,)}
    for name in names:
        shapes.setdefault(name, (h, d) if name.endswith("x") else (h, h) if name.startswith("W_") else (h,))
    return shapes


def _check_params(params, names, kind):
    """The parameter dict with exactly `names`, as float64 arrays of consistent shapes: h and d come from
    the first input matrix (W_fx or W_zx), q from W_qh."""
    if not isinstance(params, dict) or set(params) != set(names):
        got = sorted(params, key=str) if isinstance(params, dict) else type(params).__name__
        bc._fail("params", f"an {kind} parameter dict with the keys {list(names)}", got)
    p = {k: bc._float_array(f"params['{k}']", params[k]) for k in names}
    for name in (names[0], "W_qh"):
        if p[name].ndim != 2 or 0 in p[name].shape:
            bc._fail(f"params['{name}']", "a non-empty 2-D matrix", f"shape {p[name].shape}")
    (h, d), q = p[names[0]].shape, p["W_qh"].shape[0]
    for name, shape in _expected_shapes(names, h, d, q).items():
        if p[name].shape != shape:
            bc._fail(f"params['{name}']", f"shape {shape} (h = {h}, d = {d} from {names[0]}, q = {q} from W_qh)",
                     f"shape {p[name].shape}")
    return p


def _check_state(name, value, batch_shape, h):
    """An initial state (h0 or c0) of shape `batch_shape` + (h,); zeros when None."""
    if value is None:
        return np.zeros(batch_shape + (h,))
    value = bc._float_array(name, value)
    if value.shape != batch_shape + (h,):
        bc._fail(name, f"shape {batch_shape + (h,)} (batch shape of xs, then h)", f"shape {value.shape}")
    return value


def _check_truncation(truncation):
    if truncation is not None and not isinstance(truncation, (Subsequence, Randomized, bc.Sliding, bc.TBPTT)):
        bc._fail("truncation", "None or one of bptt_core's Subsequence(k), Sliding(k), TBPTT(k1, k2), Randomized(pi)",
                 repr(truncation))
    return truncation


def _check_inputs(params, xs, names, kind, h0, c0=None, with_c=False):
    p = _check_params(params, names, kind)
    h, d = p[names[1]].shape[0], p[names[0]].shape[1]
    xs = bc._check_xs(xs, d)
    h0 = _check_state("h0", h0, xs.shape[1:-1], h)
    c0 = _check_state("c0", c0, xs.shape[1:-1], h) if with_c else None
    return p, xs, h0, c0


def _check_problem(params, xs, ys, names, kind, loss, h0, c0, mask, truncation, with_c):
    p, xs, h0, c0 = _check_inputs(params, xs, names, kind, h0, c0, with_c)
    loss = bc._check_choice("loss", loss, bc.LOSSES)
    ys = bc._check_ys(ys, loss, xs.shape, p["W_qh"].shape[0])
    mask = bc._check_mask(mask, xs.shape[:-1])
    return p, xs, ys, loss, h0, c0, mask, _check_truncation(truncation)


# --------------------------------------------------------------------------------------------
# Initialisation and the stacked gate matrices.
# --------------------------------------------------------------------------------------------

def _init(gates, d, h, q, seed, biases):
    """W_*x ~ N(0, 1/d), W_*h ~ N(0, 1/h), W_qh ~ N(0, 1/h); biases from `biases` (default 0)."""
    d, h, q = (bc._check_int(n, v, 1) for n, v in (("d", d), ("h", h), ("q", q)))
    rng = np.random.default_rng(seed)
    p = {}
    for gate in gates:
        p[f"W_{gate}x"] = rng.normal(0.0, 1.0 / np.sqrt(d), (h, d))
        p[f"W_{gate}h"] = rng.normal(0.0, 1.0 / np.sqrt(h), (h, h))
        p[f"b_{gate}"] = np.full(h, float(biases.get(gate, 0.0)))
    p["W_qh"], p["b_q"] = rng.normal(0.0, 1.0 / np.sqrt(h), (q, h)), np.zeros(q)
    return p


def init_lstm(d, h, q, *, seed=0, forget_bias=1.0):
    """LSTM parameters (keys LSTM_NAMES); b_f = forget_bias (1 after Gers et al. 2000 and Jozefowicz et al.
    2015: the forget gate starts mostly open, f ≈ σ(1) = 0.73), every other bias 0."""
    if not isinstance(forget_bias, (int, float)) or isinstance(forget_bias, bool) or not np.isfinite(forget_bias):
        bc._fail("forget_bias", "a finite real number", repr(forget_bias))
    return _init(LSTM_GATES, d, h, q, seed, {"f": forget_bias})


def init_gru(d, h, q, *, seed=0):
    """GRU parameters (keys GRU_NAMES), every bias 0."""
    return _init(GRU_GATES, d, h, q, seed, {})


def _stack(p, gates):
    """(W_x, W_h, b): the gate matrices one above the other, (len(gates)·h, d), (len(gates)·h, h), (len·h,)."""
    return (np.concatenate([p[f"W_{g}x"] for g in gates]), np.concatenate([p[f"W_{g}h"] for g in gates]),
            np.concatenate([p[f"b_{g}"] for g in gates]))


def _unstack(grads, gates, Gx, Gh, Gb):
    """Split stacked gradients back into the named keys."""
    h = len(Gb) // len(gates)
    for j, g in enumerate(gates):
        part = slice(j * h, (j + 1) * h)
        grads[f"W_{g}x"], grads[f"W_{g}h"], grads[f"b_{g}"] = Gx[part], Gh[part], Gb[part]
    return grads


def _split(gates, names):
    """The stacked array's gate parts by name, as views: {name: gates[..., j·h:(j+1)·h]}."""
    h = gates.shape[-1] // len(names)
    return {n: gates[..., j * h:(j + 1) * h] for j, n in enumerate(names)}


def _sigmoid(a, out=None):
    """σ(a) = (1 + tanh(a/2)) / 2: the same function as 1/(1 + e^{-a}), without overflow for large |a|."""
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


_ONE_THREAD = 2 ** 18          # OpenBLAS computes a product with m·n·k up to 65536 · 4 on a single thread


def _mm(A, B):
    """A @ B for A of any leading shape and a 2-D B, in blocks of rows small enough (m·n·k <= 2^18) that
    OpenBLAS computes each on one thread. Its threads busy-wait after a threaded product, and on a
    machine shared with other work that slows down what follows: at T·B = 3232 rows, d = 4, h = 16,
    the LSTM's one input product made a whole lstm_bptt call about twice as slow."""
    rows = A.reshape(-1, A.shape[-1])
    step = max(1, _ONE_THREAD // (A.shape[-1] * B.shape[1]))
    if len(rows) <= step:
        return A @ B
    out = np.empty((len(rows), B.shape[1]))
    for i in range(0, len(rows), step):
        np.matmul(rows[i:i + step], B, out=out[i:i + step])
    return out.reshape(A.shape[:-1] + (B.shape[1],))


def _mm_sum(A, B):
    """Σ_r A[r] B[r]ᵀ over all rows r (time steps and examples), e.g. dL/dW_*x = Σ_t δ*_t x_tᵀ, i.e. AᵀB
    for the row-stacked arrays, in blocks as in `_mm`."""
    A, B = bc._rows(A), bc._rows(B)
    out = np.zeros((A.shape[1], B.shape[1]))
    step = max(1, _ONE_THREAD // (A.shape[1] * B.shape[1]))
    for i in range(0, len(A), step):
        out += A[i:i + step].T @ B[i:i + step]
    return out


def _input_projection(xs, Wx, b):
    """W_x x_t + b for every t at once: (T, [B,] G·h)."""
    out = _mm(xs, Wx.T)
    out += b
    return out


def _no_nan(a, over, what):
    """A pre-activation whose sum is NaN met inf − inf (huge weights): count it as overflow, NaN → +inf."""
    if np.isnan(a.sum()):
        over.what.append(what)
        a[np.isnan(a)] = np.inf
    return a


# --------------------------------------------------------------------------------------------
# LSTM: forward pass.
# --------------------------------------------------------------------------------------------

@dataclass
class LSTMForward:
    """hs, cs: (T+1, [B,] h) with hs[0] = h_0, cs[0] = c_0; f, i, g, e: (T, [B,] h) gates; os: (T, [B,] q)."""
    hs: np.ndarray
    cs: np.ndarray
    f: np.ndarray
    i: np.ndarray
    g: np.ndarray
    e: np.ndarray
    os: np.ndarray


def _gate_activation(h):
    """(s, β) with σ(a) = s·tanh(s·a) + β for f, i, e (s = β = 1/2) and tanh(a) = s·tanh(s·a) + β for g
    (s = 1, β = 0), each repeated h times in the stacking order (f, i, g, e): one tanh serves all four gates."""
    s = np.repeat([0.5, 0.5, 1.0, 0.5], h)
    return s, np.repeat([0.5, 0.5, 0.0, 0.5], h)


def _lstm_states(p, xs, h0, c0, over):
    """The recurrence for t = 1..T. Returns (hs, cs, gates) with gates (T, [B,] 4h) stacked as (f, i, g, e)."""
    Wx, Wh, b = _stack(p, LSTM_GATES)
    h = h0.shape[-1]
    s, beta = _gate_activation(h)
    gates = _input_projection(xs, Wx, b)               # W_*x x_t + b_*, then += W_*h h_{t-1} below
    hs, cs = np.empty((len(xs) + 1,) + h0.shape), np.empty((len(xs) + 1,) + h0.shape)
    hs[0], cs[0] = h0, c0
    f, i, g, e = _split(gates, LSTM_GATES).values()   # views: f[t-1] is f_t once step t has run
    for t in range(1, len(xs) + 1):
        a = gates[t - 1]
        a += _mm(hs[t - 1], Wh.T)
        _no_nan(a, over, "gate pre-activations")
        a *= s
        np.tanh(a, out=a)
        a *= s
        a += beta                                       # f_t, i_t, e_t = σ(·), g_t = tanh(·)
        np.multiply(f[t - 1], cs[t - 1], out=cs[t])
        cs[t] += i[t - 1] * g[t - 1]                    # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        np.tanh(cs[t], out=hs[t])
        hs[t] *= e[t - 1]                               # h_t = e_t ⊙ tanh(c_t)
    return hs, cs, gates


def _outputs(p, hs):
    """o_t = W_qh h_t + b_q for every t at once."""
    os = _mm(hs, p["W_qh"].T)
    os += p["b_q"]
    return os


def lstm_forward(params, xs, h0=None, c0=None):
    """Forward pass of the LSTM (module docstring): states, cells, gates and outputs."""
    p, xs, h0, c0 = _check_inputs(params, xs, LSTM_NAMES, "LSTM", h0, c0, with_c=True)
    over = bc._Overflow()
    with np.errstate(all="ignore"):
        hs, cs, gates = _lstm_states(p, xs, h0, c0, over)
        os = over.check("outputs", _outputs(p, hs[1:]))
    over.warn()
    return LSTMForward(hs, cs, os=os, **_split(gates, LSTM_GATES))


# --------------------------------------------------------------------------------------------
# Losses and the result of a backward pass (shared by both cells).
# --------------------------------------------------------------------------------------------

@dataclass
class GatedGradient:
    """loss: L; grads: dL/dθ for every key of params; dL_dh: (T, [B,] h), dL_dh[t-1] = dL/dh_t;
    dL_dc: the same for c_t (LSTM; None for the GRU); dL_dh0, dL_dc0: dL/dh_0 and dL/dc_0 (dL_dc0 None
    for the GRU). Under truncation they hold the derivatives of the truncated backward pass."""
    loss: float
    grads: dict
    dL_dh: np.ndarray
    dL_dc: np.ndarray | None
    dL_dh0: np.ndarray
    dL_dc0: np.ndarray | None


def _output_backward(p, hs, ys, loss, mask, scale):
    """Outputs, Σ l, ∂L/∂o_t = ∂l/∂o_t / (T·B) and the direct part of dL/dh_t, W_qhᵀ ∂L/∂o_t (+ grads of W_qh, b_q)."""
    os = _outputs(p, hs[1:])
    total, dL_do = bc._loss_terms(os, ys, loss, mask)
    dL_do *= scale
    direct = _mm(dL_do, p["W_qh"])
    grads = {"W_qh": _mm_sum(dL_do, hs[1:]), "b_q": bc._rows(dL_do).sum(axis=0)}
    return total, direct, grads


def _backward(step, direct, truncation, gate_width):
    """Run the backward pass whose single step is `step` (see _lstm_step_back, _gru_step_back) under
    `truncation`: (dL/dh_t, dL/dc_t or None, δ_t stacked over the gates, dL/dh_0, dL/dc_0 or None)."""
    T = len(direct)
    if isinstance(truncation, bc.Sliding) and truncation.k < T:
        return _backward_windowed(step, direct, 1, truncation.k, gate_width)
    if isinstance(truncation, bc.TBPTT) and truncation.k1 < T:
        return _backward_windowed(step, direct, truncation.k1, truncation.k2, gate_width)
    if isinstance(truncation, Randomized) or (isinstance(truncation, Subsequence) and truncation.k < T):
        return _backward_steps(step, direct, truncation.step_weights(T), gate_width)
    return _backward_steps(step, direct, None, gate_width)             # full BPTT


def _backward_steps(step, dL_dh, weights, gate_width):
    """One pass from t = T down to 1; the step from (h_t, c_t) to (h_{t-1}, c_{t-1}) is multiplied by
    w_t = weights[t-1] (1 for full BPTT; 0 at a Subsequence boundary; ξ_t for Randomized).
    `dL_dh` enters holding W_qhᵀ ∂L/∂o_t and leaves holding dL/dh_t."""
    dL_dc = np.empty_like(dL_dh)
    delta = np.empty(dL_dh.shape[:-1] + (gate_width,))
    carry = np.zeros(dL_dh.shape[1:])                  # the cell path's w_{t+1} f_{t+1} ⊙ dL/dc_{t+1} (LSTM)
    for t in range(len(dL_dh) - 1, -1, -1):            # index t is step t+1
        dc, delta[t], back, to_c = step(t, dL_dh[t], carry)
        if weights is not None:
            back, to_c = back * weights[t], None if to_c is None else to_c * weights[t]
        if dc is not None:
            dL_dc[t], carry = dc, to_c
        if t:
            dL_dh[t - 1] += back
    return dL_dh, (None if dc is None else dL_dc), delta, back, carry if dc is not None else None


def _backward_windowed(step, direct, k1, k2, gate_width):
    """TBPTT(k1, k2) (Sliding(k) is TBPTT(1, k)), as bptt_core does it: every block of k1 steps sends its
    losses back k2 steps from its nominal end; all blocks side by side, one lag at a time. At lag j the
    pass of the block ending at e is at step e - j (the blocks sit at distinct steps): it adds the block's
    own W_qhᵀ ∂L/∂o_t while j < k1, takes one `step`, and adds what it holds to dL/dh_t, dL/dc_t and δ_t."""
    T = len(direct)
    ends = np.arange(1, -(-T // k1) + 1) * k1 - 1       # 0-based nominal last step of each block
    vh, vc = np.zeros((len(ends),) + direct.shape[1:]), np.zeros((len(ends),) + direct.shape[1:])
    dL_dh, dL_dc = np.zeros_like(direct), np.zeros_like(direct)
    delta = np.zeros(direct.shape[:-1] + (gate_width,))
    dL_dh0, dL_dc0 = np.zeros(direct.shape[1:]), np.zeros(direct.shape[1:])
    for lag in range(min(k2, ends[-1] + 1)):
        t = ends - lag
        on = np.nonzero((t >= 0) & (t < T))[0]
        t = t[on]
        if lag < k1:
            vh[on] += direct[t]
        dc, d, back, to_c = step(t, vh[on], vc[on])
        dL_dh[t] += vh[on]
        delta[t] += d
        vh[on] = back
        if dc is not None:
            dL_dc[t] += dc
            vc[on] = to_c
        if lag + 1 < k2 and t[0] == 0:                 # the window goes on to h_0 (and c_0)
            dL_dh0 += back[0]
            dL_dc0 += 0.0 if dc is None else to_c[0]
    return dL_dh, (None if dc is None else dL_dc), delta, dL_dh0, (None if dc is None else dL_dc0)


def _finish(result, over):
    """Overflow in dL/dh_t or dL/dc_t for t >= 1 reaches the weight gradients through δ_t (inf·0 and inf − inf
    give NaN); so checking those, dL/dh_0, dL/dc_0 and the loss (small arrays) finds any. If so, NaN becomes
    +inf everywhere and one BPTTOverflowWarning names what overflowed."""
    if not np.isfinite(result.loss):
        over.what.append("the loss")
        result.loss = np.inf
    small = list(result.grads.values()) + [a for a in (result.dL_dh0, result.dL_dc0) if a is not None]
    if over.what or not all(bc._all_finite(a) for a in small):
        for name, label in (("dL_dh", "dL/dh_t"), ("dL_dc", "dL/dc_t"), ("dL_dh0", "dL/dh_0"), ("dL_dc0", "dL/dc_0")):
            if getattr(result, name) is not None:
                over.check(label, getattr(result, name))
        for name, g in result.grads.items():
            over.check(f"dL/d{name}", g)
    over.warn()
    return result


# --------------------------------------------------------------------------------------------
# LSTM: backward pass.
# --------------------------------------------------------------------------------------------

def _lstm_locals(cs, gates):
    """What each backward step multiplies by, for all t at once (index t-1 for step t):
    K_t = e_t ⊙ (1 − tanh²c_t) (∂h_t/∂c_t), and M_t, stacked (f, i, g, e) like the gates, the factors that
    turn dL/dc_t (first three) and dL/dh_t (last) into the gate deltas δ = dL/d(pre-activation):
        δf_t = dL/dc_t ⊙ c_{t-1} ⊙ f_t(1 − f_t)     δi_t = dL/dc_t ⊙ g_t ⊙ i_t(1 − i_t)
        δg_t = dL/dc_t ⊙ i_t ⊙ (1 − g_t²)           δe_t = dL/dh_t ⊙ tanh(c_t) ⊙ e_t(1 − e_t)
    """
    f, i, g, e = _split(gates, LSTM_GATES).values()
    M = np.empty_like(gates)
    Mf, Mi, Mg, Me = _split(M, LSTM_GATES).values()
    tanh_c = np.tanh(cs[1:])
    np.multiply(cs[:-1] * f, 1.0 - f, out=Mf)
    np.multiply(g * i, 1.0 - i, out=Mi)
    np.multiply(i, 1.0 - g * g, out=Mg)
    np.multiply(tanh_c * e, 1.0 - e, out=Me)
    K = np.multiply(e, 1.0 - tanh_c * tanh_c, out=tanh_c)
    return K, M


def _lstm_step_back(Wh, gates, cs):
    """The LSTM's backward step at step index t (an int, or an array of distinct steps):
        dL/dc_t     = dL/dh_t ⊙ K_t + w_{t+1} f_{t+1} ⊙ dL/dc_{t+1}      (through h_t + the cell path)
        δ_t         = the gate deltas (see _lstm_locals)
        dL/dh_{t-1} = W_qhᵀ ∂L/∂o_{t-1} + w_t Σ_* W_*hᵀ δ*_t             (the four gates)
        dL/dc_{t-1} = dL/dh_{t-1} ⊙ K_{t-1} + w_t f_t ⊙ dL/dc_t
    step(t, dL/dh_t, w_{t+1} f_{t+1} ⊙ dL/dc_{t+1}) returns (dL/dc_t, δ_t, Σ_* W_*hᵀ δ*_t, f_t ⊙ dL/dc_t);
    the caller weights the last two by w_t."""
    K, M = _lstm_locals(cs, gates)
    h = cs.shape[-1]
    f = gates[..., :h]

    def step(t, dh, carry):
        dc = dh * K[t] + carry
        d = M[t]               # a view for one step (visited once, so M_t may be overwritten); a copy for an array
        d4 = d.reshape(dh.shape[:-1] + (4, h))         # the gates as (..., 4, h)
        d4[..., :3, :] *= dc[..., None, :]             # δf, δi, δg
        d4[..., 3, :] *= dh                            # δe
        return dc, d, _mm(d, Wh), f[t] * dc

    return step


def _lstm_gradient(p, xs, ys, loss, h0, c0, mask, truncation):
    over = bc._Overflow()
    hs, cs, gates = _lstm_states(p, xs, h0, c0, over)
    total, dL_dh, grads = _output_backward(p, hs, ys, loss, mask, bc._mean_scale(xs, mask))
    _, Wh, _ = _stack(p, LSTM_GATES)
    step = _lstm_step_back(Wh, gates, cs)
    dL_dh, dL_dc, delta, dL_dh0, dL_dc0 = _backward(step, dL_dh, truncation, gates.shape[-1])
    # dL/dW_*x = Σ_t δ*_t x_tᵀ, dL/dW_*h = Σ_t δ*_t h_{t-1}ᵀ, dL/db_* = Σ_t δ*_t
    _unstack(grads, LSTM_GATES, _mm_sum(delta, xs), _mm_sum(delta, hs[:-1]), bc._rows(delta).sum(axis=0))
    result = GatedGradient(float(total * bc._mean_scale(xs, mask)), {k: grads[k] for k in LSTM_NAMES},
                           dL_dh, dL_dc, dL_dh0, dL_dc0)
    return result, over


def lstm_bptt(params, xs, ys, *, loss="softmax_ce", h0=None, c0=None, mask=None, truncation=None):
    """Loss, every gradient, dL/dh_t and dL/dc_t of the LSTM by backpropagation through time.

    dL/dh_t = W_qhᵀ ∂L/∂o_t + Σ_* W_*hᵀ δ*_{t+1};  dL/dc_t = dL/dh_t ⊙ e_t ⊙ (1 − tanh²c_t) + f_{t+1} ⊙ dL/dc_{t+1};
    gate deltas δ as in `_lstm_locals`; dL/dW_*x = Σ_t δ*_t x_tᵀ, dL/dW_*h = Σ_t δ*_t h_{t-1}ᵀ, dL/db_* = Σ_t δ*_t,
    dL/dW_qh = Σ_t ∂L/∂o_t h_tᵀ, dL/db_q = Σ_t ∂L/∂o_t.
    `truncation`: None (full BPTT) or one of bptt_core's truncations, meaning there what they mean for the
    tanh RNN, with (h, c) as the state: Subsequence(k) (no gradient crosses from step k+1 to k, 2k+1 to 2k,
    ...), Sliding(k), TBPTT(k1, k2), Randomized(pi); the forward pass is never truncated.
    `mask` (bool, (T, [B])): only those steps carry a loss, and L is their mean. Returns a `GatedGradient`.
    """
    p, xs, ys, loss, h0, c0, mask, truncation = _check_problem(params, xs, ys, LSTM_NAMES, "LSTM", loss, h0, c0,
                                                               mask, truncation, with_c=True)
    with np.errstate(all="ignore"):
        result, over = _lstm_gradient(p, xs, ys, loss, h0, c0, mask, truncation)
        return _finish(result, over)


def lstm_loss(params, xs, ys, *, loss="softmax_ce", h0=None, c0=None, mask=None):
    """L = 1/(T·B) Σ_t Σ_b l(o_tb, y_tb) (or the mean over the masked steps): what `lstm_bptt` differentiates."""
    fw = lstm_forward(params, xs, h0, c0)
    return _loss_of(fw.os, xs, ys, loss, mask)


def _loss_of(os, xs, ys, loss, mask):
    loss = bc._check_choice("loss", loss, bc.LOSSES)
    ys = bc._check_ys(ys, loss, np.shape(xs), os.shape[-1])
    mask = bc._check_mask(mask, np.shape(xs)[:-1])
    with np.errstate(all="ignore"):
        total, _ = bc._loss_terms(os.copy(), ys, loss, mask)
    return total * bc._mean_scale(np.asarray(xs), mask)


# --------------------------------------------------------------------------------------------
# GRU: forward and backward.
# --------------------------------------------------------------------------------------------

@dataclass
class GRUForward:
    """hs: (T+1, [B,] h) with hs[0] = h_0; z, r, n: (T, [B,] h) gates and candidate; os: (T, [B,] q)."""
    hs: np.ndarray
    z: np.ndarray
    r: np.ndarray
    n: np.ndarray
    os: np.ndarray


def _gru_states(p, xs, h0, over):
    """The recurrence for t = 1..T. Returns (hs, gates) with gates (T, [B,] 3h) stacked as (z, r, n)."""
    Wx, _, b = _stack(p, GRU_GATES)
    W_zrh = np.concatenate([p["W_zh"], p["W_rh"]])
    h = h0.shape[-1]
    gates = _input_projection(xs, Wx, b)
    hs = np.empty((len(xs) + 1,) + h0.shape)
    hs[0] = h0
    for t in range(1, len(xs) + 1):
        a, h_prev = gates[t - 1], hs[t - 1]
        zr, n = a[..., :2 * h], a[..., 2 * h:]
        zr += _mm(h_prev, W_zrh.T)
        _sigmoid(_no_nan(zr, over, "gate pre-activations"), out=zr)   # z_t, r_t = σ(·)
        z, r = zr[..., :h], zr[..., h:]
        n += _mm(r * h_prev, p["W_nh"].T)
        np.tanh(_no_nan(n, over, "gate pre-activations"), out=n)      # n_t = tanh(W_nx x_t + W_nh (r_t ⊙ h_{t-1}) + b_n)
        hs[t] = h_prev + z * (n - h_prev)                              # h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ n_t
    return hs, gates


def gru_forward(params, xs, h0=None):
    """Forward pass of the GRU (module docstring): states, gates, candidates and outputs."""
    p, xs, h0, _ = _check_inputs(params, xs, GRU_NAMES, "GRU", h0)
    over = bc._Overflow()
    with np.errstate(all="ignore"):
        hs, gates = _gru_states(p, xs, h0, over)
        os = over.check("outputs", _outputs(p, hs[1:]))
    over.warn()
    return GRUForward(hs, os=os, **_split(gates, GRU_GATES))


def _gru_step_back(p, gates, hs):
    """The GRU's backward step at step index t (an int, or an array of distinct steps), with dL/dh_t known:
        δn_t = dL/dh_t ⊙ z_t ⊙ (1 − n_t²)                       (candidate)
        δz_t = dL/dh_t ⊙ (n_t − h_{t-1}) ⊙ z_t(1 − z_t)          (update gate)
        u_t  = W_nhᵀ δn_t                                         (dL/d(r_t ⊙ h_{t-1}))
        δr_t = u_t ⊙ h_{t-1} ⊙ r_t(1 − r_t)                       (reset gate)
        dL/dh_{t-1} = W_qhᵀ ∂L/∂o_{t-1} + w_t [(1 − z_t) ⊙ dL/dh_t + r_t ⊙ u_t + W_zhᵀ δz_t + W_rhᵀ δr_t]
    step(t, dL/dh_t, _) returns (None, δ_t stacked (z, r, n), the bracket, None); the caller weights it by w_t."""
    h = hs.shape[-1]
    z, r, n = _split(gates, GRU_GATES).values()
    h_prev = hs[:-1]
    M = np.concatenate([(n - h_prev) * z * (1.0 - z), h_prev * r * (1.0 - r), z * (1.0 - n * n)], axis=-1)
    W_zrh, W_nh = np.concatenate([p["W_zh"], p["W_rh"]]), p["W_nh"]

    def step(t, dh, _):
        d = M[t]               # a view for one step (visited once, so M_t may be overwritten); a copy for an array
        d[..., :h] *= dh                               # δz
        d[..., 2 * h:] *= dh                           # δn
        u = _mm(d[..., 2 * h:], W_nh)                  # u = W_nhᵀ δn
        d[..., h:2 * h] *= u                           # δr
        back = _mm(d[..., :2 * h], W_zrh)              # W_zhᵀ δz + W_rhᵀ δr
        back += (1.0 - z[t]) * dh + r[t] * u
        return None, d, back, None

    return step


def _gru_gradient(p, xs, ys, loss, h0, mask, truncation):
    over = bc._Overflow()
    hs, gates = _gru_states(p, xs, h0, over)
    total, dL_dh, grads = _output_backward(p, hs, ys, loss, mask, bc._mean_scale(xs, mask))
    dL_dh, _, delta, dL_dh0, _ = _backward(_gru_step_back(p, gates, hs), dL_dh, truncation, gates.shape[-1])
    h = hs.shape[-1]
    rh = gates[..., h:2 * h] * hs[:-1]                 # r_t ⊙ h_{t-1}, the input of W_nh
    Gh = np.concatenate([_mm_sum(delta[..., :2 * h], hs[:-1]), _mm_sum(delta[..., 2 * h:], rh)])  # zh, rh; nh
    _unstack(grads, GRU_GATES, _mm_sum(delta, xs), Gh, bc._rows(delta).sum(axis=0))
    result = GatedGradient(float(total * bc._mean_scale(xs, mask)), {k: grads[k] for k in GRU_NAMES},
                           dL_dh, None, dL_dh0, None)
    return result, over


def gru_bptt(params, xs, ys, *, loss="softmax_ce", h0=None, mask=None, truncation=None):
    """Loss, every gradient and dL/dh_t of the GRU by backpropagation through time (see `_gru_step_back`):
    dL/dW_*x = Σ_t δ*_t x_tᵀ, dL/db_* = Σ_t δ*_t, dL/dW_zh = Σ_t δz_t h_{t-1}ᵀ, dL/dW_rh = Σ_t δr_t h_{t-1}ᵀ,
    dL/dW_nh = Σ_t δn_t (r_t ⊙ h_{t-1})ᵀ, and W_qh, b_q as for the LSTM. Arguments as for `lstm_bptt`
    (no c0). Returns a `GatedGradient` with dL_dc None.
    """
    p, xs, ys, loss, h0, _, mask, truncation = _check_problem(params, xs, ys, GRU_NAMES, "GRU", loss, h0, None,
                                                              mask, truncation, with_c=False)
    with np.errstate(all="ignore"):
        result, over = _gru_gradient(p, xs, ys, loss, h0, mask, truncation)
        return _finish(result, over)


def gru_loss(params, xs, ys, *, loss="softmax_ce", h0=None, mask=None):
    """L as for `lstm_loss`, for the GRU."""
    fw = gru_forward(params, xs, h0)
    return _loss_of(fw.os, xs, ys, loss, mask)


# --------------------------------------------------------------------------------------------
# One-step Jacobians: why the cell state carries gradients far (chapter "Gated units").
# --------------------------------------------------------------------------------------------

def _check_step(xs, t):
    if np.ndim(xs) != 2:
        bc._fail("xs", "one sequence of shape (T, d)", f"shape {np.shape(xs)}")
    t = bc._check_int("t", t, 1)
    if t > len(xs):
        bc._fail("t", f"a step 1 <= t <= T = {len(xs)}", repr(t))
    return t


@dataclass
class LSTMCellJacobian:
    """direct = ∂c_t/∂c_{t-1} = diag(f_t) (h_{t-1} held fixed); via_h = ∂c_t/∂h_{t-1} · ∂h_{t-1}/∂c_{t-1}, the
    path through h_{t-1} = e_{t-1} ⊙ tanh(c_{t-1}) (zero for t = 1: h_0 is an input, not made from c_0);
    total = dc_t/dc_{t-1} = direct + via_h. All (h, h); entry [i, j] = ∂c_t[i]/∂c_{t-1}[j]."""
    direct: np.ndarray
    via_h: np.ndarray
    total: np.ndarray


def lstm_cell_jacobian(params, xs, t, *, h0=None, c0=None):
    """dc_t/dc_{t-1} of one sequence, split into its two paths:
        ∂c_t/∂c_{t-1} = diag(f_t)
        ∂c_t/∂h_{t-1} = diag(c_{t-1} ⊙ f_t(1 − f_t)) W_fh + diag(g_t ⊙ i_t(1 − i_t)) W_ih + diag(i_t ⊙ (1 − g_t²)) W_gh
        ∂h_{t-1}/∂c_{t-1} = diag(e_{t-1} ⊙ (1 − tanh²c_{t-1}))   (t >= 2)
    Returns an `LSTMCellJacobian` (direct, via_h, total). One step only: for dc_t/dc_k over several steps
    use `lstm_state_jacobian` (a product of these is not it)."""
    t = _check_step(xs, t)
    fw = lstm_forward(params, xs, h0, c0)
    p = _check_params(params, LSTM_NAMES, "LSTM")
    h = fw.hs.shape[-1]
    J = _lstm_step_jacobians(p, fw, t)
    dh_dc = np.zeros(h) if t == 1 else fw.e[t - 2] * (1 - np.tanh(fw.cs[t - 1]) ** 2)
    direct, via_h = J[h:, h:], J[h:, :h] * dh_dc[None, :]
    return LSTMCellJacobian(direct, via_h, direct + via_h)


@dataclass
class GRUStateJacobian:
    """interpolation = diag(1 − z_t), the identity-like path of the convex update; total = dh_t/dh_{t-1},
    (h, h), entry [i, j] = ∂h_t[i]/∂h_{t-1}[j] (x_t held fixed)."""
    interpolation: np.ndarray
    total: np.ndarray


def gru_state_jacobian(params, xs, t, *, h0=None):
    """dh_t/dh_{t-1} of one sequence (the GRU's state is h alone, so dh_t/dh_k is the product of these):
        diag(1 − z_t) + diag((n_t − h_{t-1}) ⊙ z_t(1 − z_t)) W_zh
                      + diag(z_t ⊙ (1 − n_t²)) W_nh (diag(r_t) + diag(h_{t-1} ⊙ r_t(1 − r_t)) W_rh)
    Returns a `GRUStateJacobian` (interpolation, total)."""
    t = _check_step(xs, t)
    fw = gru_forward(params, xs, h0)
    p = _check_params(params, GRU_NAMES, "GRU")
    z, r, n, h_prev = fw.z[t - 1], fw.r[t - 1], fw.n[t - 1], fw.hs[t - 1]
    dn = (z * (1 - n * n))[:, None] * p["W_nh"]                       # ∂h_t/∂(r_t ⊙ h_{t-1})
    through_n = dn * r[None, :] + dn @ ((h_prev * r * (1 - r))[:, None] * p["W_rh"])
    interpolation = np.diag(1 - z)
    total = interpolation + ((n - h_prev) * z * (1 - z))[:, None] * p["W_zh"] + through_n
    return GRUStateJacobian(interpolation, total)


# --------------------------------------------------------------------------------------------
# Training the three cells on the same batches.
# --------------------------------------------------------------------------------------------

def _gradient_function(kind, loss, truncation):
    """g(params, xs, ys, mask) -> the BPTT result (with .loss and .grads) for the kind of cell."""
    if kind == "tanh":
        return lambda p, xs, ys, mask: bc.bptt(p, xs, ys, loss=loss, mask=mask, truncation=truncation,
                                               keep_dL_dh=False)
    run = lstm_bptt if kind == "lstm" else gru_bptt
    return lambda p, xs, ys, mask: run(p, xs, ys, loss=loss, mask=mask, truncation=truncation)


def _check_batches(batches):
    batches = list(batches)
    if not batches or not all(isinstance(b, (tuple, list)) and len(b) in (2, 3) for b in batches):
        bc._fail("batches", "a non-empty sequence of (xs, ys) or (xs, ys, mask) tuples",
                 "an empty sequence" if not batches else "an item that is not such a tuple")
    return [tuple(b) + (None,) * (3 - len(b)) for b in batches]


class _Adam:
    """Adam (Kingma & Ba 2015): m ← β1 m + (1 − β1) g, v ← β2 v + (1 − β2) g², W ← W − lr m̂ / (√v̂ + ε),
    with the bias corrections m̂ = m / (1 − β1^n), v̂ = v / (1 − β2^n) at step n."""

    def __init__(self, p, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.n = lr, beta1, beta2, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in p.items()}
        self.v = {k: np.zeros_like(v) for k, v in p.items()}

    def step(self, p, g):
        self.n += 1
        for k in p:
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g[k]
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g[k] ** 2
            m_hat, v_hat = self.m[k] / (1 - self.b1 ** self.n), self.v[k] / (1 - self.b2 ** self.n)
            p[k] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def train_gated(kind, params, batches, *, lr, clip=None, threshold=None, optimizer="sgd", loss="softmax_ce",
                truncation=None):
    """Train an LSTM, a GRU or bptt_core's tanh RNN on the same batches, the same way.

    `kind`: "lstm" (params from init_lstm), "gru" (init_gru) or "tanh" (bptt_core parameters, e.g.
    bc.random_params, trained with bc.bptt). `batches`: (xs, ys) or (xs, ys, mask) tuples, one step each.
    Each step: g = the BPTT gradient (full, or `truncation`), clipped as in bptt_core.train (clip="norm":
    g ← min(1, θ/‖g‖) g with θ = threshold; clip="value": each entry to ±threshold), then
    optimizer="sgd": W ← W − lr·g, or "adam". Returns a bptt_core.Training: the loss and the gradient norm
    (before clipping) of every step, the final parameters, and `diverged_at`, the first step whose loss or
    gradient overflowed (training stops there; one BPTTOverflowWarning), None if none did.
    """
    kind = bc._check_choice("kind", kind, KINDS)
    lr, clip, threshold = bc._check_descent(lr, clip, threshold)
    optimizer = bc._check_choice("optimizer", optimizer, ("sgd", "adam"))
    loss = bc._check_choice("loss", loss, bc.LOSSES)
    if kind == "tanh":
        p = bc._check_params(params)
    else:
        p = _check_params(params, LSTM_NAMES if kind == "lstm" else GRU_NAMES, kind.upper())
        _check_truncation(truncation)
    p = {k: v.copy() for k, v in p.items()}
    batches = _check_batches(batches)
    gradient, adam = _gradient_function(kind, loss, truncation), _Adam(p, lr) if optimizer == "adam" else None
    losses, norms = np.full(len(batches), np.inf), np.full(len(batches), np.inf)
    for step, (xs, ys, mask) in enumerate(batches):
        with warnings.catch_warnings():          # overflow is reported once, below
            warnings.simplefilter("ignore", BPTTOverflowWarning)
            res = gradient(p, xs, ys, mask)
            g, norms[step] = bc._clip_by_norm(res.grads, clip, threshold)
        if not (np.isfinite(res.loss) and np.isfinite(norms[step])):
            warnings.warn(f"train_gated: the loss or the gradient overflowed at step {step}; training stopped",
                          BPTTOverflowWarning, stacklevel=2)
            return Training(losses, norms, p, step)
        losses[step] = res.loss
        if adam is None:
            bc._descend(p, g, lr, clip, threshold)
        else:
            adam.step(p, bc.clip_by_value(g, threshold) if clip == "value" else g)
    return Training(losses, norms, p, None)


@dataclass
class LSTMStateJacobian:
    """The LSTM's state is the pair (h_t, c_t). Blocks of d(h_t, c_t)/d(h_k, c_k), each (h, h), with h_k and
    c_k changed independently: hh = dh_t/dh_k, hc = dh_t/dc_k, ch = dc_t/dh_k, cc = dc_t/dc_k; `full` is
    [[hh, hc], [ch, cc]] (2h, 2h). `cell` is dc_t/dc_k when a change of c_k also reaches
    h_k = e_k ⊙ tanh(c_k) (the convention of dL/dc_k): cc + ch · diag(e_k ⊙ (1 − tanh²c_k)) for k >= 1, cc for k = 0."""
    hh: np.ndarray
    hc: np.ndarray
    ch: np.ndarray
    cc: np.ndarray
    full: np.ndarray
    cell: np.ndarray


def _lstm_step_jacobians(p, fw, t):
    """J_t = ∂(h_t, c_t)/∂(h_{t-1}, c_{t-1}) (2h, 2h), one step, from the forward pass `fw` of one sequence:
        ∂c_t/∂h_{t-1} = diag(c_{t-1} ⊙ f_t') W_fh + diag(g_t ⊙ i_t') W_ih + diag(i_t ⊙ g_t') W_gh,  ∂c_t/∂c_{t-1} = diag(f_t)
        ∂h_t/∂h_{t-1} = diag(e_t ⊙ tanh'(c_t)) ∂c_t/∂h_{t-1} + diag(tanh(c_t) ⊙ e_t') W_eh
        ∂h_t/∂c_{t-1} = diag(e_t ⊙ tanh'(c_t) ⊙ f_t)
    (' is the derivative of σ or tanh at the gate's pre-activation: f' = f(1 − f), g' = 1 − g²)."""
    f, i, g, e, c_prev, c = fw.f[t - 1], fw.i[t - 1], fw.g[t - 1], fw.e[t - 1], fw.cs[t - 1], fw.cs[t]
    dc_dh = ((c_prev * f * (1 - f))[:, None] * p["W_fh"] + (g * i * (1 - i))[:, None] * p["W_ih"]
             + (i * (1 - g * g))[:, None] * p["W_gh"])
    k = e * (1 - np.tanh(c) ** 2)                                     # ∂h_t/∂c_t
    dh_dh = k[:, None] * dc_dh + (np.tanh(c) * e * (1 - e))[:, None] * p["W_eh"]
    return np.block([[dh_dh, np.diag(k * f)], [dc_dh, np.diag(f)]])


def lstm_state_jacobian(params, xs, t, k, *, h0=None, c0=None):
    """d(h_t, c_t)/d(h_k, c_k) = J_t J_{t-1} ··· J_{k+1} for one sequence, 0 <= k <= t <= T (the identity for
    t = k), J_i from `_lstm_step_jacobians`. Unlike the GRU's, the LSTM's state is a pair: a product of the
    one-step dc_i/dc_{i-1} of `lstm_cell_jacobian` is not dc_t/dc_k, since c_k also reaches f, i, g, e of
    every later step through h. Returns an `LSTMStateJacobian`."""
    if np.ndim(xs) != 2:
        bc._fail("xs", "one sequence of shape (T, d)", f"shape {np.shape(xs)}")
    t, k = bc._check_int("t", t, 0), bc._check_int("k", k, 0)
    if not k <= t <= len(xs):
        bc._fail("t, k", f"0 <= k <= t <= T = {len(xs)}", f"t = {t}, k = {k}")
    fw = lstm_forward(params, xs, h0, c0)
    p = _check_params(params, LSTM_NAMES, "LSTM")
    h = fw.hs.shape[-1]
    J = np.eye(2 * h)
    with np.errstate(all="ignore"):
        for i in range(k + 1, t + 1):
            J = _lstm_step_jacobians(p, fw, i) @ J
    hh, hc, ch, cc = J[:h, :h], J[:h, h:], J[h:, :h], J[h:, h:]
    dh_dc = np.zeros(h) if k == 0 else fw.e[k - 1] * (1 - np.tanh(fw.cs[k]) ** 2)
    return LSTMStateJacobian(hh, hc, ch, cc, J, cc + ch * dh_dc[None, :])
