"""Freed memory kept for the next forward instead of handed back to the kernel (glibc's ``mallopt``).

A CPU forward of the detector allocates activations of up to 28 MB (a 256-channel feature map at 200x272 in
bf16). glibc serves blocks that large with ``mmap`` and returns them with ``munmap`` (or trims the heap's
top), so the next forward gets fresh pages and takes a page fault on every 4 KiB it touches: about 40,000
faults and a tenth of a second per 640x480 image on 2 cores. ``keep_freed_memory`` raises the mmap threshold
to glibc's maximum (32 MiB) and the trim threshold to 1 GiB, as PyTorch's CPU performance guide does with
jemalloc or tcmalloc, so freed blocks are reused: most forwards after the first take no fresh pages. It is
not a caching allocator: glibc serves PyTorch's 64-byte-aligned requests from a block a little larger than
asked, so a freed block can be just too small for the next request and the heap grows, now and then.
The process keeps its peak memory between forwards rather than dropping to its floor; the peak is the same.
Where the C library is not glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 1 << 30


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process; True when they were set."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):
        return False
