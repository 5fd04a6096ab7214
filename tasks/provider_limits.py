"""Providers' concurrent-call allowances as Prefect global concurrency limits, one per provider.

``elevenlabs``, ``synclabs`` and ``gpu-lipsync`` are limits on the Prefect server, so every speech
call of every run on every worker takes its slot from the same count: two campaigns, or one scaled
out over many machines, never put more calls in flight than the account allows. A call waits for
a slot (the server answers 423 with a ``Retry-After`` and Prefect's client waits) instead of being
refused by the provider. ``loom up`` and ``infra/gcp-setup.sh`` create the limits; a run creates any
that is missing (ephemeral servers, tests) and resizes one whose size differs from the settings
(``LOOM_TTS_CONCURRENCY``, or the ElevenLabs block's ``concurrency``).

The engine asks for the slot around each call (``loom.provider_slots.provider_slot``); this module
only tells it where slots come from (``use_orchestrator_slots``).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.settings import PREFECT_API_URL

from loom.provider_slots import PROVIDERS, hold_slots_with, slots_configured

# A speech call is seconds; a lease outliving a dead worker frees its slot after this long.
LEASE_SECONDS = 300

_ensured: dict[str, object] = {}
_ensure_lock = threading.Lock()


def provider_limit_sizes() -> dict[str, int]:
    """Each provider's limit as the settings size it."""
    return {provider: slots_configured(provider) for provider in PROVIDERS}


def ensure_provider_limits() -> dict[str, int]:
    """Create (or resize) the providers' global concurrency limits on the Prefect server in use.
    Done once per process and size: a run's rows all share what its start set up."""
    sizes = provider_limit_sizes()
    done = {"server": PREFECT_API_URL.value(), "sizes": sizes}
    with _ensure_lock:
        if _ensured != done:
            with get_client(sync_client=True) as client:
                for name, limit in sizes.items():
                    client.upsert_global_concurrency_limit_by_name(name, limit)
            _ensured.clear()
            _ensured.update(done)
    return sizes


def orchestrator_slot(provider: str) -> AbstractContextManager[None]:
    """One slot of the provider's global limit. ``strict``: a missing limit is an error, never a
    silently unbounded provider."""
    return concurrency(provider, occupy=1, strict=True, lease_duration=LEASE_SECONDS)


def use_orchestrator_slots() -> None:
    """Make this process's provider calls take their slots from the server's limits."""
    ensure_provider_limits()
    hold_slots_with(orchestrator_slot)
