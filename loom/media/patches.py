"""Per-frame RGBA patches: how lip-sync and visual steps hand their pixels to the renderer.

A patch set is one ``.npz`` file: for each frame index, one or more RGBA patches placed at
(x, y) in frame pixels. The renderer alpha-composites them over the decoded frame, lip-sync
sets first, visual sets after.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from loom import storage


@dataclass
class Patch:
    x: int
    y: int
    rgba: np.ndarray  # (h, w, 4) uint8; alpha 0 keeps the frame, 255 replaces it


def write_npz(uri: str, arrays: dict[str, np.ndarray]) -> str:
    """Arrays as one ``.npz`` (``np.load`` reads it). Stored as is on a local disk, where deflating
    would cost more CPU than the bytes it saves (a tenth of a second per recipient at 720p), and
    written straight to the (staged) file; deflated at level 1 for remote storage (``gs://``), where
    the bytes cross a network."""
    if not storage.is_remote(uri):
        with storage.staged_output(uri, suffix=".npz") as target:
            _write_arrays(target, arrays, zipfile.ZIP_STORED)
        return _local_file(uri)
    buf = io.BytesIO()
    _write_arrays(buf, arrays, zipfile.ZIP_DEFLATED)
    return storage.write_bytes(uri, buf.getvalue())


def _local_file(uri: str) -> str:
    return os.path.abspath(uri.removeprefix("file://"))


def read_npz(uri: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` by name (without ``.npy``). Members of a local file stored as is
    (``write_npz``'s local files) are mapped read-only, not read: their pages come in when a frame
    uses them, on the thread that uses them, and no checksum pass runs over every byte first.
    Anything else is read whole with ``np.load``."""
    if not storage.is_remote(uri):
        try:
            return _mapped_members(_local_file(uri))
        except (OSError, ValueError, zipfile.BadZipFile):
            pass  # deflated, odd or damaged: np.load reads it (and says what is wrong)
    with np.load(io.BytesIO(storage.read_bytes(uri)), allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _mapped_members(path: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    with open(path, "rb") as handle, zipfile.ZipFile(handle) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"{info.filename} is not a stored .npy member")
            # the member's data follows its local header (30 bytes, then its own name and extra field)
            handle.seek(info.header_offset)
            signature, *_, name_length, extra_length = struct.unpack("<4s2B4HL2L2H", handle.read(30))
            if signature != b"PK\x03\x04":
                raise ValueError(f"bad local header for {info.filename}")
            handle.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
            if dtype.hasobject:
                raise ValueError(f"{info.filename} holds Python objects")
            name = info.filename[: -len(".npy")]
            count = int(np.prod(shape, dtype=np.int64))
            if count == 0:
                arrays[name] = np.zeros(shape, dtype)
                continue
            arrays[name] = np.memmap(handle, dtype=dtype, mode="r", offset=handle.tell(), shape=shape,
                                     order="F" if fortran else "C")
    return arrays


def _write_arrays(target, arrays: dict[str, np.ndarray], method: int) -> None:  # noqa: ANN001
    with zipfile.ZipFile(target, "w", method, compresslevel=1 if method == zipfile.ZIP_DEFLATED else None) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)


class PatchSet:
    """Patches keyed by frame index; written to and read from one ``.npz``."""

    def __init__(self) -> None:
        self.frames: dict[int, list[Patch]] = {}

    def add(self, frame: int, patch: Patch) -> None:
        if patch.rgba.dtype != np.uint8 or patch.rgba.ndim != 3 or patch.rgba.shape[2] != 4:
            raise ValueError("patch must be an (h, w, 4) uint8 RGBA array")
        self.frames.setdefault(int(frame), []).append(patch)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def indices(self) -> list[int]:
        return sorted(self.frames)

    def patches_at(self, frame: int) -> list[Patch]:
        return self.frames.get(frame, [])

    def save(self, uri: str) -> str:
        """One ``.npz`` written by ``write_npz``, its patches packed (``pack_patches``)."""
        return write_npz(uri, pack_patches((frame, p) for frame, patches in sorted(self.frames.items()) for p in patches))

    @classmethod
    def load(cls, uri: str) -> PatchSet:
        out = cls()
        data = read_npz(uri)
        if "layout" in data:
            for frame, patch in unpack_patches(data["layout"], data["pixels"]):
                out.add(frame, patch)
        else:  # one array per patch (files written before patches were packed)
            for frame, k, x, y in data["index"].tolist():
                out.add(frame, Patch(x=x, y=y, rgba=data[f"p{frame}_{k}"]))
        return out


def pack_patches(items: Iterable[tuple[int, Patch]]) -> dict[str, np.ndarray]:
    """Patches as two arrays: ``layout``, a row (frame, x, y, height, width, offset) per patch, and
    ``pixels``, every patch's RGBA bytes one after another. Two archive members instead of one per
    patch: writing and reading a recipient's patches is then one copy each way."""
    rows, chunks, offset = [], [], 0
    for frame, patch in items:
        h, w = patch.rgba.shape[:2]
        rows.append([int(frame), int(patch.x), int(patch.y), h, w, offset])
        chunks.append(np.ascontiguousarray(patch.rgba).reshape(-1))
        offset += h * w * 4
    pixels = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return {"layout": np.asarray(rows, np.int64).reshape(-1, 6), "pixels": pixels}


def unpack_patches(layout: np.ndarray, pixels: np.ndarray) -> list[tuple[int, Patch]]:
    """The patches ``pack_patches`` packed; their arrays are views of ``pixels``."""
    return [(frame, Patch(x=x, y=y, rgba=pixels[offset : offset + h * w * 4].reshape(h, w, 4)))
            for frame, x, y, h, w, offset in layout.tolist()]


class DeferredPatches:
    """A patch set handed over in memory, made frame by frame when the renderer asks: drawing then
    runs inside the render, beside the encoder, instead of before it, and no file is written or
    read. Used where drawing and rendering share a process (``loom personalize``); registered
    under the URI its ``PatchSetRef`` names (``hand_over``), which ``load_patch_source`` looks up
    before the file system."""

    def __init__(self, frames: Iterable[int], make: Callable[[int], list[Patch]]) -> None:
        self.indices = sorted(set(frames))
        self._has = set(self.indices)
        self._make = make

    def __len__(self) -> int:
        return len(self.indices)

    def patches_at(self, frame: int) -> list[Patch]:
        return self._make(frame) if frame in self._has else []


_handed_over: dict[str, DeferredPatches] = {}
_handover_lock = threading.Lock()


def hand_over(uri: str, patches: DeferredPatches) -> None:
    with _handover_lock:
        _handed_over[uri] = patches


def release(uris: Iterable[str]) -> None:
    """Forget patch sets handed over under these URIs (after their render)."""
    with _handover_lock:
        for uri in uris:
            _handed_over.pop(uri, None)


def load_patch_source(uri: str) -> PatchSet | DeferredPatches:
    """The patch set at ``uri``: handed over in this process, else read from storage."""
    with _handover_lock:
        handed = _handed_over.get(uri)
    return handed if handed is not None else PatchSet.load(uri)


class FramePatches(Mapping[int, list[Patch]]):
    """Frame index -> the patches of every set at that frame, in the order the sets were added
    (the order they composite in); stored sets are looked up, deferred ones made on demand."""

    def __init__(self) -> None:
        self._sources: list[PatchSet | DeferredPatches] = []
        self._index: set[int] = set()

    def add(self, source: PatchSet | DeferredPatches) -> tuple[int, int] | None:
        """Add a set; return its frame range [first patched, last patched + 1), None if empty."""
        indices = source.indices
        if not indices:
            return None
        self._sources.append(source)
        self._index.update(indices)
        return indices[0], indices[-1] + 1

    def __contains__(self, frame: object) -> bool:
        return frame in self._index

    def __getitem__(self, frame: int) -> list[Patch]:
        if frame not in self._index:
            raise KeyError(frame)
        return [patch for source in self._sources for patch in source.patches_at(frame)]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._index))

    def __len__(self) -> int:
        return len(self._index)


def apply_patches(frame: np.ndarray, patches: Iterable[Patch]) -> np.ndarray:
    """Alpha-composite patches over an RGB frame (in place; clipped to the frame)."""
    h, w = frame.shape[:2]
    for p in patches:
        ph, pw = p.rgba.shape[:2]
        x0, y0 = max(p.x, 0), max(p.y, 0)
        x1, y1 = min(p.x + pw, w), min(p.y + ph, h)
        if x1 <= x0 or y1 <= y0:
            continue
        src = p.rgba[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
        alpha = src[..., 3:4].astype(np.float32) / 255.0
        if not alpha.any():
            continue
        region = frame[y0:y1, x0:x1].astype(np.float32)
        blended = src[..., :3].astype(np.float32) * alpha + region * (1.0 - alpha)
        frame[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return frame


def describe(uri: str) -> dict[str, object]:
    ps = PatchSet.load(uri)
    return {"frames": len(ps), "first": min(ps.frames, default=None), "last": max(ps.frames, default=None)}


