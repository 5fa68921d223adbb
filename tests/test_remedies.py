"""Matrices for the eigenvalue chapter, the final-step gradient profile, value clipping and training."""
import warnings

import numpy as np
import pytest

import bptt_core as bc


@pytest.mark.parametrize("h", [1, 2, 7, 16])
def test_recurrent_matrix_kinds_share_eigenvalues_and_only_normal_is_scaled_orthogonal(h):
    rho = 0.8
    W_n = bc.recurrent_matrix(h, rho, kind="normal", seed=3)
    W_nn = bc.recurrent_matrix(h, rho, kind="non-normal", coupling=1.5, seed=3)
    np.testing.assert_allclose(W_n.T @ W_n, rho ** 2 * np.eye(h), atol=1e-12)      # ρ·orthogonal
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(W_n)), rho, rtol=1e-10)      # all on |λ| = ρ
    assert bc.spectral_radius(W_nn) == pytest.approx(rho, rel=1e-6)
    np.testing.assert_allclose(np.sort_complex(np.linalg.eigvals(W_nn)),
                               np.sort_complex(np.linalg.eigvals(W_n)), atol=1e-6)
    if h > 2:
        assert np.linalg.norm(W_nn @ W_nn.T - W_nn.T @ W_nn) > 0.1                   # not normal
        assert np.linalg.norm(W_nn, 2) > 1.2 * rho


def test_power_norms_match_matrix_powers_and_show_non_normal_transient_growth():
    W = bc.recurrent_matrix(32, 0.9, kind="non-normal", coupling=2.0, seed=1)
    norms = bc.power_norms(W, 60)
    expected = [np.linalg.norm(np.linalg.matrix_power(W, k), 2) for k in range(61)]
    np.testing.assert_allclose(norms, expected, rtol=1e-9)
    assert norms[0] == pytest.approx(1.0) and norms.max() > 10               # grows although ρ = 0.9
    normal = bc.power_norms(bc.recurrent_matrix(32, 0.9, seed=1), 60)
    np.testing.assert_allclose(normal, 0.9 ** np.arange(61), rtol=1e-9)


def test_power_norms_overflow_is_inf_with_one_warning():
    with pytest.warns(bc.BPTTOverflowWarning) as caught:
        norms = bc.power_norms(3.0 * np.eye(3), 700)
    assert len(caught) == 1
    assert np.isfinite(norms[:600]).all() and np.isinf(norms[-1]) and not np.isnan(norms).any()


@pytest.mark.parametrize("activation", ["identity", "tanh"])
def test_gradient_profile_matches_bptt_with_a_last_step_loss_and_finite_differences(activation):
    params = bc.random_params(3, 5, 2, rho=1.3, seed=4)
    rng = np.random.default_rng(4)
    xs, ys, h0 = rng.normal(size=(9, 3)), rng.normal(size=(9, 2)), rng.normal(size=5)
    mask = np.zeros(9, bool)
    mask[-1] = True
    res = bc.bptt(params, xs, ys, activation=activation, loss="mse", mask=mask, h0=h0)
    fw = bc.forward(params, xs, h0=h0, activation=activation)
    u = params["W_qh"].T @ (fw.os[-1] - ys[-1])
    prof = bc.gradient_profile(params, xs, u, h0=h0, activation=activation)
    np.testing.assert_allclose(prof[1:], np.linalg.norm(res.dL_dh, axis=1), rtol=1e-12)
    np.testing.assert_allclose(prof[-1], np.linalg.norm(u))
    for t in (0, 4):
        numeric = bc.numerical_gradient(lambda h: u @ bc.forward(params, xs[t:], h0=h, activation=activation).hs[-1],
                                        fw.hs[t])
        assert prof[t] == pytest.approx(np.linalg.norm(numeric), rel=1e-7)


def test_gradient_profile_overflow_is_inf_never_nan_and_warned_once():
    params = {"W_hx": np.ones((4, 1)), "W_hh": bc.recurrent_matrix(4, 2.5, seed=0), "W_qh": np.ones((1, 4))}
    with pytest.warns(bc.BPTTOverflowWarning) as caught:
        prof = bc.gradient_profile(params, np.zeros((1000, 1)), np.ones(4), activation="identity")
    assert len(caught) == 1
    assert not np.isnan(prof).any() and np.isinf(prof[0]) and np.isfinite(prof[-700:]).all()


