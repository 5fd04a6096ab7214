"""The allocator settings that keep per-frame temporaries from faulting their pages in again."""

from __future__ import annotations

import ctypes
import sys

import pytest

from loom.allocator import TRIM_THRESHOLD, keep_freed_memory


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_blocks_stay_on_the_heap_once_set() -> None:
    assert keep_freed_memory() and keep_freed_memory()  # once, and again without harm
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 8 * 1024 * 1024  # above glibc's default mmap threshold (128 KiB), below ours
    mapped_before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    assert block
    assert libc.mallinfo2().hblkhd == mapped_before  # from the heap, not a mapping of its own
    libc.free(block)
    # not trimmed back to the kernel: the freed top of the heap is kept for the next frame
    assert size <= libc.mallinfo2().keepcost < TRIM_THRESHOLD + size
