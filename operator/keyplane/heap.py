"""glibc's malloc, told to hand large buffers back to the system when they are freed.

glibc serves an allocation above its mmap threshold (128 KiB at start) from a mapping of its own, unmapped
when the buffer is freed. The threshold is dynamic, though: whenever such a buffer is freed, glibc raises the
threshold to that buffer's size (up to 32 MiB). After the first large buffer, the operator's large
short-lived ones (a namespace's bundle as JSON, then base64, then the request body: a few hundred KB each
for 100 IdentityProviders; a large object's watch event) are carved from the heap instead, between
long-lived objects, and the holes they leave stay resident: at N=1000 the peak RSS varied by 10 MB from
run to run, and averaged 7 MB more than with the threshold fixed (bench/README.md, "Where the memory lives").

Setting the threshold explicitly turns the adjustment off, as the `MALLOC_MMAP_THRESHOLD_` environment
variable would. The operator does it at start; an operator given that variable keeps the value it names.
Linux with glibc only: elsewhere (musl, macOS) nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept from then on
ENVIRONMENT_VARIABLE = "MALLOC_MMAP_THRESHOLD_"


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at 128 KiB; False when not on glibc or when the environment already set it."""
    if not sys.platform.startswith("linux") or ENVIRONMENT_VARIABLE in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
        libc.gnu_get_libc_version  # noqa: B018  (glibc's own symbol: musl also has a mallopt, a no-op)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
