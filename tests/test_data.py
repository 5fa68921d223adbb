"""bptt_data: the corpus (and its fallback without sources), vocabulary, one-hot, the two
partitionings of D2L, the unigram baseline and sampling. Expected values are worked out by hand
from small inputs, never produced by the code under test."""
import math

import numpy as np
import pytest

import bptt_core as bc
import bptt_data as bd


# --- the corpus -------------------------------------------------------------------------------

def test_corpus_is_the_modules_sources_in_order():
    corpus = bd.stdlib_corpus(("bisect", "colorsys"))
    import bisect
    import colorsys
    with open(bisect.__file__, encoding="utf-8") as f1, open(colorsys.__file__, encoding="utf-8") as f2:
        expected = f1.read() + f2.read()
    assert corpus.kind == "source"
    assert corpus.text == expected
    assert corpus.modules == ("bisect", "colorsys")


def test_default_corpus_has_sources_here_and_is_large_enough():
    corpus = bd.stdlib_corpus()
    assert corpus.kind == "source"
    assert len(corpus.text) > 100_000
    assert "def " in corpus.text and "class " in corpus.text


def test_fallback_to_docstrings_when_sources_are_missing(monkeypatch):
    """What Pyodide/JupyterLite may do: no .py sources, only compiled modules."""
    monkeypatch.setattr(bd, "module_source", lambda name: None)
    corpus = bd.stdlib_corpus(("bisect", "colorsys"))
    import bisect
    import colorsys
    assert corpus.kind == "docstrings"
    assert "def " not in corpus.text                    # no code, only prose
    assert bisect.insort_right.__doc__.strip().split("\n")[0] in corpus.text
    assert colorsys.__doc__.strip().split("\n")[0] in corpus.text
    assert corpus.text.index("Bisection algorithms.") < corpus.text.index(colorsys.__doc__.strip().split("\n")[0])


def test_fallback_when_only_one_module_lacks_source(monkeypatch):
    real = bd.module_source
    monkeypatch.setattr(bd, "module_source", lambda name: None if name == "colorsys" else real(name))
    assert bd.stdlib_corpus(("bisect", "colorsys")).kind == "docstrings"


def test_module_source_of_a_frozen_or_missing_module_is_none():
    assert bd.module_source("no_such_module_here") is None


def test_fallback_corpus_trains_and_samples(monkeypatch):
    """The chapter's pipeline runs on the docstring corpus too."""
    monkeypatch.setattr(bd, "module_source", lambda name: None)
    corpus = bd.stdlib_corpus()
    vocab = bd.build_vocab(corpus.text)
    ids = bd.encode(corpus.text, vocab)
    train, test = bd.split(ids, 0.1)
    x, y = bd.sequential_streams(train, 4)
    V = len(vocab)
    params = {**bc.random_params(V, 8, V, seed=0), "b_h": np.zeros(8), "b_q": np.zeros(V)}
    run = bc.train_stream(params, bd.one_hot(x[:64], V), y[:64], chunk=16, lr=0.5, clip="norm", threshold=1.0)
    assert run.diverged_at is None and np.all(np.isfinite(run.losses))
    out = bd.sample(run.params, test[:3], 20, rng=0)
    assert out.shape == (20,) and out.min() >= 0 and out.max() < V


@pytest.mark.parametrize("modules", ["bisect", (), ["bisect", ""], [3]])
def test_bad_modules(modules):
    with pytest.raises(ValueError, match=r"^modules: "):
        bd.stdlib_corpus(modules)


# --- vocabulary, encode, decode, one-hot --------------------------------------------------------

def test_vocab_encode_decode():
    vocab = bd.build_vocab("hello world")
    assert vocab.chars == " dehlorw"
    assert len(vocab) == 8
    assert bd.encode("hello", vocab).tolist() == [3, 2, 4, 4, 5]
    assert bd.decode([3, 2, 4, 4, 5], vocab) == "hello"
    assert bd.encode("hello", vocab).dtype == np.intp


def test_encode_rejects_unknown_characters():
    vocab = bd.build_vocab("abc")
    with pytest.raises(ValueError, match=r"text: .*'z'"):
        bd.encode("abz", vocab)
    with pytest.raises(ValueError, match=r"^text: "):
        bd.encode(b"abc", vocab)


@pytest.mark.parametrize("text", ["", None, 5])
def test_build_vocab_rejects_bad_text(text):
    with pytest.raises(ValueError, match=r"^text: "):
        bd.build_vocab(text)


