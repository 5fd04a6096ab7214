"""Wiring of the Wav2Lip generator and of what the engine feeds it.

Shape checks cannot see these mistakes (every variant runs and returns the right shapes):
  - the decoder's skip concat order (decoder output first, then the encoder output);
  - the six face channels (masked crop first, then the full reference crop);
  - which mel window each frame of a voice window gets (counted from the window's start).
So the tests compare values: an independent functional forward and committed golden numbers for
the generator, and the tensors the real model receives from the real engine paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loom.edits import AudioInsert
from loom.lipsync import engine
from loom.lipsync.audio import load_speech, mel_start, mel_windows, melspectrogram
from loom.lipsync.checkpoint import random_wav2lip_state
from loom.lipsync.faces import load_face_track
from loom.lipsync.model import Wav2Lip
from loom.prepared import PreparedTemplate
from loom.settings import reload_settings
from tests.test_lipsync_fixtures import FPS, make_prepared, write_wav

State = dict[str, torch.Tensor]

# ------------------------------------------------------------------ (a) the generator's forward

SEED = 11
# The random weights' logits have a std of ~200, so after the sigmoid ~98% of outputs are 0 or 1 and
# golden numbers would hardly move. Shrinking only the last 1x1 conv (weight and bias) scales the
# logits linearly (everything upstream is as drawn) and keeps the outputs in the sigmoid's slope.
LOGIT_SCALE = 1 / 200

# The official layer plan (Rudrabha/Wav2Lip models/wav2lip.py), written out independently of
# loom.lipsync.model: per block (kind, stride, padding, output_padding); kind "conv", "res" (conv
# + input before the ReLU) or "convT". Kernel sizes come from the weights themselves.
Layer = tuple[str, int | tuple[int, int], int, int]
CONV: Layer = ("conv", 1, 1, 0)
RES: Layer = ("res", 1, 1, 0)
DOWN: Layer = ("conv", 2, 1, 0)
UP: Layer = ("convT", 2, 1, 1)
FACE_ENCODER: list[list[Layer]] = [
    [("conv", 1, 3, 0)],  # 6->16 k7 p3
    [DOWN, RES, RES],
    [DOWN, RES, RES, RES],
    [DOWN, RES, RES],
    [DOWN, RES, RES],
    [DOWN, RES],
    [("conv", 1, 0, 0), ("conv", 1, 0, 0)],  # 3x3 -> 1x1, then 1x1
]
AUDIO_ENCODER: list[Layer] = [
    CONV, RES, RES,
    ("conv", (3, 1), 1, 0), RES, RES,
    ("conv", 3, 1, 0), RES, RES,
    ("conv", (3, 2), 1, 0), RES,
    ("conv", 1, 0, 0), ("conv", 1, 0, 0),
]  # fmt: skip
FACE_DECODER: list[list[Layer]] = [
    [("conv", 1, 0, 0)],
    [("convT", 1, 0, 0), RES],  # 1x1 -> 3x3
    [UP, RES, RES],
    [UP, RES, RES],
    [UP, RES, RES],
    [UP, RES, RES],
    [UP, RES, RES],
]


def _block(state: State, prefix: str, x: torch.Tensor, layer: Layer) -> torch.Tensor:
    """conv (+bias) -> BatchNorm (running stats) -> (+ input) -> ReLU, by state-dict key."""
    kind, stride, padding, output_padding = layer
    w, b = state[f"{prefix}.conv_block.0.weight"], state[f"{prefix}.conv_block.0.bias"]
    if kind == "convT":
        y = F.conv_transpose2d(x, w, b, stride=stride, padding=padding, output_padding=output_padding)
    else:
        y = F.conv2d(x, w, b, stride=stride, padding=padding)
    bn = f"{prefix}.conv_block.1"
    y = F.batch_norm(
        y, state[f"{bn}.running_mean"], state[f"{bn}.running_var"], state[f"{bn}.weight"], state[f"{bn}.bias"],
        training=False, eps=1e-5,
    )  # fmt: skip
    if kind == "res":
        y = y + x
    return F.relu(y)


def reference_forward(state: State, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """The official forward, functionally: the decoder concatenates (its output, deepest feature)."""
    audio = mel
    for j, layer in enumerate(AUDIO_ENCODER):
        audio = _block(state, f"audio_encoder.{j}", audio, layer)
    feats: list[torch.Tensor] = []
    x = faces
    for b, layers in enumerate(FACE_ENCODER):
        for j, layer in enumerate(layers):
            x = _block(state, f"face_encoder_blocks.{b}.{j}", x, layer)
        feats.append(x)
    x = audio
    for b, layers in enumerate(FACE_DECODER):
        for j, layer in enumerate(layers):
            x = _block(state, f"face_decoder_blocks.{b}.{j}", x, layer)
        x = torch.cat((x, feats[-1]), dim=1)
        feats.pop()
    x = _block(state, "output_block.0", x, CONV)
    x = F.conv2d(x, state["output_block.1.weight"], state["output_block.1.bias"])
    return torch.sigmoid(x)


def tamed_state(seed: int = SEED) -> State:
    state = random_wav2lip_state(seed=seed)
    state["output_block.1.weight"] = state["output_block.1.weight"] * LOGIT_SCALE
    state["output_block.1.bias"] = state["output_block.1.bias"] * LOGIT_SCALE
    return state


def model_inputs(batch: int = 2, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mel = torch.rand(batch, 1, 80, 16, generator=gen) * 8 - 4  # the normalized mel range
    faces = torch.rand(batch, 6, 96, 96, generator=gen)
    return mel, faces


@pytest.fixture(scope="module")
def state() -> State:
    return tamed_state()  # drawn once per module: 36M random numbers take a second


def loaded(state: State) -> Wav2Lip:
    model = Wav2Lip().eval()
    model.load_state_dict(state, strict=True)
    return model


@pytest.fixture(scope="module")
def generator_run(state: State) -> tuple[State, torch.Tensor, torch.Tensor, torch.Tensor]:
    model = loaded(state)
    mel, faces = model_inputs()
    with torch.inference_mode():
        out = model(mel, faces)
    return state, mel, faces, out


def test_forward_matches_an_independent_functional_reference(
    generator_run: tuple[State, torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    state, mel, faces, out = generator_run
    # Not saturated: a wiring change must be able to move the output.
    assert float(out.std()) > 0.1 and float(((out < 0.01) | (out > 0.99)).float().mean()) < 0.05
    with torch.inference_mode():
        want = reference_forward(state, mel, faces)
    assert out.shape == want.shape == (2, 3, 96, 96)
    assert torch.allclose(out, want, rtol=0, atol=2e-5), float((out - want).abs().max())


# Generated once from the current model (seed 11, inputs seed 3, last conv scaled by 1/200):
# per-sample, per-channel means and sample 0 averaged over 24x24 tiles (3x4x4).
GOLDEN_MEANS = [
    [0.484109, 0.265916, 0.482339],
    [0.484317, 0.263590, 0.482278],
]
GOLDEN_TILES_0 = [
    [
        [0.476487, 0.482017, 0.487240, 0.494074],
        [0.475267, 0.471559, 0.478619, 0.486393],
        [0.471839, 0.477743, 0.482307, 0.495516],
        [0.489480, 0.487680, 0.490968, 0.498559],
    ],
    [
        [0.270124, 0.239772, 0.250202, 0.340095],
        [0.217897, 0.186937, 0.199221, 0.304755],
        [0.244290, 0.198014, 0.210431, 0.305889],
        [0.326313, 0.291934, 0.302094, 0.366684],
    ],
    [
        [0.451769, 0.467003, 0.472894, 0.490265],
        [0.465814, 0.470653, 0.482943, 0.498052],
        [0.464598, 0.477584, 0.485280, 0.506557],
        [0.484419, 0.494273, 0.495757, 0.509562],
    ],
]


def test_forward_matches_committed_golden_numbers(
    generator_run: tuple[State, torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    _, _, _, out = generator_run
    means = out.mean(dim=(2, 3))
    tiles = F.avg_pool2d(out[:1], 24)[0]
    assert torch.allclose(means, torch.tensor(GOLDEN_MEANS), rtol=0, atol=1e-4), means.tolist()
    assert torch.allclose(tiles, torch.tensor(GOLDEN_TILES_0), rtol=0, atol=1e-4), tiles.tolist()


# ------------------------------------------------------------------ (b) the six face channels


class Captured:
    """What the generator's forward receives, via a pre-hook (the real module, the real call)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.mels: list[np.ndarray] = []
        self.faces: list[np.ndarray] = []
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, _module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        mel, faces = args
        self.mels.append(mel.detach().float().cpu().numpy().copy())
        self.faces.append(faces.detach().float().cpu().numpy().copy())

    def remove(self) -> None:
        self._handle.remove()


