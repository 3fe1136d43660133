"""The glibc allocator tuning is opt-in: importing minigrad leaves the process's allocator
alone, and the runs the experiments layer starts turn it on."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_minigrad_does_not_tune_the_allocator():
    # glibc's mallopt is looked up only by keep_freed_memory: watch for it during import
    code = "import minigrad, minigrad.experiments, minigrad.estimators.catalogue\n"
    probe = subprocess.run(
        [sys.executable, "-c",
         "import ctypes, ctypes.util\n"
         "seen = []\n"
         "real_cdll = ctypes.CDLL\n"
         "class Spy:\n"
         "    def __init__(self, lib):\n"
         "        self._lib = lib\n"
         "    def __getattr__(self, name):\n"
         "        if name == 'mallopt':\n"
         "            seen.append(name)\n"
         "        return getattr(self._lib, name)\n"
         "ctypes.CDLL = lambda *a, **k: Spy(real_cdll(*a, **k))\n"
         + code +
         "print('mallopt' if seen else 'untouched')\n"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split()[-1] == "untouched", probe.stdout


def test_a_sweep_turns_the_tuning_on(monkeypatch):
    from minigrad.experiments import executor

    calls = []
    monkeypatch.setattr(executor, "keep_freed_memory", lambda: calls.append(1) or True)
    assert executor.map_runs(abs, [(-1,), (2,)], workers=1) == [1, 2]
    assert calls == [1]
