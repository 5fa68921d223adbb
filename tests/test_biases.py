"""Biases b_h and b_q: every gradient of bptt_core, with them, against central finite differences of
the independent surrogate objective in reference.py."""
import itertools

import numpy as np
import pytest

import bptt_core as bc
from test_gradients import make_truncation          # the same T = 5 and the same pairs
from reference import rel_err, surrogate

T, D, H, Q = 5, 3, 4, 3


def problem(batch, loss, which=("b_h", "b_q"), seed=0, with_h0=True):
    rng = np.random.default_rng(seed)
    params = bc.random_params(D, H, Q, rho=0.9, seed=seed)
    if "b_h" in which:
        params["b_h"] = rng.normal(scale=0.5, size=H)
    if "b_q" in which:
        params["b_q"] = rng.normal(scale=0.5, size=Q)
    lead = (T,) if batch is None else (T, batch)
    xs = rng.normal(size=lead + (D,))
    h0 = rng.normal(scale=0.5, size=lead[1:] + (H,)) if with_h0 else np.zeros(lead[1:] + (H,))
    ys = rng.integers(0, Q, size=lead) if loss == "softmax_ce" else rng.normal(size=lead + (Q,))
    return params, xs, ys, h0


TRUNCATIONS = [("full", None), ("subsequence", 2), ("sliding", 2), ("sliding", 3), ("tbptt", (2, 3)),
               ("randomized", 0.5)]


CASES = list(itertools.product(["identity", "tanh"], ["softmax_ce", "mse"], [None, 2],
                               [("b_h", "b_q"), ("b_h",), ("b_q",)]))


