"""Errors meant for users, kept apart from bugs.

An ``InputError`` is bad input: it names the field and the fix in one line. The CLI prints it
and exits 2; the API answers 4xx with it; a campaign records it against the row.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user: one line that names the field and says how to fix it."""

    def __init__(self, field: str, problem: str, fix: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.field}: {self.problem}"
        if self.fix:
            text += f" ({self.fix})"
        return " ".join(text.split())  # one line, whatever the parts held


class RecipientFailed(RuntimeError):
    """One recipient cannot be made (e.g. speech too long for its window); others go on."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(reason)


class ServiceError(RuntimeError):
    """A remote service refused for a reason retrying cannot fix (auth, quota, unknown voice)."""
