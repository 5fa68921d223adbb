"""bptt_gated (LSTM and GRU) against central finite differences of an independent loop-by-loop objective.

The reference below shares no code with bptt_gated: named keys (no stacking), σ(a) = 1/(1 + e^{-a}), and
the surrogate trick of tests/reference.py for truncation (the backward step into (h_{i-1}, c_{i-1}) of
the loss l_s carries a weight E[s-1, i-1]). Bumps added to h_t (after it is computed) and to c_t (before
h_t = e_t ⊙ tanh(c_t) reads it) give dL/dh_t and dL/dc_t by finite differences.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bptt_core as bc
import bptt_gated as bg
from reference import edge_weights, rel_err, step_loss

D, H, Q = 3, 4, 3


def sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def lstm_step(p, x, h, c, bump_c=0.0):
    f = sig(x @ p["W_fx"].T + h @ p["W_fh"].T + p["b_f"])
    i = sig(x @ p["W_ix"].T + h @ p["W_ih"].T + p["b_i"])
    g = np.tanh(x @ p["W_gx"].T + h @ p["W_gh"].T + p["b_g"])
    e = sig(x @ p["W_ex"].T + h @ p["W_eh"].T + p["b_e"])
    c = f * c + i * g + bump_c
    return e * np.tanh(c), c


def gru_step(p, x, h, c=None, bump_c=0.0):
    z = sig(x @ p["W_zx"].T + h @ p["W_zh"].T + p["b_z"])
    r = sig(x @ p["W_rx"].T + h @ p["W_rh"].T + p["b_r"])
    n = np.tanh(x @ p["W_nx"].T + (r * h) @ p["W_nh"].T + p["b_n"])
    return (1.0 - z) * h + z * n, None


def run(step, p, xs, h0, c0):
    hs, cs, h, c = [h0], [c0], h0, c0
    for x in xs:
        h, c = step(p, x, h, c)
        hs.append(h)
        cs.append(c)
    return hs, cs


def surrogate(kind, params0, xs, ys, h0, c0, loss, E, mask=None):
    """f(params, bh, bc, h0, c0) = the mean loss with weighted backward steps; bh[t-1], bc[t-1] bump h_t, c_t."""
    step = lstm_step if kind == "lstm" else gru_step
    T, B = len(xs), (xs.shape[1] if xs.ndim == 3 else 1)
    base_h, base_c = run(step, params0, xs, h0, c0)

    def f(params, bh=None, bcell=None, h_0=h0, c_0=c0):
        total = 0.0
        for s in range(1, T + 1):
            h, c = h_0, c_0
            for i in range(1, s + 1):
                w = E[s - 1, i - 1]
                h_prev = base_h[i - 1] + w * (h - base_h[i - 1])
                c_prev = None if c is None else base_c[i - 1] + w * (c - base_c[i - 1])
                if kind == "lstm":
                    h, c = lstm_step(params, xs[i - 1], h_prev, c_prev, 0.0 if bcell is None else bcell[i - 1])
                else:
                    h, c = gru_step(params, xs[i - 1], h_prev)
                if bh is not None:
                    h = h + bh[i - 1]
            o = h @ params["W_qh"].T + params["b_q"]
            if mask is None:
                total += step_loss(o, ys[s - 1], loss)
            else:
                keep = np.atleast_1d(mask[s - 1])
                y = np.atleast_1d(ys[s - 1]) if loss == "softmax_ce" else np.atleast_2d(ys[s - 1])
                total += step_loss(np.atleast_2d(o)[keep], y[keep], loss) if keep.any() else 0.0
        return total / (T * B if mask is None else int(mask.sum()))

    return f


def problem(kind, T, batch, loss, with_state, seed, dims=(D, H, Q)):
    d, h, q = dims
    rng = np.random.default_rng(seed)
    p = bg.init_lstm(d, h, q, seed=seed) if kind == "lstm" else bg.init_gru(d, h, q, seed=seed)
    p = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in p.items()}     # non-zero biases everywhere
    lead = (T,) if batch is None else (T, batch)
    xs = rng.normal(size=lead + (d,))
    ys = rng.integers(0, q, size=lead) if loss == "softmax_ce" else rng.normal(size=lead + (q,))
    h0 = rng.normal(scale=0.5, size=lead[1:] + (h,)) if with_state else None
    c0 = rng.normal(scale=0.5, size=lead[1:] + (h,)) if with_state and kind == "lstm" else None
    return p, xs, ys, h0, c0


def call(kind, p, xs, ys, **kw):
    if kind == "gru":
        kw.pop("c0", None)
        return bg.gru_bptt(p, xs, ys, **kw)
    return bg.lstm_bptt(p, xs, ys, **kw)


def close(got, numeric):
    """‖got − numeric‖ <= 1e-7 ‖numeric‖ + 1e-8: relative, with an absolute floor for tiny derivatives
    (a central difference of the loss with ε = 1e-6 carries a rounding error of about 1e-16 / ε = 1e-10 per entry)."""
    return np.linalg.norm(got - numeric) <= 1e-7 * np.linalg.norm(numeric) + 1e-8


def check_against_reference(kind, p, xs, ys, h0, c0, loss, truncation, E, mask=None):
    got = call(kind, p, xs, ys, loss=loss, h0=h0, c0=c0, truncation=truncation, mask=mask)
    state = np.zeros(xs.shape[1:-1] + p["W_qh"].shape[1:])
    h0v = state if h0 is None else h0
    c0v = (state if c0 is None else c0) if kind == "lstm" else None
    f = surrogate(kind, p, xs, ys, h0v, c0v, loss, E, mask)
    assert set(got.grads) == set(p)
    assert got.loss == pytest.approx(f(p), rel=1e-12)
    numeric = bc.numerical_gradient(f, p)
    for k, v in numeric.items():
        assert close(got.grads[k], v), k
    zero = np.zeros_like(got.dL_dh)
    assert close(got.dL_dh, bc.numerical_gradient(lambda b: f(p, bh=b), zero))
    assert close(got.dL_dh0, bc.numerical_gradient(lambda v: f(p, h_0=v), h0v.copy()))
    if kind == "lstm":
        assert close(got.dL_dc, bc.numerical_gradient(lambda b: f(p, bcell=b), zero))
        assert close(got.dL_dc0, bc.numerical_gradient(lambda v: f(p, c_0=v), c0v.copy()))
    else:
        assert got.dL_dc is None and got.dL_dc0 is None
    return got


CASES = [(1, None, "softmax_ce", False, 0, (D, H, Q)), (5, None, "softmax_ce", False, 1, (D, H, Q)),
         (5, None, "mse", True, 2, (D, H, Q)), (4, 3, "softmax_ce", True, 3, (D, H, Q)),
         (6, 2, "mse", False, 4, (D, H, Q)), (7, 1, "softmax_ce", True, 5, (D, H, Q)),
         (5, 2, "softmax_ce", True, 6, (1, 1, 2)), (4, None, "mse", True, 7, (5, 2, 1)),
         (3, 4, "softmax_ce", True, 8, (2, 7, 5))]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("T,batch,loss,with_state,seed,dims", CASES)
def test_full_bptt_matches_finite_differences(kind, T, batch, loss, with_state, seed, dims):
    p, xs, ys, h0, c0 = problem(kind, T, batch, loss, with_state, seed, dims)
    check_against_reference(kind, p, xs, ys, h0, c0, loss, None, edge_weights("full", T))


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["lstm", "gru"]), T=st.integers(1, 5), batch=st.one_of(st.none(), st.integers(1, 3)),
       d=st.integers(1, 4), h=st.integers(1, 5), q=st.integers(1, 4), loss=st.sampled_from(["softmax_ce", "mse"]),
       with_state=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_any_shape_matches_finite_differences(kind, T, batch, d, h, q, loss, with_state, seed):
    p, xs, ys, h0, c0 = problem(kind, T, batch, loss, with_state, seed, (d, h, q))
    got = check_against_reference(kind, p, xs, ys, h0, c0, loss, None, edge_weights("full", T))
    lead = (T,) if batch is None else (T, batch)
    assert got.dL_dh.shape == lead + (h,) and got.dL_dh0.shape == lead[1:] + (h,)
    assert all(got.grads[k].shape == p[k].shape for k in p)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("batch", [None, 2])
def test_subsequence_matches_finite_differences(kind, k, batch):
    T = 6
    p, xs, ys, h0, c0 = problem(kind, T, batch, "softmax_ce", True, 10 + k)
    check_against_reference(kind, p, xs, ys, h0, c0, "softmax_ce", bc.Subsequence(k),
                            edge_weights("subsequence", T, k=k))


WINDOWED = [("sliding", 1), ("sliding", 2), ("sliding", 4), ("sliding", 9), ("tbptt", (2, 3)), ("tbptt", (2, 5)),
            ("tbptt", (3, 3)), ("tbptt", (4, 6)), ("tbptt", (1, 1)), ("tbptt", (6, 8))]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("name,arg", WINDOWED, ids=[f"{n}-{a}" for n, a in WINDOWED])
def test_sliding_and_tbptt_match_finite_differences(kind, name, arg):
    T = 6
    p, xs, ys, h0, c0 = problem(kind, T, 2, "softmax_ce", True, 25)
    truncation = bc.Sliding(arg) if name == "sliding" else bc.TBPTT(*arg)
    E = edge_weights(name, T, k=arg)
    check_against_reference(kind, p, xs, ys, h0, c0, "softmax_ce", truncation, E)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_windowed_truncations_equal_their_special_cases(kind):
    """TBPTT(k, k) = Subsequence(k) (computed by two different code paths here); TBPTT(1, k) = Sliding(k)."""
    p, xs, ys, h0, c0 = problem(kind, 7, 3, "mse", True, 26)
    for a, b in [(bc.TBPTT(3, 3), bc.Subsequence(3)), (bc.TBPTT(1, 3), bc.Sliding(3))]:
        ra, rb = call(kind, p, xs, ys, loss="mse", h0=h0, c0=c0, truncation=a), \
            call(kind, p, xs, ys, loss="mse", h0=h0, c0=c0, truncation=b)
        assert rel_err(ra.grads, rb.grads) < 1e-13 and rel_err(ra.dL_dh, rb.dL_dh) < 1e-13


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_randomized_matches_finite_differences(kind):
    T = 6
    p, xs, ys, h0, c0 = problem(kind, T, 2, "mse", True, 21)
    twin = bc.Randomized(0.6, rng=3).step_weights(T)
    check_against_reference(kind, p, xs, ys, h0, c0, "mse", bc.Randomized(0.6, rng=3),
                            edge_weights("randomized", T, w=twin))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [None, 3])
def test_mask_matches_finite_differences(kind, batch):
    T = 5
    p, xs, ys, h0, c0 = problem(kind, T, batch, "softmax_ce", True, 30)
    mask = np.random.default_rng(7).random(xs.shape[:-1]) < 0.5
    mask[-1] = True
    check_against_reference(kind, p, xs, ys, h0, c0, "softmax_ce", None, edge_weights("full", T), mask)
    check_against_reference(kind, p, xs, ys, h0, c0, "softmax_ce", bc.Subsequence(2),
                            edge_weights("subsequence", T, k=2), mask)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("k", [7, 50])
def test_subsequence_of_T_or_more_is_full_bptt(kind, k):
    p, xs, ys, h0, c0 = problem(kind, 7, 2, "softmax_ce", True, 40)
    full = call(kind, p, xs, ys, h0=h0, c0=c0)
    sub = call(kind, p, xs, ys, h0=h0, c0=c0, truncation=bc.Subsequence(k))
    assert sub.loss == full.loss
    for k_ in p:
        np.testing.assert_array_equal(sub.grads[k_], full.grads[k_])
    np.testing.assert_array_equal(sub.dL_dh, full.dL_dh)


def test_truncation_changes_the_gradient():
    """Guards the tests: Subsequence(1) is detectably different from full BPTT, so the checks can fail."""
    p, xs, ys, h0, c0 = problem("lstm", 6, None, "softmax_ce", False, 0)
    full, cut = bg.lstm_bptt(p, xs, ys), bg.lstm_bptt(p, xs, ys, truncation=bc.Subsequence(1))
    assert rel_err(full.grads["W_fh"], cut.grads["W_fh"]) > 1e-2


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_batch_is_the_mean_of_its_sequences(kind):
    p, xs, ys, h0, c0 = problem(kind, 5, 3, "softmax_ce", True, 50)
    batch = call(kind, p, xs, ys, h0=h0, c0=c0)
    singles = [call(kind, p, xs[:, b], ys[:, b], h0=h0[b], c0=None if c0 is None else c0[b]) for b in range(3)]
    assert batch.loss == pytest.approx(np.mean([s.loss for s in singles]), rel=1e-12)
    for k in p:
        np.testing.assert_allclose(batch.grads[k], np.mean([s.grads[k] for s in singles], axis=0), rtol=1e-10,
                                   atol=1e-15)
    np.testing.assert_allclose(batch.dL_dh, np.stack([s.dL_dh for s in singles], axis=1) / 3, rtol=1e-10)


def test_forward_shapes_and_values_match_the_reference():
    p, xs, _, h0, c0 = problem("lstm", 5, 2, "softmax_ce", True, 60)
    fw = bg.lstm_forward(p, xs, h0, c0)
    hs, cs = run(lstm_step, p, xs, h0, c0)
    np.testing.assert_allclose(fw.hs, np.stack(hs), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(fw.cs, np.stack(cs), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(fw.f[2], sig(xs[2] @ p["W_fx"].T + hs[2] @ p["W_fh"].T + p["b_f"]), rtol=1e-13)
    assert fw.i.shape == fw.g.shape == fw.e.shape == (5, 2, H) and fw.os.shape == (5, 2, Q)
    p, xs, _, h0, _ = problem("gru", 5, None, "softmax_ce", True, 61)
    fw = bg.gru_forward(p, xs, h0)
    np.testing.assert_allclose(fw.hs, np.stack(run(gru_step, p, xs, h0, None)[0]), rtol=1e-13, atol=1e-15)
    assert fw.z.shape == fw.r.shape == fw.n.shape == (5, H) and fw.os.shape == (5, Q)


# --------------------------------------------------------------------------------------------
# Checks whose expected values do not come from bptt_gated.
# --------------------------------------------------------------------------------------------

def test_gru_with_open_update_and_reset_gates_is_the_tanh_rnn():
    """z ≡ 1 and r ≡ 1 (biases +60: σ = 1 in float64) make h_t = tanh(W_nx x_t + W_nh h_{t-1} + b_n): the
    tanh RNN of bptt_core (tested on its own) with W_hx = W_nx, W_hh = W_nh, b_h = b_n."""
    p, xs, ys, h0, _ = problem("gru", 6, 2, "softmax_ce", True, 70)
    p["b_z"][:], p["b_r"][:] = 60.0, 60.0
    gru = bg.gru_bptt(p, xs, ys, h0=h0)
    rnn_params = {"W_hx": p["W_nx"], "W_hh": p["W_nh"], "b_h": p["b_n"], "W_qh": p["W_qh"], "b_q": p["b_q"]}
    rnn = bc.bptt(rnn_params, xs, ys, h0=h0)
    assert gru.loss == pytest.approx(rnn.loss, rel=1e-13)
    for g_name, r_name in [("W_nx", "W_hx"), ("W_nh", "W_hh"), ("b_n", "b_h"), ("W_qh", "W_qh"), ("b_q", "b_q")]:
        np.testing.assert_allclose(gru.grads[g_name], rnn.grads[r_name], rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(gru.dL_dh, rnn.dL_dh, rtol=1e-10, atol=1e-16)
    for name in ("W_zx", "W_zh", "b_z", "W_rx", "W_rh", "b_r"):       # saturated gates learn nothing
        assert np.abs(gru.grads[name]).max() < 1e-20


def test_lstm_with_open_gates_and_no_recurrence_carries_dL_dc_unchanged():
    """f ≡ i ≡ e ≡ 1 and W_*h = 0: c_t = c_{t-1} + tanh(W_gx x_t + b_g), so dc_T/dc_t = I. With the loss at
    step T only, dL/dc_t = dL/dc_T = e_T ⊙ (1 − tanh²c_T) ⊙ W_qhᵀ (softmax(o_T) − onehot(y_T)) for every t,
    and dL/dh_t = 0 for t < T: computed here by hand from c_T."""
    p, xs, ys, _, c0 = problem("lstm", 8, None, "softmax_ce", True, 80)
    for gate in "fie":
        p[f"b_{gate}"][:] = 60.0
    for gate in "fige":
        p[f"W_{gate}h"][:] = 0.0
    mask = np.zeros(8, bool)
    mask[-1] = True
    got = bg.lstm_bptt(p, xs, ys, c0=c0, mask=mask)
    c_T = c0 + np.tanh(xs @ p["W_gx"].T + p["b_g"]).sum(axis=0)
    o_T = np.tanh(c_T) @ p["W_qh"].T + p["b_q"]
    y_hat = np.exp(o_T - o_T.max()) / np.exp(o_T - o_T.max()).sum()
    expected = (1.0 - np.tanh(c_T) ** 2) * ((y_hat - np.eye(Q)[ys[-1]]) @ p["W_qh"])
    np.testing.assert_allclose(got.dL_dc, np.tile(expected, (8, 1)), rtol=1e-12)
    np.testing.assert_allclose(got.dL_dc0, expected, rtol=1e-12)
    np.testing.assert_array_equal(got.dL_dh[:-1], 0.0)


# --------------------------------------------------------------------------------------------
# One-step Jacobians against finite differences of the reference step.
# --------------------------------------------------------------------------------------------

def jacobian_fd(fn, v, eps=1e-6):
    cols = []
    for j in range(len(v)):
        d = np.zeros_like(v)
        d[j] = eps
        cols.append((fn(v + d) - fn(v - d)) / (2 * eps))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("t", [1, 2, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_lstm_cell_jacobian_direct_and_total(t, seed):
    p, xs, _, h0, c0 = problem("lstm", 5, None, "softmax_ce", True, 90 + seed)
    hs, cs = run(lstm_step, p, xs, h0, c0)
    J = bg.lstm_cell_jacobian(p, xs, t, h0=h0, c0=c0)
    # ∂c_t/∂c_{t-1}: h_{t-1} held fixed
    direct = jacobian_fd(lambda c: lstm_step(p, xs[t - 1], hs[t - 1], c)[1], cs[t - 1])
    np.testing.assert_allclose(J.direct, np.diag(np.diag(direct)), atol=1e-9)   # diag(f_t) ...
    np.testing.assert_allclose(direct, J.direct, atol=1e-9)                     # ... and nothing off the diagonal
    # dc_t/dc_{t-1}: a bump on c_{t-1} also moves h_{t-1} = e_{t-1} ⊙ tanh(c_{t-1})
    if t == 1:
        total = direct
    else:
        def c_t(bump):
            h, c = lstm_step(p, xs[t - 2], hs[t - 2], cs[t - 2], bump_c=bump - cs[t - 1])
            return lstm_step(p, xs[t - 1], h, c)[1]
        total = jacobian_fd(c_t, cs[t - 1])
    np.testing.assert_allclose(J.total, total, atol=1e-9)
    np.testing.assert_allclose(J.total, J.direct + J.via_h, rtol=1e-15)
    if t > 1:
        assert np.abs(J.via_h).max() > 1e-3                 # the h path is really there


@pytest.mark.parametrize("t", [1, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_gru_state_jacobian(t, seed):
    p, xs, _, h0, _ = problem("gru", 5, None, "softmax_ce", True, 95 + seed)
    hs, _ = run(gru_step, p, xs, h0, None)
    J = bg.gru_state_jacobian(p, xs, t, h0=h0)
    np.testing.assert_allclose(J.total, jacobian_fd(lambda h: gru_step(p, xs[t - 1], h)[0], hs[t - 1]), atol=1e-9)
    z = sig(xs[t - 1] @ p["W_zx"].T + hs[t - 1] @ p["W_zh"].T + p["b_z"])
    np.testing.assert_allclose(J.interpolation, np.diag(1 - z), rtol=1e-13)


def test_gru_jacobian_with_closed_update_gate_is_the_identity():
    """z ≡ 0 (b_z = −60): h_t = h_{t-1}, so dh_t/dh_{t-1} = I exactly."""
    p, xs, _, h0, _ = problem("gru", 4, None, "softmax_ce", True, 99)
    p["b_z"][:] = -60.0
    np.testing.assert_allclose(bg.gru_state_jacobian(p, xs, 3, h0=h0).total, np.eye(H), atol=1e-20)


# --------------------------------------------------------------------------------------------
# Bad input and overflow.
# --------------------------------------------------------------------------------------------

def bad_cases():
    p, xs, ys, _, _ = problem("lstm", 4, 2, "softmax_ce", False, 0)
    g = bg.init_gru(D, H, Q)
    no_bias = {k: v for k, v in p.items() if k != "b_f"}
    yield "params", lambda: bg.lstm_bptt(no_bias, xs, ys)
    yield "params", lambda: bg.lstm_bptt(g, xs, ys)                      # GRU parameters to the LSTM
    yield "params['W_ih']", lambda: bg.lstm_bptt({**p, "W_ih": np.ones((H, H + 1))}, xs, ys)
    yield "params['b_g']", lambda: bg.lstm_bptt({**p, "b_g": np.ones(H + 1)}, xs, ys)
    yield "params['W_qh']", lambda: bg.lstm_bptt({**p, "W_qh": np.ones((Q, H - 1))}, xs, ys)
    yield "params['b_q']", lambda: bg.lstm_bptt({**p, "b_q": np.ones(Q + 1)}, xs, ys)
    yield "params['W_fx']", lambda: bg.lstm_bptt({**p, "W_fx": np.ones(H)}, xs, ys)
    yield "params['W_zh']", lambda: bg.gru_bptt({**g, "W_zh": np.full((H, H), np.nan)}, xs, ys)
    yield "xs", lambda: bg.lstm_bptt(p, xs[..., :2], ys)
    yield "xs", lambda: bg.gru_forward(g, np.ones((0, D)))
    yield "ys", lambda: bg.lstm_bptt(p, xs, ys + 0.5)
    yield "ys", lambda: bg.lstm_bptt(p, xs, ys[:, :1])
    yield "ys", lambda: bg.gru_bptt(g, xs, np.full(ys.shape, Q))
    yield "ys", lambda: bg.lstm_bptt(p, xs, ys, loss="mse")
    yield "loss", lambda: bg.lstm_bptt(p, xs, ys, loss="hinge")
    yield "h0", lambda: bg.lstm_bptt(p, xs, ys, h0=np.zeros(H))
    yield "c0", lambda: bg.lstm_bptt(p, xs, ys, c0=np.zeros((3, H)))
    yield "mask", lambda: bg.gru_bptt(g, xs, ys, mask=np.zeros(ys.shape, bool))
    yield "mask", lambda: bg.lstm_bptt(p, xs, ys, mask=np.ones(4, bool))
    yield "truncation", lambda: bg.lstm_bptt(p, xs, ys, truncation="full")
    yield "truncation", lambda: bg.gru_bptt(g, xs, ys, truncation=3)
    yield "forget_bias", lambda: bg.init_lstm(D, H, Q, forget_bias=np.inf)
    yield "h", lambda: bg.init_gru(D, 0, Q)
    yield "xs", lambda: bg.lstm_cell_jacobian(p, xs, 1)
    yield "t", lambda: bg.lstm_cell_jacobian(p, xs[:, 0], 5)
    yield "t", lambda: bg.gru_state_jacobian(g, xs[:, 0], 0)
    yield "t, k", lambda: bg.lstm_state_jacobian(p, xs[:, 0], 2, 3)
    yield "xs", lambda: bg.lstm_state_jacobian(p, xs, 2, 1)
    yield "kind", lambda: bg.train_gated("rnn", p, [(xs, ys)], lr=0.1)
    yield "params", lambda: bg.train_gated("gru", p, [(xs, ys)], lr=0.1)
    yield "batches", lambda: bg.train_gated("lstm", p, [], lr=0.1)
    yield "batches", lambda: bg.train_gated("lstm", p, [(xs,)], lr=0.1)
    yield "optimizer", lambda: bg.train_gated("lstm", p, [(xs, ys)], lr=0.1, optimizer="rmsprop")
    yield "lr", lambda: bg.train_gated("lstm", p, [(xs, ys)], lr=0)
    yield "threshold", lambda: bg.train_gated("lstm", p, [(xs, ys)], lr=0.1, clip="norm")


@pytest.mark.parametrize("i", range(len(list(bad_cases()))))
def test_bad_input_names_the_argument(i):
    name, fn = list(bad_cases())[i]
    with pytest.raises(ValueError, match=r"^" + name.replace("[", r"\[").replace("]", r"\]") + ": expected .+, got "):
        fn()


def exploding(kind, T=2000):
    """Recurrent weights scaled up until ‖dL/dh_t‖ grows by a large factor per step backwards (the
    trajectory is chaotic; at T = 2000 about half of dL/dh_t overflows for these seeds, a wide margin)."""
    rng = np.random.default_rng(0)
    if kind == "lstm":
        p, scale, gates = bg.init_lstm(2, 32, 2, seed=0), 24.0, "fige"
    else:
        p, scale, gates = bg.init_gru(2, 32, 2, seed=1), 12.0, "zrn"
    for g in gates:
        p[f"W_{g}h"] *= scale
    xs, ys = 0.1 * rng.normal(size=(T, 2)), rng.integers(0, 2, T)
    mask = np.zeros(T, bool)
    mask[-1] = True
    return p, xs, ys, mask


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gated_gradients_can_still_explode_and_overflow_is_reported_once(kind):
    p, xs, ys, mask = exploding(kind, T=300)
    short = call(kind, p, xs, ys, mask=mask)                           # no warning at T = 300 ...
    norms = np.linalg.norm(short.dL_dh, axis=1)
    assert norms[0] > 1e20 * norms[-1]                                  # ... but already a huge growth
    p, xs, ys, mask = exploding(kind)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = call(kind, p, xs, ys, mask=mask)
    assert [w.category for w in caught] == [bc.BPTTOverflowWarning]
    assert np.isfinite(res.loss)
    arrays = [res.dL_dh, res.dL_dh0, *res.grads.values()] + ([res.dL_dc, res.dL_dc0] if kind == "lstm" else [])
    assert not any(np.isnan(a).any() for a in arrays)
    assert np.isinf(res.dL_dh[0]).any() and np.isinf(res.grads["W_qh"]).sum() == 0


def test_nan_from_inf_minus_inf_in_the_forward_pass_is_reported():
    p, xs, ys, h0, c0 = problem("lstm", 3, None, "mse", True, 0)
    p["W_gh"] = np.zeros((H, H))
    p["W_gh"][:, 0], p["W_gh"][:, 1] = 1e308, -1e308      # W_gh h_0 holds the terms +inf and -inf: NaN in any order
    h0 = np.full(H, 10.0)
    with pytest.warns(bc.BPTTOverflowWarning, match="gate pre-activations"):
        fw = bg.lstm_forward(p, xs, h0=h0, c0=c0)
    assert not np.isnan(fw.hs).any() and not np.isnan(fw.os).any()
    with pytest.warns(bc.BPTTOverflowWarning):
        res = bg.lstm_bptt(p, xs, ys, loss="mse", h0=h0, c0=c0)
    assert not any(np.isnan(g).any() for g in res.grads.values())


# --------------------------------------------------------------------------------------------
# Training.
# --------------------------------------------------------------------------------------------

def recall_batches(n, delay=3, T=8, B=16, seed=0):
    """Recall the bit seen `delay` steps ago (loss on the steps t > delay only)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        bits = rng.integers(0, 2, size=(T, B))
        ys = np.zeros_like(bits)
        ys[delay:] = bits[:-delay]
        mask = np.zeros(bits.shape, bool)
        mask[delay:] = True
        out.append((np.eye(2)[bits], ys, mask))
    return out


