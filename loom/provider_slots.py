"""A provider's concurrent-request allowance, as the engine sees it: a slot held around each call.

Hosted providers cap how many requests an account may have in flight (ElevenLabs answers 429
``too_many_concurrent_requests`` beyond its plan's number; Sync Labs counts running generations;
the GPU pool has so many cards). The engine asks for a slot of the provider around every call
(``provider_slot``) and never decides what a slot is: by default a semaphore in this process sized
by the settings (``LOOM_TTS_CONCURRENCY`` ...), which bounds the CLI; under an orchestrator its
caller installs a guard (``hold_slots_with``) that takes the slot from a limit shared by every run
on every machine (``tasks.provider_limits``: Prefect global concurrency limits).

A refusal that still happens (another client of the same account) is counted here, per provider,
so a campaign can say how many it met.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

ELEVENLABS = "elevenlabs"
SYNCLABS = "synclabs"
GPU_LIPSYNC = "gpu-lipsync"
PROVIDERS = (ELEVENLABS, SYNCLABS, GPU_LIPSYNC)

# The setting (``LOOM_<NAME>``) that sizes each provider's slots.
SLOT_SETTINGS = {ELEVENLABS: "tts_concurrency", SYNCLABS: "synclabs_concurrency", GPU_LIPSYNC: "gpu_lipsync_concurrency"}

SlotGuard = Callable[[str], AbstractContextManager[object]]


def slots_configured(provider: str) -> int:
    """How many calls to ``provider`` may be in flight at once (``LOOM_TTS_CONCURRENCY`` ...)."""
    from loom.settings import get_settings

    return int(getattr(get_settings(), SLOT_SETTINGS[provider]))


def slots_in_environment(env: dict[str, str]) -> dict[str, int]:
    """Each provider's slots as an environment (another process's) sets them, defaults otherwise."""
    from loom.settings import LoomSettings

    fields = LoomSettings.model_fields
    return {
        provider: int(env.get(f"LOOM_{name.upper()}", fields[name].default))
        for provider, name in SLOT_SETTINGS.items()
    }


class LocalSlots:
    """The default guard: one semaphore per provider and size in this process (a changed setting
    starts a new count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._semaphores: dict[tuple[str, int], threading.BoundedSemaphore] = {}

    def __call__(self, provider: str) -> AbstractContextManager[object]:
        key = (provider, slots_configured(provider))
        with self._lock:
            if key not in self._semaphores:
                self._semaphores[key] = threading.BoundedSemaphore(key[1])
            return self._semaphores[key]


_guard: list[SlotGuard] = []
_local = LocalSlots()


def hold_slots_with(guard: SlotGuard | None) -> None:
    """Take provider slots through ``guard`` in this process from now on (None: the local semaphores)."""
    _guard[:] = [guard] if guard is not None else []


@contextmanager
def provider_slot(provider: str) -> Iterator[None]:
    """Hold one of ``provider``'s slots while the body runs (waits for one to be free)."""
    guard = _guard[0] if _guard else _local
    with guard(provider):
        yield


_refusals: Counter[str] = Counter()
_refusals_lock = threading.Lock()


def count_refusal(provider: str) -> None:
    """A provider refused a call for too many at once (HTTP 429) although a slot was held."""
    with _refusals_lock:
        _refusals[provider] += 1


def refusals(provider: str) -> int:
    """Refusals counted in this process so far (take the difference around a piece of work)."""
    with _refusals_lock:
        return _refusals[provider]
