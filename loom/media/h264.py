"""H.264 bitstream facts a splice needs: NAL units, the avcC record, parameter-set ids, IDR pictures.

Packets in MP4 carry length-prefixed NAL units and the parameter sets live in the avcC record;
libx264 emits Annex B (start codes) with its parameter sets in-band. These helpers convert one
into the other and read just enough of an SPS/PPS to tell two encoders' headers apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

_START_CODE = re.compile(b"\x00\x00\x01")


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B buffer (start codes removed, trailing zero bytes dropped)."""
    starts = [m.end() for m in _START_CODE.finditer(data)]
    nals = []
    for begin, end in zip(starts, starts[1:] + [len(data) + 3]):
        nal = data[begin : end - 3].rstrip(b"\x00")
        if nal:
            nals.append(nal)
    return nals


def split_length_prefixed(data: bytes, length_size: int = 4) -> list[bytes]:
    nals, pos = [], 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        nals.append(data[pos : pos + size])
        pos += size
    return nals


def join_length_prefixed(nals: list[bytes], length_size: int = 4) -> bytes:
    return b"".join(len(n).to_bytes(length_size, "big") + n for n in nals)


def is_idr_packet(data: bytes, length_size: int = 4) -> bool:
    return any(n and nal_type(n) == NAL_IDR for n in split_length_prefixed(data, length_size))


def _unescape(nal: bytes) -> bytes:
    """RBSP of a NAL unit (emulation-prevention bytes removed)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]
        value = (byte >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
        value = 1
        for _ in range(zeros):
            value = (value << 1) | self.bit()
        return value - 1


def sps_id(sps: bytes) -> int:
    """seq_parameter_set_id of an SPS NAL unit (after profile, constraint flags and level)."""
    return _Bits(_unescape(sps[4:])).ue()


def pps_ids(pps: bytes) -> tuple[int, int]:
    """(pic_parameter_set_id, seq_parameter_set_id) of a PPS NAL unit."""
    bits = _Bits(_unescape(pps[1:]))
    return bits.ue(), bits.ue()


@dataclass
class AvcConfig:
    """The avcC record (ISO/IEC 14496-15): profile, level, NAL length size and parameter sets."""

    profile: int
    compat: int
    level: int
    length_size: int
    sps: list[bytes] = field(default_factory=list)
    pps: list[bytes] = field(default_factory=list)
    tail: bytes = b""  # high-profile extension (chroma format, bit depths, SPS-ext), kept as is

    @classmethod
    def parse(cls, data: bytes) -> AvcConfig:
        if not data or data[0] != 1:
            raise ValueError("not an avcC record (Annex B extradata?)")
        cfg = cls(profile=data[1], compat=data[2], level=data[3], length_size=(data[4] & 3) + 1)
        pos = 6
        for _ in range(data[5] & 0x1F):
            size = int.from_bytes(data[pos : pos + 2], "big")
            cfg.sps.append(data[pos + 2 : pos + 2 + size])
            pos += 2 + size
        count = data[pos]
        pos += 1
        for _ in range(count):
            size = int.from_bytes(data[pos : pos + 2], "big")
            cfg.pps.append(data[pos + 2 : pos + 2 + size])
            pos += 2 + size
        cfg.tail = data[pos:]
        return cfg

    def build(self) -> bytes:
        out = bytearray([1, self.profile, self.compat, self.level, 0xFC | (self.length_size - 1), 0xE0 | len(self.sps)])
        for sps in self.sps:
            out += len(sps).to_bytes(2, "big") + sps
        out.append(len(self.pps))
        for pps in self.pps:
            out += len(pps).to_bytes(2, "big") + pps
        return bytes(out) + self.tail

    def sps_ids(self) -> set[int]:
        return {sps_id(s) for s in self.sps}

    def pps_ids(self) -> set[int]:
        return {pps_ids(p)[0] for p in self.pps}
