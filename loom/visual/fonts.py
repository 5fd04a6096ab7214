"""Fonts that cover what recipients type: a chain of Noto faces and per-character coverage.

No single font covers Latin accents, CJK, Arabic and emoji, so each character is drawn with the
first face in the chain whose character map (cmap) holds it. Coverage is read from the cmap with
fontTools, never guessed from rendered pixels: a missing glyph renders as a box that has ink.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

from loom import local_cache


@dataclass(frozen=True)
class FontFace:
    """One face: a font file and, for collections (.ttc), the face's index inside it."""

    path: str
    index: int = 0

    @property
    def name(self) -> str:
        return Path(self.path).stem + (f"#{self.index}" if self.index else "")


def _package_dir(module: str) -> Path | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return Path(mod.__file__).parent


# Order matters: Latin/Greek/Cyrillic first (the common case), scripts next, CJK, then emoji.
_NOTO_FILES = [
    "NotoSans[wght].ttf",
    "NotoSansArabic[wght].ttf",
    "NotoSansHebrew[wght].ttf",
    "NotoSansDevanagari[wght].ttf",
    "NotoSansBengali[wght].ttf",
    "NotoSansThai[wght].ttf",
    "NotoSansTamil[wght].ttf",
    "NotoSansTelugu[wght].ttf",
    "NotoSansKannada[wght].ttf",
    "NotoSansMalayalam[wght].ttf",
    "NotoSansGujarati[wght].ttf",
    "NotoSansGurmukhi[wght].ttf",
    "NotoSansOriya[wght].ttf",
    "NotoSansSinhala[wght].ttf",
    "NotoSansKhmer[wght].ttf",
    "NotoSansLao[wght].ttf",
    "NotoSansMyanmar[wght].ttf",
    "NotoSansGeorgian[wght].ttf",
    "NotoSansArmenian[wght].ttf",
    "NotoSansEthiopic[wght].ttf",
]
_SYMBOLS_FILE = "NotoSansSymbols[wght].ttf"
_EMOJI_FILE = "NotoEmoji[wght].ttf"
_CJK_FILE = "NotoSansCJK-Regular.ttc"  # face 0 is the Japanese one; all faces cover the shared Han set


@lru_cache(maxsize=1)
def _bundled_chain() -> tuple[FontFace, ...]:
    noto = _package_dir("manimgx_fonts")
    cjk = _package_dir("noto_cjk_sans_otc")
    faces: list[FontFace] = []
    if noto is not None:
        faces += [FontFace(str(noto / f)) for f in _NOTO_FILES if (noto / f).exists()]
        if (noto / _SYMBOLS_FILE).exists():
            faces.append(FontFace(str(noto / _SYMBOLS_FILE)))
    if cjk is not None and (cjk / _CJK_FILE).exists():
        faces.append(FontFace(str(cjk / _CJK_FILE), 0))
    if noto is not None and (noto / _EMOJI_FILE).exists():
        faces.append(FontFace(str(noto / _EMOJI_FILE)))
    if not faces:
        raise RuntimeError("no bundled fonts: install the manimgx-fonts and noto-cjk-sans-otc packages")
    return tuple(faces)


def emoji_face() -> FontFace | None:
    return next((f for f in _bundled_chain() if Path(f.path).name == _EMOJI_FILE), None)


def font_chain(preferred: str | None = None) -> tuple[FontFace, ...]:
    """The faces tried in order for each character: the template's font first, if it gives one."""
    chain = _bundled_chain()
    if preferred:
        chain = (FontFace(preferred),) + chain
    return chain


@lru_cache(maxsize=64)
def coverage(face: FontFace) -> frozenset[int]:
    """Code points the face maps to a glyph (its best Unicode cmap). Kept in the local cache per
    font file (path, size, modification time): reading a cmap with fontTools costs a process
    ~30 ms, most of it importing fontTools."""

    try:
        identity = f"{local_cache.file_identity(face.path, Path(face.path))}\n{face.index}"
    except OSError:
        return _read_coverage(face)
    kept = local_cache.read_json("fonts", identity, "coverage.json")
    try:
        return frozenset(int(cp) for cp in kept)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        pass  # none kept, or not a list of code points
    points = _read_coverage(face)
    local_cache.write_json("fonts", identity, "coverage.json", sorted(points))
    return points


def _read_coverage(face: FontFace) -> frozenset[int]:
    from fontTools.ttLib import TTFont  # ~30 ms, paid only when a coverage is not in the local cache

    font = TTFont(face.path, fontNumber=face.index, lazy=True)
    try:
        cmap = font.getBestCmap() or {}
        return frozenset(cp for cp, glyph in cmap.items() if glyph and glyph != ".notdef")
    finally:
        font.close()


