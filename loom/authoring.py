"""Making a template: check it against its recording, prepare it and store it.

``loom create-template`` and the studio (``app.studio``) both come here, so a template made by
pointing at a video and one written by hand are checked by the same code, answer the same
one-line messages and are prepared and stored the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from loom.errors import InputError
from loom.template import Template, parse_template, save_template

FIELD = re.compile(r"(?P<kind>voice_segments|visual_segments)(?:\[(?P<id>[^\]]*)\]|\.(?P<index>\d+))(?:\.(?P<attr>\w+))?")


@dataclass
class Problem:
    """One message and where it belongs: a template field, or a segment's field by kind and index."""

    field: str
    message: str
    kind: str | None = None
    index: int | None = None
    attr: str | None = None


def locate(error: InputError, data: dict) -> Problem:
    """Which input a message is about: ``voice_segments[bye].end_time`` or ``visual_segments.0.x``."""
    problem = Problem(field=error.field, message=error.line())
    found = FIELD.match(error.field)
    if found:
        problem.kind, problem.attr = found["kind"], found["attr"]
        if found["index"] is not None:
            problem.index = int(found["index"])
        else:
            ids = [s.get("id") for s in data.get(found["kind"]) or [] if isinstance(s, dict)]
            problem.index = ids.index(found["id"]) if found["id"] in ids else None
    return problem


def check_template(data: dict, duration: float | None = None) -> tuple[Template | None, list[Problem]]:
    """The template, or the problem with it (the same line ``create-template`` prints), checked
    against the recording's ``duration`` when it is known."""
    try:
        template = parse_template(data)
        if duration is not None:
            template.check_against_video(duration)
    except InputError as exc:
        return None, [locate(exc, data)]
    return template, []


@dataclass
class Stored:
    uri: str
    warnings: list[str] = field(default_factory=list)


def store_template(template: Template, prepare: bool = True) -> Stored:
    """Prepare the template (when asked), then store it under its id: stored only once it works."""
    warnings: list[str] = []
    if prepare:
        from loom.pipeline import prepare_template

        warnings = list(prepare_template(template).qa)
    try:
        uri = save_template(template)
    except OSError as exc:
        raise InputError(
            "LOOM_HOME", f"cannot store the template ({exc.strerror or type(exc).__name__})", "set LOOM_HOME to a folder you can write to"
        ) from None
    return Stored(uri=uri, warnings=warnings)
