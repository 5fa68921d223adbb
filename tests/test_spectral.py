"""Spectral radius, clipping, Jacobian norms, memory of Subsequence, and overflow in the exploding regime."""
import warnings

import numpy as np
import pytest

import bptt_core as bc
from conftest import peak_bytes


def orthogonal(h, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(h, h)))
    return q * np.sign(np.diag(r))


def test_with_spectral_radius_sets_rho_and_keeps_eigenvectors():
    W = np.random.default_rng(0).normal(size=(6, 6))
    for rho in (0.5, 1.0, 1.5):
        V = bc.with_spectral_radius(W, rho)
        assert bc.spectral_radius(V) == pytest.approx(rho, rel=1e-12)
        np.testing.assert_allclose(V / W, np.full_like(W, V[0, 0] / W[0, 0]))


def test_spectral_radius_of_known_matrices():
    assert bc.spectral_radius(np.diag([0.3, -0.9, 0.5])) == pytest.approx(0.9)
    assert bc.spectral_radius(np.array([[0.0, -2.0], [2.0, 0.0]])) == pytest.approx(2.0)   # λ = ±2i
    assert bc.spectral_radius(np.array([[0.5, 100.0], [0.0, 0.5]])) == pytest.approx(0.5)  # non-normal


def test_clip_by_global_norm():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    clipped, norm = bc.clip_by_global_norm(g, 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0])
    np.testing.assert_allclose(clipped["b"], [[0.8]])
    same, norm = bc.clip_by_global_norm(g, 10.0)
    np.testing.assert_array_equal(same["a"], g["a"])
    huge = {"a": np.array([3e200, 4e200])}
    clipped, norm = bc.clip_by_global_norm(huge, 2.0)
    assert norm == pytest.approx(5e200)
    np.testing.assert_allclose(clipped["a"], [1.2, 1.6])


def test_clip_by_global_norm_with_overflowed_gradient_warns_and_stays_finite():
    g = {"a": np.array([np.inf, 1.0]), "b": np.array([-np.inf])}
    with pytest.warns(bc.BPTTOverflowWarning):
        clipped, norm = bc.clip_by_global_norm(g, 2.0)
    assert norm == np.inf
    np.testing.assert_allclose(clipped["a"], [np.sqrt(2), 0.0])
    np.testing.assert_allclose(clipped["b"], [-np.sqrt(2)])


def test_gradient_norms_are_the_norms_of_dL_dh():
    params = bc.random_params(3, 5, 2, seed=1)
    xs = np.random.default_rng(1).normal(size=(8, 2, 3))
    ys = np.zeros((8, 2), int)
    norms = bc.gradient_norms(params, xs, ys)
    dL_dh = bc.bptt(params, xs, ys).dL_dh
    np.testing.assert_allclose(norms, [np.linalg.norm(dL_dh[t]) for t in range(8)], rtol=1e-12)


def test_jacobian_norms_of_a_scaled_orthogonal_matrix_are_powers_of_rho():
    """With φ = identity and W_hh = ρ·Q (Q orthogonal), dh_T/dh_t = (ρQ)^{T-t} has norm ρ^{T-t}."""
    T, h = 30, 6
    for rho in (0.7, 1.0, 1.3):
        params = {"W_hx": np.ones((h, 2)), "W_hh": rho * orthogonal(h, 2), "W_qh": np.ones((1, h))}
        norms = bc.jacobian_norms(params, np.zeros((T, 2)), activation="identity")
        np.testing.assert_allclose(norms, rho ** (T - np.arange(T + 1)), rtol=1e-10)


def test_state_jacobian_matches_finite_differences_and_jacobian_norms():
    params = bc.random_params(2, 4, 3, rho=1.2, seed=5)
    xs = np.random.default_rng(5).normal(size=(7, 2))
    hs = bc.forward(params, xs).hs
    t, k = 6, 2
    J = bc.state_jacobian(params, xs, t, k)
    numeric = np.stack([bc.numerical_gradient(lambda h: bc.forward(params, xs[k:t], h0=h).hs[-1][i], hs[k])
                        for i in range(4)])
    np.testing.assert_allclose(J, numeric, rtol=1e-7, atol=1e-10)
    norms = bc.jacobian_norms(params, xs)
    assert norms[k] == pytest.approx(np.linalg.norm(bc.state_jacobian(params, xs, 7, k), 2), rel=1e-12)
    np.testing.assert_array_equal(bc.state_jacobian(params, xs, 3, 3), np.eye(4))


