"""Per-recipient render cost of the smart-cut renderer against the floor and naive full re-renders.

    .venv/bin/python benchmarks/bench_render.py [--quick] [--keep DIR] [--no-naive] [--no-personalize | --only-personalize]

Makes its own inputs with the ffmpeg binary: a 60 s and a 120 s 1280x720 30 fps H.264 recording
(x264 defaults: 250-frame GOPs, B-frames; AAC audio) and the same 7 s of edits on both (a 3 s
lip-sync-sized patch with a new voice line, a 2 s text box, a 2 s logo box). Prints, per recording:

- prepare: once per template (probe, keyframes planted at the cuts, audio to WAV)
- render: ``render_recipient`` for later recipients (best of three), and in a fresh process
  (imports included)
- floor: stream-copy remux of the whole file + encoding only the edited frames (frames already
  decoded and patched; best of three, each run right after a render so both see the same load)
- moviepy: a full re-render of the same edits through moviepy
- ffmpeg: a full re-render of the same edits in one ffmpeg filter graph
and the ratios render/floor, moviepy/render, ffmpeg/render, and render(120 s)/render(60 s), in
wall-clock seconds and in CPU seconds (process + child processes; steadier on a shared machine).

Then, end to end, ``loom personalize`` (a fresh process: start-up, speech, visual drawing,
render, preview, lineage record) on a template whose edits total 7 s (a 2.5 s voice line, a 2.5 s
text box, a 2 s logo): the first recipient prepares the template and checks that no Prefect module
was imported; four more recipients (new values, so new speech) are timed, each followed by one
run of every floor, and the best of each is kept (the machine's speed varies run to run; each
recipient's time is printed). The floors:
``floor`` is in-process (a PyAV stream-copy remux plus encoding only the frames their render
re-encoded, the frames decoded beforehand and not timed); ``floor_processes`` is the same work as
tools run from a shell, start-up included like ``loom personalize``'s (``ffmpeg -c copy``, and one
``ffmpeg`` per span decoding and encoding just its frames with the renderer's x264 settings);
``floor_side_by_side`` is ``floor`` with the spans encoded on threads at once, as the renderer does.
The project's bytecode is compiled first, as an install would (``compile_bytecode``). Later
recipients read their spans' original frames from the frame cache the first one filled.
"""

from __future__ import annotations

import argparse
import os
import resource
import platform
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FPS = 30


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Stopwatch:
    """Wall and CPU seconds of a block. CPU time is steadier than wall time on a shared machine."""

    def __enter__(self) -> Stopwatch:
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall0, cpu_seconds() - self.cpu0

    @property
    def both(self) -> tuple[float, float]:
        return self.wall, self.cpu


def remux_copy(source: str | Path, target: Path) -> None:
    """The floor's first half: every audio and video packet copied into a new MP4, nothing decoded."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w", options={"movflags": "+faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
        for packet in src.demux(*[s for s in src.streams if s.index in streams]):
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream_index]
            out.mux(packet)


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {result.stderr[-2000:]}")


def make_recording(path: Path, seconds: int, size: tuple[int, int]) -> Path:
    """A screen-recording-like H.264 MP4 with x264's default GOP structure and an AAC tone."""
    w, h = size
    run([ffmpeg(), "-nostdin", "-y", "-v", "error",
         "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={FPS}:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-movflags", "+faststart", str(path)])
    return path


def edits_for(scale: float) -> list[dict]:
    """7 s of edits (start times scaled for --quick, durations kept): id, kind, start, end, box."""
    plan = [("voice", "lipsync", 5.0, 3.0, (0.40, 0.30, 0.20, 0.35)),
            ("name", "visual", 20.0, 2.0, (0.05, 0.05, 0.30, 0.10)),
            ("logo", "visual", 40.0, 2.0, (0.75, 0.70, 0.15, 0.20))]
    return [{"id": i, "kind": k, "start": s * scale, "end": s * scale + d, "box": b} for i, k, s, d, b in plan]


