#!/usr/bin/env python3
"""Mutation pass: plant one small, realistic bug at a time in a copy of the repo and check a test catches it.

Usage (from the repo root)::

    .venv/bin/python tools/mutation_pass.py              # every mutant
    .venv/bin/python tools/mutation_pass.py --list       # what the mutants are
    .venv/bin/python tools/mutation_pass.py --only mel-ignores-window-start wav2lip-skip-concat-swapped

How it works:

* The repo's files (``git ls-files -co --exclude-standard``: tracked plus untracked-not-ignored) are
  copied once into a temporary folder. The real tree is only ever read.
* Baseline: every test file any selected mutant names is run once on the unmutated copy. Tests that
  already fail there are deselected from the mutant runs (with a warning), and a file that does not
  even collect is dropped, so a red test never counts as a kill.
* Each mutant gets its own copy of that snapshot with exactly one exact-text replacement. The
  snippet must occur exactly once in its file, in the real tree and in the copy; otherwise the pass
  stops before running anything (the list must follow the code as it changes).
* Its test files run as ``.venv/bin/python -m pytest -x -q -p no:cacheprovider <tests>`` with cwd
  and PYTHONPATH set to the copy. The venv holds an *editable* install of /work/main; its finder sits
  after the normal path finder, so the copy wins, and this is checked rather than assumed: once up
  front (every mutated module's spec must resolve inside the copy), and inside every pytest run by a
  small plugin written into the copy (``-p _mutation_guard``) that fails the run as an error if any
  project module (loom, app, tasks, flows, blocks, tests) was imported from outside the copy.
* Results: ``killed`` (a test failed; the first failing test is shown), ``SURVIVED`` (all selected
  tests passed), ``timeout``, ``error``. Listed test files that do not exist are skipped with a
  warning (new test files may not be written yet); a mutant left with none is an error.

Exit status: 0 every mutant killed; 1 at least one survived; 2 the pass could not start (a snippet
not found exactly once, unknown --only name, the copy importing the real tree); 3 none survived but
some ended in error or timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
PROJECT_PACKAGES = ("loom", "app", "tasks", "flows", "blocks", "tests")
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_JOBS = 2  # this machine has 2 cores; each pytest stays well under 2 GB


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repo root
    description: str
    find: str  # must occur exactly once in the file
    replace: str
    tests: tuple[str, ...]
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")


MUTANTS: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------ lip-sync
    Mutant(
        "mel-ignores-window-start",
        "loom/lipsync/engine.py",
        "a voice window's mel index for frame i ignores where the window starts (drops '- audio_start')",
        "return lambda i: mel_start(float(Fraction(i) / fps) - audio_start)",
        "return lambda i: mel_start(float(Fraction(i) / fps))",
        ("tests/test_lipsync_wiring.py", "tests/test_lipsync_engine.py"),
    ),
    Mutant(
        "wav2lip-skip-concat-swapped",
        "loom/lipsync/model.py",
        "Wav2Lip decoder concatenates (skip, decoded) instead of (decoded, skip): same shapes, wrong weights",
        "x = torch.cat((block(x), skips.pop()), dim=1)",
        "x = torch.cat((skips.pop(), block(x)), dim=1)",
        ("tests/test_lipsync_wiring.py", "tests/test_lipsync_model.py"),
    ),
    Mutant(
        "wav2lip-face-channels-swapped",
        "loom/lipsync/engine.py",
        "generate() feeds [reference, masked] instead of [masked, reference] as the 6 face channels",
        "np.concatenate([masked, faces_bgr], axis=3)",
        "np.concatenate([faces_bgr, masked], axis=3)",
        ("tests/test_lipsync_wiring.py", "tests/test_lipsync_engine.py"),
    ),
    Mutant(
        "mel-preemphasis-sign",
        "loom/lipsync/audio.py",
        "pre-emphasis filter 1 + 0.97 z^-1 instead of 1 - 0.97 z^-1",
        "lfilter([1.0, -PREEMPHASIS], [1.0], wav)",
        "lfilter([1.0, PREEMPHASIS], [1.0], wav)",
        ("tests/test_lipsync_audio.py",),
    ),
    Mutant(
        "mel-pad-constant",
        "loom/lipsync/audio.py",
        "STFT centring pads with zeros instead of reflecting (first/last mel frames change)",
        'padded = np.pad(emphasized, pad, mode="reflect")',
        'padded = np.pad(emphasized, pad, mode="constant")',
        ("tests/test_lipsync_audio.py",),
    ),
    Mutant(
        "mel-start-no-epsilon",
        "loom/lipsync/audio.py",
        "mel_start drops the float epsilon: int(1.4 * 80) lands one mel frame early",
        "return int(float(seconds) * MEL_FRAMES_PER_SECOND + 1e-6) if seconds > 0 else 0",
        "return int(float(seconds) * MEL_FRAMES_PER_SECOND) if seconds > 0 else 0",
        ("tests/test_lipsync_audio.py", "tests/test_lipsync_wiring.py"),
    ),
    # ------------------------------------------------------------------ versions and keys
    Mutant(
        "template-version-ignores-content",
        "loom/pipeline.py",
        "template_version hashes the template's id instead of its content: edits reuse the old prepare",
        'payload = f"{video_digest}:{template.video_hash()}:{PREPARE_CODE_VERSION}"',
        'payload = f"{video_digest}:{template.id}:{PREPARE_CODE_VERSION}"',
        ("tests/test_template_versions.py", "tests/test_media_base_digest.py"),
    ),
    Mutant(
        "recipient-key-ignores-version",
        "loom/recipients.py",
        "recipient_key hashes only the values: a new template version reuses old outputs",
        'payload = json.dumps({"t": template_version, "v": values}, sort_keys=True, ensure_ascii=False)',
        'payload = json.dumps({"v": values}, sort_keys=True, ensure_ascii=False)',
        ("tests/test_recipients.py", "tests/test_template_versions.py"),
    ),
    Mutant(
        "recipient-key-unsorted",
        "loom/recipients.py",
        "recipient_key hashes the values in column order: the same row from another sheet gets a new key",
        'payload = json.dumps({"t": template_version, "v": values}, sort_keys=True, ensure_ascii=False)',
        'payload = json.dumps({"t": template_version, "v": values}, sort_keys=False, ensure_ascii=False)',
        ("tests/test_recipients.py",),
    ),
    # ------------------------------------------------------------------ audio mix
    Mutant(
        "mix-fades-hard",
        "loom/media/audio_mix.py",
        "equal_power_fades returns hard gains (fade forced to 0): clicks at both window edges",
        "fade = min(fade, length // 2)",
        "fade = min(0, length // 2)",
        ("tests/test_media_splice_plan.py", "tests/test_media_audio_seams.py", "tests/test_media_render.py"),
    ),
    Mutant(
        "mix-crossfade-dropped",
        "loom/media/audio_mix.py",
        "the Mixer asks for a 0-sample crossfade at each voice window (the helper itself is fine)",
        "g_in, g_orig = equal_power_fades(s1 - s0, round(crossfade * rate))",
        "g_in, g_orig = equal_power_fades(s1 - s0, 0)",
        ("tests/test_media_audio_seams.py", "tests/test_media_render.py"),
    ),
    Mutant(
        "mix-int16-scale",
        "loom/media/audio_mix.py",
        "original PCM scaled by 1/32767 instead of 1/32768 (re-encoded audio no longer the original's)",
        "block[: end - lo] = self.pcm[lo:end].astype(np.float32) / 32768.0",
        "block[: end - lo] = self.pcm[lo:end].astype(np.float32) / 32767.0",
        ("tests/test_media_audio_seams.py", "tests/test_media_render.py"),
    ),
    # ------------------------------------------------------------------ colour
    Mutant(
        "overlay-bt709-as-bt601",
        "loom/media/overlay.py",
        "BT.709-tagged frames get patches converted with BT.601 coefficients",
        "_MATRIX = {1: (0.2126, 0.0722),",
        "_MATRIX = {1: (0.299, 0.114),",
        ("tests/test_media_colour.py", "tests/test_media_splice_plan.py", "tests/test_media_render.py"),
    ),
    # ------------------------------------------------------------------ render plan
    Mutant(
        "render-gop-start-before",
        "loom/media/cut_plan.py",
        "gop_regions starts at the IDR strictly before the span: an aligned span re-encodes the GOP before it",
        "start = max((k for k in keyframes if k <= first), default=0)",
        "start = max((k for k in keyframes if k < first), default=0)",
        ("tests/test_media_splice_plan.py", "tests/test_media_render.py"),
    ),
    Mutant(
        "render-gop-end-after",
        "loom/media/cut_plan.py",
        "gop_regions ends at the IDR strictly after the span: an aligned span re-encodes the next GOP",
        "end = min((k for k in keyframes if k >= stop), default=frame_count)",
        "end = min((k for k in keyframes if k > stop), default=frame_count)",
        ("tests/test_media_splice_plan.py", "tests/test_media_render.py"),
    ),
    Mutant(
        "render-spans-touching-unmerged",
        "loom/media/cut_plan.py",
        "edited_spans merges only overlapping ranges, not touching ones ([10,20) + [20,30) stay two)",
        "if merged and first <= merged[-1][1]:",
        "if merged and first < merged[-1][1]:",
        ("tests/test_media_splice_plan.py", "tests/test_media_render.py"),
    ),
    Mutant(
        "render-span-drops-last-frame",
        "loom/media/cut_plan.py",
        "edited_spans clips to frame_count - 1: a patch on the last frame is never rendered",
        "for first, stop in sorted((max(0, a), min(frame_count, b)) for a, b in ranges):",
        "for first, stop in sorted((max(0, a), min(frame_count - 1, b)) for a, b in ranges):",
        ("tests/test_media_splice_plan.py", "tests/test_media_render.py"),
    ),
    # ------------------------------------------------------------------ voice: fit, loudness, retries
    Mutant(
        "fit-room-one-edge",
        "loom/voice/fit.py",
        "fit leaves the edge margin on one side only: speech may run into the renderer's crossfade",
        "room = length - 2 * edge",
        "room = length - edge",
        ("tests/test_voice_fit.py",),
    ),
    Mutant(
        "fit-trim-eats-onset",
        "loom/voice/fit.py",
        "trim_silence moves the start pad the wrong way: the first 20 ms of each line's onset is cut",
        "return max(0, loud[0] * size - pad), min(mono.size, (loud[-1] + 1) * size + pad)",
        "return max(0, loud[0] * size + pad), min(mono.size, (loud[-1] + 1) * size + pad)",
        ("tests/test_voice_fit.py",),
    ),
    Mutant(
        "fit-no-gain-silent-original",
        "loom/voice/fit.py",
        "with no speech in the original window the line is left at its own level (gain forced to 1)",
        "gain = gain_to_match(current, target_lufs, float(np.abs(speech).max()))",
        "gain = gain_to_match(current, target_lufs, float(np.abs(speech).max())) if original_speech else 1.0",
        ("tests/test_voice_fit.py", "tests/test_voice_loudness.py"),
    ),
    Mutant(
        "loudness-db-as-power",
        "loom/voice/loudness.py",
        "gain_to_match converts dB with /10 (power) instead of /20 (amplitude)",
        "gain = 10.0 ** ((target_lufs - current_lufs) / 20.0)",
        "gain = 10.0 ** ((target_lufs - current_lufs) / 10.0)",
        ("tests/test_voice_loudness.py", "tests/test_voice_fit.py"),
    ),
    Mutant(
        "elevenlabs-constant-backoff",
        "loom/voice/elevenlabs.py",
        "ElevenLabs retries wait a constant 0.5 s (+jitter) instead of backing off exponentially",
        "wait_exponential_jitter(initial=0.5, max=config.max_backoff_s, exp_base=2, jitter=0.5)",
        "wait_exponential_jitter(initial=0.5, max=config.max_backoff_s, exp_base=1, jitter=0.5)",
        ("tests/test_voice_elevenlabs.py",),
    ),
    # ------------------------------------------------------------------ API: webhooks and the input guard
    Mutant(
        "webhook-constant-backoff",
        "app/webhooks.py",
        "webhook retries wait backoff_s (+jitter) every time instead of doubling",
        "delay = backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())",
        "delay = backoff_s * (0.5 + random.random())",
        ("tests/test_api_webhooks.py",),
    ),
    Mutant(
        "guard-first-address-only",
        "app/webhooks.py",
        "the SSRF guard checks only the first address a name resolves to (a second, private one passes)",
        "    for address in addresses:\n        reason = blocked_reason(address)",
        "    for address in addresses[:1]:\n        reason = blocked_reason(address)",
        ("tests/test_api_webhooks.py", "tests/test_api_shape.py"),
    ),
    Mutant(
        "webhook-reason-mixed-up",
        "app/webhooks.py",
        "a loopback destination is refused as 'a private address' (the caller is told the wrong class)",
        '''    if ip.is_loopback:
        return "a loopback address"''',
        '''    if ip.is_loopback:
        return "a private address"''',
        ("tests/test_api_webhooks.py",),
    ),
    Mutant(
        "no-checkpoint-never-said",
        "loom/lipsync/notice.py",
        "skipping lip-sync for want of a checkpoint is never said (the warning is lost)",
        "    logging.getLogger(\"loom.lipsync\").warning(NO_CHECKPOINT)",
        "    return",
        ("tests/test_bad_input_media.py", "tests/test_lipsync_engine.py"),
    ),
    Mutant(
        "gpu-child-skips-lipsync",
        "flows/lipsync.py",
        "the GPU pool's wav2lip run skips the model and reports nothing (the recipient keeps the old mouth)",
        "    ref: PatchSetRef | None = lipsync_line(prepared, segment, insert, workdir)",
        "    ref: PatchSetRef | None = None",
        ("tests/test_e2e_stack.py::test_recipient_run_through_rest_makes_a_video_and_sends_lipsync_to_the_gpu_pool",),
        timeout_s=600.0,
    ),
    Mutant(
        "guard-path-prefix",
        "app/api.py",
        "local input files are checked with a bare string prefix: /home/loom-other/x passes as inside /home/loom",
        "return real == base or real.startswith(base.rstrip(os.sep) + os.sep)",
        "return real == base or real.startswith(base.rstrip(os.sep))",
        ("tests/test_api_shape.py",),
    ),
)


# ---------------------------------------------------------------- the pytest plugin put into each copy

GUARD_PLUGIN = '''\
"""Written by tools/mutation_pass.py: records failures and where project modules were imported from."""
import json
import os
import sys

_ROOT = os.path.realpath(os.environ["MUTATION_COPY_ROOT"])
_REPORT = os.environ["MUTATION_REPORT"]
_TARGET = os.environ.get("MUTATION_TARGET_MODULE", "")
_PACKAGES = tuple(os.environ["MUTATION_PACKAGES"].split(","))
_state = {"failed": [], "collect_errors": [], "foreign": {}, "target": None}


def _inside(path):
    real = os.path.realpath(path)
    return real == _ROOT or real.startswith(_ROOT + os.sep)


def _check_modules():
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in _PACKAGES or module is None:
            continue
        where = getattr(module, "__file__", None)
        if where:
            if not _inside(where):
                _state["foreign"][name] = os.path.realpath(where)
            continue
        for entry in list(getattr(module, "__path__", None) or []):  # namespace packages
            if os.path.exists(entry) and not _inside(entry):
                _state["foreign"][name] = os.path.realpath(entry)
    target = sys.modules.get(_TARGET)
    if target is not None and getattr(target, "__file__", None):
        _state["target"] = os.path.realpath(target.__file__)


def pytest_collectreport(report):
    if report.failed:
        _state["collect_errors"].append(report.nodeid or "(collection)")


def pytest_runtest_logreport(report):
    if report.failed and report.nodeid not in _state["failed"]:
        _state["failed"].append(report.nodeid)


def pytest_collection_finish(session):
    _check_modules()


def pytest_sessionfinish(session, exitstatus):
    _check_modules()
    _state["exitstatus"] = int(exitstatus)
    with open(_REPORT, "w") as handle:
        json.dump(_state, handle)
'''


# ---------------------------------------------------------------- copying and mutating


class PassError(Exception):
    """The pass cannot run as configured (exit status 2)."""


def repo_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True, capture_output=True
    ).stdout.decode()
    return sorted({p for p in out.split("\0") if p})


def snapshot(root: Path, dest: Path) -> int:
    """Copy the repo's tracked and untracked-not-ignored files to ``dest``; returns how many."""
    count = 0
    for rel in repo_files(root):
        src = root / rel
        if not src.is_file() or src.is_symlink():  # deleted in the working tree, a submodule, a link
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        count += 1
    (dest / "_mutation_guard.py").write_text(GUARD_PLUGIN)
    return count


