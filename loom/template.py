"""The seed's template JSON as pydantic models, with one clear message per problem.

The seed's format is read unchanged; every extra field is optional.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from loom import storage
from loom.errors import InputError
from loom.plugins import effect_params, visual_effect

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch: "$" would let a trailing newline in


def check_safe_id(value: str, field: str = "id") -> str:
    """Ids become file names: letters, digits, '.', '_' and '-', never '..' or '/'."""
    if not isinstance(value, str) or not SAFE_ID.fullmatch(value) or ".." in value:
        raise InputError(
            field, f"{value!r} is not a safe id", "use letters, digits, '.', '_' or '-' (no '/' or '..')"
        )
    return value


class TextStyle(BaseModel):
    """Optional look of replaced text; sampled from the original where unset."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    color: str | None = Field(default=None, description="#RRGGBB; sampled from the original text when unset")
    background: str | None = Field(default=None, description="#RRGGBB fill; sampled from the box border when unset")
    weight: Literal["regular", "bold"] | None = None
    align: Literal["left", "center", "right"] = "center"
    font: str | None = Field(default=None, description="Path to a font file to use first")


class VoiceSegment(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    id: str
    start_time: float = Field(ge=0)
    end_time: float = Field(gt=0)
    template_text: str = Field(min_length=1)
    lipsync: bool = Field(default=True, description="Re-sync the mouth in this window")

    @field_validator("id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        return check_safe_id(v, "voice_segments.id")

    @field_validator("template_text")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        text_placeholders(v)
        return v

    @model_validator(mode="after")
    def _ordered(self) -> VoiceSegment:
        if self.end_time <= self.start_time:
            raise ValueError(f"end_time {self.end_time} must be after start_time {self.start_time}")
        return self

    def placeholders(self) -> list[str]:
        return text_placeholders(self.template_text)


# Visual segment types whose value replaces the box's content; any other type is a visual effect
# plugin (``better_loom.visual``), looked up when the template is read.
CONTENT_TYPES = ("text", "image")


class VisualSegment(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    id: str
    segment_type: str = Field(description="text, image, or the name of an installed visual effect")
    start_time: float = Field(ge=0)
    end_time: float = Field(gt=0)
    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)
    width: float = Field(gt=0, le=1)
    height: float = Field(gt=0, le=1)
    placeholder_key: str | None = Field(default=None, min_length=1, description="the row's value drawn here (text, image)")
    style: TextStyle | None = None
    image_fit: Literal["contain", "cover"] = "contain"
    track: bool = Field(default=True, description="Follow the box if it moves")
    params: dict[str, Any] | None = Field(default=None, description="a visual effect's own settings")

    @field_validator("id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        return check_safe_id(v, "visual_segments.id")

    @field_validator("placeholder_key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(f"placeholder_key {v!r} must be a name like company_name")
        return v

    @model_validator(mode="after")
    def _kind(self) -> VisualSegment:
        """Text and image need a value to draw; an effect must be installed and take its params."""
        where = f"visual_segments[{self.id}]"
        if self.segment_type in CONTENT_TYPES:
            if self.placeholder_key is None:
                raise InputError(f"{where}.placeholder_key", f"a {self.segment_type} segment needs one", "name the column it shows, e.g. company_name")
            return self
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.segment_type):
            raise InputError(f"{where}.segment_type", f"{self.segment_type!r} is not a type name", "use text, image or a visual effect's name")

        effect = visual_effect(self.segment_type, f"{where}.segment_type")
        self.params = effect_params(effect, self.params, f"{where}.params")
        return self

    @model_validator(mode="after")
    def _inside(self) -> VisualSegment:
        if self.end_time <= self.start_time:
            raise ValueError(f"end_time {self.end_time} must be after start_time {self.start_time}")
        if self.x + self.width > 1.0 + 1e-6 or self.y + self.height > 1.0 + 1e-6:
            raise ValueError("box goes outside the frame: x + width and y + height must be at most 1")
        return self


class Template(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    id: str
    name: str = ""
    base_video_path: str = Field(min_length=1)
    voice_id: str = ""
    voice_segments: list[VoiceSegment] = Field(default_factory=list)
    visual_segments: list[VisualSegment] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        return check_safe_id(v, "id")

    @model_validator(mode="after")
    def _segments(self) -> Template:
        ids = [s.id for s in self.voice_segments] + [s.id for s in self.visual_segments]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"segment ids must be unique; repeated: {', '.join(sorted(dup))}")
        ordered = sorted(self.voice_segments, key=lambda s: s.start_time)
        for a, b in zip(ordered, ordered[1:]):
            if b.start_time < a.end_time:
                raise ValueError(
                    f"voice segments {a.id!r} ({a.start_time}-{a.end_time}s) and {b.id!r} "
                    f"({b.start_time}-{b.end_time}s) overlap"
                )
        return self

    def placeholders(self) -> list[str]:
        """Every value a recipient row must give, in first-use order."""
        keys: list[str] = []
        for seg in self.voice_segments:
            keys += seg.placeholders()
        keys += [s.placeholder_key for s in self.visual_segments if s.placeholder_key]
        return list(dict.fromkeys(keys))

    def image_keys(self) -> set[str]:
        return {s.placeholder_key for s in self.visual_segments if s.segment_type == "image" and s.placeholder_key}

    def video_hash(self) -> str:
        """Hash of everything a recipient's video depends on in the template itself.

        The display ``name`` and where the base video lies are left out: the video's bytes enter
        the template version separately, so renaming a template or moving its recording does not
        remake every video, while any box, time, text, voice or style edit does.
        """
        content = self.model_dump_json(exclude={"name", "base_video_path"})
        return hashlib.sha256(content.encode()).hexdigest()

    def check_against_video(self, duration: float, tolerance: float = 1e-3) -> None:
        """Times must lie inside the recording (checked once it is probed)."""
        for kind, segs in (("voice_segments", self.voice_segments), ("visual_segments", self.visual_segments)):
            for seg in segs:
                if seg.end_time > duration + tolerance:
                    raise InputError(
                        f"{kind}[{seg.id}].end_time",
                        f"{seg.end_time:g}s is after the end of the video ({duration:.3f}s)",
                        f"use an end_time of at most {duration:.3f}",
                    )


def text_placeholders(text: str) -> list[str]:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise InputError("template_text", f"{text!r}: {exc}", "write placeholders as {client_name}") from None
    for name in names:
        if not name.isidentifier():
            raise InputError("template_text", f"{text!r}: {{{name}}} is not a placeholder name", "write placeholders as {client_name}")
    return list(dict.fromkeys(names))


def render_text(text: str, values: dict[str, str]) -> str:
    """Fill ``{key}`` placeholders; nothing else is interpreted (no attribute or index access)."""
    out = []
    for literal, name, _spec, _conv in string.Formatter().parse(text):
        out.append(literal)
        if name:
            out.append(values[name])
    return "".join(out)


def _pydantic_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "template"
    msg = err["msg"].removeprefix("Value error, ")
    ctx_error = err.get("ctx", {}).get("error")
    if isinstance(ctx_error, InputError):
        if err["loc"] and ctx_error.field == str(err["loc"][-1]) and len(err["loc"]) > 1:
            return InputError(loc, ctx_error.problem, ctx_error.fix).line()  # name the segment, not only its field
        return ctx_error.line()
    return f"{loc}: {msg}"


def parse_template(data: dict | str | bytes) -> Template:
    """Validate template JSON (a dict or its text); raise ``InputError`` naming the first problem."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InputError("template", f"not valid JSON ({exc.msg} at line {exc.lineno})", "fix the JSON") from exc
        except RecursionError:
            raise InputError("template", "is nested too deeply to be a template", "see the template format in the README") from None
        except ValueError as exc:  # e.g. a number of thousands of digits
            raise InputError("template", f"not valid JSON ({str(exc).split(';')[0]})", "fix the JSON") from None
    if not isinstance(data, dict):
        raise InputError("template", "must be a JSON object", "see the template format in the README")
    try:
        return Template.model_validate(data)
    except ValidationError as exc:
        line = _pydantic_line(exc)
        field, _, problem = line.partition(": ")
        raise InputError(field, problem or line) from None


def templates_dir() -> str:
    return storage.join(storage.home(), "templates")


def template_uri(template_id: str) -> str:
    check_safe_id(template_id, "template_id")
    return storage.join(templates_dir(), f"{template_id}.json")


def looks_like_path(ref: str) -> bool:
    return ref.endswith(".json") or "/" in ref or ref.startswith(("gs://", "https://", "file://"))


def load_template(ref: str) -> Template:
    """A template by stored id (under ``$LOOM_HOME/templates``) or by path/URI to its JSON.

    A relative ``base_video_path`` is read relative to the template file.
    """
    if looks_like_path(ref) and not ref.startswith(("gs://", "https://", "file://")) and ".." in ref.split("/"):
        pass  # explicit local paths given by the operator are allowed to climb
    if looks_like_path(ref):
        uri = ref
        if not storage.exists(uri):
            raise InputError("template", f"no template file at {ref}", "give a template id or a path to its JSON")
    else:
        uri = template_uri(ref)
        if not storage.exists(uri):
            raise InputError("template", f"no template with id {ref!r}", "create it with `loom create-template --config T.json`")
    template = parse_template(storage.read_bytes(uri))
    base = template.base_video_path
    if not storage.is_remote(base) and not base.startswith("/") and not base.startswith("file://"):
        parent = uri.rsplit("/", 1)[0] if "/" in uri else "."
        candidate = storage.join(parent, base)
        if storage.exists(candidate) or not storage.exists(base):
            template = template.model_copy(update={"base_video_path": candidate})
    return template


def save_template(template: Template) -> str:
    return storage.write_text(template_uri(template.id), template.model_dump_json(indent=2))


def list_templates() -> list[Template]:
    out = []
    for uri in storage.list_dir(templates_dir()):
        if uri.endswith(".json"):
            try:
                out.append(parse_template(storage.read_bytes(uri)))
            except InputError:
                continue
    return out