def test_tanh_saturation_makes_gradients_vanish_although_rho_exceeds_one():
    params = bc.random_params(2, 8, 2, rho=1.5, seed=0)
    params["W_hx"] *= 20.0                                             # drives tanh into saturation
    xs = np.random.default_rng(0).normal(size=(40, 2))
    norms = bc.jacobian_norms(params, xs, activation="tanh")
    linear = bc.jacobian_norms(params, xs, activation="identity")
    assert norms[0] < 1e-6 < 1e3 < linear[0]


def exploding_problem(activation, loss, T=2000):
    """ρ(W_hh) = 1.5. Identity: the issue's case, everything overflows. Tanh with x = 0: h stays at the
    unstable fixed point 0 (φ' = 1), so the forward pass is finite but dL/dh_t grows like 1.5^(T-t)."""
    params = bc.random_params(4, 16, 3, rho=1.5, seed=0)
    xs = np.random.default_rng(0).normal(size=(T, 2, 4)) * (activation == "identity")
    ys = np.zeros((T, 2), int) if loss == "softmax_ce" else np.ones((T, 2, 3))
    return params, xs, ys


@pytest.mark.parametrize("loss", ["softmax_ce", "mse"])
@pytest.mark.parametrize("activation", ["identity", "tanh"])
def test_exploding_regime_reports_overflow_once_and_never_returns_nan(activation, loss):
    params, xs, ys = exploding_problem(activation, loss)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = bc.bptt(params, xs, ys, activation=activation, loss=loss)
        fw = bc.forward(params, xs, activation=activation)
    ours = [w for w in caught if issubclass(w.category, bc.BPTTOverflowWarning)]
    assert len(ours) == (2 if activation == "identity" else 1), [str(w.message) for w in caught]
    assert len(caught) == len(ours)                                   # no stray numpy RuntimeWarnings
    arrays = [res.dL_dh, fw.hs, fw.os, *res.grads.values()]
    assert not any(np.isnan(a).any() for a in arrays)
    assert not np.isnan(res.loss)
    assert np.isinf(res.dL_dh[0]).any()                               # it did overflow, to inf
    with pytest.warns(bc.BPTTOverflowWarning):
        norms = bc.gradient_norms(params, xs, ys, activation=activation, loss=loss)
    assert not np.isnan(norms).any() and np.isinf(norms[0])
    if activation == "tanh":                                          # finite forward: only the
        assert np.isfinite(fw.hs).all() and np.isfinite(res.loss)     # early dL/dh_t overflow
        assert np.isfinite(res.dL_dh[-1700:]).all()
        assert "dL/dh_t" in str(ours[0].message) and "the loss" not in str(ours[0].message)


def test_softmax_of_infinite_logits_takes_the_limit():
    params = {"W_hx": np.eye(2), "W_hh": 2.0 * np.eye(2), "W_qh": np.array([[1.0, 0.0], [0.0, 1.0]])}
    xs = np.tile([1.0, 0.5], (1200, 1))                               # h grows like 2^t: both logits → +inf
    with pytest.warns(bc.BPTTOverflowWarning):
        res = bc.bptt(params, xs, np.zeros(1200, int), activation="identity")
    assert not np.isnan(res.loss) and not np.isnan(res.dL_dh).any()


def test_no_overflow_no_warning():
    params, xs, ys = exploding_problem("identity", "mse", T=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = bc.bptt(params, xs, ys, activation="identity", loss="mse")
    assert np.isfinite(res.dL_dh).all()


def test_subsequence_memory_does_not_grow_with_T_but_full_does():
    params = bc.random_params(4, 16, 3, seed=0)
    rng = np.random.default_rng(0)
    peaks = {}
    for T in (128, 1024):
        xs, ys = rng.normal(size=(T, 4, 4)), rng.integers(0, 3, size=(T, 4))
        peaks["sub", T] = peak_bytes(lambda: bc.bptt(params, xs, ys, truncation=bc.Subsequence(16),
                                                     keep_dL_dh=False))
        peaks["full", T] = peak_bytes(lambda: bc.bptt(params, xs, ys, keep_dL_dh=False))
    assert peaks["sub", 1024] < 1.2 * peaks["sub", 128]
    assert peaks["full", 1024] > 5 * peaks["full", 128]
