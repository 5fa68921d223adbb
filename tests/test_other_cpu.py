"""The stored outputs hold on another CPU, not only on the one that made them.

Several chapters train networks whose runs are chaotic: a different rounding in the last bit (another
BLAS kernel, another CPU) changes their later steps. The chapters print only what survives that. This
test reruns nbval with OpenBLAS forced onto its Sandy Bridge kernels, whose matrix products round
differently from the kernels this machine picks by itself, so a printed number that depends on the
rounding fails here even though it passes the ordinary nbval run.
"""
import os
import subprocess
import sys

from conftest import ROOT


def test_every_chapter_passes_nbval_with_another_blas_kernel():
    env = {**os.environ, "OPENBLAS_CORETYPE": "Sandybridge"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "chapters"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
