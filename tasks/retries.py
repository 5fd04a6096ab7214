"""When a failed task is worth another try: transient faults only, never bad input or refusals."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from loom.errors import InputError, RecipientFailed, ServiceError

# Errors retrying cannot fix: the input is wrong, the recipient cannot be made, or the service
# refused for good (auth, quota, unknown voice).
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (InputError, RecipientFailed, ServiceError, KeyError, TypeError)

NETWORK_RETRIES = 3
# 2 s, 4 s, 8 s, each stretched or shrunk by up to half so that many runs hit by the same outage
# do not come back in lock-step.
NETWORK_RETRY_DELAYS = exponential_backoff(backoff_factor=2)
NETWORK_RETRY_JITTER = 0.5


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry unless the error is one retrying cannot fix."""
    try:
        state.result()
    except PERMANENT_ERRORS:
        return False
    except Exception:
        return True
    return True


def network_retry_options() -> dict[str, Any]:
    """Task options shared by every task that talks to a remote service or storage."""
    return {
        "retries": NETWORK_RETRIES,
        "retry_delay_seconds": NETWORK_RETRY_DELAYS,
        "retry_jitter_factor": NETWORK_RETRY_JITTER,
        "retry_condition_fn": is_transient,
    }
