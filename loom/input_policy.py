"""Which locations a client-supplied value (a logo, a sheet) may name, for every way it arrives.

A client of the jobs API, a row of a campaign sheet, a flow parameter and a CLI value are all held
to one rule, applied when a value is planned **and** again by the reader right before it opens the
file (the file can change in between, and a value can reach a reader by a path nobody planned):

- a local file only inside an allowed folder: ``$LOOM_HOME`` (when local), the folder of the
  template's own video, and the folders listed in ``LOOM_ALLOWED_ROOTS``; symlinks are followed
  before the check, so a link cannot lead out;
- ``gs://`` only in an allowed bucket: ``LOOM_ALLOWED_BUCKETS``, by default the home bucket alone;
- ``http(s)://`` only to public hosts (or hosts in ``LOOM_INPUT_ALLOWED_HOSTS``); the address is
  checked again, hop by hop, when it is fetched (``loom.fetch``).

A refusal says which rule was broken and never whether a file exists behind the value.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from loom.addresses import blocked_reason, internal_name, is_allowed, parse_allowed_hosts
from loom.errors import InputError
from loom.uris import strip_file_scheme

LOCAL_FIX = "put the file under $LOOM_HOME or beside the template's video, or list its folder in LOOM_ALLOWED_ROOTS"
BUCKET_FIX = "use the home bucket, or list the bucket in LOOM_ALLOWED_BUCKETS"
HOST_FIX = "use a public host, or list it in LOOM_INPUT_ALLOWED_HOSTS"


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def bucket_of(uri: str) -> str:
    return uri.split("://", 1)[1].split("/", 1)[0].lower()


@dataclass(frozen=True)
class InputPolicy:
    """Allowed local folders (real paths), buckets and hosts; relative values are read from ``base``
    (the first root unless given: ``$LOOM_HOME`` for a local home)."""

    roots: tuple[str, ...]
    buckets: frozenset[str]
    allowed_hosts: frozenset[str]
    base: str | None = None

    @classmethod
    def from_settings(
        cls, video_uri: str | None = None, extra_roots: Iterable[str] = (), base: str | None = None
    ) -> InputPolicy:
        """The policy in force: settings, plus the folder of the template's video and ``extra_roots``."""
        from loom.settings import get_settings

        settings = get_settings()
        home = settings.home
        candidates: list[str] = []
        if "://" not in strip_file_scheme(home):
            candidates.append(strip_file_scheme(home))
        if video_uri and "://" not in strip_file_scheme(video_uri):
            candidates.append(os.path.dirname(os.path.abspath(strip_file_scheme(video_uri))))
        candidates += [r for r in settings.allowed_roots.split(os.pathsep) if r.strip()]
        candidates += list(extra_roots)
        roots = tuple(dict.fromkeys(os.path.realpath(os.path.expanduser(r.strip())) for r in candidates))
        if settings.allowed_buckets is not None:
            buckets = frozenset(b.strip().lower().removeprefix("gs://").strip("/") for b in settings.allowed_buckets.split(",") if b.strip())
        elif home.startswith(("gs://", "gcs://")):
            buckets = frozenset({bucket_of(home)})
        else:
            buckets = frozenset()
        hosts = frozenset(parse_allowed_hosts(settings.input_allowed_hosts))
        return cls(roots=roots, buckets=buckets, allowed_hosts=hosts, base=os.path.realpath(base) if base else None)

    @classmethod
    def for_template(cls, template: object, extra_roots: Iterable[str] = (), base: str | None = None) -> InputPolicy:
        return cls.from_settings(getattr(template, "base_video_path", None), extra_roots, base)

    def check(self, field: str, value: str) -> str:
        """The location to read for ``value`` (a local value as its real absolute path), or InputError."""
        value = value.strip()
        if not value:
            raise InputError(field, "is empty", "give a file path, gs:// or https:// URL")
        lower = value.lower()
        if lower.startswith(("gs://", "gcs://")):
            if bucket_of(value) not in self.buckets:
                raise InputError(field, "names a bucket this server does not read for clients", BUCKET_FIX)
            return value
        if lower.startswith(("http://", "https://")):
            self._check_url(field, value)
            return value
        path = strip_file_scheme(value)
        if "://" in path or lower.startswith(("data:", "javascript:")):
            raise InputError(field, "must be a file path, a gs:// or an https:// URL", "upload it and give its URL")
        if not self.roots:
            raise InputError(field, "names a local file, and this server reads none for clients", "give a gs:// or https:// URL")
        full = os.path.realpath(path if os.path.isabs(path) else os.path.join(self.base or self.roots[0], path))
        if not any(_inside(full, root) for root in self.roots):
            raise InputError(field, "is not in a folder this server reads for clients", LOCAL_FIX)
        return full

    def _check_url(self, field: str, url: str) -> None:
        """What can be said of a URL without the network; ``loom.fetch`` checks its addresses when it is read."""
        parts = urlsplit(url)
        if parts.username or parts.password:
            raise InputError(field, "must not carry a user name or password", "give a URL without credentials")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise InputError(field, "has no host", "give a full URL like https://example.com/logo.png")
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            raise InputError(field, "has an invalid port", "use a port between 1 and 65535") from None
        if is_allowed(host, port, set(self.allowed_hosts)):
            return
        if internal_name(host):
            raise InputError(field, f"{host} is an internal host", HOST_FIX)
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return  # a name: resolved and checked when fetched
        reason = blocked_reason(host.strip("[]"))
        if reason:
            raise InputError(field, f"{host} is {reason}", HOST_FIX)
