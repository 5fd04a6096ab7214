"""The smart cut's plan: which frames a recipient's edits touch, which GOPs must be re-encoded for
them, and where every video packet lies (its timing, read from headers only; nothing is decoded).
``splice_video`` carries the plan out; when the working video cannot be cut (no avcC, not
starting with an IDR picture, an open GOP) it says why with ``SpliceImpossible``.
"""

from __future__ import annotations

from pathlib import Path

from loom import local_cache
from loom.media import h264


class SpliceImpossible(Exception):
    """The working video cannot be spliced; the reason goes into the report and the log."""


def edited_spans(ranges: list[tuple[int, int]], frame_count: int) -> list[tuple[int, int]]:
    """Union of frame ranges, clipped to the video, merged where they touch."""
    merged: list[tuple[int, int]] = []
    for first, stop in sorted((max(0, a), min(frame_count, b)) for a, b in ranges):
        if stop <= first:
            continue
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((first, stop))
    return merged


def gop_regions(spans: list[tuple[int, int]], keyframes: list[int], frame_count: int) -> list[tuple[int, int]]:
    """Each span widened to [IDR at or before it, next IDR at or after its end), merged."""
    regions: list[tuple[int, int]] = []
    for first, stop in spans:
        start = max((k for k in keyframes if k <= first), default=0)
        end = min((k for k in keyframes if k >= stop), default=frame_count)
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(regions[-1][1], end))
        else:
            regions.append((start, end))
    return regions


class PacketIndex:
    """Timing of every video packet in decode order (headers only, nothing decoded).

    With ``cache_as`` (the video's URI) the index is kept in the local cache, keyed like the frame
    cache by URI, size and modification time, so later renders of the video skip the pass."""

    def __init__(self, container, stream, length_size: int, path: Path, cache_as: str | None = None) -> None:  # noqa: ANN001
        lists = _read_index(cache_as, path) if cache_as is not None else None
        if lists is None:
            lists = _scan_packets(container, stream, length_size)
            if cache_as is not None:
                _write_index(cache_as, path, *lists)
        self.pts, self.dts, self.duration, idr_pts = lists
        order = sorted(self.pts)
        self.display_of_pts = {p: i for i, p in enumerate(order)}
        self.display = [self.display_of_pts[p] for p in self.pts]  # display index per decode position
        self.idr_frames = sorted(self.display_of_pts[p] for p in idr_pts)
        self.frame_count = len(order)

    def check_contiguous(self, regions: list[tuple[int, int]]) -> None:
        """Each region's packets must be one run in decode order (closed GOPs), or it cannot be cut out."""
        for first, stop in regions:
            positions = [i for i, d in enumerate(self.display) if first <= d < stop]
            if positions and positions[-1] - positions[0] + 1 != len(positions):
                raise SpliceImpossible(f"frames {first}-{stop} are not one closed run of packets (open GOP)")


def _scan_packets(container, stream, length_size: int) -> tuple[list[int], list[int], list[int], list[int]]:  # noqa: ANN001
    pts: list[int] = []
    dts: list[int] = []
    duration: list[int] = []
    idr_pts: list[int] = []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.pts is None:
            continue
        pts.append(packet.pts)
        dts.append(packet.dts if packet.dts is not None else packet.pts)
        duration.append(packet.duration or 0)
        if packet.is_keyframe and h264.is_idr_packet(bytes(packet), length_size):
            idr_pts.append(packet.pts)
    return pts, dts, duration, idr_pts


_INDEX_FIELDS = ("pts", "dts", "duration", "idr_pts")


def _read_index(uri: str, path: Path) -> tuple[list[int], list[int], list[int], list[int]] | None:
    data = local_cache.read_json("index", local_cache.file_identity(uri, path), "packets.json")
    try:
        lists = tuple([int(v) for v in data[name]] for name in _INDEX_FIELDS)  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None
    if len({len(v) for v in lists[:3]}) != 1:
        return None
    return lists  # type: ignore[return-value]


def _write_index(uri: str, path: Path, *lists: list[int]) -> None:
    local_cache.write_json("index", local_cache.file_identity(uri, path), "packets.json", dict(zip(_INDEX_FIELDS, lists)))