@pytest.mark.parametrize("kind,arg", TRUNCATIONS, ids=[f"{k}-{a}" for k, a in TRUNCATIONS])
@pytest.mark.parametrize("activation,loss,batch,which", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_bias_gradients_match_finite_differences(kind, arg, activation, loss, batch, which):
    params, xs, ys, h0 = problem(batch, loss, which)
    truncation, E = make_truncation(kind, arg)
    got = bc.bptt(params, xs, ys, activation=activation, loss=loss, h0=h0, truncation=truncation)
    f = surrogate(params, xs, ys, h0, activation, loss, E)
    assert set(got.grads) == set(params)
    assert got.loss == pytest.approx(f(params), rel=1e-12)
    assert got.loss == pytest.approx(bc.loss_value(params, xs, ys, activation=activation, loss=loss, h0=h0),
                                     rel=1e-12)
    assert rel_err(got.grads, bc.numerical_gradient(f, params)) < 1e-7
    numeric_dL_dh = bc.numerical_gradient(lambda bumps: f(params, bumps), np.zeros_like(got.dL_dh))
    assert rel_err(got.dL_dh, numeric_dL_dh) < 1e-7


@pytest.mark.parametrize("kind,arg", TRUNCATIONS, ids=[f"{k}-{a}" for k, a in TRUNCATIONS])
@pytest.mark.parametrize("seed", [1, 2])
def test_bias_gradients_with_a_mask(kind, arg, seed):
    params, xs, ys, h0 = problem(3, "softmax_ce", seed=seed)
    mask = np.random.default_rng(seed).random(xs.shape[:-1]) < 0.5
    mask[-1] = True
    truncation, E = make_truncation(kind, arg)
    got = bc.bptt(params, xs, ys, h0=h0, truncation=truncation, mask=mask)
    f = surrogate(params, xs, ys, h0, "tanh", "softmax_ce", E, mask=mask)
    assert got.loss == pytest.approx(f(params), rel=1e-12)
    assert got.loss == pytest.approx(bc.loss_value(params, xs, ys, h0=h0, mask=mask), rel=1e-12)
    assert rel_err(got.grads, bc.numerical_gradient(f, params)) < 1e-7


@pytest.mark.parametrize("activation,loss,batch,which", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_rtrl_with_biases_equals_bptt(activation, loss, batch, which):
    params, xs, ys, h0 = problem(batch, loss, which, seed=4)
    back = bc.bptt(params, xs, ys, activation=activation, loss=loss, h0=h0)
    fwd = bc.rtrl(params, xs, ys, activation=activation, loss=loss, h0=h0)
    assert set(fwd.grads) == set(params)
    assert fwd.loss == pytest.approx(back.loss, rel=1e-13)
    assert rel_err(fwd.grads, back.grads) < 1e-12


def test_forward_adds_the_biases():
    params, xs, _, h0 = problem(2, "mse", seed=3)
    fw = bc.forward(params, xs, h0=h0)
    h = h0
    for t in range(T):
        h = np.tanh(xs[t] @ params["W_hx"].T + h @ params["W_hh"].T + params["b_h"])
        np.testing.assert_allclose(fw.hs[t + 1], h, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(fw.os[t], h @ params["W_qh"].T + params["b_q"], rtol=1e-13, atol=1e-15)


def test_backprop_states_returns_the_hidden_bias_gradient():
    params, xs, _, h0 = problem(2, "mse", seed=6)
    c = np.random.default_rng(9).normal(size=(T, 2, H))
    f = lambda p: float(np.sum(c * np.sin(bc.forward(p, xs, h0=h0).hs[1:])))
    hs = bc.forward(params, xs, h0=h0).hs
    _, grads = bc.backprop_states(params, xs, c * np.cos(hs[1:]), h0=h0)
    numeric = bc.numerical_gradient(f, params)
    for name in ("W_hx", "W_hh", "b_h"):
        assert rel_err(grads[name], numeric[name]) < 1e-7
    assert np.abs(numeric["b_q"]).max() == 0.0 and "b_q" not in grads


@pytest.mark.parametrize("kind,arg", TRUNCATIONS, ids=[f"{k}-{a}" for k, a in TRUNCATIONS])
def test_a_workspace_with_biases_changes_nothing(kind, arg):
    ws = bc.Workspace()
    for seed in (0, 1):
        params, xs, ys, h0 = problem(2, "softmax_ce", seed=seed)
        plain = bc.bptt(params, xs, ys, h0=h0, truncation=make_truncation(kind, arg)[0])
        reused = bc.bptt(params, xs, ys, h0=h0, truncation=make_truncation(kind, arg)[0], workspace=ws)
        assert reused.loss == plain.loss
        for name in params:
            np.testing.assert_array_equal(reused.grads[name], plain.grads[name])


def test_train_updates_the_biases_and_lowers_the_loss():
    params, xs, ys, h0 = problem(4, "softmax_ce", seed=2, with_h0=False)
    run = bc.train(params, [(xs, ys)] * 30, lr=0.5, clip="norm", threshold=1.0)
    assert set(run.params) == set(params)
    assert np.abs(run.params["b_q"] - params["b_q"]).max() > 1e-3
    assert run.losses[-1] < 0.9 * run.losses[0]


def test_zero_biases_give_the_unbiased_gradients_plus_theirs():
    params, xs, ys, h0 = problem(2, "softmax_ce", which=())
    plain = bc.bptt(params, xs, ys, h0=h0)
    zero = bc.bptt({**params, "b_h": np.zeros(H), "b_q": np.zeros(Q)}, xs, ys, h0=h0)
    assert set(plain.grads) == set(bc.PARAM_NAMES)
    assert zero.loss == pytest.approx(plain.loss, rel=1e-15)
    for name in bc.PARAM_NAMES:
        np.testing.assert_allclose(zero.grads[name], plain.grads[name], rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize("bad,match", [
    ({"b_h": np.zeros(H + 1)}, r"^params\['b_h'\]: expected a vector of shape \(4,\) \(from W_hh\), got shape \(5,\)"),
    ({"b_q": np.zeros((Q, 1))}, r"^params\['b_q'\]: expected a vector of shape \(3,\) \(from W_qh\), got shape \(3, 1\)"),
    ({"b_h": [0.0, np.nan, 0.0, 0.0]}, r"^params\['b_h'\]: expected finite values, got 1 non-finite"),
    ({"b_x": np.zeros(D)}, r"^params: expected a dict with the keys .* and optionally \['b_h', 'b_q'\], got"),
])
def test_bad_biases_are_refused(bad, match):
    params, xs, ys, h0 = problem(None, "softmax_ce", which=())
    for call in (lambda p: bc.bptt(p, xs, ys), lambda p: bc.rtrl(p, xs, ys), lambda p: bc.forward(p, xs)):
        with pytest.raises(ValueError, match=match):
            call({**params, **bad})


@pytest.mark.parametrize("batch", [None, 2])
def test_state_sensitivities_include_the_hidden_bias(batch):
    params, xs, _, h0 = problem(batch, "mse", which=("b_h",), seed=8)
    S = bc.state_sensitivities(params, xs, h0=h0)
    assert set(S) == {"W_hx", "W_hh", "b_h"}
    for t in (0, 2, T):
        for i in range(H):
            idx = (t, 0, i) if batch else (t, i)
            numeric = bc.numerical_gradient(lambda p: bc.forward(p, xs, h0=h0).hs[idx], params)["b_h"]
            np.testing.assert_allclose(S["b_h"][idx], numeric, rtol=1e-7, atol=1e-10)
