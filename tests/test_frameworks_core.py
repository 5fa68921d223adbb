"""Padding and the two normalisations of a padded batch's loss (bptt_core's issue-14 section):
`pad_batch`, `loss_weights`, `bptt_per_sequence`, `per_sequence_loss`, checked against finite
differences, against the unpadded sequences one by one, and against losses written out here."""
import numpy as np
import pytest

import bptt_core as bc
from reference import rel_err

D, H, Q = 3, 5, 4


def problem(lengths, loss="softmax_ce", biases=False, seed=0):
    rng = np.random.default_rng(seed)
    params = bc.random_params(D, H, Q, rho=0.9, seed=seed)
    if biases:
        params["b_h"], params["b_q"] = rng.normal(scale=0.4, size=H), rng.normal(scale=0.4, size=Q)
    xs = [rng.normal(size=(L, D)) for L in lengths]
    ys = [rng.integers(0, Q, size=L) if loss == "softmax_ce" else rng.normal(size=(L, Q)) for L in lengths]
    return params, xs, ys


def step_losses(params, x, y, loss):
    """l(o_t, y_t) for every step of one unpadded sequence, written out with a plain loop."""
    h, out = np.zeros(H), []
    for x_t, y_t in zip(x, y):
        h = np.tanh(params["W_hx"] @ x_t + params["W_hh"] @ h + params.get("b_h", 0.0))
        o = params["W_qh"] @ h + params.get("b_q", 0.0)
        if loss == "mse":
            out.append(0.5 * np.sum((o - y_t) ** 2))
        else:
            out.append(np.log(np.sum(np.exp(o - o.max()))) + o.max() - o[y_t])
    return np.array(out)


def test_pad_batch_places_each_sequence_and_marks_its_steps():
    _, xs, ys = problem([2, 5, 3])
    for side in ("post", "pre"):
        X, Y, mask = bc.pad_batch(xs, ys, side=side)
        assert X.shape == (5, 3, D) and Y.shape == (5, 3) and mask.shape == (5, 3) and mask.dtype == bool
        assert mask.sum(axis=0).tolist() == [2, 5, 3]
        for b, (x, y) in enumerate(zip(xs, ys)):
            np.testing.assert_array_equal(X[mask[:, b], b], x)
            np.testing.assert_array_equal(Y[mask[:, b], b], y)
            assert not X[~mask[:, b], b].any()
            rows = np.flatnonzero(mask[:, b])
            assert rows[0] == 0 if side == "post" else rows[-1] == 4
            assert np.all(np.diff(rows) == 1)


def test_pad_batch_pads_mse_targets_with_zeros():
    _, xs, ys = problem([1, 3], loss="mse")
    X, Y, mask = bc.pad_batch(xs, ys)
    assert Y.shape == (3, 2, Q) and Y.dtype == np.float64
    assert not Y[~mask].any()


@pytest.mark.parametrize("loss", ["softmax_ce", "mse"])
@pytest.mark.parametrize("biases", [False, True])
def test_post_padding_with_a_mask_gives_the_unpadded_per_token_gradient(loss, biases):
    lengths = [3, 7, 4]
    params, xs, ys = problem(lengths, loss, biases, seed=1)
    X, Y, mask = bc.pad_batch(xs, ys)
    got = bc.bptt(params, X, Y, loss=loss, mask=mask)
    n = sum(lengths)
    alone = [bc.bptt(params, x, y, loss=loss) for x, y in zip(xs, ys)]
    assert got.loss == pytest.approx(sum(r.loss * L for r, L in zip(alone, lengths)) / n, rel=1e-12)
    for name in params:
        expected = sum(r.grads[name] * L / n for r, L in zip(alone, lengths))
        assert rel_err(got.grads[name], expected) < 1e-12
    assert not got.dL_dh[~mask].any()