def test_gradient_norms_of_huge_finite_gradients_do_not_overflow():
    """‖v‖ computed as sqrt(Σ v²) would overflow at 1e155; the reported norm must stay finite."""
    params = {"W_hx": np.zeros((2, 1)), "W_hh": 1e3 * np.eye(2), "W_qh": np.ones((1, 2))}
    xs, ys = np.zeros((60, 1)), np.zeros((60, 1))
    ys[-1] = 1.0
    mask = np.zeros(60, bool)
    mask[-1] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        norms = bc.gradient_norms(params, xs, ys, activation="identity", loss="mse", mask=mask)
    assert np.isfinite(norms).all()
    assert norms[0] == pytest.approx(np.sqrt(2) * 1e3 ** 59, rel=1e-12)


def test_clip_by_value_cuts_entries_and_turns_the_direction():
    g = {"a": np.array([9.0, 2.0]), "b": np.array([[-7.0]])}
    clipped = bc.clip_by_value(g, 5.0)
    np.testing.assert_array_equal(clipped["a"], [5.0, 2.0])
    np.testing.assert_array_equal(clipped["b"], [[-5.0]])
    flat = lambda d: np.concatenate([d["a"], d["b"].ravel()])
    cos = flat(clipped) @ flat(g) / (np.linalg.norm(flat(clipped)) * np.linalg.norm(flat(g)))
    assert cos < 0.99
    by_norm, _ = bc.clip_by_global_norm(g, 5.0)
    cos_norm = flat(by_norm) @ flat(g) / (np.linalg.norm(flat(by_norm)) * np.linalg.norm(flat(g)))
    assert cos_norm == pytest.approx(1.0, abs=1e-14)


def copy_task(n, T=20, B=4, delay=2, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.normal(size=(T, B, 1))
        y = np.zeros_like(x)
        y[delay:] = x[:-delay]
        out.append((x, y))
    return out


def test_train_is_gradient_descent_with_the_chosen_clipping():
    p0 = bc.random_params(1, 6, 1, rho=0.9, seed=1)
    batches = copy_task(2)
    for clip, th in ((None, None), ("norm", 0.01), ("value", 0.001)):
        run = bc.train(p0, batches, lr=0.1, clip=clip, threshold=th, activation="tanh", loss="mse")
        expected = {k: v.copy() for k, v in p0.items()}
        for step, (x, y) in enumerate(batches):
            res = bc.bptt(expected, x, y, activation="tanh", loss="mse")
            assert run.losses[step] == pytest.approx(res.loss, rel=1e-12)
            g = res.grads
            if clip == "norm":
                g = bc.clip_by_global_norm(g, th)[0]
            elif clip == "value":
                g = {k: np.clip(v, -th, th) for k, v in g.items()}
            expected = {k: expected[k] - 0.1 * g[k] for k in expected}
        for k in expected:
            np.testing.assert_allclose(run.params[k], expected[k], rtol=1e-12)
        assert run.diverged_at is None
    np.testing.assert_array_equal(p0["W_hh"], bc.random_params(1, 6, 1, rho=0.9, seed=1)["W_hh"])  # untouched


def test_train_learns_with_clipping_and_reports_divergence_without():
    p0 = bc.random_params(1, 32, 1, rho=1.2, seed=0)
    batches = copy_task(150, T=40, B=8, delay=5, seed=1)
    clipped = bc.train(p0, batches, lr=0.05, clip="norm", threshold=3.0, activation="identity", loss="mse")
    assert clipped.diverged_at is None and clipped.losses[-10:].mean() < 0.1 * clipped.losses[0]
    with pytest.warns(bc.BPTTOverflowWarning, match="overflowed at step"):
        plain = bc.train(p0, batches, lr=0.05, activation="identity", loss="mse")
    assert plain.diverged_at is not None
    assert np.isinf(plain.losses[plain.diverged_at:]).all() and not np.isnan(plain.losses).any()
    assert np.isfinite(plain.losses[:plain.diverged_at]).all()
