"""Shared fixtures: the book is built once per test session (or by `make book` before `make test`).

The widgets' mode for the whole session (STILL, for nbval) is set by the conftest.py at the root.
"""
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """Build the book with -W -n --keep-going (any warning fails) and fresh execution; return html dir.
    With BPTT_BUILT_SITE=<html dir>, test that finished build instead: `make test` sets it to the build
    `make book` has just made the same way (and stops if that build warns)."""
    if os.environ.get("BPTT_BUILT_SITE"):
        return Path(os.environ["BPTT_BUILT_SITE"])
    out = tmp_path_factory.mktemp("book")
    proc = subprocess.run([str(JUPYTER_BOOK), "build", str(ROOT), "--path-output", str(out),
                           "-W", "-n", "--keep-going"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out / "_build" / "html"


def peak_bytes(fn):
    """The peak of memory traced by tracemalloc while fn() runs, in bytes."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bytes_received(responses):
    """Bytes the browser received for these playwright responses, bodies and headers (a file served
    from the browser's cache was not received and counts 0)."""
    from playwright.sync_api import Error

    total = 0
    for r in responses:
        try:
            sizes = r.request.sizes()
        except Error:
            continue
        total += sizes["responseBodySize"] + sizes["responseHeadersSize"]
    return total