def test_generate_feeds_masked_crop_then_full_reference_and_the_given_mel(state: State) -> None:
    model = loaded(state)
    runner = engine.LipSyncModel(model=model, device=torch.device("cpu"), dtype=torch.float32, checkpoint="x")
    rng = np.random.default_rng(4)
    crops = rng.integers(1, 256, (2, 96, 96, 3), dtype=np.uint8)  # BGR, no zeros: masking shows
    mels = rng.uniform(-4, 4, (2, 80, 16)).astype(np.float32)
    captured = Captured(model)
    try:
        out = runner.generate(mels, crops.copy())
    finally:
        captured.remove()
    assert out.shape == (2, 96, 96, 3) and out.dtype == np.uint8
    assert len(captured.faces) == 1
    faces, mel = captured.faces[0], captured.mels[0]
    assert faces.shape == (2, 6, 96, 96) and mel.shape == (2, 1, 80, 16)
    full = crops.transpose(0, 3, 1, 2).astype(np.float32) / 255.0  # (B, 3, 96, 96), still BGR
    # Channels 0-2: the crop with rows 48-95 zeroed (the model must draw the mouth) ...
    assert np.all(faces[:, 0:3, 48:] == 0)
    np.testing.assert_allclose(faces[:, 0:3, :48], full[:, :, :48], rtol=0, atol=1e-6)
    # ... channels 3-5: the whole unmasked crop (the pose reference).
    np.testing.assert_allclose(faces[:, 3:6], full, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(mel[:, 0], mels)


# ------------------------------------------------------------------ (c) mel window per frame

START, END = 0.68, 1.6  # frames 17-39: faces 17-19, none 20-29, faces again 30-39 after the cut


def official_start(i: int, fps: Fraction, window_start: float) -> int:
    """Frame i shows at i / fps; its mel window starts int((t - window start) * 80), exactly."""
    return max(0, math.floor((Fraction(i) / fps - Fraction(str(window_start))) * 80))


def test_window_mel_index_counts_from_the_window_start() -> None:
    index = engine._window_mel_index(Fraction(FPS), START)
    assert [index(i) for i in (16, 17, 18, 19, 30, 32, 37)] == [0, 0, 3, 6, 41, 48, 64]
    ntsc = Fraction(30000, 1001)
    index = engine._window_mel_index(ntsc, 2.5)
    for i in range(60, 160):
        assert index(i) == official_start(i, ntsc, 2.5), i
    # A window starting at 0 is the official int(i * 80 / fps).
    index = engine._window_mel_index(Fraction(FPS), 0.0)
    assert [index(i) for i in (0, 1, 5, 24, 25)] == [int(i * 80 / FPS) for i in (0, 1, 5, 24, 25)]


def chirp(seconds: float, rate: int = 16000) -> np.ndarray:
    """A tone sweeping 150 Hz -> 6 kHz: every mel window differs from its neighbours."""
    t = np.arange(int(round(seconds * rate))) / rate
    f0, f1 = 150.0, 6000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.3 * np.sin(phase)).astype(np.float32)