def covers(face: FontFace, char: str) -> bool:
    return ord(char) in coverage(face)


_per_thread = threading.local()


def load_font(face: FontFace, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """A sized FreeType font; variable faces are set to weight 700 for bold (else their default).

    Cached per thread: a FreeType face must not be used by two threads at once, and recipients
    of a campaign are drawn in parallel threads.
    """
    cache: dict[tuple[FontFace, int, bool], ImageFont.FreeTypeFont] = getattr(_per_thread, "fonts", None) or {}
    _per_thread.fonts = cache
    key = (face, max(1, int(size)), bold)
    if key not in cache:
        if len(cache) > 256:
            cache.clear()
        cache[key] = _open_font(*key)
    return cache[key]


def _open_font(face: FontFace, size: int, bold: bool) -> ImageFont.FreeTypeFont:
    font = ImageFont.truetype(face.path, size=size, index=face.index)
    if bold:
        try:
            axes = font.get_variation_axes()
        except OSError:  # not a variable font
            axes = []
        if axes:
            font.set_variation_by_axes([max(a["minimum"], min(a["maximum"], 700)) for a in axes])
    return font


def is_variable(face: FontFace) -> bool:
    try:
        return bool(load_font(face, 12).get_variation_axes())
    except OSError:
        return False


# Characters that belong to the character before them: combining marks, joiners, variation
# selectors and emoji modifiers. Splitting them into another run would break the cluster.
_JOINERS = {0x200D, 0x200C, 0x20E3}


def _attaches(char: str) -> bool:
    cp = ord(char)
    return (
        unicodedata.category(char).startswith("M")
        or cp in _JOINERS
        or 0xFE00 <= cp <= 0xFE0F
        or 0xE0100 <= cp <= 0xE01EF
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0xE0020 <= cp <= 0xE007F  # emoji tag sequences (flags of regions)
    )


def _neutral(char: str) -> bool:
    """Spaces and punctuation: keep them in the surrounding run's face when it has them."""
    return unicodedata.category(char)[0] in ("Z", "P") or char in "&+-/"


@dataclass(frozen=True)
class TextRun:
    """Consecutive characters drawn with one face."""

    text: str
    face: FontFace | None  # None: no face covers it (never drawn as a box; reported instead)


def _ignorable(char: str) -> bool:
    """Characters a shaper consumes without drawing: joiners, variation selectors, tag characters."""
    cp = ord(char)
    return cp in (0x200D, 0x200C) or 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF or 0xE0020 <= cp <= 0xE007F


def clusters(text: str) -> list[str]:
    """Text split into what must be drawn by one face: a base character with its marks, joiners,
    modifiers and, after a zero-width joiner, the character joined on (emoji sequences)."""
    out: list[str] = []
    for ch in text:
        if out and (_attaches(ch) or out[-1].endswith("\u200d")):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def covers_cluster(face: FontFace, cluster: str) -> bool:
    return all(covers(face, ch) for ch in cluster if not _ignorable(ch))


def split_runs(text: str, chain: tuple[FontFace, ...]) -> list[TextRun]:
    """Split ``text`` (logical order) into runs, each drawn with the first face that covers every
    character of each of its clusters."""
    emoji = emoji_face()
    runs: list[tuple[list[str], FontFace | None]] = []
    for cluster in clusters(text):
        current = runs[-1][1] if runs else None
        face: FontFace | None
        if _neutral(cluster[0]) and current is not None and covers_cluster(current, cluster):
            face = current
        elif ("\ufe0f" in cluster or "\u20e3" in cluster) and emoji is not None and covers_cluster(emoji, cluster):
            face = emoji  # emoji presentation asked for explicitly
        else:
            face = next((f for f in chain if covers_cluster(f, cluster)), None)
            if face is None:  # no face has the marks too: at least draw the base character
                face = next((f for f in chain if covers(f, cluster[0])), None)
        if runs and runs[-1][1] == face:
            runs[-1][0].append(cluster)
        else:
            runs.append(([cluster], face))
    return [TextRun("".join(cs), face) for cs, face in runs]


def uncovered(text: str, chain: tuple[FontFace, ...] | None = None) -> list[str]:
    """Characters that no face draws where they stand (left out of the rendering, never boxed)."""
    chain = chain or font_chain()
    missing = []
    for run in split_runs(text, chain):
        for ch in run.text:
            if ch.isspace() or _ignorable(ch):
                continue
            if run.face is None or not covers(run.face, ch):
                missing.append(ch)
    return missing