def test_pre_padding_changes_the_gradient_only_through_a_bias():
    lengths = [2, 6]
    params, xs, ys = problem(lengths, seed=2)
    post, pre = bc.pad_batch(xs, ys), bc.pad_batch(xs, ys, side="pre")
    a = bc.bptt(params, post[0], post[1], mask=post[2]).grads
    b = bc.bptt(params, pre[0], pre[1], mask=pre[2]).grads
    assert all(rel_err(b[n], a[n]) < 1e-12 for n in params)
    biased = {**params, "b_h": np.full(H, 0.5)}
    a = bc.bptt(biased, post[0], post[1], mask=post[2]).grads
    b = bc.bptt(biased, pre[0], pre[1], mask=pre[2]).grads
    assert rel_err(b["W_hh"], a["W_hh"]) > 1e-3


@pytest.mark.parametrize("loss", ["softmax_ce", "mse"])
def test_loss_weights_reproduce_both_losses_step_by_step(loss):
    lengths = [4, 1, 6]
    params, xs, ys = problem(lengths, loss, biases=True, seed=3)
    X, Y, mask = bc.pad_batch(xs, ys)
    steps = np.zeros(mask.shape)
    for b, (x, y) in enumerate(zip(xs, ys)):
        steps[:len(x), b] = step_losses(params, x, y, loss)
    w_tok, w_seq = bc.loss_weights(mask, "token"), bc.loss_weights(mask, "sequence")
    assert w_tok.sum() == pytest.approx(1) and w_seq.sum() == pytest.approx(1)
    assert not w_tok[~mask].any() and not w_seq[~mask].any()
    np.testing.assert_allclose(w_seq[0], [1 / (3 * L) for L in lengths])
    assert np.sum(w_tok * steps) == pytest.approx(bc.loss_value(params, X, Y, loss=loss, mask=mask), rel=1e-12)
    by_hand = np.mean([s.mean() for s in (steps[:L, b] for b, L in enumerate(lengths))])
    assert np.sum(w_seq * steps) == pytest.approx(by_hand, rel=1e-12)
    assert bc.per_sequence_loss(params, X, Y, mask, loss=loss) == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("loss", ["softmax_ce", "mse"])
@pytest.mark.parametrize("biases", [False, True])
def test_per_sequence_gradient_matches_finite_differences(loss, biases):
    params, xs, ys = problem([2, 5, 3], loss, biases, seed=4)
    X, Y, mask = bc.pad_batch(xs, ys)
    got = bc.bptt_per_sequence(params, X, Y, mask, loss=loss)
    assert got.loss == pytest.approx(bc.per_sequence_loss(params, X, Y, mask, loss=loss), rel=1e-12)
    num = bc.numerical_gradient(lambda p: bc.per_sequence_loss(p, X, Y, mask, loss=loss), params)
    for name in params:
        assert rel_err(got.grads[name], num[name]) < 1e-6, name


def test_per_sequence_dL_dh_matches_finite_differences_of_a_state_perturbation():
    params, xs, ys = problem([3, 5], seed=5)
    X, Y, mask = bc.pad_batch(xs, ys)
    got = bc.bptt_per_sequence(params, X, Y, mask).dL_dh
    t, b, eps = 2, 1, 1e-6                      # perturb h_2 of sequence 1 (dL_dh[1]): o_2 and the steps after see it
    num = np.zeros(H)
    for i in range(H):
        vals = []
        for sign in (1, -1):
            fw = bc.forward(params, X[:t])
            h_t = fw.hs[t].copy()
            h_t[b, i] += sign * eps
            rest = bc.forward(params, X[t:], h_t)
            os = np.concatenate([fw.os[:-1], (h_t @ params["W_qh"].T)[None], rest.os])
            logp = os - np.log(np.exp(os).sum(axis=-1, keepdims=True))
            losses = -np.take_along_axis(logp, Y[..., None], axis=-1)[..., 0]
            vals.append(np.sum(bc.loss_weights(mask, "sequence") * losses))
        num[i] = (vals[0] - vals[1]) / (2 * eps)
    assert rel_err(got[t - 1, b], num) < 1e-6


def test_per_sequence_equals_per_token_when_lengths_are_equal():
    params, xs, ys = problem([4, 4, 4], seed=6)
    X, Y, mask = bc.pad_batch(xs, ys)
    a, b = bc.bptt_per_sequence(params, X, Y, mask), bc.bptt(params, X, Y, mask=mask)
    assert a.loss == pytest.approx(b.loss, rel=1e-12)
    assert all(rel_err(a.grads[n], b.grads[n]) < 1e-12 for n in params)


