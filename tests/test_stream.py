"""Stateful training on one long stream: the carried state, the per-chunk gradients (finite
differences, with the carried state a constant) and the updates, against loops written here."""
import warnings

import numpy as np
import pytest

import bptt_core as bc
from reference import problem

D, H, Q = 3, 5, 3
TINY = 1e-300               # a learning rate that leaves every parameter bit-for-bit unchanged


def stream(N, batch, seed=0, biases=False, rho=0.9):
    """A random stream of N steps (labels as targets); the initial state is not used here."""
    params, xs, ys, _ = problem(N, batch, "softmax_ce", seed, biases, D, H, Q, rho)
    return params, xs, ys


@pytest.mark.parametrize("N,batch,chunk,truncation", [(20, None, 5, None), (23, 2, 6, None), (23, 3, 8, "sub"),
                                                      (17, 2, 7, "tbptt"), (19, 2, 6, "sliding"),
                                                      (9, None, 20, None)])
def test_with_unchanged_parameters_the_carried_state_is_the_streams_state(N, batch, chunk, truncation):
    params, xs, ys = stream(N, batch, seed=N)
    cut = {None: None, "sub": bc.Subsequence(3), "tbptt": bc.TBPTT(2, 4), "sliding": bc.Sliding(3)}[truncation]
    run = bc.train_stream(params, xs, ys, chunk=chunk, lr=TINY, truncation=cut)
    for name in params:
        np.testing.assert_array_equal(run.params[name], params[name])
    hs = bc.forward(params, xs).hs
    np.testing.assert_allclose(run.h, hs[-1], rtol=1e-12, atol=1e-14)
    for i, start in enumerate(range(0, N, chunk)):
        part = slice(start, start + chunk)
        expected = bc.loss_value(params, xs[part], ys[part], h0=hs[start])
        assert run.losses[i] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed,batch,biases", [(0, None, False), (1, 2, True), (2, 3, False)])
def test_each_chunks_gradient_treats_the_carried_state_as_a_constant(seed, batch, biases):
    """The norm recorded for chunk i is the norm of finite differences of chunk i's loss, with h at its
    start held fixed (what h.detach() means)."""
    N, chunk = 12, 4
    params, xs, ys = stream(N, batch, seed=seed, biases=biases)
    run = bc.train_stream(params, xs, ys, chunk=chunk, lr=TINY)
    hs = bc.forward(params, xs).hs
    for i, start in enumerate(range(0, N, chunk)):
        part = slice(start, start + chunk)
        h_fixed = hs[start].copy()
        numeric = bc.numerical_gradient(lambda p: bc.loss_value(p, xs[part], ys[part], h0=h_fixed), params)
        norm = np.sqrt(sum(np.sum(g ** 2) for g in numeric.values()))
        assert run.norms[i] == pytest.approx(norm, rel=1e-7)
    # guard: letting the gradient flow into the previous chunk gives a different gradient
    through = bc.numerical_gradient(lambda p: bc.loss_value(p, xs[:2 * chunk], ys[:2 * chunk]), params)
    first = bc.numerical_gradient(lambda p: bc.loss_value(p, xs[:chunk], ys[:chunk]), params)
    detached = bc.numerical_gradient(lambda p: bc.loss_value(p, xs[chunk:2 * chunk], ys[chunk:2 * chunk],
                                                             h0=hs[chunk]), params)
    mixed = {k: 2 * through[k] - first[k] for k in params}          # chunk 2's own gradient, state not detached
    assert max(np.abs(mixed[k] - detached[k]).max() for k in params) > 1e-4