def box_pixels(box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    w, h = size
    return int(box[0] * w), int(box[1] * h), int(box[2] * w) // 2 * 2, int(box[3] * h) // 2 * 2


def make_patch_sets(prepared, edits: list[dict], size: tuple[int, int], tmp: Path, seed: int) -> list:  # noqa: ANN001
    from loom.edits import PatchSetRef
    from loom.media.patches import Patch, PatchSet

    refs = []
    for e in edits:
        first, stop = prepared.segment_frames(e["start"], e["end"])
        x, y, w, h = box_pixels(e["box"], size)
        yy, xx = np.mgrid[0:h, 0:w]
        ps = PatchSet()
        for f in range(first, stop):
            rgba = np.empty((h, w, 4), np.uint8)
            rgba[..., 0] = (xx + f * 3 + seed * 40) % 256
            rgba[..., 1] = (yy + f) % 256
            rgba[..., 2] = (40 + seed * 60) % 256
            rgba[..., 3] = 255
            ps.add(f, Patch(x=x + (f - first) % 7, y=y, rgba=rgba))
        uri = str(tmp / f"{e['id']}-{seed}.npz")
        ps.save(uri)
        refs.append(PatchSetRef(segment_id=e["id"], kind=e["kind"], uri=uri, first_frame=first, stop_frame=stop))
    return refs


def make_inserts(edits: list[dict], tmp: Path, seed: int) -> list:
    from scipy.io import wavfile

    from loom.edits import AudioInsert

    out = []
    for e in edits:
        if e["kind"] != "lipsync":
            continue
        rate = 48000
        n = round((e["end"] - e["start"]) * rate)
        t = np.arange(n) / rate
        path = tmp / f"{e['id']}-{seed}.wav"
        wavfile.write(str(path), rate, (0.3 * np.sin(2 * np.pi * (500 + 100 * seed) * t) * 32767).astype(np.int16))
        out.append(AudioInsert(segment_id=e["id"], uri=str(path), start=e["start"], end=e["end"], sample_rate=rate))
    return out


def prepare(src: Path, edits: list[dict], tmp: Path):  # noqa: ANN201
    from loom.media.prepare import prepare_media
    from loom.prepared import PreparedTemplate
    from loom.template import Template

    cuts = sorted({t for e in edits for t in (e["start"], e["end"])})
    media = prepare_media(str(src), cuts, str(tmp / "prepared"))
    template = Template(id="bench", base_video_path=str(src))
    return PreparedTemplate(template=template, version="bench", root=str(tmp / "prepared"), **media.model_dump())


def time_floor(prepared, refs: list, tmp: Path) -> tuple[tuple[float, float], tuple[float, float]]:  # noqa: ANN001
    """((wall, cpu) of the remux, (wall, cpu) of encoding only the edited frames)."""
    import av

    from loom.media.frames import read_video_frames
    from loom.media.patched_frames import load_patches, patch_frame
    from loom.media.splice import _span_encoder

    with Stopwatch() as remux:
        remux_copy(prepared.template.base_video_path, tmp / "remux.mp4")

    patches, _ = load_patches(refs)
    frames = []
    for ref in refs:  # decoded and patched up front: only the encode is timed
        frames.append([patch_frame(f, patches[i]) if i in patches else f
                       for i, f in read_video_frames(prepared.working_video_uri, ref.first_frame, ref.stop_frame)])
    from loom.media import h264

    with av.open(prepared.working_video_uri) as c:
        vin = c.streams.video[0]
        encoder, _ = _span_encoder(prepared.video, vin, h264.AvcConfig.parse(vin.codec_context.extradata))
    with Stopwatch() as encode:
        for run_frames in frames:
            for _ in encoder.encode(run_frames):
                pass
    return remux.both, encode.both


def time_moviepy(prepared, refs: list, inserts: list, tmp: Path) -> tuple[float, float]:  # noqa: ANN001
    from moviepy import AudioFileClip, CompositeAudioClip, VideoFileClip

    from loom.media.patches import apply_patches
    from loom.media.patched_frames import load_patches

    watch = Stopwatch().__enter__()
    patches, _ = load_patches(refs)
    fps = float(Fraction(prepared.video.fps))
    clip = VideoFileClip(prepared.template.base_video_path)

    def edit(get_frame, t):  # noqa: ANN001, ANN202
        frame = get_frame(t)
        index = round(t * fps)
        if index in patches:
            frame = apply_patches(frame.copy(), patches[index])
        return frame

    edited = clip.transform(edit)
    voice = [AudioFileClip(i.uri).with_start(i.start) for i in inserts]
    edited = edited.with_audio(CompositeAudioClip([clip.audio, *voice]))
    edited.write_videofile(str(tmp / "moviepy.mp4"), codec="libx264", preset="veryfast", audio_codec="aac",
                           threads=os.cpu_count(), ffmpeg_params=["-crf", "18"], logger=None)
    clip.close()
    watch.__exit__()
    return watch.both


def time_ffmpeg_graph(prepared, edits: list[dict], inserts: list, size: tuple[int, int], tmp: Path) -> tuple[float, float]:  # noqa: ANN001
    """One ffmpeg filter graph: overlays enabled over their windows, voice windows muted and mixed in."""
    from PIL import Image

    inputs = ["-i", prepared.template.base_video_path]
    chain, label = [], "0:v"
    for k, e in enumerate(edits):
        x, y, w, h = box_pixels(e["box"], size)
        png = tmp / f"overlay-{k}.png"
        Image.fromarray(np.full((h, w, 4), (200, 40 * k, 90, 255), np.uint8)).save(png)
        inputs += ["-loop", "1", "-i", str(png)]
        chain.append(f"[{label}][{k + 1}:v]overlay={x}:{y}:shortest=1:enable='between(t,{e['start']},{e['end']})'[v{k}]")
        label = f"v{k}"
    mute = ",".join(f"volume=0:enable='between(t,{i.start},{i.end})'" for i in inserts) or "anull"
    audio = [f"[0:a]{mute}[a0]"]
    mix = ["[a0]"]
    for k, ins in enumerate(inserts):
        n = len(edits) + 1 + k
        inputs += ["-i", ins.uri]
        ms = int(ins.start * 1000)
        audio.append(f"[{n}:a]adelay={ms}|{ms}[d{k}]")
        mix.append(f"[d{k}]")
    audio.append(f"{''.join(mix)}amix=inputs={len(mix)}:normalize=0:duration=first[a]")
    graph = ";".join(chain + audio)
    with Stopwatch() as watch:
        run([ffmpeg(), "-nostdin", "-y", "-v", "error", *inputs, "-filter_complex", graph, "-map", f"[{label}]", "-map", "[a]",
             "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "aac", "-movflags", "+faststart", str(tmp / "ffmpeg.mp4")])
    return watch.both


FRESH_PROCESS = """
import sys, time, json
t0 = time.perf_counter()
from loom.prepared import PreparedTemplate
from loom.edits import AudioInsert, PatchSetRef
from loom.media.render import render_recipient
args = json.loads(sys.argv[1])
prepared = PreparedTemplate.model_validate_json(open(args["prepared"]).read())
report = render_recipient(prepared, [AudioInsert(**i) for i in args["inserts"]],
                          [PatchSetRef(**p) for p in args["patches"]], args["out"])
print(json.dumps({"seconds": time.perf_counter() - t0, "mode": report.mode}))
"""


# ---------------------------------------------------------------- end to end: `loom personalize`

PERSONALIZE_ROWS = [("Ada", "Acme"), ("Grace", "Globex"), ("Linus", "Initech"), ("Alan", "Umbrella"), ("Edsger", "Hooli")]

CHECK_NO_PREFECT = """
import sys
from app.cli import app
sys.argv = ["loom", *sys.argv[1:]]
try:
    app()
except SystemExit as exc:
    if exc.code:
        raise
bad = sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect."))
if bad:
    raise SystemExit(f"personalize imported Prefect: {bad[:5]}")
"""


def personalize_template(src: Path, scale: float, tmp: Path) -> Path:
    """A template whose edits total 7 s: a 2.5 s voice line, a 2.5 s text box and a 2 s logo."""
    import json

    template = {
        "id": f"bench-{src.parent.name}",
        "base_video_path": str(src),
        "voice_id": "presenter",
        "voice_segments": [{"id": "greeting", "start_time": 5.0 * scale, "end_time": 5.0 * scale + 2.5,
                            "template_text": "Hello {client_name}, thanks for your time!"}],
        "visual_segments": [
            {"id": "company", "segment_type": "text", "start_time": 20.0 * scale, "end_time": 20.0 * scale + 2.5,
             "x": 0.05, "y": 0.05, "width": 0.30, "height": 0.10, "placeholder_key": "company_name"},
            {"id": "logo", "segment_type": "image", "start_time": 40.0 * scale, "end_time": 40.0 * scale + 2.0,
             "x": 0.75, "y": 0.70, "width": 0.15, "height": 0.20, "placeholder_key": "logo"},
        ],
    }
    path = tmp / "template.json"
    path.write_text(json.dumps(template, indent=2))
    return path


def personalize_rows(tmp: Path) -> list[Path]:
    import json

    from PIL import Image, ImageDraw

    rows = []
    for k, (name, company) in enumerate(PERSONALIZE_ROWS):
        logo = tmp / f"logo-{k}.png"
        img = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
        ImageDraw.Draw(img).ellipse((16, 16, 240, 240), fill=((60 + 70 * k) % 256, 120, (200 - 60 * k) % 256, 255))
        img.save(logo)
        row = tmp / f"row-{k}.json"
        row.write_text(json.dumps({"client_name": name, "company_name": company, "logo": str(logo)}))
        rows.append(row)
    return rows


def loom_personalize(template: Path, row: Path, out: Path, env: dict[str, str], check_prefect: bool = False) -> tuple[float, float]:
    """(wall, cpu) of one `loom personalize` in a fresh process."""
    loom = ROOT / ".venv" / "bin" / "loom"
    args = ["personalize", "--template", str(template), "--data", str(row), "--out", str(out)]
    cmd = [sys.executable, "-c", CHECK_NO_PREFECT, *args] if check_prefect else [str(loom), *args]
    with Stopwatch() as watch:
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if result.returncode != 0 or not out.exists():
        raise RuntimeError(f"loom personalize failed ({result.returncode}): {result.stderr[-2000:]}")
    return watch.both


def time_floor_spans(
    video_uri: str, base_video: str, spans: list[tuple[int, int]], tmp: Path, side_by_side: bool = False
) -> tuple[float, float]:
    """(wall, cpu) of the floor for a render that re-encoded ``spans``: stream-copy remux of the whole
    recording plus encoding only those frames (decoded beforehand, not timed); with ``side_by_side``
    the spans encode on threads at once, as the renderer encodes them."""
    from concurrent.futures import ThreadPoolExecutor

    import av

    from loom.media import h264
    from loom.media.frames import read_video_frames
    from loom.media.probe import probe_video
    from loom.media.splice import _span_encoder

    with Stopwatch() as remux:
        remux_copy(base_video, tmp / "remux.mp4")
    frames = [[f for _, f in read_video_frames(video_uri, a, b)] for a, b in spans]
    with av.open(video_uri) as c:
        vin = c.streams.video[0]
        encoder, _ = _span_encoder(probe_video(video_uri), vin, h264.AvcConfig.parse(vin.codec_context.extradata))
    def encode_run(run_frames: list) -> None:
        for _ in encoder.encode(run_frames):
            pass

    with Stopwatch() as encode:
        if side_by_side:
            with ThreadPoolExecutor(max_workers=max(1, min(len(frames), os.cpu_count() or 1, 4))) as pool:
                list(pool.map(encode_run, frames))
        else:
            for run_frames in frames:
                encode_run(run_frames)
    return remux.wall + encode.wall, remux.cpu + encode.cpu


def time_floor_processes(working_uri: str, base_video: str, spans: list[tuple[int, int]], fps: float, tmp: Path) -> tuple[float, float]:
    """(wall, cpu) of the floor run as tools are run from a shell, start-up included like
    ``loom personalize``'s: one ``ffmpeg`` stream-copy remux of the recording, and one ``ffmpeg``
    per span that decodes it (from the keyframe before it) and encodes only its frames with the
    renderer's x264 settings. No pixels are edited: the floor's edits are free."""
    from loom.media.encode import PRESET, SPAN_CRF, STITCH_PARAMS, keyint_params

    with Stopwatch() as watch:
        run([ffmpeg(), "-nostdin", "-y", "-v", "error", "-i", base_video, "-map", "0", "-c", "copy",
             "-movflags", "+faststart", str(tmp / "remux-cli.mp4")])
        for k, (a, b) in enumerate(spans):
            run([ffmpeg(), "-nostdin", "-y", "-v", "error", "-ss", f"{a / fps:.6f}", "-i", working_uri,
                 "-frames:v", str(b - a), "-an", "-c:v", "libx264", "-preset", PRESET, "-crf", str(SPAN_CRF),
                 "-x264-params", f"{STITCH_PARAMS}:{keyint_params(Fraction(fps).limit_denominator(1001))}",
                 "-f", "h264", str(tmp / f"span-{k}.h264")])
    return watch.both


def compile_bytecode() -> None:
    """Compile the project's modules, as installing a package does (pip compiles what it installs;
    this checkout is an editable install, and where PYTHONDONTWRITEBYTECODE is set, as in some
    containers, Python would otherwise recompile every module in every ``loom`` process)."""
    import compileall

    for package in ("loom", "app"):
        compileall.compile_dir(str(ROOT / package), quiet=1)


def bench_personalize(src: Path, scale: float, tmp: Path) -> dict:
    """`loom personalize` for a first recipient (prepares), then four more, each timed beside its floors."""
    import json
    import shutil

    compile_bytecode()

    shutil.rmtree(tmp, ignore_errors=True)  # a fresh home: nothing prepared, no speech cached
    tmp.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(LOOM_HOME=str(tmp / "home"), PYTHONPATH=str(ROOT))
    template = personalize_template(src, scale, tmp)
    rows = personalize_rows(tmp)
    result: dict[str, tuple[float, float]] = {}
    result["first_recipient_with_prepare"] = loom_personalize(template, rows[0], tmp / "p0.mp4", env, check_prefect=True)
    record = json.loads((tmp / "p0.json").read_text())
    spans = [tuple(s) for s in record["render"]["reencoded_spans"]]
    prepared_json = next((tmp / "home" / "prepared").glob("*/*/prepared.json"))
    from loom.prepared import PreparedTemplate

    prepared = PreparedTemplate.model_validate_json(prepared_json.read_text())
    working, fps = prepared.working_video_uri, float(Fraction(prepared.video.fps))
    # Each later recipient is followed by one run of each floor, so both sides of every ratio see
    # the same stretch of the machine's (shared, varying) speed; the best of each is kept.
    later, renders, floors, side, shell = [], [], [], [], []
    for k, row in enumerate(rows[1:], 1):
        later.append(loom_personalize(template, row, tmp / f"p{k}.mp4", env))
        renders.append(float(json.loads((tmp / f"p{k}.json").read_text())["render"]["seconds"]))
        floors.append(time_floor_spans(working, str(src), spans, tmp))
        side.append(time_floor_spans(working, str(src), spans, tmp, side_by_side=True))
        shell.append(time_floor_processes(working, str(src), spans, fps, tmp))
    for k, t in enumerate(later, 2):
        result[f"recipient_{k}"] = t
    best = lambda runs: (min(r[0] for r in runs), min(r[1] for r in runs))  # noqa: E731
    result["personalize"] = best(later)
    result["floor"] = best(floors)
    result["floor_side_by_side"] = best(side)
    result["floor_processes"] = best(shell)
    result["render_in_personalize"] = (min(renders), float("nan"))
    return {"times": result, "reencoded": sum(b - a for a, b in spans), "record_seconds": record["seconds"]}


def bench_one(seconds: int, size: tuple[int, int], scale: float, tmp: Path, naive: bool) -> dict:
    """(wall, cpu) seconds of each measurement for one recording length."""
    import json

    from loom.media.render import render_recipient

    tmp.mkdir(parents=True, exist_ok=True)
    result: dict[str, tuple[float, float]] = {}
    with Stopwatch() as watch:
        src = make_recording(tmp / "recording.mp4", seconds, size)
    result["make_input"] = watch.both
    edits = edits_for(scale)
    with Stopwatch() as watch:
        prepared = prepare(src, edits, tmp)
    result["prepare"] = watch.both
    recipients = (1, 2, 3, 4, 5)
    refs = {s: make_patch_sets(prepared, edits, size, tmp, s) for s in recipients}
    inserts = {s: make_inserts(edits, tmp, s) for s in recipients}
    render_recipient(prepared, inserts[1], refs[1], str(tmp / "r1.mp4"))  # first recipient (warm-up)
    times, floors = [], []
    for s in recipients[1:-1]:  # later recipients, each with its own edits, each beside a floor run: the best of three
        with Stopwatch() as watch:
            report = render_recipient(prepared, inserts[s], refs[s], str(tmp / f"r{s}.mp4"))
        times.append(watch.both)
        floors.append(time_floor(prepared, refs[2], tmp))
    result["render"] = (min(t[0] for t in times), min(t[1] for t in times))
    (tmp / "prepared.json").write_text(prepared.model_dump_json())
    last = recipients[-1]
    args = {"prepared": str(tmp / "prepared.json"), "out": str(tmp / f"r{last}.mp4"),
            "inserts": [i.model_dump() for i in inserts[last]], "patches": [p.model_dump() for p in refs[last]]}
    with Stopwatch() as watch:
        out = subprocess.run([sys.executable, "-c", FRESH_PROCESS, json.dumps(args)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result["render_fresh_process"] = watch.both
    remux = (min(f[0][0] for f in floors), min(f[0][1] for f in floors))
    encode = (min(f[1][0] for f in floors), min(f[1][1] for f in floors))
    result["floor_remux"], result["floor_encode"] = remux, encode
    result["floor"] = (remux[0] + encode[0], remux[1] + encode[1])
    if naive:
        result["moviepy"] = time_moviepy(prepared, refs[2], inserts[2], tmp)
        result["ffmpeg_graph"] = time_ffmpeg_graph(prepared, edits, inserts[2], size, tmp)
    return {"times": result, "mode": report.mode, "frames": report.frames, "reencoded": report.reencoded_frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 s and 60 s at 640x360, edits scaled to fit (still 7 s)")
    parser.add_argument("--keep", help="folder to keep the inputs and outputs in")
    parser.add_argument("--no-naive", action="store_true", help="skip the moviepy and ffmpeg full re-renders")
    parser.add_argument("--no-personalize", action="store_true", help="skip the end-to-end `loom personalize` runs")
    parser.add_argument("--only-personalize", action="store_true", help="only the end-to-end `loom personalize` runs")
    parser.add_argument("--lengths", help="two recording lengths in seconds, e.g. 60,600 (default 60,120; quick 30,60)")
    opts = parser.parse_args()
    size, (short, long_), scale = ((640, 360), (30, 60), 0.5) if opts.quick else ((1280, 720), (60, 120), 1.0)
    if opts.lengths:
        short, long_ = (int(x) for x in opts.lengths.split(","))
    base = Path(opts.keep) if opts.keep else Path(tempfile.mkdtemp(prefix="loom-bench-"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"inputs: {size[0]}x{size[1]} {FPS} fps H.264, {short} s and {long_} s, 7 s of edits; work dir {base}")
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    os.environ["LOOM_HOME"] = str(base / "home")  # the in-process renders' frame cache goes there
    compile_bytecode()
    if opts.only_personalize:
        return report_personalize(base, short, long_, size, scale)
    results = {}
    for seconds in (short, long_):
        results[seconds] = bench_one(seconds, size, scale, base / f"{seconds}s", not opts.no_naive)
        r, t = results[seconds], results[seconds]["times"]
        print(f"\n{seconds} s recording ({r['frames']} frames, {r['reencoded']} re-encoded, mode {r['mode']})")
        print(f"  {'':24s} {'wall s':>8s} {'cpu s':>8s}")
        for key, (wall, cpu) in t.items():
            print(f"  {key:24s} {wall:8.2f} {cpu:8.2f}")
        for name, num, den in (("render / floor", "render", "floor"), ("moviepy / render", "moviepy", "render"),
                               ("ffmpeg graph / render", "ffmpeg_graph", "render")):
            if num in t:
                print(f"  {name:24s} {t[num][0] / t[den][0]:7.2f}x {t[num][1] / t[den][1]:7.2f}x")
    a, b = results[short]["times"], results[long_]["times"]
    print(f"\nrender {long_} s / render {short} s: wall {b['render'][0] / a['render'][0]:.2f}x, "
          f"cpu {b['render'][1] / a['render'][1]:.2f}x; fresh process: wall "
          f"{b['render_fresh_process'][0] / a['render_fresh_process'][0]:.2f}x, "
          f"cpu {b['render_fresh_process'][1] / a['render_fresh_process'][1]:.2f}x")
    if not opts.no_personalize:
        report_personalize(base, short, long_, size, scale)


def report_personalize(base: Path, short: int, long_: int, size: tuple[int, int], scale: float) -> None:
    results = {}
    for seconds in (short, long_):
        src = base / f"{seconds}s" / "recording.mp4"
        if not src.exists():
            src.parent.mkdir(parents=True, exist_ok=True)
            make_recording(src, seconds, size)
        results[seconds] = r = bench_personalize(src, scale, base / f"{seconds}s" / "personalize")
        t = r["times"]
        print(f"\n`loom personalize`, {seconds} s recording (7 s of edits; {r['reencoded']} frames re-encoded)")
        print(f"  {'':28s} {'wall s':>8s} {'cpu s':>8s}")
        for key, (wall, cpu) in t.items():
            print(f"  {key:28s} {wall:8.2f} {cpu:8.2f}")
        print(f"  {'personalize / floor':28s} {t['personalize'][0] / t['floor'][0]:7.2f}x {t['personalize'][1] / t['floor'][1]:7.2f}x")
        print(f"  {'personalize / floor_processes':28s} {t['personalize'][0] / t['floor_processes'][0]:7.2f}x "
              f"{t['personalize'][1] / t['floor_processes'][1]:7.2f}x")
        print(f"  {'personalize / floor_side_by_side':28s} {t['personalize'][0] / t['floor_side_by_side'][0]:7.2f}x "
              f"{t['personalize'][1] / t['floor_side_by_side'][1]:7.2f}x")
        print(f"  {'render step / floor':28s} {t['render_in_personalize'][0] / t['floor'][0]:7.2f}x")
        print(f"  {'render step / floor_side_by_side':28s} {t['render_in_personalize'][0] / t['floor_side_by_side'][0]:7.2f}x")
    a, b = results[short]["times"], results[long_]["times"]
    print(f"\npersonalize {long_} s / {short} s: wall {b['personalize'][0] / a['personalize'][0]:.2f}x, "
          f"cpu {b['personalize'][1] / a['personalize'][1]:.2f}x")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