def test_per_sequence_weighs_a_short_sequence_up():
    params, xs, ys = problem([2, 8], seed=7)
    X, Y, mask = bc.pad_batch(xs, ys)
    per_seq = bc.bptt_per_sequence(params, X, Y, mask).grads
    alone = [bc.bptt(params, x, y).grads for x, y in zip(xs, ys)]       # each sequence's mean loss
    for n in params:
        assert rel_err(per_seq[n], (alone[0][n] + alone[1][n]) / 2) < 1e-12


def test_per_sequence_accepts_truncation_and_h0():
    params, xs, ys = problem([3, 6], seed=8)
    X, Y, mask = bc.pad_batch(xs, ys)
    h0 = np.random.default_rng(8).normal(size=(2, H))
    got = bc.bptt_per_sequence(params, X, Y, mask, h0=h0, truncation=bc.Subsequence(2))
    for n in params:
        expected = sum(bc.bptt(params, x, y, h0=h0[b], truncation=bc.Subsequence(2)).grads[n] / 2
                       for b, (x, y) in enumerate(zip(xs, ys)))
        assert rel_err(got.grads[n], expected) < 1e-12


def test_per_sequence_overflow_is_one_warning_and_inf_not_nan():
    params, xs, ys = problem([3, 40, 5], seed=9)
    params = {**params, "W_hh": params["W_hh"] * 1e80, "W_hx": params["W_hx"] * 1e80}
    X, Y, mask = bc.pad_batch(xs, ys)
    with pytest.warns(bc.BPTTOverflowWarning) as record:
        got = bc.bptt_per_sequence(params, X, Y, mask, activation="identity")
    assert len([w for w in record if issubclass(w.category, bc.BPTTOverflowWarning)]) == 1
    assert not any(np.isnan(g).any() for g in got.grads.values()) and not np.isnan(got.dL_dh).any()
    assert any(np.isinf(g).any() for g in got.grads.values()) and not np.isnan(got.loss)


@pytest.mark.parametrize("call, match", [
    (lambda X, Y, m: bc.pad_batch([], []), "xs_list, ys_list"),
    (lambda X, Y, m: bc.pad_batch([np.zeros((2, D))], [np.zeros(2, int), np.zeros(1, int)]), "xs_list, ys_list"),
    (lambda X, Y, m: bc.pad_batch([np.zeros((2, D)), np.zeros((2, D + 1))], [np.zeros(2, int)] * 2), r"xs_list\[1\]"),
    (lambda X, Y, m: bc.pad_batch([np.zeros((2, D))], [np.zeros(3, int)]), r"ys_list\[0\]"),
    (lambda X, Y, m: bc.pad_batch([np.zeros((2, D))], [np.zeros(2)]), r"ys_list\[0\]"),
    (lambda X, Y, m: bc.pad_batch([np.zeros((2, D))], [np.zeros(2, int)], side="left"), "side"),
    (lambda X, Y, m: bc.loss_weights(m, per="batch"), "per"),
    (lambda X, Y, m: bc.loss_weights(m.astype(int)), "mask"),
    (lambda X, Y, m: bc.loss_weights(np.zeros((3, 2), bool) | np.array([True, False])), r"mask.*column\(s\) \[1\]"),
    (lambda X, Y, m: bc.bptt_per_sequence(bc.random_params(D, H, Q), X[:, 0], Y[:, 0], m[:, 0]), "xs"),
    (lambda X, Y, m: bc.bptt_per_sequence(bc.random_params(D, H, Q), X, Y, m[:-1]), "mask"),
    (lambda X, Y, m: bc.per_sequence_loss(bc.random_params(D, H, Q), X, Y, m.astype(float)), "mask"),
])
def test_bad_input_is_named(call, match):
    _, xs, ys = problem([2, 3])
    X, Y, mask = bc.pad_batch(xs, ys)
    with pytest.raises(ValueError, match=match):
        call(X, Y, mask)