def check_snippet(mutant: Mutant, root: Path) -> str:
    """The file's text; raises PassError unless the snippet occurs exactly once."""
    path = root / mutant.path
    if not path.is_file():
        raise PassError(f"{mutant.name}: {mutant.path} does not exist under {root}")
    text = path.read_text()
    found = text.count(mutant.find)
    if found != 1:
        raise PassError(
            f"{mutant.name}: snippet found {found} times in {mutant.path} under {root} (must be exactly once):\n"
            + textwrap.indent(mutant.find, "    | ")
        )
    if mutant.find == mutant.replace:
        raise PassError(f"{mutant.name}: replacement equals the snippet")
    return text


def apply_mutant(mutant: Mutant, copy: Path) -> None:
    text = check_snippet(mutant, copy)
    path = copy / mutant.path
    path.unlink()  # a new file (never write through a link shared with the snapshot)
    path.write_text(text.replace(mutant.find, mutant.replace, 1))
    cache = path.parent / "__pycache__"
    for stale in cache.glob(f"{path.stem}.*.pyc") if cache.is_dir() else ():
        stale.unlink()


def child_env(copy: Path, report: Path, target_module: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)  # the copy before site-packages (and the editable finder after both)
    env["MUTATION_COPY_ROOT"] = str(copy)
    env["MUTATION_REPORT"] = str(report)
    env["MUTATION_TARGET_MODULE"] = target_module
    env["MUTATION_PACKAGES"] = ",".join(PROJECT_PACKAGES)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        env.pop(name, None)
    return env


