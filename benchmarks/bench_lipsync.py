"""Frames per second of the lip-sync engine, on the CPU and (fp16) on CUDA when present.

    python benchmarks/bench_lipsync.py [--json out.json] [--device cpu|cuda|all] [--seconds S]

Makes its own inputs: a random-weights checkpoint of the official shapes (speed does not depend
on the weights), a 1280x720 25 fps clip, a fitted-line WAV and a face track. Measures
  forward    the generator alone at several batch sizes (inputs already on the device)
  segment    lipsync_segment end to end: decode, crop, mel, model, blend, patch-set write
  faces      detect_faces (Haar) per frame, the once-per-template cost
CPU sizes are kept small so the whole run stays within a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loom.edits import AudioInsert  # noqa: E402
from loom.lipsync import engine  # noqa: E402
from loom.lipsync.checkpoint import load_wav2lip, write_random_checkpoint  # noqa: E402
from loom.lipsync.faces import FaceBox, FaceTrack, detect_faces  # noqa: E402
from loom.media.muxing import mux_frames  # noqa: E402
from loom.media.probe import probe_video  # noqa: E402
from loom.prepared import PreparedTemplate  # noqa: E402
from loom.settings import reload_settings  # noqa: E402
from loom.template import Template  # noqa: E402

W, H, FPS = 1280, 720, 25
BOX = FaceBox(x1=500, y1=160, x2=780, y2=480)
BATCHES = {"cpu": [1, 16], "cuda": [1, 16, 64, 128]}
SEGMENT_BATCH = {"cpu": 16, "cuda": 128}


def make_clip(path: Path, frames: int) -> Path:
    yy, xx = np.mgrid[0:H, 0:W]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.options = {"crf": "20", "preset": "ultrafast"}

        def video() -> Iterator[av.VideoFrame]:
            for i in range(frames):
                rgb = np.stack([(xx + 3 * i) % 256, (yy + 2 * i) % 256, (xx + yy) % 256], -1).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, FPS)
                yield frame

        mux_frames(out, vs, video())
    return path


def make_wav(path: Path, seconds: float, rate: int = 48000) -> Path:
    import scipy.io.wavfile

    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 150 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    scipy.io.wavfile.write(str(path), rate, wav.astype(np.float32))
    return path


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_forward(checkpoint: str, device: torch.device, batches: list[int]) -> list[dict]:
    half = device.type == "cuda"
    model = load_wav2lip(checkpoint, device, half=half)
    dtype = torch.float16 if half else torch.float32
    rows = []
    for batch in batches:
        mel = torch.rand(batch, 1, 80, 16, device=device, dtype=dtype)
        faces = torch.rand(batch, 6, 96, 96, device=device, dtype=dtype)
        with torch.inference_mode():
            model(mel, faces)  # warm-up (cuDNN algorithm choice, allocator)
            sync(device)
            repeats = max(1, min(20, 256 // batch)) if half else max(1, 4 // batch)
            started = time.perf_counter()
            for _ in range(repeats):
                model(mel, faces)
            sync(device)
            seconds = time.perf_counter() - started
        rows.append(
            {"stage": "forward", "device": str(device), "dtype": str(dtype).removeprefix("torch."), "batch": batch,
             "frames": batch * repeats, "seconds": round(seconds, 3), "fps": round(batch * repeats / seconds, 1)}
        )
    del model
    return rows


def fp16_agreement(checkpoint: str) -> dict:
    """How far CUDA half precision strays from the CPU's float32 on the same inputs (0-1 scale)."""
    gen = torch.Generator().manual_seed(0)
    mel = torch.rand(8, 1, 80, 16, generator=gen) * 8 - 4
    faces = torch.rand(8, 6, 96, 96, generator=gen)
    with torch.inference_mode():
        ref = load_wav2lip(checkpoint, "cpu")(mel, faces)
        half = load_wav2lip(checkpoint, "cuda", half=True)(mel.cuda().half(), faces.cuda().half()).float().cpu()
    diff = (ref - half).abs()
    return {"max_abs_diff": round(float(diff.max()), 5), "mean_abs_diff": round(float(diff.mean()), 6),
            "max_diff_in_8bit_levels": round(float(diff.max()) * 255, 2)}


