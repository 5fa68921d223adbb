"""Checkpointed BPTT: the exact full gradient (finite differences of the plain loss, and plain `bptt` to
1e-12) while its peak memory grows like T/c + c, not like T."""
import itertools
import warnings

import numpy as np
import pytest

import bptt_core as bc
from conftest import peak_bytes
from reference import problem, rel_err




CASES = list(itertools.product([None, 2], ["softmax_ce", "mse"], ["tanh", "identity"], [False, True]))


@pytest.mark.parametrize("every", [1, 2, 3, 4, 7, 9, None])
@pytest.mark.parametrize("batch,loss,activation,biases", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_checkpointed_gradient_matches_finite_differences(every, batch, loss, activation, biases):
    T = 9
    params, xs, ys, h0 = problem(T, batch, loss, seed=T + (every or 0), biases=biases)
    got = bc.bptt_checkpointed(params, xs, ys, every=every, loss=loss, activation=activation, h0=h0)
    f = lambda p: bc.loss_value(p, xs, ys, loss=loss, activation=activation, h0=h0)
    assert got.dL_dh is None and set(got.grads) == set(params)
    assert got.loss == pytest.approx(f(params), rel=1e-12)
    assert rel_err(got.grads, bc.numerical_gradient(f, params)) < 1e-7


@pytest.mark.parametrize("T,batch,every,seed", [(1, None, None, 0), (2, 3, 1, 1), (50, 4, None, 2),
                                                (50, 4, 7, 3), (64, 2, 8, 4), (101, 3, 10, 5), (30, None, 31, 6)])
@pytest.mark.parametrize("masked", [False, True])
def test_checkpointed_equals_plain_bptt(T, batch, every, seed, masked):
    params, xs, ys, h0 = problem(T, batch, "softmax_ce", seed=seed, biases=seed % 2 == 1, h=16, rho=1.05)
    mask = None
    if masked:
        mask = np.random.default_rng(seed).random(xs.shape[:-1]) < 0.5
        mask.flat[0] = True
    plain = bc.bptt(params, xs, ys, h0=h0, mask=mask)
    ws = bc.Workspace()
    for _ in range(2):                                # a workspace that is reused changes nothing
        ck = bc.bptt_checkpointed(params, xs, ys, h0=h0, mask=mask, every=every, workspace=ws)
        assert ck.loss == pytest.approx(plain.loss, rel=1e-12)
        for name in plain.grads:
            np.testing.assert_allclose(ck.grads[name], plain.grads[name], rtol=1e-12,
                                       atol=1e-12 * np.abs(plain.grads[name]).max())


def test_the_carry_between_segments_matters():
    """Guards the tests: dropping the gradient carried across segment boundaries is Subsequence(c),
    which is detectably different from the full gradient."""
    params, xs, ys, h0 = problem(20, 2, "softmax_ce")
    full = bc.bptt(params, xs, ys, h0=h0).grads
    assert rel_err(bc.bptt(params, xs, ys, h0=h0, truncation=bc.Subsequence(5)).grads, full) > 1e-3
    assert rel_err(bc.bptt_checkpointed(params, xs, ys, h0=h0, every=5).grads, full) < 1e-13


def test_peak_memory_grows_like_T_over_c_plus_c():
    """At T = 1600 and 6400 (c = √T / 2 = 20 and 40): the peak is within 10% (plus 50 kB) of the model
    (T/c + 4c)·B·h floats, doubles (not quadruples) when T quadruples, and is a small part of plain BPTT's."""
    B, h = 8, 32
    peaks = []
    for T in (1600, 6400):
        params, xs, ys, _ = problem(T, B, "softmax_ce", d=8, h=h, q=8, rho=0.9)
        c = round(np.sqrt(T) / 2)
        ck = peak_bytes(lambda: bc.bptt_checkpointed(params, xs, ys))
        plain = peak_bytes(lambda: bc.bptt(params, xs, ys, keep_dL_dh=False))
        assert ck < 1.1 * (T / c + 4 * c) * B * h * 8 + 50_000, (T, ck)
        assert plain > 3 * T * B * h * 8                  # states, φ'(a_t) and dL/dh_t, at least
        assert ck < 0.1 * plain
        peaks.append(ck)
    assert 1.7 < peaks[1] / peaks[0] < 2.2


def test_overflow_is_reported_and_never_nan():
    params, xs, ys, _ = problem(400, 2, "mse", rho=3.0)
    with pytest.warns(bc.BPTTOverflowWarning):
        res = bc.bptt_checkpointed(params, xs, ys, loss="mse", activation="identity", every=20)
    assert res.loss == np.inf
    assert not any(np.isnan(g).any() for g in res.grads.values())


def test_no_warning_in_the_ordinary_regime():
    params, xs, ys, _ = problem(40, 2, "softmax_ce")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bc.bptt_checkpointed(params, xs, ys)


@pytest.mark.parametrize("kwargs,match", [
    (dict(every=0), r"^every: expected an integer >= 1, got 0"),
    (dict(every=2.5), r"^every: expected an integer >= 1, got 2.5"),
    (dict(workspace="ws"), r"^workspace: expected None or a bptt_core.Workspace, got str"),
    (dict(mask=np.zeros((6, 2), bool)), r"^mask: expected a boolean array of shape \(6, 2\)"),
    (dict(activation="relu"), r"^activation: expected one of \['identity', 'tanh'\], got 'relu'"),
    (dict(h0=np.zeros(4)), r"^h0: expected shape \(2, 4\)"),
])
def test_bad_input_is_refused(kwargs, match):
    params, xs, ys, _ = problem(6, 2, "softmax_ce")
    with pytest.raises(ValueError, match=match):
        bc.bptt_checkpointed(params, xs, ys, **kwargs)