def check_imports_resolve_in_copy(copy: Path, modules: Iterable[str]) -> None:
    """Every project package and mutated module, as the copy's environment resolves it, is the copy's."""
    names = sorted(set(PROJECT_PACKAGES) | set(modules))
    code = (
        "import importlib.util, json, sys\n"
        "out = {}\n"
        f"for name in {names!r}:\n"
        "    spec = importlib.util.find_spec(name)\n"
        "    out[name] = (spec.origin if spec and spec.origin not in (None, 'namespace') else\n"
        "                 list(spec.submodule_search_locations or []) if spec else None)\n"
        "print(json.dumps(out))\n"
    )
    env = child_env(copy, copy / "unused.json", "")
    done = subprocess.run([str(PYTHON), "-c", code], cwd=copy, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise PassError(f"import check in the copy failed:\n{done.stderr.strip()}")
    found: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    root = str(copy.resolve())
    wrong = []
    for name, where in found.items():
        places = where if isinstance(where, list) else [where]
        if where is None or not places or any(not os.path.realpath(str(p)).startswith(root + os.sep) for p in places):
            wrong.append(f"{name} -> {where}")
    if wrong:
        raise PassError("the copy's environment imports project code from outside the copy:\n  " + "\n  ".join(wrong))


# ---------------------------------------------------------------- running pytest


@dataclass
class Run:
    status: str  # killed | SURVIVED | timeout | error
    seconds: float
    first_failure: str = ""
    detail: str = ""
    failed: list[str] = field(default_factory=list)
    collect_errors: list[str] = field(default_factory=list)
    target_loaded: bool | None = None


_procs_lock = threading.Lock()
_procs: set[subprocess.Popen[bytes]] = set()


def run_pytest(
    copy: Path, tests: Sequence[str], timeout_s: float, *, stop_first: bool, deselect: Sequence[str] = (),
    target_module: str = "", label: str = "run",
) -> Run:
    report = copy / f"_mutation_{label}.json"
    log_path = copy / f"_mutation_{label}.log"
    report.unlink(missing_ok=True)
    cmd = [str(PYTHON), "-m", "pytest", *(["-x"] if stop_first else []), "-q", "-p", "no:cacheprovider",
           "-p", "_mutation_guard", "-rfE"]
    for nodeid in deselect:
        cmd += ["--deselect", nodeid]
    cmd += list(tests)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=copy, env=child_env(copy, report, target_module), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        with _procs_lock:
            _procs.add(proc)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(proc)
            return Run("timeout", time.monotonic() - started, detail=f"no result after {timeout_s:.0f} s")
        finally:
            with _procs_lock:
                _procs.discard(proc)
    seconds = time.monotonic() - started
    tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-15:])
    if not report.is_file():
        return Run("error", seconds, detail=f"pytest exited {rc} without reaching the end of the session\n{tail}")
    state = json.loads(report.read_text())
    failed, collect_errors = list(state["failed"]), list(state["collect_errors"])
    target_loaded = None if not target_module else state.get("target") is not None
    if state["foreign"]:
        shown = ", ".join(f"{k} -> {v}" for k, v in sorted(state["foreign"].items())[:5])
        return Run("error", seconds, detail=f"imported project code from outside the copy: {shown}")
    if target_module and state.get("target") and not state["target"].startswith(str(copy.resolve()) + os.sep):
        return Run("error", seconds, detail=f"{target_module} came from {state['target']}")
    first = (failed or collect_errors or [""])[0]
    if rc == 0:
        return Run("SURVIVED", seconds, failed=failed, target_loaded=target_loaded)
    if rc == 1 or (rc == 2 and (failed or collect_errors)):
        return Run("killed", seconds, first, failed=failed, collect_errors=collect_errors, target_loaded=target_loaded)
    return Run("error", seconds, first, detail=f"pytest exited {rc}\n{tail}", failed=failed,
               collect_errors=collect_errors, target_loaded=target_loaded)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the pytest process and the children it started (its own session), nothing else."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------- the pass


