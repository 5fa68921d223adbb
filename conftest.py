"""pytest, for every test path (tests/ and the chapter notebooks that nbval runs).

Widgets run in bptt_viz's STILL mode (BPTT_STATIC_FRAMES=1, no BPTT_FRAMES_DIR): the mode the committed
notebooks were executed in (tools/execute_chapters.py), so nbval's kernels, which inherit this
environment, compare a fresh run with the stored outputs. Without it a kernel is LIVE (bptt_viz.mode).
The book build sets its own BPTT_FRAMES_DIR (SITE mode, _ext/bptt_site.py); tests that need another
mode set it themselves (monkeypatch).
"""
import os

os.environ["BPTT_STATIC_FRAMES"] = "1"
os.environ.pop("BPTT_FRAMES_DIR", None)
