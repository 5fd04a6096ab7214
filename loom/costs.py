"""What one video cost: wall and CPU seconds per step, characters sent to speech providers, and an
estimated price from configurable rates (``LOOM_PRICE_CPU_SECOND``, ``LOOM_PRICE_TTS_CHARACTER``).

A recipient's run opens a ledger (``measuring``); each engine step it calls records itself
(``step``), from whichever thread runs it: the ledger travels in a context variable, which
Prefect's task threads copy and ``bound`` carries to a plain thread pool or a callback. CPU seconds are the process's CPU time
while the step ran (FFmpeg's and torch's threads included): exact when a process makes one
recipient at a time; steps that overlap in one process (a campaign's rows on threads) share it.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from pydantic import BaseModel, Field

from loom.settings import get_settings

T = TypeVar("T")

FREE_PROVIDERS = {"espeak"}  # the offline voice: nothing is sent anywhere


class StepCost(BaseModel):
    step: str
    wall_s: float
    cpu_s: float


class RecipientCost(BaseModel):
    """The cost of one video, as the QA record and the campaign page show it."""

    steps: list[StepCost] = Field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    tts_characters: dict[str, int] = Field(default_factory=dict, description="characters sent, per speech provider")
    price_cpu: float = 0.0
    price_tts: float = 0.0
    price_total: float = 0.0
    rates: dict[str, float] = Field(default_factory=dict)


class CostLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.steps: list[StepCost] = []
        self.characters: dict[str, int] = {}
        self.started_wall = time.perf_counter()
        self.started_cpu = time.process_time()

    def add_step(self, name: str, wall_s: float, cpu_s: float) -> None:
        with self._lock:
            self.steps.append(StepCost(step=name, wall_s=round(wall_s, 4), cpu_s=round(cpu_s, 4)))

    def add_characters(self, provider: str, count: int) -> None:
        with self._lock:
            self.characters[provider] = self.characters.get(provider, 0) + count

    def summary(self) -> RecipientCost:
        """The cost so far, priced at the configured rates."""
        settings = get_settings()
        with self._lock:
            steps = list(self.steps)
            characters = dict(self.characters)
        wall = time.perf_counter() - self.started_wall
        cpu = time.process_time() - self.started_cpu
        paid_chars = sum(n for p, n in characters.items() if p not in FREE_PROVIDERS)
        price_cpu = cpu * settings.price_cpu_second
        price_tts = paid_chars * settings.price_tts_character
        return RecipientCost(
            steps=steps,
            wall_s=round(wall, 3),
            cpu_s=round(cpu, 3),
            tts_characters=characters,
            price_cpu=round(price_cpu, 6),
            price_tts=round(price_tts, 6),
            price_total=round(price_cpu + price_tts, 6),
            rates={"cpu_second": settings.price_cpu_second, "tts_character": settings.price_tts_character},
        )


_current: contextvars.ContextVar[CostLedger | None] = contextvars.ContextVar("loom_cost_ledger", default=None)


@contextlib.contextmanager
def measuring() -> Iterator[CostLedger]:
    """A ledger for the steps run inside (and in threads started with a copy of this context)."""
    ledger = CostLedger()
    token = _current.set(ledger)
    try:
        yield ledger
    finally:
        _current.reset(token)


def current() -> CostLedger | None:
    return _current.get()


def bound(func: Callable[..., T]) -> Callable[..., T]:
    """``func`` recording into this context's ledger from whichever thread later calls it (a plain
    thread pool, or a callback on another library's thread, copies no context)."""
    ledger = _current.get()

    def run(*args: object, **kwargs: object) -> T:
        token = _current.set(ledger)
        try:
            return func(*args, **kwargs)
        finally:
            _current.reset(token)

    return run


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Record the wall and CPU time of the block as step ``name`` (nothing without a ledger)."""
    ledger = _current.get()
    if ledger is None:
        yield
        return
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        ledger.add_step(name, time.perf_counter() - wall, time.process_time() - cpu)


def characters_sent(provider: str, count: int) -> None:
    ledger = _current.get()
    if ledger is not None:
        ledger.add_characters(provider, count)