def bench_segment(checkpoint: str, device: torch.device, root: Path, seconds: float) -> dict:
    frames = int(seconds * FPS)
    video = make_clip(root / f"clip-{device.type}.mp4", frames)
    info = probe_video(str(video))
    track = FaceTrack(video_uri=str(video), first=0, stop=frames, width=W, height=H, detector="fixed", boxes=[BOX] * frames)
    faces_uri = root / "faces.json"
    faces_uri.write_text(track.model_dump_json())
    template = Template(
        id="bench", base_video_path=str(video),
        voice_segments=[{"id": "line", "start_time": 0.0, "end_time": frames / FPS, "template_text": "hello"}],
    )
    prepared = PreparedTemplate(
        template=template, version="bench", root=str(root), source=info, video=info, working_video_uri=str(video),
        audio_uri=str(root / "a.wav"), faces={"line": str(faces_uri)},
    )
    insert = AudioInsert(segment_id="line", uri=str(make_wav(root / "line.wav", frames / FPS)), start=0.0, end=frames / FPS, sample_rate=48000)
    os.environ.update(
        LOOM_WAV2LIP_CHECKPOINT=checkpoint, LOOM_WAV2LIP_DEVICE=device.type, LOOM_WAV2LIP_BATCH_SIZE=str(SEGMENT_BATCH[device.type])
    )
    reload_settings()
    engine.reset_engine()
    engine.load_model(checkpoint, device.type)  # loading is once per process: not part of the per-line cost
    engine.checkpoint_digest()
    segment = template.voice_segments[0]
    started = time.perf_counter()
    ref = engine.lipsync_segment(prepared, segment, insert, str(root / f"patches-{device.type}.npz"))
    elapsed = time.perf_counter() - started
    return {"stage": "segment", "device": str(device), "dtype": ref.qa["dtype"], "batch": SEGMENT_BATCH[device.type],
            "frames": frames, "seconds": round(elapsed, 3), "fps": round(frames / elapsed, 1),
            "size": f"{W}x{H}", "face": f"{BOX.width}x{BOX.height}"}


def bench_faces(root: Path, frames: int) -> dict:
    video = make_clip(root / "faces-clip.mp4", frames)
    info = probe_video(str(video))
    started = time.perf_counter()
    detect_faces(str(video), info, 0, frames, str(root / "detected.json"))
    elapsed = time.perf_counter() - started
    return {"stage": "faces (haar)", "device": "cpu", "dtype": "-", "batch": 1, "frames": frames,
            "seconds": round(elapsed, 3), "fps": round(frames / elapsed, 1), "size": f"{W}x{H}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--seconds", type=float, default=None, help="segment length (default: 1 s CPU, 10 s CUDA)")
    args = parser.parse_args()
    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-lipsync-") as tmp:
        root = Path(tmp)
        os.environ["LOOM_HOME"] = str(root / "home")
        checkpoint = str(write_random_checkpoint(root / "random.pth", seed=0))
        for device in devices:
            rows += bench_forward(checkpoint, device, BATCHES[device.type])
            seconds = args.seconds or (10.0 if device.type == "cuda" else 1.0)
            rows.append(bench_segment(checkpoint, device, root, seconds))
        try:
            rows.append(bench_faces(root, 25))
        except Exception as exc:  # e.g. an OpenCV build without Haar cascades: the model figures still count
            print(f"faces benchmark skipped: {exc}")
        agreement = fp16_agreement(checkpoint) if torch.cuda.is_available() and args.device != "cpu" else None
    env = {
        "python": platform.python_version(), "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    print(f"{'stage':<14}{'device':<8}{'dtype':<9}{'batch':>6}{'frames':>8}{'seconds':>9}{'frames/s':>10}")
    for r in rows:
        print(f"{r['stage']:<14}{r['device']:<8}{r['dtype']:<9}{r['batch']:>6}{r['frames']:>8}{r['seconds']:>9}{r['fps']:>10}")
    print(json.dumps(env))
    if agreement:
        print("fp16 (cuda) vs fp32 (cpu):", json.dumps(agreement))
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "results": rows, "fp16_vs_fp32": agreement}, indent=2))
        print(args.json)


if __name__ == "__main__":
    main()
