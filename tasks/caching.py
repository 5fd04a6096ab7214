"""Cache policies keyed by what decides a step's output, plus the code version of the task.

Prefect stores a cached result as a file named by its key in result storage (a local folder by
default, a GcsBucket block in production via ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``). The keys
here are content hashes the engine already computes, so the orchestrator and the engine agree on
when two calls are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect.cache_policies import TASK_SOURCE, CachePolicy
from prefect.utilities.hashing import hash_objects


@dataclass
class ContentKey(CachePolicy):
    """Key = ``content(inputs)`` + the task's source code (``INPUTS + TASK_SOURCE`` on a content hash).

    ``content`` maps the task's inputs to the engine's own content key (e.g. the template version,
    which hashes the base video's bytes, or the speech cache key), so renaming a file or passing an
    equal copy of a model still hits.
    """

    content: Callable[[dict[str, Any]], str] = field(default=lambda inputs: "")
    name: str = "content"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        source = TASK_SOURCE.compute_key(task_ctx=task_ctx, inputs=inputs, flow_parameters=flow_parameters, **kwargs)
        return hash_objects(self.name, self.content(inputs), source)
