"""Per-frame RGBA patches: how lip-sync and visual steps hand their pixels to the renderer.

A patch set is one ``.npz`` file: for each frame index, one or more RGBA patches placed at
(x, y) in frame pixels. The renderer alpha-composites them over the decoded frame, lip-sync
sets first, visual sets after.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
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
    would cost more CPU than the bytes it saves (a tenth of a second per recipient at 720p);
    deflated at level 1 for remote storage (``gs://``), where the bytes cross a network."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if storage.is_remote(uri) else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method, compresslevel=1 if method == zipfile.ZIP_DEFLATED else None) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
    return storage.write_bytes(uri, buf.getvalue())


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

    def save(self, uri: str) -> str:
        """One ``.npz`` written by ``write_npz``."""
        arrays: dict[str, np.ndarray] = {}
        index = []
        for frame, patches in sorted(self.frames.items()):
            for k, p in enumerate(patches):
                name = f"p{frame}_{k}"
                arrays[name] = p.rgba
                index.append([frame, k, int(p.x), int(p.y)])
        arrays["index"] = np.asarray(index, dtype=np.int64).reshape(-1, 4)
        return write_npz(uri, arrays)

    @classmethod
    def load(cls, uri: str) -> PatchSet:
        out = cls()
        with np.load(io.BytesIO(storage.read_bytes(uri)), allow_pickle=False) as data:
            for frame, k, x, y in data["index"].tolist():
                out.add(frame, Patch(x=x, y=y, rgba=data[f"p{frame}_{k}"]))
        return out


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