@pytest.fixture(scope="module")
def window(tmp_path_factory: pytest.TempPathFactory, state: State) -> tuple[PreparedTemplate, AudioInsert, str]:
    root = tmp_path_factory.mktemp("wiring")
    prepared = make_prepared(root / "prepared", START, END)
    wav = write_wav(root / "hello.wav", chirp(END - START), 16000)
    insert = AudioInsert(segment_id="hello", uri=str(wav), start=START, end=END, sample_rate=16000)
    # The official file layout (as write_random_checkpoint saves it), with the module's weights.
    checkpoint = root / "wav2lip_random.pth"
    torch.save({"state_dict": state, "optimizer": {}, "global_step": 0, "global_epoch": 0}, str(checkpoint))
    return prepared, insert, str(checkpoint)


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, window: tuple[PreparedTemplate, AudioInsert, str]) -> Iterator[str]:
    checkpoint = window[2]
    monkeypatch.setenv("LOOM_WAV2LIP_CHECKPOINT", checkpoint)
    monkeypatch.setenv("LOOM_WAV2LIP_BATCH_SIZE", "4")  # several batches: order across flushes counts
    monkeypatch.setenv("LOOM_WAV2LIP_DEVICE", "cpu")
    reload_settings()
    engine.reset_engine()
    yield checkpoint
    engine.reset_engine()
    monkeypatch.undo()
    reload_settings()