@pytest.mark.parametrize("clip,threshold", [(None, None), ("norm", 0.5), ("value", 0.05)])
def test_updates_and_state_follow_a_loop_written_here(clip, threshold):
    """The framework loop: loss and gradient of the chunk from the carried state, the next state from
    the parameters before the update, then the (clipped) update."""
    N, chunk, lr = 30, 7, 0.3
    params, xs, ys = stream(N, 2, seed=5, biases=True)
    run = bc.train_stream(params, xs, ys, chunk=chunk, lr=lr, clip=clip, threshold=threshold)
    p, h = {k: v.copy() for k, v in params.items()}, np.zeros((2, H))
    for i, start in enumerate(range(0, N, chunk)):
        part = slice(start, start + chunk)
        res = bc.bptt(p, xs[part], ys[part], h0=h)
        norm = np.sqrt(sum(np.sum(g ** 2) for g in res.grads.values()))
        assert run.losses[i] == pytest.approx(res.loss, rel=1e-12) and run.norms[i] == pytest.approx(norm, rel=1e-12)
        h = bc.forward(p, xs[part], h0=h).hs[-1]
        for k, g in res.grads.items():
            if clip == "norm":
                g = g * min(1.0, threshold / norm)
            elif clip == "value":
                g = np.clip(g, -threshold, threshold)
            p[k] = p[k] - lr * g
    np.testing.assert_allclose(run.h, h, rtol=1e-12, atol=1e-14)
    for k in p:
        np.testing.assert_allclose(run.params[k], p[k], rtol=1e-12, atol=1e-14)


def test_training_on_a_stream_with_memory_lowers_the_loss():
    """y_t = the sign pattern of x_{t-2}: the model must carry information across steps (and chunks)."""
    rng = np.random.default_rng(0)
    N, B = 3000, 4
    xs = rng.normal(size=(N, B, D))
    ys = np.zeros((N, B), dtype=int)
    ys[2:] = (xs[:-2, :, 0] > 0).astype(int) + (xs[:-2, :, 1] > 0)
    params = bc.random_params(D, 16, Q, rho=0.9, seed=1)
    run = bc.train_stream(params, xs, ys, chunk=10, lr=0.5, clip="norm", threshold=1.0)
    assert run.diverged_at is None and np.isfinite(run.losses).all()
    counts = np.bincount(ys.ravel(), minlength=Q) / ys.size
    unigram = -np.sum(counts * np.log(counts))             # the best loss without memory (about 1.04)
    assert run.losses[-30:].mean() < 0.8 * unigram          # measured: 0.65
    assert run.losses[-30:].mean() < 0.8 * run.losses[:30].mean()


def test_overflow_stops_training_and_is_reported():
    params, xs, ys = stream(60, 2, seed=1, rho=40.0)
    with pytest.warns(bc.BPTTOverflowWarning, match="chunk"):
        run = bc.train_stream(params, xs, ys, chunk=20, lr=0.1, activation="identity")
    assert run.diverged_at is not None
    assert np.isinf(run.losses[run.diverged_at:]).all() and not np.isnan(run.losses).any()


def test_a_given_workspace_is_used_and_changes_nothing():
    params, xs, ys = stream(25, 3, seed=4)
    ws = bc.Workspace()
    a = bc.train_stream(params, xs, ys, chunk=6, lr=0.2, clip="norm", threshold=1.0)
    b = bc.train_stream(params, xs, ys, chunk=6, lr=0.2, clip="norm", threshold=1.0, workspace=ws)
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.h, b.h)
    assert "hs" in ws._arrays
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bc.train_stream(params, xs, ys, chunk=6, lr=0.2, workspace=ws)


@pytest.mark.parametrize("kwargs,match", [
    (dict(chunk=0, lr=0.1), r"^chunk: expected an integer >= 1, got 0"),
    (dict(chunk=2, lr=-1.0), r"^lr: expected a finite real number > 0, got -1.0"),
    (dict(chunk=2, lr=0.1, clip="both", threshold=1.0), r"^clip: expected one of \['norm', 'value'\], got 'both'"),
    (dict(chunk=2, lr=0.1, clip="norm"), r"^threshold: expected a finite real number > 0, got None"),
    (dict(chunk=2, lr=0.1, workspace=3), r"^workspace: expected None or a bptt_core.Workspace, got int"),
    (dict(chunk=2, lr=0.1, truncation="k"), r"^truncation: expected None, Subsequence"),
    (dict(chunk=2, lr=0.1, h0=np.zeros(H)), r"^h0: expected shape \(2, 5\)"),
])
def test_bad_input_is_refused(kwargs, match):
    params, xs, ys = stream(10, 2)
    with pytest.raises(ValueError, match=match):
        bc.train_stream(params, xs, ys, **kwargs)
