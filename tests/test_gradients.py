"""Every gradient of bptt_core checked against central finite differences of an independent objective."""
import itertools
import tracemalloc

import numpy as np
import pytest

import bptt_core as bc
from reference import edge_weights, run_states, surrogate

T, D, H, Q = 5, 3, 4, 3


def rel_err(a, b):
    """‖a − b‖ / max(‖a‖, ‖b‖) over all entries of two dicts (or arrays)."""
    if isinstance(a, dict):
        a, b = flat(a), flat(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


def flat(grads):
    return np.concatenate([grads[k].ravel() for k in bc.PARAM_NAMES])


def problem(batch, with_h0, loss, seed=0):
    rng = np.random.default_rng(seed)
    params = bc.random_params(D, H, Q, rho=0.9, seed=seed)
    lead = (T,) if batch is None else (T, batch)
    xs = rng.normal(size=lead + (D,))
    h0 = rng.normal(scale=0.5, size=lead[1:] + (H,)) if with_h0 else None
    ys = rng.integers(0, Q, size=lead) if loss == "softmax_ce" else rng.normal(size=lead + (Q,))
    return params, xs, ys, h0


TRUNCATIONS = [
    ("full", None), ("subsequence", 1), ("subsequence", 2), ("subsequence", T), ("subsequence", T + 3),
    ("sliding", 1), ("sliding", 2), ("sliding", 3), ("sliding", T), ("sliding", T + 3), ("randomized", 0.5),
]
CASES = list(itertools.product(["identity", "tanh"], ["softmax_ce", "mse"], [None, 2], [False, True]))


def make_truncation(kind, arg, seed=11):
    """The core's truncation object and the test's own edge-weight matrix for it."""
    if kind == "full":
        return None, edge_weights("full", T)
    if kind == "subsequence":
        return bc.Subsequence(arg), edge_weights("subsequence", T, k=arg)
    if kind == "sliding":
        return bc.Sliding(arg), edge_weights("sliding", T, k=arg)
    if kind == "tbptt":
        return bc.TBPTT(*arg), edge_weights("tbptt", T, k=arg)
    twin = bc.Randomized(arg, rng=seed).step_weights(T)   # the draws bptt will make with the same seed
    return bc.Randomized(arg, rng=seed), edge_weights("randomized", T, w=twin)


@pytest.mark.parametrize("kind,arg", TRUNCATIONS, ids=[f"{k}-{a}" for k, a in TRUNCATIONS])
@pytest.mark.parametrize("activation,loss,batch,with_h0", CASES,
                         ids=["-".join(map(str, c)) for c in CASES])
def test_gradients_and_dL_dh_match_finite_differences(kind, arg, activation, loss, batch, with_h0):
    params, xs, ys, h0 = problem(batch, with_h0, loss)
    truncation, E = make_truncation(kind, arg)
    got = bc.bptt(params, xs, ys, activation=activation, loss=loss, h0=h0, truncation=truncation)
    h0_value = np.zeros(xs.shape[1:-1] + (H,)) if h0 is None else h0
    f = surrogate(params, xs, ys, h0_value, activation, loss, E)

    assert got.loss == pytest.approx(f(params), rel=1e-12)
    assert rel_err(got.grads, bc.numerical_gradient(f, params)) < 1e-7
    zero = np.zeros_like(got.dL_dh)
    numeric_dL_dh = bc.numerical_gradient(lambda bumps: f(params, bumps), zero)
    assert rel_err(got.dL_dh, numeric_dL_dh) < 1e-7


def test_the_immediate_term_alone_is_not_the_gradient():
    """Guards the tests themselves: treating dh_t/dW_hh as h_{t-1}ᵀ (D2L issues #2505, #2616) is
    detectably wrong, so the comparison above can fail."""
    params, xs, ys, _ = problem(None, False, "softmax_ce")
    truncated = bc.bptt(params, xs, ys, truncation=bc.Sliding(1)).grads["W_hh"]
    full = bc.bptt(params, xs, ys).grads["W_hh"]
    assert rel_err(truncated, full) > 1e-2


def test_loss_value_matches_bptt_and_an_explicit_mean():
    params, xs, ys, h0 = problem(3, True, "softmax_ce")
    hs = run_states(params, xs, h0, "tanh")
    explicit = 0.0
    for t in range(T):
        o = hs[t + 1] @ params["W_qh"].T
        p = np.exp(o) / np.exp(o).sum(axis=1, keepdims=True)
        explicit += -np.log(p[np.arange(3), ys[t]]).sum()
    explicit /= T * 3
    assert bc.loss_value(params, xs, ys, h0=h0) == pytest.approx(explicit, rel=1e-12)
    assert bc.bptt(params, xs, ys, h0=h0).loss == pytest.approx(explicit, rel=1e-12)


def test_linear_closed_form_with_powers_of_W_hh():
    """D2L: dL/dh_t = Σ_{i=t}^{T} (W_hhᵀ)^{T-i} W_qhᵀ ∂L/∂o_{T+t-i} for the identity activation."""
    params, xs, ys, _ = problem(None, False, "mse")
    got = bc.bptt(params, xs, ys, activation="identity", loss="mse")
    os = bc.forward(params, xs, activation="identity").os
    dL_do = (os - ys) / T
    for t in range(1, T + 1):
        closed = sum(np.linalg.matrix_power(params["W_hh"].T, T - i) @ params["W_qh"].T @ dL_do[T + t - i - 1]
                     for i in range(t, T + 1))
        np.testing.assert_allclose(got.dL_dh[t - 1], closed, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("k", [1, 2, 3, 7, 40])
def test_sliding_general_path_reaches_full_bptt_when_the_window_covers_everything(k):
    """`bptt` sends Sliding(k >= T) to the full path; the windowed recursion itself must agree too."""
    params, xs, ys, _ = problem(2, True, "softmax_ce")
    full = bc.bptt(params, xs, ys).dL_dh
    hs = run_states(params, xs, np.zeros((2, H)), "tanh")
    os = np.stack(hs[1:]) @ params["W_qh"].T
    p = np.exp(os) / np.exp(os).sum(-1, keepdims=True)
    dL_do = p.copy()
    np.put_along_axis(dL_do, ys[..., None], np.take_along_axis(p, ys[..., None], -1) - 1, -1)
    dL_do /= T * 2
    windowed = bc._sliding_states(params["W_hh"], dL_do @ params["W_qh"], 1 - np.stack(hs[1:]) ** 2, k)
    if k >= T:
        np.testing.assert_allclose(windowed, full, rtol=1e-12, atol=1e-16)
    else:
        assert rel_err(windowed, full) > 1e-6


@pytest.mark.parametrize("truncation", [bc.Subsequence(5), bc.Subsequence(9), bc.Sliding(5), bc.Sliding(8)],
                         ids=repr)
def test_truncation_with_k_at_least_T_is_full_bptt_exactly(truncation):
    params, xs, ys, h0 = problem(3, True, "softmax_ce")
    full = bc.bptt(params, xs, ys, h0=h0)
    cut = bc.bptt(params, xs, ys, h0=h0, truncation=truncation)
    assert cut.loss == full.loss
    for name in bc.PARAM_NAMES:
        np.testing.assert_array_equal(cut.grads[name], full.grads[name])
    np.testing.assert_array_equal(cut.dL_dh, full.dL_dh)


def test_truncation_never_changes_the_forward_pass_or_the_loss():
    params, xs, ys, h0 = problem(2, True, "softmax_ce")
    full = bc.bptt(params, xs, ys, h0=h0).loss
    assert full == pytest.approx(bc.loss_value(params, xs, ys, h0=h0), rel=1e-15)
    for t in (bc.Subsequence(1), bc.Sliding(2), bc.Randomized(0.3, rng=0)):
        # the same terms, summed chunk by chunk: equal up to the order of a floating-point sum
        assert bc.bptt(params, xs, ys, h0=h0, truncation=t).loss == pytest.approx(full, rel=1e-14)


def test_subsequence_does_not_keep_dL_dh_when_asked_not_to():
    params, xs, ys, _ = problem(2, False, "softmax_ce")
    kept = bc.bptt(params, xs, ys, truncation=bc.Subsequence(2))
    dropped = bc.bptt(params, xs, ys, truncation=bc.Subsequence(2), keep_dL_dh=False)
    assert dropped.dL_dh is None
    for name in bc.PARAM_NAMES:
        np.testing.assert_array_equal(dropped.grads[name], kept.grads[name])


def test_randomized_truncation_is_unbiased_and_varies():
    """Monte Carlo with a fixed seed: the mean of N draws is within a few standard errors of the full
    gradient in every coordinate, and single draws genuinely differ from it and from each other."""
    params, xs, ys, _ = problem(None, False, "softmax_ce", seed=3)
    full = bc.bptt(params, xs, ys)
    full_vec = flat(full.grads)
    rand = bc.Randomized(0.4, rng=2024)
    draws = np.array([flat(bc.bptt(params, xs, ys, truncation=rand).grads) for _ in range(4000)])
    mean, sem = draws.mean(axis=0), draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    varies = sem > 1e-9 * np.abs(full_vec).max()           # W_qh differs only by rounding
    z = np.abs(mean[varies] - full_vec[varies]) / sem[varies]
    assert z.max() < 4.5, z.max()
    np.testing.assert_allclose(mean[~varies], full_vec[~varies], rtol=1e-12)   # W_qh: never truncated
    assert varies.sum() >= H * (D + H)                                          # W_hx and W_hh all vary
    assert len({tuple(np.round(d, 12)) for d in draws[:50]}) > 10
    assert rel_err(draws[0], full_vec) > 1e-3


def test_randomized_step_weights_are_zero_or_one_over_pi_with_mean_one():
    w = bc.Randomized(0.25, rng=5).step_weights(200_000)
    assert set(np.unique(w)) == {0.0, 4.0}
    assert abs(w.mean() - 1.0) < 4 * np.sqrt(0.25 * 0.75) * 4 / np.sqrt(len(w))


def test_randomized_accepts_a_generator_and_pi_one_is_full_bptt():
    params, xs, ys, _ = problem(2, False, "mse")
    full = bc.bptt(params, xs, ys, loss="mse")
    one = bc.bptt(params, xs, ys, loss="mse", truncation=bc.Randomized(1.0, rng=np.random.default_rng(1)))
    assert rel_err(one.grads, full.grads) == 0.0


def test_connectivity_matches_each_definition():
    T_ = 7
    np.testing.assert_array_equal(bc.connectivity(None, T_), np.tril(np.ones((T_, T_))))
    s, t = np.indices((T_, T_)) + 1
    np.testing.assert_array_equal(bc.connectivity(bc.Sliding(3), T_), ((t <= s) & (t >= s - 2)).astype(float))
    chunk = (s - 1) // 3 == (t - 1) // 3
    np.testing.assert_array_equal(bc.connectivity(bc.Subsequence(3), T_), (chunk & (t <= s)).astype(float))
    w = bc.Randomized(0.5, rng=4).step_weights(T_)
    expected = np.array([[np.prod(w[j:i]) if j <= i - 1 else float(j == i) for j in range(1, T_ + 1)]
                         for i in range(1, T_ + 1)])
    expected = np.tril(np.where(s == t, 1.0, expected))
    np.testing.assert_array_equal(bc.connectivity(bc.Randomized(0.5, rng=4), T_), expected)


def test_numerical_gradient_on_known_functions():
    W = np.array([[1.0, -2.0], [0.5, 3.0]])
    np.testing.assert_allclose(bc.numerical_gradient(lambda a: np.sum(a ** 3), W), 3 * W ** 2, rtol=1e-9)
    g = bc.numerical_gradient(lambda p: float(p["a"] @ p["b"]), {"a": np.arange(3.0), "b": np.ones(3)})
    np.testing.assert_allclose(g["a"], np.ones(3), rtol=1e-9)
    np.testing.assert_allclose(g["b"], np.arange(3.0), atol=1e-9)


@pytest.mark.parametrize("spread", [1.0, 1e3, 1e6])
def test_softmax_loss_is_stable_for_widely_spread_logits(spread):
    """Both shifts of the log-sum-exp (one for all rows, or one per row) agree with an exact reference."""
    params = {"W_hx": np.eye(2), "W_hh": np.zeros((2, 2)), "W_qh": np.array([[1.0, 0.0], [0.0, 1.0]])}
    xs = np.array([[[spread, 0.0], [0.0, 0.5]], [[-spread, -spread - 1.0], [2.0, 1.0]]])
    ys = np.array([[0, 1], [1, 0]])
    res = bc.bptt(params, xs, ys, activation="identity")
    o = xs.reshape(-1, 2)                                  # h_t = x_t and o_t = h_t here
    exact = np.logaddexp(o[:, 0], o[:, 1]) - o[np.arange(4), ys.ravel()]
    assert res.loss == pytest.approx(exact.mean(), rel=1e-10)
    assert np.isfinite(res.dL_dh).all()


@pytest.mark.parametrize("activation,loss,batch,with_h0", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_rtrl_forward_mode_equals_bptt(activation, loss, batch, with_h0):
    params, xs, ys, h0 = problem(batch, with_h0, loss)
    back = bc.bptt(params, xs, ys, activation=activation, loss=loss, h0=h0)
    fwd = bc.rtrl(params, xs, ys, activation=activation, loss=loss, h0=h0)
    assert fwd.loss == pytest.approx(back.loss, rel=1e-13) and fwd.dL_dh is None
    assert rel_err(fwd.grads, back.grads) < 1e-12


@pytest.mark.parametrize("activation", ["identity", "tanh"])
@pytest.mark.parametrize("batch", [None, 2])
def test_state_sensitivities_are_total_derivatives_of_the_states(activation, batch):
    params, xs, _, h0 = problem(batch, True, "mse")
    S = bc.state_sensitivities(params, xs, h0=h0, activation=activation)
    for t in (0, 1, T):
        for name in ("W_hx", "W_hh"):
            for i in range(H):
                idx = (t, 0, i) if batch else (t, i)
                numeric = bc.numerical_gradient(
                    lambda p: bc.forward(p, xs, h0=h0, activation=activation).hs[idx], params)[name]
                np.testing.assert_allclose(S[name][idx], numeric, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("activation", ["identity", "tanh"])
def test_backprop_states_from_a_direct_gradient(activation):
    """Fed W_qhᵀ ∂L/∂o_t it reproduces bptt; fed an arbitrary loss of the states it matches
    finite differences of that loss."""
    params, xs, ys, h0 = problem(2, True, "mse")
    res = bc.bptt(params, xs, ys, activation=activation, loss="mse", h0=h0)
    os = bc.forward(params, xs, h0=h0, activation=activation).os
    direct = ((os - ys) / (T * 2)) @ params["W_qh"]
    dL_dh, grads = bc.backprop_states(params, xs, direct, h0=h0, activation=activation)
    np.testing.assert_allclose(dL_dh, res.dL_dh, rtol=1e-12, atol=1e-16)
    for name in ("W_hx", "W_hh"):
        np.testing.assert_allclose(grads[name], res.grads[name], rtol=1e-12, atol=1e-16)
    c = np.random.default_rng(9).normal(size=(T, 2, H))
    f = lambda p: float(np.sum(c * np.sin(bc.forward(p, xs, h0=h0, activation=activation).hs[1:])))
    hs = bc.forward(params, xs, h0=h0, activation=activation).hs
    _, grads = bc.backprop_states(params, xs, c * np.cos(hs[1:]), h0=h0, activation=activation)
    numeric = bc.numerical_gradient(f, params)
    for name in ("W_hx", "W_hh"):
        assert rel_err(grads[name], numeric[name]) < 1e-7
    with pytest.raises(ValueError, match=r"dL_dh_direct: expected shape \(5, 2, 4\)"):
        bc.backprop_states(params, xs, np.zeros((5, 4)), h0=h0)


@pytest.mark.parametrize("kind,arg", TRUNCATIONS, ids=[f"{k}-{a}" for k, a in TRUNCATIONS])
@pytest.mark.parametrize("loss,batch", [("softmax_ce", None), ("softmax_ce", 2), ("mse", 2)])
def test_masked_loss_gradients_match_finite_differences(kind, arg, loss, batch):
    """With a mask, L is the mean over the selected steps; every truncation still matches its surrogate."""
    params, xs, ys, h0 = problem(batch, True, loss, seed=5)
    mask = np.random.default_rng(1).random(xs.shape[:-1]) < 0.5
    mask[-1] = True
    truncation, E = make_truncation(kind, arg)
    got = bc.bptt(params, xs, ys, loss=loss, h0=h0, truncation=truncation, mask=mask)
    f = surrogate(params, xs, ys, h0, "tanh", loss, E, mask=mask)
    assert got.loss == pytest.approx(f(params), rel=1e-12)
    assert got.loss == pytest.approx(bc.loss_value(params, xs, ys, loss=loss, h0=h0, mask=mask), rel=1e-12)
    assert rel_err(got.grads, bc.numerical_gradient(f, params)) < 1e-7
    numeric_dL_dh = bc.numerical_gradient(lambda bumps: f(params, bumps), np.zeros_like(got.dL_dh))
    assert rel_err(got.dL_dh, numeric_dL_dh) < 1e-7


def test_an_all_true_mask_changes_nothing_and_bad_masks_are_refused():
    params, xs, ys, _ = problem(2, False, "softmax_ce")
    full = bc.bptt(params, xs, ys)
    same = bc.bptt(params, xs, ys, mask=np.ones((T, 2), bool))
    assert same.loss == pytest.approx(full.loss, rel=1e-14) and rel_err(same.grads, full.grads) < 1e-14
    for bad in (np.zeros((T, 2), bool), np.ones((T, 2)), np.ones((T,), bool)):
        with pytest.raises(ValueError, match=r"^mask: expected a boolean array of shape \(5, 2\)"):
            bc.bptt(params, xs, ys, mask=bad)


WORKSPACE_CASES = [(a, l, b, k, kind, arg) for (a, l, b, k), (kind, arg) in itertools.product(
    [("tanh", "softmax_ce", 2, True), ("identity", "mse", None, False), ("tanh", "mse", 2, False)],
    [("full", None), ("subsequence", 2), ("sliding", 2), ("randomized", 0.5)])]


@pytest.mark.parametrize("activation,loss,batch,keep,kind,arg", WORKSPACE_CASES,
                         ids=["-".join(map(str, c)) for c in WORKSPACE_CASES])
def test_a_workspace_changes_no_result_and_no_result_shares_its_memory(activation, loss, batch, keep, kind, arg):
    ws = bc.Workspace()
    runs = []
    for seed in (0, 1, 2):                               # the same shapes three times, different numbers
        params, xs, ys, h0 = problem(batch, True, loss, seed=seed)
        kwargs = dict(activation=activation, loss=loss, h0=h0, keep_dL_dh=keep)
        plain = bc.bptt(params, xs, ys, truncation=make_truncation(kind, arg)[0], **kwargs)
        reused = bc.bptt(params, xs, ys, truncation=make_truncation(kind, arg)[0], workspace=ws, **kwargs)
        runs.append((plain, reused, {k: v.copy() for k, v in reused.grads.items()},
                     None if reused.dL_dh is None else reused.dL_dh.copy()))
    for plain, reused, grads_then, dL_dh_then in runs:  # later calls left earlier results untouched
        assert reused.loss == plain.loss
        for name in bc.PARAM_NAMES:
            np.testing.assert_array_equal(reused.grads[name], plain.grads[name])
            np.testing.assert_array_equal(reused.grads[name], grads_then[name])
        if keep:
            np.testing.assert_array_equal(reused.dL_dh, plain.dL_dh)
            np.testing.assert_array_equal(reused.dL_dh, dL_dh_then)
        else:
            assert reused.dL_dh is None


def test_a_workspace_follows_a_change_of_shape():
    ws = bc.Workspace()
    for T_, batch in ((6, 3), (4, None), (9, 2), (6, 3)):
        rng = np.random.default_rng(T_)
        params = bc.random_params(D, H, Q, seed=T_)
        lead = (T_,) if batch is None else (T_, batch)
        xs, ys = rng.normal(size=lead + (D,)), rng.integers(0, Q, size=lead)
        plain, reused = bc.bptt(params, xs, ys), bc.bptt(params, xs, ys, workspace=ws)
        assert reused.loss == plain.loss and rel_err(reused.grads, plain.grads) == 0.0
        np.testing.assert_array_equal(reused.dL_dh, plain.dL_dh)


def test_a_workspace_allocates_the_large_arrays_once():
    """The second call with the same shapes allocates none of the (T, B, h) arrays the first one needed."""
    rng = np.random.default_rng(0)
    params = bc.random_params(8, 64, 8, seed=0)
    xs, ys = rng.normal(size=(512, 8, 8)), rng.integers(0, 8, size=(512, 8))
    ws, peaks = bc.Workspace(), []
    for _ in range(2):
        tracemalloc.start()
        bc.bptt(params, xs, ys, keep_dL_dh=False, workspace=ws)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    states = 8 * 513 * 8 * 64
    assert peaks[0] > 3 * states                         # hs, φ'(a_t) and dL/dh_t, at least
    assert peaks[1] < 0.1 * states