@pytest.mark.parametrize("kind,optimizer", [("lstm", "adam"), ("gru", "adam"), ("lstm", "sgd"), ("tanh", "sgd")])
def test_training_lowers_the_loss(kind, optimizer):
    init = {"lstm": lambda: bg.init_lstm(2, 8, 2, seed=1), "gru": lambda: bg.init_gru(2, 8, 2, seed=1),
            "tanh": lambda: bc.random_params(2, 8, 2, rho=0.9, seed=1)}[kind]
    p0 = init()
    batches = recall_batches(150)
    lr = 0.02 if optimizer == "adam" else 1.0
    tr = bg.train_gated(kind, p0, batches, lr=lr, clip="norm", threshold=1.0, optimizer=optimizer)
    assert tr.diverged_at is None and set(tr.params) == set(p0)
    assert tr.losses[-10:].mean() < 0.85 * tr.losses[:5].mean()
    assert np.all(tr.norms > 0)
    assert all(np.array_equal(p0[k], init()[k]) for k in p0)          # the caller's params are not changed
    step = bg.train_gated(kind, p0, batches[:1], lr=lr, optimizer=optimizer)   # one step by hand:
    res = (bc.bptt(p0, *batches[0][:2], mask=batches[0][2]) if kind == "tanh" else
           call(kind, p0, *batches[0][:2], mask=batches[0][2]))
    expected = {k: p0[k] - (lr * res.grads[k] if optimizer == "sgd"
                            else lr * np.sign(res.grads[k]) * np.abs(res.grads[k]) / (np.abs(res.grads[k]) + 1e-8))
                for k in p0}
    for k in p0:
        np.testing.assert_allclose(step.params[k], expected[k], rtol=1e-9, atol=1e-12)


