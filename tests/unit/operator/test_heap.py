"""`keyplane run` keeps glibc from carving large short-lived buffers out of the heap (keyplane/heap.py)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

# After an 8 MiB buffer is freed, glibc's dynamic threshold has risen to 8 MiB: is a 300 KiB buffer then a
# mapping of its own (given back when freed), or a piece of the heap? mallinfo2's hblks counts the mappings.
PROBE = """
import ctypes, sys
from keyplane.heap import fix_mmap_threshold

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else False
large = bytearray(8 * 2**20)
del large
before = libc.mallinfo2().hblks
buffer = bytearray(300 * 1024)
print(fixed, libc.mallinfo2().hblks - before)
"""


def _glibc_with_mallinfo2() -> bool:
    try:
        libc = ctypes.CDLL(None)
        return hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallinfo2")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="glibc >= 2.33 only (mallinfo2)")


def _probe(mode: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    done = subprocess.run([sys.executable, "-c", PROBE, mode], env={**clean, **env}, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def test_a_large_buffer_after_a_larger_one_is_mapped_and_given_back() -> None:
    assert _probe("leave") == "False 0"  # glibc's default: the heap serves it, and keeps its pages
    assert _probe("fix") == "True 1"


def test_a_threshold_chosen_in_the_environment_stands() -> None:
    assert _probe("fix", MALLOC_MMAP_THRESHOLD_=str(16 * 2**20)) == "False 0"


def test_keyplane_run_fixes_it_before_the_operator_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyplane import cli, heap

    calls: list[str] = []
    monkeypatch.setattr(heap, "fix_mmap_threshold", lambda: calls.append("fix") or True)

    async def operator(settings: object) -> None:
        calls.append("operator")

    monkeypatch.setattr(cli, "run_operator", operator)
    assert cli.main(["run"]) == 0
    assert calls == ["fix", "operator"]
