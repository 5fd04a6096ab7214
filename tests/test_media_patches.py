"""Patch and plate archives: a local archive's members are mapped, not read, and equal what np.load gives."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from loom.media.patches import Patch, PatchSet, read_npz, write_npz


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "layout": rng.integers(0, 1000, (7, 6)).astype(np.int64),
        "pixels": rng.integers(0, 256, 5000, dtype=np.uint8),
        "fortran": np.asfortranarray(rng.random((5, 3)).astype(np.float32)),
        "empty": np.zeros((0, 4), np.uint8),
    }


def test_a_local_archive_is_mapped_and_reads_as_np_load_does(tmp_path: Path) -> None:
    arrays = _arrays()
    uri = write_npz(str(tmp_path / "a.npz"), arrays)
    got = read_npz(uri)
    assert isinstance(got["pixels"], np.memmap) and not got["pixels"].flags.writeable
    with np.load(uri) as reference:
        assert sorted(got) == sorted(reference.files)
        for name in reference.files:
            assert got[name].dtype == reference[name].dtype and np.array_equal(got[name], reference[name])


def test_a_deflated_or_damaged_archive_is_read_whole_or_refused(tmp_path: Path) -> None:
    arrays = _arrays()
    deflated = tmp_path / "d.npz"
    np.savez_compressed(deflated, **arrays)
    assert zipfile.ZipFile(deflated).infolist()[0].compress_type == zipfile.ZIP_DEFLATED
    got = read_npz(str(deflated))
    assert not isinstance(got["pixels"], np.memmap) and np.array_equal(got["pixels"], arrays["pixels"])
    broken = tmp_path / "b.npz"
    broken.write_bytes(Path(write_npz(str(tmp_path / "c.npz"), arrays)).read_bytes()[:-40])
    with pytest.raises((OSError, ValueError, zipfile.BadZipFile)):
        read_npz(str(broken))


def test_patches_saved_and_loaded_through_the_map(tmp_path: Path) -> None:
    ps = PatchSet()
    rgba = np.arange(6 * 5 * 4, dtype=np.uint8).reshape(6, 5, 4)
    ps.add(3, Patch(x=1, y=2, rgba=rgba))
    ps.add(4, Patch(x=-3, y=7, rgba=rgba[::-1].copy()))
    uri = str(tmp_path / "p.npz")
    ps.save(uri)
    back = PatchSet.load(uri)
    assert sorted(back.frames) == [3, 4]
    assert (back.frames[4][0].x, back.frames[4][0].y) == (-3, 7)
    assert np.array_equal(back.frames[3][0].rgba, rgba) and np.array_equal(back.frames[4][0].rgba, rgba[::-1])
