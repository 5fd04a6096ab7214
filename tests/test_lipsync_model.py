"""The Wav2Lip generator: official names and shapes, strict checkpoint loading, clear errors."""

from __future__ import annotations

import pytest
import torch

from loom.errors import InputError
from loom.lipsync.checkpoint import load_wav2lip, random_wav2lip_state, write_random_checkpoint
from loom.lipsync.model import Wav2Lip

# The official layout, written out from Rudrabha/Wav2Lip models/wav2lip.py:
# (module path, cin, cout, kernel, kind) where kind is "conv", "res" (same cin/cout) or "convT".
ENCODER = [
    [(6, 16, 7, "conv")],
    [(16, 32, 3, "conv")] + [(32, 32, 3, "res")] * 2,
    [(32, 64, 3, "conv")] + [(64, 64, 3, "res")] * 3,
    [(64, 128, 3, "conv")] + [(128, 128, 3, "res")] * 2,
    [(128, 256, 3, "conv")] + [(256, 256, 3, "res")] * 2,
    [(256, 512, 3, "conv")] + [(512, 512, 3, "res")],
    [(512, 512, 3, "conv"), (512, 512, 1, "conv")],
]
AUDIO = (
    [(1, 32, 3, "conv")] + [(32, 32, 3, "res")] * 2 + [(32, 64, 3, "conv")] + [(64, 64, 3, "res")] * 2
    + [(64, 128, 3, "conv")] + [(128, 128, 3, "res")] * 2 + [(128, 256, 3, "conv")] + [(256, 256, 3, "res")]
    + [(256, 512, 3, "conv"), (512, 512, 1, "conv")]
)
DECODER = [
    [(512, 512, 1, "conv")],
    [(1024, 512, 3, "convT"), (512, 512, 3, "res")],
    [(1024, 512, 3, "convT")] + [(512, 512, 3, "res")] * 2,
    [(768, 384, 3, "convT")] + [(384, 384, 3, "res")] * 2,
    [(512, 256, 3, "convT")] + [(256, 256, 3, "res")] * 2,
    [(320, 128, 3, "convT")] + [(128, 128, 3, "res")] * 2,
    [(160, 64, 3, "convT")] + [(64, 64, 3, "res")] * 2,
]


def _block(prefix: str, cin: int, cout: int, k: int, kind: str) -> dict[str, tuple[int, ...]]:
    weight = (cin, cout, k, k) if kind == "convT" else (cout, cin, k, k)
    return {
        f"{prefix}.conv_block.0.weight": weight,
        f"{prefix}.conv_block.0.bias": (cout,),
        f"{prefix}.conv_block.1.weight": (cout,),
        f"{prefix}.conv_block.1.bias": (cout,),
        f"{prefix}.conv_block.1.running_mean": (cout,),
        f"{prefix}.conv_block.1.running_var": (cout,),
        f"{prefix}.conv_block.1.num_batches_tracked": (),
    }


def official_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for b, layers in enumerate(ENCODER):
        for j, layer in enumerate(layers):
            shapes |= _block(f"face_encoder_blocks.{b}.{j}", *layer)
    for j, layer in enumerate(AUDIO):
        shapes |= _block(f"audio_encoder.{j}", *layer)
    for b, layers in enumerate(DECODER):
        for j, layer in enumerate(layers):
            shapes |= _block(f"face_decoder_blocks.{b}.{j}", *layer)
    shapes |= _block("output_block.0", 80, 32, 3, "conv")
    shapes |= {"output_block.1.weight": (3, 32, 1, 1), "output_block.1.bias": (3,)}
    return shapes


def _inputs(batch: int = 2, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mel = torch.rand(batch, 1, 80, 16, generator=gen) * 8 - 4
    faces = torch.rand(batch, 6, 96, 96, generator=gen)
    return mel, faces


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "plain": str(write_random_checkpoint(root / "plain.pth", seed=7)),
        "module": str(write_random_checkpoint(root / "module.pth", seed=7, module_prefix=True)),
    }


def test_state_dict_has_the_official_names_shapes_and_size() -> None:
    model = Wav2Lip()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = official_shapes()
    assert list(got) == list(want)  # same names in the same order
    assert got == want
    assert len(got) == 352
    assert sum(p.numel() for p in model.parameters()) == 36_298_035


def test_forward_shapes_and_range() -> None:
    model = Wav2Lip().eval()
    mel, faces = _inputs(3)
    with torch.inference_mode():
        out = model(mel, faces)
    assert out.shape == (3, 3, 96, 96)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    with pytest.raises(ValueError, match="mel must be"):
        model(torch.zeros(1, 80, 16), faces[:1])


def test_checkpoint_loads_strictly_with_or_without_module_prefix(checkpoints: dict[str, str]) -> None:
    reference = Wav2Lip().eval()
    reference.load_state_dict(random_wav2lip_state(seed=7), strict=True)
    mel, faces = _inputs()
    with torch.inference_mode():
        expected = reference(mel, faces)
        a = load_wav2lip(checkpoints["plain"])
        b = load_wav2lip(checkpoints["module"])
        out_a1, out_a2, out_b = a(mel, faces), a(mel, faces), b(mel, faces)
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    assert torch.equal(out_a1, out_a2)  # same input twice: identical output
    assert torch.equal(out_a1, out_b)
    assert torch.equal(out_a1, expected)  # the file's weights, not the module's defaults
    assert not torch.equal(out_a1, Wav2Lip().eval()(mel, faces))


def test_one_wrong_shape_fails_with_one_line_naming_the_key(tmp_path) -> None:
    state = random_wav2lip_state(seed=1)
    bad_key = "face_decoder_blocks.3.0.conv_block.0.weight"
    state[bad_key] = torch.zeros(768, 384, 3, 1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "global_step": 1}, str(path))
    with pytest.raises(InputError) as info:
        load_wav2lip(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert bad_key in message
    assert "768x384x3x1" in message and "768x384x3x3" in message


def test_missing_and_unexpected_keys_and_garbage_are_named(tmp_path) -> None:
    state = random_wav2lip_state(seed=1)
    del state["audio_encoder.4.conv_block.1.running_var"]
    torch.save({"state_dict": state}, str(tmp_path / "missing.pth"))
    with pytest.raises(InputError, match=r"audio_encoder\.4\.conv_block\.1\.running_var is missing"):
        load_wav2lip(str(tmp_path / "missing.pth"))

    state = random_wav2lip_state(seed=1) | {"disc.0.weight": torch.zeros(1)}
    torch.save({"state_dict": state}, str(tmp_path / "extra.pth"))
    with pytest.raises(InputError, match=r"unexpected key disc\.0\.weight"):
        load_wav2lip(str(tmp_path / "extra.pth"))

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint") as info:
        load_wav2lip(str(tmp_path / "garbage.pth"))
    assert "\n" not in str(info.value)

    with pytest.raises(InputError, match="no checkpoint at"):
        load_wav2lip(str(tmp_path / "absent.pth"))
