"""bptt_data: the text plumbing of the chapter "A character model on real text" (numpy only).

The corpus is text that every Python installation already has: the source files of a fixed list of
standard-library modules, read at run time (nothing is downloaded, nothing is committed). Where the
standard library ships without its .py sources (some minimal or embedded installations; Pyodide
0.27.7, which the book's JupyterLite edition runs, does ship them), `stdlib_corpus` falls back to
the modules' docstrings, which the compiled .pyc files keep, and says so in the `Corpus` it returns.

Then: a character vocabulary, encode/decode, one-hot vectors, the two ways of cutting a corpus into
minibatches of Dive into Deep Learning (sequential and random partitioning), the unigram baseline, and
sampling characters from a trained model with a temperature. The model's mathematics lives in
`bptt_core`; this module only feeds it.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import numbers
import sys
from dataclasses import dataclass

import numpy as np

import bptt_core as bc

__all__ = [
    "MODULES", "Corpus", "Vocab", "module_source", "module_docstrings", "stdlib_corpus", "build_vocab",
    "encode", "decode", "one_hot", "split", "sequential_streams", "random_batches", "unigram_perplexity",
    "sample_index", "sample",
]

# Pure-Python modules, each a plain .py file in CPython's standard library (no frozen modules).
MODULES = ("bisect", "colorsys", "fnmatch", "glob", "textwrap", "string", "queue", "sched", "calendar",
           "contextlib", "copy", "pprint", "reprlib", "numbers", "operator", "random")


def _fail(name, expected, got):
    raise ValueError(f"{name}: expected {expected}, got {got}")


def _check_int(name, value, least):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        _fail(name, f"an integer >= {least}", repr(value))
    return int(value)


def _check_name(name):
    if not isinstance(name, str) or not name:
        _fail("name", "a module name (a non-empty str)", repr(name))
    return name


def _check_vocab(vocab):
    if not isinstance(vocab, Vocab):
        _fail("vocab", "a bptt_data.Vocab (from build_vocab)", type(vocab).__name__)
    return vocab


def _check_rng(rng):
    """A numpy Generator from a seed or a Generator."""
    if isinstance(rng, bool) or not isinstance(rng, (numbers.Integral, np.random.Generator)):
        _fail("rng", "an integer seed or a numpy Generator", type(rng).__name__)
    return np.random.default_rng(rng)


def _check_modules(modules):
    if isinstance(modules, str) or not modules or not all(isinstance(m, str) and m for m in modules):
        _fail("modules", "a non-empty sequence of module names", repr(modules))
    return tuple(modules)


@dataclass
class Corpus:
    """The text, the modules it came from, `kind` ("source" or "docstrings") and the Python version."""
    text: str
    modules: tuple
    kind: str
    python: str


def module_source(name):
    """The source text of the standard-library module `name`, or None if this Python has none for it
    (a frozen module, or a standard library shipped as .pyc files only)."""
    spec = importlib.util.find_spec(_check_name(name))
    if spec is None or spec.loader is None or not hasattr(spec.loader, "get_source"):
        return None
    try:
        return spec.loader.get_source(name)
    except (ImportError, OSError):
        return None


def module_docstrings(name):
    """The docstrings of module `name` and of its public classes, functions and methods (also those
    that its C accelerator, e.g. _bisect for bisect, supplies), in the order the module defines them,
    separated by blank lines: what survives in a compiled .pyc file."""
    module = importlib.import_module(_check_name(name))
    docs = [module.__doc__]
    for key, obj in vars(module).items():
        if key.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)) \
                or getattr(obj, "__module__", None) not in (name, "_" + name):
            continue
        docs.append(obj.__doc__)
        if inspect.isclass(obj):
            docs += [getattr(f, "__doc__", None) for k, f in vars(obj).items()
                     if not k.startswith("__") and inspect.isroutine(f)]
    return "\n\n".join(inspect.cleandoc(d) for d in docs if isinstance(d, str) and d.strip()) + "\n"


def stdlib_corpus(modules=MODULES):
    """The source files of `modules` joined in order; if any of them has no source, the docstrings
    of every one of them instead (kind "docstrings"), so that the text is of one kind."""
    modules = _check_modules(modules)
    sources = [module_source(m) for m in modules]
    python = ".".join(map(str, sys.version_info[:3]))
    if all(s is not None for s in sources):
        return Corpus("".join(sources), modules, "source", python)
    return Corpus("".join(module_docstrings(m) for m in modules), modules, "docstrings", python)


@dataclass
class Vocab:
    """The characters of a text, sorted; a character's index is its position in `chars`."""
    chars: str

    def __len__(self):
        return len(self.chars)


def build_vocab(text):
    """The vocabulary of `text`: every distinct character, sorted by code point."""
    if not isinstance(text, str) or not text:
        _fail("text", "a non-empty str", repr(text)[:40])
    return Vocab("".join(sorted(set(text))))


def encode(text, vocab):
    """The indices of the characters of `text` in `vocab`, as an np.intp array (the integer that
    np.bincount and indexing take on every platform, 32-bit WebAssembly included)."""
    if not isinstance(text, str):
        _fail("text", "a str", type(text).__name__)
    index = {c: i for i, c in enumerate(_check_vocab(vocab).chars)}
    missing = sorted(set(text) - index.keys())
    if missing:
        _fail("text", "only characters of the vocabulary", f"{len(missing)} others, e.g. {missing[0]!r}")
    return np.array([index[c] for c in text], dtype=np.intp)