def test_decode_rejects_out_of_range_and_floats():
    vocab = bd.build_vocab("abc")
    with pytest.raises(ValueError, match=r"ids: .*\[0, 3\).*from 0 to 3"):
        bd.decode([0, 3], vocab)
    with pytest.raises(ValueError, match=r"^ids: "):
        bd.decode([-1], vocab)
    with pytest.raises(ValueError, match="ids.*float"):
        bd.decode(np.array([0.0, 1.0]), vocab)


def test_one_hot():
    x = bd.one_hot(np.array([[2, 0], [1, 1]]), 3)
    assert x.shape == (2, 2, 3) and x.dtype == np.float64
    assert x[0, 0].tolist() == [0, 0, 1] and x[0, 1].tolist() == [1, 0, 0] and x[1, 1].tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match=r"^size: "):
        bd.one_hot([0], 0)
    with pytest.raises(ValueError, match=r"^ids: "):
        bd.one_hot([3], 3)


def test_split():
    train, test = bd.split(np.arange(10), 0.2)
    assert train.tolist() == list(range(8)) and test.tolist() == [8, 9]
    for bad in (0, 1, 1.5, "0.1"):
        with pytest.raises(ValueError, match=r"^held_out: "):
            bd.split(np.arange(10), bad)
    with pytest.raises(ValueError, match=r"^ids: "):
        bd.split(np.arange(1), 0.5)


# --- partitions ---------------------------------------------------------------------------------

def test_sequential_streams_by_hand():
    x, y = bd.sequential_streams(np.arange(11), 2)
    # 10 usable inputs: stream 0 = 0..4, stream 1 = 5..9; targets shifted by one
    assert x.T.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert y.T.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    x, y = bd.sequential_streams(np.arange(11), 2, offset=1)
    assert x.T.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]] and y.T.tolist() == [[2, 3, 4, 5], [6, 7, 8, 9]]


def test_sequential_chunks_continue_each_stream():
    ids = np.arange(1000)
    x, y = bd.sequential_streams(ids, 4)
    first, second = x[:10], x[10:20]
    assert np.all(second[0] == first[-1] + 1)       # chunk i+1 starts where chunk i stopped, per stream
    assert np.all(y[:-1] == x[1:])                   # the target is the next input


def test_sequential_bad_input():
    with pytest.raises(ValueError, match=r"^batch: "):
        bd.sequential_streams(np.arange(10), 0)
    with pytest.raises(ValueError, match=r"^offset: "):
        bd.sequential_streams(np.arange(10), 2, offset=-1)
    with pytest.raises(ValueError, match=r"^ids: "):
        bd.sequential_streams(np.arange(3), 4)


def test_random_batches_cover_pieces_once_and_targets_shift():
    ids = np.arange(103)
    batches = bd.random_batches(ids, 3, 5, rng=7)
    starts = sorted(int(x[0, b]) for x, _ in batches for b in range(x.shape[1]))
    offset = starts[0] % 5
    # pieces are distinct, aligned to one random offset, each a run of 5 consecutive indices
    assert len(set(starts)) == len(starts)
    assert all((s - offset) % 5 == 0 for s in starts)
    for x, y in batches:
        assert x.shape == (5, 3) and y.shape == (5, 3)
        assert np.all(np.diff(x, axis=0) == 1) and np.all(y == x + 1)
    m = (103 - 1 - offset) // 5
    assert len(batches) == m // 3


def test_random_batches_offset_is_below_steps_and_varies_with_the_seed():
    offsets = set()
    for seed in range(20):
        x, _ = bd.random_batches(np.arange(200), 1, 5, rng=seed)[0]
        pieces = [int(x[0, 0]) for x, _ in bd.random_batches(np.arange(200), 1, 5, rng=seed)]
        offsets.add(min(pieces))
        assert all((p - min(pieces)) % 5 == 0 for p in pieces)
    assert offsets <= set(range(5)) and len(offsets) > 1


def test_random_batches_are_shuffled_and_seeded():
    ids = np.arange(400)
    a = bd.random_batches(ids, 4, 8, rng=1)
    b = bd.random_batches(ids, 4, 8, rng=1)
    assert all(np.array_equal(p[0], q[0]) for p, q in zip(a, b))
    firsts = [int(x[0, 0]) for x, _ in a]
    assert firsts != sorted(firsts)


def test_random_batches_bad_input():
    with pytest.raises(ValueError, match=r"^steps: "):
        bd.random_batches(np.arange(100), 2, 0)
    with pytest.raises(ValueError, match=r"^batch: "):
        bd.random_batches(np.arange(100), True, 4)
    with pytest.raises(ValueError, match=r"^ids: "):
        bd.random_batches(np.arange(10), 4, 4)


# --- unigram baseline ---------------------------------------------------------------------------