def test_training_stops_where_it_overflows():
    p, xs, ys, mask = exploding("lstm")
    with pytest.warns(bc.BPTTOverflowWarning, match="step 1"):
        tr = bg.train_gated("lstm", p, [(xs[:50], ys[:50]), (xs, ys, mask)], lr=1e-6, clip="norm", threshold=1.0)
    assert tr.diverged_at == 1 and np.isfinite(tr.losses[0]) and np.isinf(tr.losses[1])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_one_clipped_step_by_hand(kind):
    """clip="norm": g ← θ g/‖g‖ when ‖g‖ > θ, ‖g‖ over every parameter together; norms are recorded before clipping."""
    p0 = bg.init_lstm(2, 5, 2, seed=3) if kind == "lstm" else bg.init_gru(2, 5, 2, seed=3)
    xs, ys, mask = recall_batches(1, seed=4)[0]
    g = call(kind, p0, xs, ys, mask=mask).grads
    norm = np.sqrt(sum(np.sum(v ** 2) for v in g.values()))
    theta = norm / 3
    tr = bg.train_gated(kind, p0, [(xs, ys, mask)], lr=0.5, clip="norm", threshold=theta)
    assert tr.norms[0] == pytest.approx(norm, rel=1e-12)
    for k in p0:
        np.testing.assert_allclose(tr.params[k], p0[k] - 0.5 * g[k] / 3, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("t,k", [(5, 2), (4, 3), (3, 0), (2, 2)])
def test_lstm_state_jacobian_over_several_steps(t, k):
    p, xs, _, h0, c0 = problem("lstm", 6, None, "softmax_ce", True, 5)
    hs, cs = run(lstm_step, p, xs, h0, c0)

    def later(h_k, c_k):
        h, c = h_k, c_k
        for i in range(k + 1, t + 1):
            h, c = lstm_step(p, xs[i - 1], h, c)
        return np.concatenate([h, c])

    S = bg.lstm_state_jacobian(p, xs, t, k, h0=h0, c0=c0)
    fd = np.concatenate([jacobian_fd(lambda v: later(v, cs[k]), hs[k]), jacobian_fd(lambda v: later(hs[k], v), cs[k])],
                        axis=1)
    np.testing.assert_allclose(S.full, fd, atol=1e-9)
    np.testing.assert_array_equal(S.full, np.block([[S.hh, S.hc], [S.ch, S.cc]]))
    if k == 0:                                                  # h_0 is an input, not made from c_0
        np.testing.assert_array_equal(S.cell, S.cc)
    else:                                                       # c_k bumped before h_k = e_k ⊙ tanh(c_k) reads it
        def c_t(v):
            h, c = lstm_step(p, xs[k - 1], hs[k - 1], cs[k - 1], bump_c=v - cs[k])
            return later(h, c)[H:]
        np.testing.assert_allclose(S.cell, jacobian_fd(c_t, cs[k]), atol=1e-9)
    if t == k:
        np.testing.assert_array_equal(S.full, np.eye(2 * H))
    if t == k + 1:
        np.testing.assert_allclose(S.cell, bg.lstm_cell_jacobian(p, xs, t, h0=h0, c0=c0).total, rtol=1e-14)


def test_a_product_of_one_step_cell_jacobians_is_not_the_multi_step_one():
    """c_k also reaches every later gate through h: the one-step dc_i/dc_{i-1} do not chain."""
    p, xs, _, h0, c0 = problem("lstm", 6, None, "softmax_ce", True, 5)
    product = np.eye(H)
    for i in range(3, 6):
        product = bg.lstm_cell_jacobian(p, xs, i, h0=h0, c0=c0).total @ product
    exact = bg.lstm_state_jacobian(p, xs, 5, 2, h0=h0, c0=c0).cell
    assert rel_err(product, exact) > 1e-2


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("loss", ["softmax_ce", "mse"])
def test_loss_functions_match_the_reference_and_bptt(kind, loss):
    p, xs, ys, h0, c0 = problem(kind, 5, 2, loss, True, 110)
    mask = np.random.default_rng(1).random((5, 2)) < 0.6
    mask[0, 0] = True
    h0v, c0v = h0, (c0 if kind == "lstm" else None)
    expected = surrogate(kind, p, xs, ys, h0v, c0v, loss, edge_weights("full", 5), mask)(p)
    got = (bg.lstm_loss(p, xs, ys, loss=loss, h0=h0, c0=c0, mask=mask) if kind == "lstm"
           else bg.gru_loss(p, xs, ys, loss=loss, h0=h0, mask=mask))
    assert got == pytest.approx(expected, rel=1e-12)
    assert call(kind, p, xs, ys, loss=loss, h0=h0, c0=c0, mask=mask).loss == pytest.approx(expected, rel=1e-12)


def test_overflow_of_dL_dh0_alone_is_reported():
    """h_0 = 0 hides a huge W_fh from the forward pass and from dL/dW_fh = δf_1 h_0ᵀ = 0, but
    dL/dh_0 = W_fhᵀ δf_1 + ... overflows: it must be reported too."""
    p = bg.init_lstm(2, 3, 2, seed=0)
    p["W_fh"] = np.full((3, 3), 1e307)
    xs, ys, c0 = np.ones((1, 2)), np.array([[1e3, -1e3]]), np.ones(3)
    with pytest.warns(bc.BPTTOverflowWarning, match="dL/dh_0"):
        res = bg.lstm_bptt(p, xs, ys, loss="mse", c0=c0)
    assert np.isinf(res.dL_dh0).all() and all(np.isfinite(g).all() for g in res.grads.values())
