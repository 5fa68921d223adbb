"""General truncation TBPTT(k1, k2): finite differences against the surrogate objective of reference.py
(whose edge weights for TBPTT are written from the definition, not from the core), its special cases
Subsequence(k) = TBPTT(k, k) and Sliding(k) = TBPTT(1, k), and bad input."""
import itertools

import numpy as np
import pytest

import bptt_core as bc
from reference import edge_weights, problem, rel_err, surrogate




K = [(1, 1), (1, 3), (2, 2), (2, 3), (2, 5), (3, 4), (3, 7), (4, 6), (7, 7), (3, 20)]
SHAPES = list(itertools.product([7, 8], [None, 2], ["softmax_ce", "mse"], ["tanh", "identity"]))


@pytest.mark.parametrize("k1,k2", K, ids=[f"{a}-{b}" for a, b in K])
@pytest.mark.parametrize("T,batch,loss,activation", SHAPES, ids=["-".join(map(str, s)) for s in SHAPES])
def test_tbptt_matches_finite_differences_of_its_surrogate(k1, k2, T, batch, loss, activation):
    params, xs, ys, h0 = problem(T, batch, loss, seed=T + k1 + k2)
    got = bc.bptt(params, xs, ys, loss=loss, activation=activation, h0=h0, truncation=bc.TBPTT(k1, k2))
    f = surrogate(params, xs, ys, h0, activation, loss, edge_weights("tbptt", T, k=(k1, k2)))
    assert got.loss == pytest.approx(f(params), rel=1e-12)
    assert rel_err(got.grads, bc.numerical_gradient(f, params)) < 1e-7
    numeric = bc.numerical_gradient(lambda bumps: f(params, bumps), np.zeros_like(got.dL_dh))
    assert rel_err(got.dL_dh, numeric) < 1e-7


@pytest.mark.parametrize("k1,k2", [(2, 3), (3, 5), (1, 2)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tbptt_with_biases_and_a_mask(k1, k2, seed):
    T = 9
    params, xs, ys, h0 = problem(T, 3, "softmax_ce", seed=seed, biases=True)
    mask = np.random.default_rng(seed).random(xs.shape[:-1]) < 0.6
    mask[0] = True
    got = bc.bptt(params, xs, ys, h0=h0, truncation=bc.TBPTT(k1, k2), mask=mask)
    f = surrogate(params, xs, ys, h0, "tanh", "softmax_ce", edge_weights("tbptt", T, k=(k1, k2)), mask=mask)
    assert got.loss == pytest.approx(f(params), rel=1e-12)
    assert rel_err(got.grads, bc.numerical_gradient(f, params)) < 1e-7


def test_the_surrogate_for_tbptt_differs_from_subsequence_and_sliding():
    """Guards the test: k2 > k1 genuinely changes the gradient, so the comparisons above can fail."""
    params, xs, ys, h0 = problem(9, 2, "softmax_ce")
    g = {name: bc.bptt(params, xs, ys, h0=h0, truncation=t).grads for name, t in
         (("sub", bc.Subsequence(3)), ("tb", bc.TBPTT(3, 5)), ("slide", bc.Sliding(5)), ("full", None))}
    assert rel_err(g["tb"], g["sub"]) > 1e-3 and rel_err(g["tb"], g["slide"]) > 1e-3
    assert rel_err(g["tb"], g["full"]) > 1e-3


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 12])
@pytest.mark.parametrize("T,batch,seed", [(8, None, 0), (11, 3, 1), (16, 2, 2)])
def test_subsequence_and_sliding_are_special_cases(k, T, batch, seed):
    params, xs, ys, h0 = problem(T, batch, "softmax_ce", seed=seed, biases=seed == 1)
    for special, general in ((bc.Subsequence(k), bc.TBPTT(k, k)), (bc.Sliding(k), bc.TBPTT(1, k))):
        a = bc.bptt(params, xs, ys, h0=h0, truncation=special)
        b = bc.bptt(params, xs, ys, h0=h0, truncation=general)
        assert b.loss == pytest.approx(a.loss, rel=1e-14)
        assert set(a.grads) == set(b.grads)
        for name in a.grads:
            np.testing.assert_allclose(b.grads[name], a.grads[name], rtol=1e-13, atol=1e-17)
        np.testing.assert_allclose(b.dL_dh, a.dL_dh, rtol=1e-13, atol=1e-17)
        np.testing.assert_array_equal(bc.connectivity(general, T), bc.connectivity(special, T))


def test_connectivity_of_tbptt_from_its_definition():
    T = 10
    C = bc.connectivity(bc.TBPTT(3, 5), T)
    for s in range(1, T + 1):
        end = -(-s // 3) * 3
        for t in range(1, T + 1):
            assert C[s - 1, t - 1] == float(max(1, end - 4) <= t <= s), (s, t)


@pytest.mark.parametrize("k1,k2", [(2, 5), (4, 4), (1, 3)])
def test_tbptt_with_a_workspace_and_without_dL_dh(k1, k2):
    ws = bc.Workspace()
    for seed in (0, 1, 2):
        params, xs, ys, h0 = problem(12, 3, "softmax_ce", seed=seed)
        plain = bc.bptt(params, xs, ys, h0=h0, truncation=bc.TBPTT(k1, k2))
        reused = bc.bptt(params, xs, ys, h0=h0, truncation=bc.TBPTT(k1, k2), workspace=ws, keep_dL_dh=False)
        assert reused.dL_dh is None and reused.loss == plain.loss
        for name in plain.grads:
            np.testing.assert_array_equal(reused.grads[name], plain.grads[name])


def test_tbptt_with_k1_at_least_T_is_full_bptt():
    params, xs, ys, h0 = problem(6, 2, "mse")
    full = bc.bptt(params, xs, ys, loss="mse", h0=h0)
    for t in (bc.TBPTT(6, 6), bc.TBPTT(9, 20)):
        cut = bc.bptt(params, xs, ys, loss="mse", h0=h0, truncation=t)
        for name in full.grads:
            np.testing.assert_array_equal(cut.grads[name], full.grads[name])


@pytest.mark.parametrize("args,match", [
    ((0, 3), r"^k1: expected an integer >= 1, got 0"),
    ((2, 0), r"^k2: expected an integer >= 1, got 0"),
    ((3, 2), r"^k2: expected an integer >= k1 = 3 .*, got 2"),
    ((2.0, 3), r"^k1: expected an integer >= 1, got 2.0"),
    ((2, True), r"^k2: expected an integer >= 1, got True"),
])
def test_bad_tbptt_arguments_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        bc.TBPTT(*args)


def test_tbptt_repr():
    assert repr(bc.TBPTT(2, 5)) == "TBPTT(k1=2, k2=5)"
