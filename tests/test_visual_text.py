"""Text layout: per-character font fallback (no tofu), right-to-left order, shrink-to-fit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from loom.visual.fonts import coverage, font_chain, load_font, split_runs, uncovered
from loom.visual.fonts import _attaches as attaches
from loom.visual.text import cap_height_ratio, fit_line, render_line

NAMES = ["Zoë Ñúñez", "株式会社テスト", "Rocket 🚀 Labs", "José 👩‍💻 García ❤️", "Łódź Ærø Şirket"]


def _glyph_mask(face, text: str, size: int = 48) -> np.ndarray:
    """What the face itself draws for ``text`` (no fallback), cropped to the ink."""
    font = load_font(face, size)
    img = Image.new("L", (size * 3, size * 3), 0)
    ImageDraw.Draw(img).text((size, size * 2), text, font=font, fill=255, anchor="ls")
    a = np.asarray(img) > 80
    ys, xs = np.nonzero(a)
    return a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if len(xs) else a[:0, :0]


@pytest.mark.parametrize("name", NAMES)
def test_every_character_comes_from_a_font_that_has_it(name: str) -> None:
    chain = font_chain()
    runs = split_runs(name, chain)
    assert "".join(r.text for r in runs) == name
    assert uncovered(name, chain) == []
    for run in runs:
        assert run.face is not None
        notdef = _glyph_mask(run.face, "\U0010fffd")  # the face's missing-glyph box
        assert notdef.sum() > 0
        for ch in run.text:
            if ch.isspace() or attaches(ch):
                continue
            assert ord(ch) in coverage(run.face), (ch, run.face.name)
            mask = _glyph_mask(run.face, ch)
            assert mask.sum() > 5, f"no ink for {ch!r}"
            assert mask.shape != notdef.shape or (mask != notdef).mean() > 0.05, f"{ch!r} drew the missing-glyph box"
        assert render_line(run.text, 48, font_chain()).alpha.sum() > 5


def test_fallback_picks_cjk_and_emoji_faces() -> None:
    runs = split_runs("Acme 株式会社 🚀", font_chain())
    names = [r.face.name for r in runs if r.text.strip()]
    assert names[0].startswith("NotoSans[") and any("CJK" in n for n in names) and names[-1].startswith("NotoEmoji")


def test_a_template_font_comes_first_and_falls_back_per_glyph() -> None:
    base = font_chain()
    chain = font_chain(base[1].path)  # pretend the template named the Arabic face
    runs = split_runs("شركة Acme", chain)
    assert runs[0].face == chain[0] and runs[-1].face.name.startswith("NotoSans[")


def _x_of(line_alpha: np.ndarray, glyph_alpha: np.ndarray) -> int:
    scores = cv2.matchTemplate(line_alpha.astype(np.float32), glyph_alpha.astype(np.float32), cv2.TM_CCOEFF_NORMED)
    return int(cv2.minMaxLoc(scores)[3][0])


def test_right_to_left_text_reads_right_to_left() -> None:
    chain = font_chain()
    line = render_line("אב", 60, chain)
    alef, bet = render_line("א", 60, chain).alpha, render_line("ב", 60, chain).alpha
    assert _x_of(line.alpha, alef) > _x_of(line.alpha, bet)  # the first letter is on the right
    mixed = render_line("שלום Acme", 60, chain)
    acme = render_line("Acme", 60, chain).alpha
    assert _x_of(mixed.alpha, acme) < mixed.width / 3  # the Latin run sits at the left end


def test_fit_never_grows_past_the_original_size() -> None:
    chain = font_chain()
    line = fit_line("Hi", 1000, 1000, 20, chain)
    assert line.baseline <= 20.5 and line.height <= 21  # capitals no taller than the original's
    assert abs(cap_height_ratio(chain) - 0.714) < 0.02


def test_long_name_shrinks_until_it_fits() -> None:
    chain = font_chain()
    acme = fit_line("Acme Corp", 120, 30, 20, chain)
    long = fit_line("Bartholomew Christopherson GmbH & Co. KG", acme.width, 30, 20, chain)
    assert long.width <= acme.width and long.height <= 30
    assert long.size < acme.size
    tiny = fit_line("Bartholomew Christopherson GmbH & Co. KG", 40, 8, 20, chain)
    assert tiny.width <= 40 and tiny.height <= 8 and tiny.scale < 1.0


@pytest.mark.parametrize("bold", [False, True])
@pytest.mark.parametrize("fg,bg", [((30, 40, 120), (255, 255, 255)), ((250, 250, 250), (20, 30, 40))])
def test_original_text_look_is_measured(bold: bool, fg, bg) -> None:
    """Weight, colour, baseline and capital height are read off the original text."""
    from loom.visual.look import sample_text_look

    chain = font_chain()
    size, baseline = 22, 30
    img = Image.new("RGB", (220, 44), bg)
    ImageDraw.Draw(img).text((22, baseline), "Acme Corp", font=load_font(chain[0], size, bold), fill=fg, anchor="ls")
    original = np.asarray(img)
    look = sample_text_look(original, np.full_like(original, bg), chain)
    assert look.found and look.bold is bold
    assert max(abs(a - b) for a, b in zip(look.color, fg)) <= 25
    assert look.baseline == baseline and abs(look.cap_height - 0.714 * size) <= 1.0
    assert look.align == "left"
    empty = sample_text_look(np.full_like(original, bg), np.full_like(original, bg), chain)
    assert not empty.found


def test_a_character_no_font_has_is_left_out_not_boxed() -> None:
    """A private-use character no bundled font maps: reported, and nothing drawn for it."""
    chain = font_chain()
    name = "Acme\U0010fffd"
    assert uncovered(name, chain) == ["\U0010fffd"]
    assert [r.face for r in split_runs(name, chain)][-1] is None
    with_it = render_line(name, 40, chain)
    without = render_line("Acme", 40, chain)
    assert with_it.alpha.shape == without.alpha.shape and np.allclose(with_it.alpha, without.alpha)


def test_fonts_are_safe_to_use_from_parallel_threads() -> None:
    """Recipients are drawn in threads: each thread gets its own FreeType faces."""
    from concurrent.futures import ThreadPoolExecutor

    chain = font_chain()
    expected = render_line("Zoë 株式会社 🚀", 30, chain).alpha
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: render_line("Zoë 株式会社 🚀", 30, chain).alpha, range(8)))
    assert all(r.shape == expected.shape and np.array_equal(r, expected) for r in results)
    assert load_font(chain[0], 30) is load_font(chain[0], 30)


def test_coverage_is_kept_per_font_file_and_a_broken_entry_is_read_again(loom_home, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from loom.local_cache import cache_dir
    from loom.visual import fonts

    faces = font_chain()[:2]
    fonts.coverage.cache_clear()
    read = [fonts.coverage(face) for face in faces]  # from the cmaps, then kept
    entries = sorted((cache_dir() / "fonts").glob("*/coverage.json"))
    assert len(entries) == len(faces)

    def no_cmap(face):  # noqa: ANN001, ANN202
        raise AssertionError("the cmap was read again although its coverage is kept")

    fonts.coverage.cache_clear()
    real = fonts._read_coverage
    monkeypatch.setattr(fonts, "_read_coverage", no_cmap)
    assert [fonts.coverage(face) for face in faces] == read and ord("A") in read[0]
    monkeypatch.setattr(fonts, "_read_coverage", real)
    entries[0].write_text("[1, 2,")
    fonts.coverage.cache_clear()
    assert {fonts.coverage(face) for face in faces} == set(read)
    fonts.coverage.cache_clear()