def test_segment_gives_each_frame_the_mel_window_from_the_voice_start(
    configured: str, window: tuple[PreparedTemplate, AudioInsert, str], tmp_path: Path
) -> None:
    prepared, insert, _ = window
    segment = prepared.template.voice_segments[0]
    fps = prepared.video.frame_rate
    first, stop = prepared.segment_frames(segment.start_time, segment.end_time)
    assert (first, stop) == (17, 40) and insert.start > 0  # the window starts mid-video
    track = load_face_track(prepared.faces["hello"])
    wanted = [i for i in range(first, stop) if track.box(i) is not None]
    assert len(wanted) >= 8 and wanted[0] == 17

    mel = melspectrogram(load_speech(insert.uri))
    expected = {i: official_start(i, fps, insert.start) for i in wanted}
    assert all(expected[i] == mel_start(float(Fraction(i) / fps) - insert.start) for i in wanted)
    # The chirp makes the windows at the right and the wrong starts differ (else the test is blind).
    wrong = [mel_start(float(Fraction(i) / fps)) for i in wanted]
    right_w, wrong_w = mel_windows(mel, [expected[i] for i in wanted]), mel_windows(mel, wrong)
    differs = [i for i, r, w in zip(wanted, right_w, wrong_w) if np.abs(r - w).mean() > 0.5]
    assert len(differs) >= len(wanted) // 2 and wanted[0] in differs  # late frames clamp to the end

    # The engine reuses the cached instance, so a hook on it sees every batch the segment runs.
    model = engine.load_model(configured, "cpu").model
    captured = Captured(model)
    try:
        ref = engine.lipsync_segment(prepared, segment, insert, str(tmp_path / "lips.npz"))
    finally:
        captured.remove()
    assert ref is not None and ref.frames_patched == len(wanted)
    assert len(engine._models) == 1 and len(captured.mels) >= 2
    got = np.concatenate(captured.mels)[:, 0]  # rows in frame order, face frames only
    assert got.shape == (len(wanted), 80, 16)
    for row, i in enumerate(wanted):
        want = mel_windows(mel, [expected[i]])[0]
        np.testing.assert_allclose(got[row], want, rtol=0, atol=1e-6, err_msg=f"frame {i}")
