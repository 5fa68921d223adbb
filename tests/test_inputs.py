"""Bad input gets a ValueError naming the argument, the expected and the received; shapes by hypothesis."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bptt_core as bc

P = bc.random_params(3, 4, 2, seed=0)
XS = np.ones((5, 3))
YS = np.array([0, 1, 0, 1, 1])


def bptt_with(**change):
    kwargs = {"params": P, "xs": XS, "ys": YS, **change}
    return bc.bptt(kwargs.pop("params"), kwargs.pop("xs"), kwargs.pop("ys"), **kwargs)


BAD = {
    "params not a dict": (dict(params=[1, 2]), r"params: expected a dict .*got list"),
    "params missing key": (dict(params={"W_hx": P["W_hx"], "W_hh": P["W_hh"]}), r"params: expected .*W_qh.*got"),
    "W_hh not square": (dict(params={**P, "W_hh": np.ones((4, 3))}), r"params\['W_hh'\]: expected a square .*got shape \(4, 3\)"),
    "W_hx rows": (dict(params={**P, "W_hx": np.ones((5, 3))}), r"params\['W_hx'\]: expected shape \(h, d\) with h = 4.*got shape \(5, 3\)"),
    "W_qh columns": (dict(params={**P, "W_qh": np.ones((2, 5))}), r"params\['W_qh'\]: .*h = 4.*got shape \(2, 5\)"),
    "W_hh 3-D": (dict(params={**P, "W_hh": np.ones((4, 4, 1))}), r"params\['W_hh'\]: expected a 2-D matrix, got shape"),
    "params NaN": (dict(params={**P, "W_hh": np.full((4, 4), np.nan)}), r"params\['W_hh'\]: expected finite values, got 16 non-finite"),
    "params text": (dict(params={**P, "W_hx": "abc"}), r"params\['W_hx'\]: expected an array of real numbers, got str"),
    "xs 1-D": (dict(xs=np.ones(5)), r"xs: expected shape \(T, d\) or \(T, B, d\).*got shape \(5,\)"),
    "xs wrong d": (dict(xs=np.ones((5, 2))), r"xs: expected .*d = 3.*got shape \(5, 2\)"),
    "xs empty T": (dict(xs=np.ones((0, 3)), ys=np.array([], int)), r"xs: expected .*T, B >= 1.*got shape \(0, 3\)"),
    "xs inf": (dict(xs=np.full((5, 3), np.inf)), r"xs: expected finite values, got 15 non-finite"),
    "ys float labels": (dict(ys=YS.astype(float)), r"ys: expected integer class labels .*got dtype float64"),
    "ys out of range": (dict(ys=np.array([0, 1, 2, 0, 1])), r"ys: expected labels in \[0, 1\] .*got labels from 0 to 2"),
    "ys negative": (dict(ys=np.array([0, -1, 0, 0, 1])), r"ys: expected labels in \[0, 1\].*got labels from -1 to 1"),
    "ys wrong T": (dict(ys=np.array([0, 1, 0])), r"ys: expected labels of shape \(5,\).*got shape \(3,\)"),
    "ys batch mismatch": (dict(xs=np.ones((5, 2, 3)), ys=np.zeros((5, 3), int)), r"ys: expected labels of shape \(5, 2\).*got shape \(5, 3\)"),
    "mse targets shape": (dict(loss="mse", ys=np.ones((5, 3))), r"ys: expected mse targets of shape \(5, 2\).*got shape \(5, 3\)"),
    "mse targets nan": (dict(loss="mse", ys=np.full((5, 2), np.nan)), r"ys: expected finite values"),
    "h0 wrong size": (dict(h0=np.ones(3)), r"h0: expected shape \(4,\) .*got shape \(3,\)"),
    "h0 batch mismatch": (dict(xs=np.ones((5, 2, 3)), ys=np.zeros((5, 2), int), h0=np.ones((3, 4))), r"h0: expected shape \(2, 4\).*got shape \(3, 4\)"),
    "h0 nan": (dict(h0=np.array([0, np.nan, 0, 0])), r"h0: expected finite values, got 1 non-finite"),
    "activation": (dict(activation="relu"), r"activation: expected one of \['identity', 'tanh'\], got 'relu'"),
    "loss": (dict(loss="hinge"), r"loss: expected one of \['softmax_ce', 'mse'\], got 'hinge'"),
    "truncation type": (dict(truncation=3), r"truncation: expected None, Subsequence\(k\), Sliding\(k\), TBPTT\(k1, k2\) or Randomized\(pi\), got 3"),
    "workspace type": (dict(workspace={}), r"workspace: expected None or a bptt_core.Workspace, got dict"),
}


@pytest.mark.parametrize("change,message", BAD.values(), ids=BAD.keys())
def test_bad_input_to_bptt_names_argument_expected_and_received(change, message):
    with pytest.raises(ValueError, match=message):
        bptt_with(**change)


@pytest.mark.parametrize("make,message", [
    (lambda: bc.Subsequence(0), r"k: expected an integer >= 1, got 0"),
    (lambda: bc.Sliding(2.5), r"k: expected an integer >= 1, got 2.5"),
    (lambda: bc.Sliding(True), r"k: expected an integer >= 1, got True"),
    (lambda: bc.Subsequence("3"), r"k: expected an integer >= 1, got '3'"),
    (lambda: bc.Randomized(0.0), r"pi: expected a real number in \(0, 1\], got 0.0"),
    (lambda: bc.Randomized(1.5), r"pi: expected a real number in \(0, 1\], got 1.5"),
    (lambda: bc.Randomized(float("nan")), r"pi: expected a real number in \(0, 1\], got nan"),
    (lambda: bc.Randomized(0.5, rng="seed"), r"rng: expected None, an integer seed or a numpy Generator, got str"),
    (lambda: bc.with_spectral_radius(P["W_hh"], 0), r"rho: expected a finite real number > 0, got 0"),
    (lambda: bc.with_spectral_radius(P["W_hh"], -1.0), r"rho: expected a finite real number > 0, got -1.0"),
    (lambda: bc.with_spectral_radius(np.zeros((3, 3)), 1.0), r"W: expected a matrix with spectral radius > 0.*got spectral radius 0"),
    (lambda: bc.with_spectral_radius(np.triu(np.ones((3, 3)), 1), 1.0), r"W: expected a matrix with spectral radius > 0"),
    (lambda: bc.spectral_radius(np.ones((2, 3))), r"W: expected a non-empty square matrix, got shape \(2, 3\)"),
    (lambda: bc.clip_by_global_norm(P, 0.0), r"theta: expected a finite real number > 0, got 0.0"),
    (lambda: bc.clip_by_global_norm([1.0], 1.0), r"grads: expected a dict of gradient arrays, got list"),
    (lambda: bc.clip_by_global_norm({"a": np.array([np.nan])}, 1.0), r"grads: expected gradients without NaN"),
    (lambda: bc.connectivity(None, 0), r"T: expected an integer >= 1, got 0"),
    (lambda: bc.numerical_gradient(np.sum, np.ones(2), eps=-1e-6), r"eps: expected a finite real number > 0"),
    (lambda: bc.state_jacobian(P, XS, 2, 3), r"t, k: expected 0 <= k <= t <= T = 5, got t = 2, k = 3"),
    (lambda: bc.jacobian_norms(P, np.ones((5, 2, 3))), r"xs: expected one sequence of shape \(T, d\), got shape \(5, 2, 3\)"),
    (lambda: bc.forward(P, XS, activation="sigmoid"), r"activation: expected one of"),
    (lambda: bc.random_params(0, 2, 2), r"d: expected an integer >= 1, got 0"),
    (lambda: bc.clip_by_value(P, -5), r"c: expected a finite real number > 0, got -5"),
    (lambda: bc.clip_by_value({"a": np.array([np.nan])}, 1.0), r"grads: expected gradients without NaN"),
    (lambda: bc.recurrent_matrix(4, 1.0, kind="skew"), r"kind: expected one of \['normal', 'non-normal'\], got 'skew'"),
    (lambda: bc.recurrent_matrix(0, 1.0), r"h: expected an integer >= 1, got 0"),
    (lambda: bc.recurrent_matrix(4, float("inf")), r"rho: expected a finite real number > 0, got inf"),
    (lambda: bc.power_norms(np.ones((2, 3)), 4), r"W: expected a non-empty square matrix, got shape \(2, 3\)"),
    (lambda: bc.power_norms(np.eye(2), -1), r"n: expected an integer >= 0, got -1"),
    (lambda: bc.gradient_profile(P, XS, np.ones(3)), r"u: expected a vector of shape \(4,\), got shape \(3,\)"),
    (lambda: bc.gradient_profile(P, XS, np.full(4, np.inf)), r"u: expected finite values, got 4 non-finite"),
    (lambda: bc.gradient_profile(P, np.ones((5, 2, 3)), np.ones(4)), r"xs: expected one sequence of shape \(T, d\)"),
    (lambda: bc.train(P, [(XS, YS)], lr=0.0), r"lr: expected a finite real number > 0, got 0.0"),
    (lambda: bc.train(P, [(XS, YS)], lr=0.1, clip="norm"), r"threshold: expected a finite real number > 0, got None"),
    (lambda: bc.train(P, [(XS, YS)], lr=0.1, clip="sign", threshold=1.0), r"clip: expected one of \['norm', 'value'\], got 'sign'"),
    (lambda: bc.train(P, [], lr=0.1), r"batches: expected a non-empty sequence of \(xs, ys\) pairs, got an empty sequence"),
    (lambda: bc.train(P, [XS], lr=0.1), r"batches: expected .*got an item that is not a pair"),
], ids=lambda v: "" if callable(v) else v[:40])
def test_bad_input_elsewhere(make, message):
    with pytest.raises(ValueError, match=message):
        make()


dims = st.integers(1, 4)


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 6), B=st.one_of(st.none(), st.integers(1, 3)), d=dims, h=dims, q=st.integers(2, 4),
       activation=st.sampled_from(bc.ACTIVATIONS), loss=st.sampled_from(bc.LOSSES), seed=st.integers(0, 9))
def test_shapes_and_batch_mean_property(T, B, d, h, q, activation, loss, seed):
    """For any shapes: results have the documented shapes, and the gradient of a batch is the mean of
    the per-example gradients (L is a mean over b)."""
    rng = np.random.default_rng(seed)
    params = bc.random_params(d, h, q, seed=seed)
    lead = (T,) if B is None else (T, B)
    xs = rng.normal(size=lead + (d,))
    ys = rng.integers(0, q, size=lead) if loss == "softmax_ce" else rng.normal(size=lead + (q,))
    fw = bc.forward(params, xs, activation=activation)
    assert fw.hs.shape == (T + 1,) + lead[1:] + (h,) and fw.os.shape == lead + (q,)
    assert np.all(fw.hs[0] == 0)
    res = bc.bptt(params, xs, ys, activation=activation, loss=loss)
    assert res.dL_dh.shape == lead + (h,)
    assert all(res.grads[k].shape == params[k].shape for k in bc.PARAM_NAMES)
    if B is not None:
        per = [bc.bptt(params, xs[:, b], ys[:, b], activation=activation, loss=loss) for b in range(B)]
        for k in bc.PARAM_NAMES:
            np.testing.assert_allclose(res.grads[k], np.mean([r.grads[k] for r in per], axis=0),
                                       rtol=1e-10, atol=1e-14)
        assert res.loss == pytest.approx(np.mean([r.loss for r in per]), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple))
def test_any_wrong_xs_shape_is_rejected_by_name(shape):
    """Every xs shape but (T, 3) / (T, B, 3) with T, B >= 1 is refused with a message about xs."""
    ok = len(shape) in (2, 3) and shape[-1] == 3 and 0 not in shape
    ys = np.zeros(shape[:-1], int) if shape else np.zeros((), int)
    if ok:
        assert bc.bptt(P, np.ones(shape), ys).dL_dh.shape == shape[:-1] + (4,)
    else:
        with pytest.raises(ValueError, match=rf"^xs: expected .*got shape {re_shape(shape)}$"):
            bc.bptt(P, np.ones(shape), ys)


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 3), B_h0=st.integers(1, 3), T=st.integers(1, 4), T_y=st.integers(1, 4))
def test_mismatched_T_or_B_between_xs_ys_h0_is_rejected(B, B_h0, T, T_y):
    xs = np.ones((T, B, 3))
    ys = np.zeros((T_y, B), int)
    h0 = np.zeros((B_h0, 4))
    if T_y != T:
        with pytest.raises(ValueError, match=r"^ys: expected labels of shape"):
            bc.bptt(P, xs, ys, h0=h0)
    elif B_h0 != B:
        with pytest.raises(ValueError, match=r"^h0: expected shape"):
            bc.bptt(P, xs, ys, h0=h0)
    else:
        assert np.isfinite(bc.bptt(P, xs, ys, h0=h0).loss)