def _check_ids(name, ids, size):
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu" or (ids.size and (ids.min() < 0 or ids.max() >= size)):
        _fail(name, f"integer indices in [0, {size})",
              f"dtype {ids.dtype}" if ids.dtype.kind not in "iu" else f"values from {ids.min()} to {ids.max()}")
    return ids


def decode(ids, vocab):
    """The text whose character indices in `vocab` are `ids`."""
    ids = _check_ids("ids", ids, len(_check_vocab(vocab)))
    return "".join(vocab.chars[i] for i in np.ravel(ids))


def one_hot(ids, size):
    """Float64 one-hot vectors: shape ids.shape + (size,), a 1 at each index."""
    size = _check_int("size", size, 1)
    ids = _check_ids("ids", ids, size)
    return np.eye(size)[ids]


def split(ids, held_out):
    """(training part, held-out part): the last fraction `held_out` (0 < held_out < 1) of `ids` held out."""
    if not isinstance(held_out, numbers.Real) or not 0 < held_out < 1:
        _fail("held_out", "a fraction strictly between 0 and 1", repr(held_out))
    ids = np.asarray(ids)
    cut = len(ids) - max(1, int(round(held_out * len(ids))))
    if cut < 1:
        _fail("ids", "at least two indices", len(ids))
    return ids[:cut], ids[cut:]


def sequential_streams(ids, batch, *, offset=0):
    """Sequential partitioning (D2L): inputs and targets of shape (N, batch), column b the b-th of
    `batch` contiguous pieces of ids[offset:] and the same shifted by one character.

    Cut into consecutive chunks along the first axis, minibatch i+1 continues every stream of
    minibatch i exactly where it stopped, so the state may be carried from one to the next.
    """
    batch = _check_int("batch", batch, 1)
    offset = _check_int("offset", offset, 0)
    ids = np.asarray(ids)[offset:]
    n = (len(ids) - 1) // batch
    if n < 1:
        _fail("ids", f"more than {batch} indices after the offset", len(ids))
    x = ids[:n * batch].reshape(batch, n).T
    y = ids[1:n * batch + 1].reshape(batch, n).T
    return x, y


def random_batches(ids, batch, steps, *, rng=0):
    """Random partitioning (D2L): drop the first d ~ U{0..steps-1} characters, cut the rest into
    subsequences of `steps`, shuffle them and group them `batch` at a time. A list of (inputs, targets),
    each of shape (steps, batch); neighbouring minibatches are unrelated, so the state starts afresh."""
    batch, steps = _check_int("batch", batch, 1), _check_int("steps", steps, 1)
    rng = _check_rng(rng)
    ids = np.asarray(ids)
    if len(ids) < batch * steps + steps:                # enough for every offset d
        _fail("ids", f"at least batch·steps + steps = {batch * steps + steps} indices", len(ids))
    d = int(rng.integers(steps))
    m = (len(ids) - 1 - d) // steps
    starts = d + steps * rng.permutation(m)
    offsets = np.arange(steps)[:, None]
    return [(ids[starts[i:i + batch] + offsets], ids[starts[i:i + batch] + offsets + 1])
            for i in range(0, m - batch + 1, batch)]


def unigram_perplexity(train_ids, test_ids, size):
    """exp of the cross-entropy of `test_ids` under the character frequencies of `train_ids` (add-one
    smoothed over `size` characters): the perplexity of a model that ignores all context."""
    size = _check_int("size", size, 1)
    counts = np.bincount(_check_ids("train_ids", train_ids, size), minlength=size) + 1.0
    p = counts / counts.sum()
    return float(np.exp(-np.mean(np.log(p[_check_ids("test_ids", test_ids, size)]))))


def sample_index(o, temperature, rng):
    """One index drawn from softmax(o / temperature); temperature -> 0 approaches argmax."""
    if not isinstance(temperature, numbers.Real) or not temperature > 0:
        _fail("temperature", "a number > 0", repr(temperature))
    if not isinstance(rng, np.random.Generator):
        _fail("rng", "a numpy Generator", type(rng).__name__)
    z = np.asarray(o, dtype=np.float64)
    if z.ndim != 1 or not len(z) or not np.all(np.isfinite(z)):
        _fail("o", "a non-empty 1-d array of finite scores", f"shape {z.shape}" if z.ndim != 1 or not len(z) else "inf or NaN")
    with np.errstate(over="ignore", under="ignore"):    # a tiny temperature sends exponents to -inf: p = 0
        p = np.exp((z - z.max()) / temperature)        # exponents <= 0, the largest 0
    return int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right").clip(0, len(p) - 1))


def sample(params, prime, n, *, temperature=1.0, rng=0, activation="tanh"):
    """n indices generated by the model `params` (bptt_core's RNN, one-hot inputs) after reading the
    indices `prime`: each drawn with `sample_index` from the output and fed back as the next input."""
    n = _check_int("n", n, 0)
    if not isinstance(params, dict) or "W_qh" not in params:
        _fail("params", "a bptt_core parameter dict with W_hx, W_hh, W_qh", type(params).__name__)
    q = np.shape(params["W_qh"])[0]
    prime = _check_ids("prime", prime, q)
    if prime.ndim != 1 or len(prime) < 1:
        _fail("prime", "a non-empty 1-d sequence of indices", f"shape {prime.shape}")
    rng = _check_rng(rng)
    fw = bc.forward(params, one_hot(prime, q), activation=activation)
    h, o, out = fw.hs[-1], fw.os[-1], []
    for _ in range(n):
        out.append(sample_index(o, temperature, rng))
        fw = bc.forward(params, one_hot(out[-1:], q), h0=h, activation=activation)
        h, o = fw.hs[-1], fw.os[-1]
    return np.array(out, dtype=np.intp)
