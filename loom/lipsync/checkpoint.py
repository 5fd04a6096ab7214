"""Wav2Lip checkpoints: read the official file format, check every key and shape, build the model.

The official ``wav2lip.pth`` / ``wav2lip_gan.pth`` are ``{"state_dict", "optimizer",
"global_step", "global_epoch"}`` dicts whose keys may carry a ``module.`` prefix (saved from
``DataParallel``). A file that does not match fails with one line naming the first bad key.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from loom import storage
from loom.errors import InputError
from loom.lipsync.model import Wav2Lip

FIELD = "wav2lip_checkpoint"
WHERE_TO_GET = "use the official wav2lip.pth or wav2lip_gan.pth from github.com/Rudrabha/Wav2Lip"


def _shape(value: object) -> str:
    return "x".join(str(d) for d in value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def read_state_dict(uri: str, digest: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """The generator's state_dict from a checkpoint file (local or gs://), ``module.`` stripped.

    When ``digest`` is given, the file's SHA-256 is stored in it under ``uri`` while the (possibly
    downloaded) file is at hand, so a remote checkpoint is fetched once for both.
    """
    if not storage.exists(uri):
        raise InputError(FIELD, f"no checkpoint at {uri}", "check LOOM_WAV2LIP_CHECKPOINT or --checkpoint")
    with storage.local_path(uri) as path:
        try:
            # weights_only: a checkpoint is data, never code to run.
            blob = torch.load(str(path), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(FIELD, f"{uri} is not a readable PyTorch checkpoint ({first})", WHERE_TO_GET) from None
        if digest is not None:
            digest[uri] = storage.file_digest(str(path))
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not state:
        raise InputError(FIELD, f"{uri} holds no state_dict", WHERE_TO_GET)
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def check_state_dict(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], uri: str) -> None:
    """Raise one ``InputError`` line naming the first missing, mis-shaped or unexpected key."""
    for key, want in expected.items():
        if key not in state:
            raise InputError(FIELD, f"{uri}: key {key} is missing (not a Wav2Lip generator checkpoint?)", WHERE_TO_GET)
        got = state[key]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            raise InputError(
                FIELD, f"{uri}: key {key} has shape {_shape(got)}, Wav2Lip expects {_shape(want)}", WHERE_TO_GET
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise InputError(FIELD, f"{uri}: unexpected key {extra[0]} (and {len(extra) - 1} more)", WHERE_TO_GET)


def load_wav2lip(
    uri: str, device: str | torch.device = "cpu", half: bool = False, digest: dict[str, str] | None = None
) -> Wav2Lip:
    """A Wav2Lip generator with the checkpoint's weights, in eval mode on ``device``."""
    model = Wav2Lip()
    state = read_state_dict(uri, digest)
    check_state_dict(state, model.state_dict(), uri)
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    model.to(device)
    return model.half() if half else model


def checkpoint_sha256(uri: str) -> str:
    return storage.file_digest(uri)


def random_wav2lip_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Noise of the official names and shapes (tests and benchmarks only: it draws nothing useful).

    BatchNorm statistics are drawn too, so a loader that silently kept its own defaults would
    produce different output.
    """
    gen = torch.Generator().manual_seed(seed)
    state = Wav2Lip().state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(1000, dtype=value.dtype)
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(value.shape, generator=gen)
        elif key.endswith("running_mean"):
            out[key] = 0.1 * torch.randn(value.shape, generator=gen)
        elif key.endswith("weight") and value.dim() > 1:
            fan_in = value[0].numel()
            out[key] = torch.randn(value.shape, generator=gen) * (2.0 / max(fan_in, 1)) ** 0.5
        else:
            out[key] = 0.05 * torch.randn(value.shape, generator=gen) + (1.0 if key.endswith("1.weight") else 0.0)
    return out


def write_random_checkpoint(path: str | Path, seed: int = 0, module_prefix: bool = False) -> Path:
    """Save random weights in the official file layout (tests and benchmarks only)."""
    state = random_wav2lip_state(seed)
    if module_prefix:
        state = {f"module.{k}": v for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "optimizer": {}, "global_step": 0, "global_epoch": 0}, str(path))
    return path


def short_digest(uri: str) -> str:
    """The first 16 hex digits of the file's SHA-256 (what the lineage record stores)."""
    return checkpoint_sha256(uri)[:16]