def test_unigram_perplexity_by_hand():
    # train counts of 0, 1: 3 and 1; add-one over size 2: p = 4/6, 2/6
    ppl = bd.unigram_perplexity([0, 0, 0, 1], [0, 1], 2)
    assert ppl == pytest.approx(math.exp(-(math.log(4 / 6) + math.log(2 / 6)) / 2))
    # uniform frequencies: perplexity = size
    assert bd.unigram_perplexity([0, 1, 2, 3], [3, 2, 1, 0], 4) == pytest.approx(4.0)
    with pytest.raises(ValueError, match=r"^test_ids: "):
        bd.unigram_perplexity([0, 1], [2], 2)


# --- sampling -----------------------------------------------------------------------------------

def test_sample_index_matches_softmax_frequencies():
    rng = np.random.default_rng(0)
    o = np.log(np.array([0.5, 0.3, 0.2]))
    draws = np.bincount([bd.sample_index(o, 1.0, rng) for _ in range(20000)], minlength=3) / 20000
    assert np.allclose(draws, [0.5, 0.3, 0.2], atol=0.015)
    # temperature 0.5 squares the probabilities before normalising: 25/38, 9/38, 4/38
    draws = np.bincount([bd.sample_index(o, 0.5, rng) for _ in range(20000)], minlength=3) / 20000
    assert np.allclose(draws, np.array([25, 9, 4]) / 38, atol=0.015)


def test_sample_index_low_temperature_is_argmax():
    rng = np.random.default_rng(0)
    assert {bd.sample_index([0.0, 2.0, 1.9], 1e-3, rng) for _ in range(50)} == {1}


@pytest.mark.parametrize("temperature", [0, -1.0, "1"])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match=r"^temperature: "):
        bd.sample_index([0.0, 1.0], temperature, np.random.default_rng(0))


def test_sample_follows_a_deterministic_model():
    """A model whose next character is always (current + 1) mod q: the sample must count up."""
    q, h = 5, 5
    big = 20.0
    params = {"W_hx": big * np.eye(h, q), "W_hh": np.zeros((h, h)),
              "W_qh": big * np.roll(np.eye(q, h), 1, axis=0)}       # o_t peaks at x_t + 1
    out = bd.sample(params, [2], 7, temperature=1.0, rng=0)
    assert out.tolist() == [3, 4, 0, 1, 2, 3, 4]


def test_sample_bad_input():
    params = bc.random_params(3, 4, 3)
    with pytest.raises(ValueError, match=r"^prime: "):
        bd.sample(params, [], 5)
    with pytest.raises(ValueError, match=r"^prime: "):
        bd.sample(params, [3], 5)
    with pytest.raises(ValueError, match=r"^n: expected an integer >= 0, got -1"):
        bd.sample(params, [0], -1)


def test_bad_names_vocab_params_and_scores():
    with pytest.raises(ValueError, match=r"^name: "):
        bd.module_source(3)
    with pytest.raises(ValueError, match=r"^name: "):
        bd.module_docstrings("")
    with pytest.raises(ValueError, match=r"^vocab: "):
        bd.encode("abc", "abc")
    with pytest.raises(ValueError, match=r"^vocab: "):
        bd.decode([0], ["a"])
    with pytest.raises(ValueError, match=r"^params: "):
        bd.sample([1, 2], [0], 3)
    with pytest.raises(ValueError, match=r"^rng: "):
        bd.sample_index([0.0, 1.0], 1.0, 0)
    with pytest.raises(ValueError, match=r"^rng: "):
        bd.random_batches(np.arange(100), 2, 4, rng="seed")
    with pytest.raises(ValueError, match=r"^rng: "):
        bd.sample(bc.random_params(3, 4, 3), [0], 3, rng=1.5)
    with pytest.raises(ValueError, match="o: .*1-d"):
        bd.sample_index([], 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="o: .*NaN"):
        bd.sample_index([0.0, np.nan], 1.0, np.random.default_rng(0))


def test_sample_index_tiny_temperature_is_argmax_without_warnings():
    rng = np.random.default_rng(0)                   # pytest turns warnings into errors (pyproject)
    assert {bd.sample_index(np.array([1.0, -2.0, 0.5]), 1e-310, rng) for _ in range(20)} == {0}


def test_random_batches_length_check_does_not_depend_on_the_seed():
    for seed in range(8):
        with pytest.raises(ValueError, match="ids: expected at least batch·steps \\+ steps = 12 indices, got 11"):
            bd.random_batches(np.arange(11), 2, 4, rng=seed)
        assert len(bd.random_batches(np.arange(12), 2, 4, rng=seed)) == 1