@dataclass
class Outcome:
    mutant: Mutant
    run: Run
    skipped_tests: list[str]
    ran_tests: list[str]


def select(names: Sequence[str] | None) -> list[Mutant]:
    if not names:
        return list(MUTANTS)
    known = {m.name: m for m in MUTANTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PassError(f"unknown mutant(s): {', '.join(unknown)} (--list shows them)")
    return [known[n] for n in dict.fromkeys(names)]


def print_list(mutants: Sequence[Mutant]) -> None:
    for m in mutants:
        print(f"{m.name}  ({m.path})")
        print(f"    {m.description}")
        print(textwrap.indent(m.find, "    - "))
        print(textwrap.indent(m.replace, "    + "))
        tests = ", ".join(t + ("" if (ROOT / t.split("::")[0]).is_file() else " [missing]") for t in m.tests)
        print(f"    tests: {tests}")
    print(f"{len(mutants)} mutants")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def baseline(base: Path, files: list[str], jobs: int, timeout_s: float) -> tuple[dict[str, list[str]], set[str]]:
    """(failing node ids per file, files that cannot run) on the unmutated copy."""
    failing: dict[str, list[str]] = {}
    broken: set[str] = set()

    def one(item: tuple[int, str]) -> tuple[str, Run]:
        i, test_file = item
        return test_file, run_pytest(base, [test_file], timeout_s, stop_first=False, label=f"baseline{i}")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for test_file, run in pool.map(one, enumerate(files)):
            log(f"  baseline {test_file}: {run.status if run.status != 'SURVIVED' else 'passed'} ({run.seconds:.0f} s)")
            if run.collect_errors or run.status in ("timeout", "error"):
                broken.add(test_file)
                log(f"    WARNING: {test_file} cannot run unmutated ({run.status}"
                    f"{': ' + run.collect_errors[0] if run.collect_errors else ''}); it is left out of every mutant")
                if run.detail:
                    log(textwrap.indent(run.detail, "      "))
            elif run.failed:
                failing[test_file] = run.failed
                for nodeid in run.failed:
                    log(f"    WARNING: fails unmutated, deselected for mutants: {nodeid}")
    return failing, broken


def mutate_and_run(mutant: Mutant, base: Path, work: Path, tests: list[str], deselect: list[str], timeout_s: float) -> Run:
    copy = work / mutant.name
    shutil.copytree(base, copy, ignore=shutil.ignore_patterns("__pycache__", "_mutation_*.json", "_mutation_*.log"))
    apply_mutant(mutant, copy)
    return run_pytest(copy, tests, timeout_s, stop_first=True, deselect=deselect, target_module=mutant.module,
                      label="mutant")


def report_table(outcomes: Sequence[Outcome]) -> str:
    rows = [("mutant", "file", "result", "seconds", "first failing test / note")]
    for o in outcomes:
        note = o.run.first_failure
        if o.run.status == "SURVIVED":
            note = "no selected test failed" + (" (mutated module never imported)" if o.run.target_loaded is False else "")
        elif o.run.status in ("error", "timeout"):
            note = o.run.detail.splitlines()[0] if o.run.detail else note
        rows.append((o.mutant.name, o.mutant.path, o.run.status, f"{o.run.seconds:.1f}", note))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 25)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", action="extend", metavar="NAME", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help=f"mutants tested at once (default {DEFAULT_JOBS})")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per mutant (default: each mutant's own)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run (failing tests then count as kills)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies and logs")
    args = parser.parse_args(argv)

    try:
        mutants = select(args.only)
        for m in mutants:  # against the real tree, before anything runs
            check_snippet(m, ROOT)
    except PassError as exc:
        log(f"mutation_pass: {exc}")
        return 2
    if args.list:
        print_list(mutants)
        return 0
    if not PYTHON.is_file():
        log(f"mutation_pass: no interpreter at {PYTHON}")
        return 2

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="loom-mutation-"))
    base = work / "_base"
    try:
        count = snapshot(ROOT, base)
        log(f"mutation_pass: {count} files copied to {base}")
        for m in mutants:
            check_snippet(m, base)
        check_imports_resolve_in_copy(base, [m.module for m in mutants])
        log("mutation_pass: import check passed (the copy's code is what its environment imports)")

        per_mutant: dict[str, tuple[list[str], list[str]]] = {}
        for m in mutants:
            present = [t for t in m.tests if (base / t.split("::")[0]).is_file()]  # a file, or file::test
            missing = [t for t in m.tests if t not in present]
            for t in missing:
                log(f"  WARNING: {m.name}: test file {t} does not exist; skipped")
            per_mutant[m.name] = (present, missing)

        failing: dict[str, list[str]] = {}
        broken: set[str] = set()
        files = sorted({t for present, _ in per_mutant.values() for t in present})
        if not args.no_baseline and files:
            log(f"mutation_pass: baseline over {len(files)} test files")
            failing, broken = baseline(base, files, max(1, args.jobs), args.timeout or DEFAULT_TIMEOUT_S)

        def one(m: Mutant) -> Outcome:
            present, missing = per_mutant[m.name]
            tests = [t for t in present if t not in broken]
            skipped = missing + [t for t in present if t in broken]
            timeout_s = args.timeout or m.timeout_s
            if not tests:
                run = Run("error", 0.0, detail="no runnable test file: " + ", ".join(skipped or m.tests))
            else:
                deselect = [n for t in tests for n in failing.get(t, [])]
                try:
                    run = mutate_and_run(m, base, work, tests, deselect, timeout_s)
                except PassError as exc:
                    run = Run("error", 0.0, detail=str(exc))
            log(f"  {m.name}: {run.status} ({run.seconds:.0f} s){' ' + run.first_failure if run.first_failure else ''}")
            return Outcome(m, run, skipped, tests)

        log(f"mutation_pass: {len(mutants)} mutants, {max(1, args.jobs)} at a time")
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            outcomes = list(pool.map(one, mutants))
    except PassError as exc:
        log(f"mutation_pass: {exc}")
        return 2
    except KeyboardInterrupt:
        with _procs_lock:
            for proc in list(_procs):
                _stop(proc)
        raise
    finally:
        if args.keep:
            log(f"mutation_pass: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(report_table(outcomes))
    for o in outcomes:
        if o.skipped_tests:
            print(f"note: {o.mutant.name} ran without {', '.join(o.skipped_tests)}")
        if o.run.status in ("error", "timeout") and o.run.detail:
            print(f"{o.mutant.name}: {o.run.status}\n{textwrap.indent(o.run.detail, '    ')}")
    tally = {s: sum(o.run.status == s for o in outcomes) for s in ("killed", "SURVIVED", "timeout", "error")}
    print(f"{len(outcomes)} mutants: " + ", ".join(f"{n} {s}" for s, n in tally.items())
          + f"; {time.monotonic() - started:.0f} s")
    if tally["SURVIVED"]:
        return 1
    return 3 if tally["timeout"] or tally["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
