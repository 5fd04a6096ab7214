"""What a person sees in the Prefect UI for a recipient: a link to the video, a summary with the
preview and the inputs used, and the lineage base video -> prepared template -> recipient video.

Lineage is recorded twice: as asset materializations (events on the open-source server, the asset
graph in Prefect Cloud) and as a table artifact, which the open-source UI shows.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.assets import Asset, add_asset_metadata, materialize

from loom import links, storage
from loom.campaign import CampaignEntry, CampaignPlan, ManifestWriter, Throttle, campaign_id
from loom.pipeline import RecipientResult
from loom.prepared import PreparedTemplate


def artifact_key(prefix: str, name: str) -> str:
    """Artifact keys allow only lowercase letters, digits and dashes."""
    clean = "".join(ch if ch.isalnum() else "-" for ch in f"{prefix}-{name}".lower())
    return "-".join(part for part in clean.split("-") if part)[:100]


def browser_url(uri: str) -> str:
    """A link a browser opens (``loom.links``): a signed URL for gs://, this project's signed
    media link for a local file."""
    return links.browser_url(uri)


def asset_key(uri: str) -> str:
    """A storage URI as an asset key: a lowercase scheme and no spaces or reserved characters."""
    if uri.startswith(("gs://", "gcs://")):
        return "gs://" + quote(uri.split("://", 1)[1])
    return "file://" + quote(str(Path(uri.removeprefix("file://")).resolve()))


def lineage_rows(prepared: PreparedTemplate, result: RecipientResult) -> list[dict[str, str]]:
    template = prepared.template
    return [
        {
            "step": "recorded",
            "from": "",
            "to": template.base_video_path,
            "detail": f"{prepared.source.codec} {prepared.source.width}x{prepared.source.height} {prepared.source.duration:.3f}s",
        },
        {
            "step": "prepared",
            "from": template.base_video_path,
            "to": storage.join(prepared.root, "prepared.json"),
            "detail": f"template {template.id} version {prepared.version}"
            + (f"; mezzanine ({prepared.mezzanine_reason})" if prepared.mezzanine else "; source packets kept"),
        },
        {
            "step": "personalized",
            "from": storage.join(prepared.root, "prepared.json"),
            "to": result.output_uri,
            "detail": f"recipient {result.recipient_key}; loom {result.software_version}",
        },
    ]


def summary_markdown(prepared: PreparedTemplate, result: RecipientResult) -> str:
    lines = [f"# Video for recipient `{result.recipient_key}`", ""]
    video = result.links.get("video") or browser_url(result.output_uri)
    if result.poster_uri:  # the UI's markdown shows no image inside a link: the poster, then the link
        lines += [f"![poster]({result.links.get('poster') or browser_url(result.poster_uri)})", ""]
    lines += [f"**Video:** [▶ play {Path(result.output_uri).name}]({video})", ""]
    if result.links.get("share"):
        lines += [f"**Share page:** [{result.links['share']}]({result.links['share']})", ""]
    if result.links.get("gif") and result.links.get("email"):
        lines += [f"**Email:** [animated GIF]({result.links['gif']}) · [email snippet]({result.links['email']})", ""]
    if result.preview_uri:
        lines += ["**Before and after:**", "", f"![preview]({result.links.get('preview') or browser_url(result.preview_uri)})", ""]
    lines += [
        "| input | value |",
        "| --- | --- |",
        "| input | value |",
        "| --- | --- |",
        f"| template | `{prepared.template.id}` |",
        f"| template version | `{prepared.version}` |",
        f"| row key | `{result.recipient_key}` |",
        f"| lip-sync checkpoint | `{result.lipsync_checkpoint or 'none (lip-sync skipped)'}` |",
        f"| software version | `{result.software_version}` |",
        f"| seconds | {result.seconds:.2f} |",
    ]
    for insert in result.voice:
        lines.append(f"| voice `{insert.segment_id}` cache key | `{insert.speech_cache_key or 'n/a'}` ({insert.provider}) |")
    for name, value in result.values.items():
        lines.append(f"| value `{name}` | {value.replace('|', '/')} |")
    if result.cost is not None:
        lines.append(f"| cost | {result.cost.cpu_s:.2f} CPU-s, {result.cost.wall_s:.2f} s wall, "
                     f"{sum(result.cost.tts_characters.values())} characters spoken, about ${result.cost.price_total:.4f} |")
    if result.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {w}" for w in result.warnings]
    return "\n".join(lines)


def _prepared_asset(prepared: PreparedTemplate) -> Asset:
    """Materialize base video -> prepared template; return the prepared template's asset."""
    base = Asset(key=asset_key(prepared.template.base_video_path))
    prepared_asset = Asset(key=asset_key(storage.join(prepared.root, "prepared.json")))

    @materialize(prepared_asset, asset_deps=[base], name="prepared-template-asset")
    def prepared_template_asset() -> None:
        add_asset_metadata(prepared_asset, {"template": prepared.template.id, "version": prepared.version})

    prepared_template_asset()
    return prepared_asset


def record_lineage_assets(prepared: PreparedTemplate, result: RecipientResult) -> None:
    """Emit asset materializations: base video -> prepared template -> recipient video."""
    prepared_asset = _prepared_asset(prepared)
    video = Asset(key=asset_key(result.output_uri))

    @materialize(video, asset_deps=[prepared_asset], name="recipient-video-asset")
    def recipient_video_asset() -> None:
        add_asset_metadata(video, {"recipient_key": result.recipient_key, "template_version": prepared.version})

    recipient_video_asset()


def record_campaign_lineage(prepared: PreparedTemplate, videos: dict[str, str]) -> None:
    """The same lineage for a campaign's videos (recipient key -> output URI) in two materializations,
    not two per row: base video -> prepared template, then prepared template -> every video."""
    if not videos:
        return
    prepared_asset = _prepared_asset(prepared)
    assets = {key: Asset(key=asset_key(uri)) for key, uri in videos.items()}

    @materialize(*assets.values(), asset_deps=[prepared_asset], name="campaign-videos-asset")
    def campaign_videos_asset() -> None:
        for key, asset in assets.items():
            add_asset_metadata(asset, {"recipient_key": key, "template_version": prepared.version})

    campaign_videos_asset()


def record_artifacts(prepared: PreparedTemplate, result: RecipientResult) -> dict[str, str]:
    """Link, summary and lineage artifacts for one recipient; returns their keys."""
    keys = {
        "link": artifact_key("video", result.recipient_key),
        "summary": artifact_key("recipient", result.recipient_key),
        "lineage": artifact_key("lineage", result.recipient_key),
    }
    create_link_artifact(
        link=result.links.get("video") or browser_url(result.output_uri),
        link_text=result.output_uri,
        key=keys["link"],
        description=f"Personalized video from template {prepared.template.id}",
    )
    create_markdown_artifact(markdown=summary_markdown(prepared, result), key=keys["summary"], description="Inputs used")
    create_table_artifact(table=lineage_rows(prepared, result), key=keys["lineage"], description="Lineage")
    return keys


# The progress artifact is updated at most this often while rows finish (a server call each).
PROGRESS_EVERY_S = 2.0


class CampaignReporter:
    """The manifest and a progress artifact of a campaign run: the manifest current after every
    row (``loom.campaign.ManifestWriter``: a kill loses nothing, and a large sheet costs O(n)), the
    progress artifact updated at most every 2 s (a server call each)."""

    def __init__(self, plan: CampaignPlan, description: str, key: str | None) -> None:
        self.plan = plan
        self.manifest = ManifestWriter(plan)
        self.progress = create_progress_artifact(plan.progress(), key=key and f"{key}-progress", description=description)
        self.throttle = Throttle(PROGRESS_EVERY_S)

    def row_settled(self, entry: CampaignEntry) -> None:
        self.manifest.row_settled(entry)
        if self.throttle.due():
            update_progress_artifact(self.progress, self.plan.progress())

    def close(self) -> None:
        self.manifest.close()
        update_progress_artifact(self.progress, 100.0)


# A campaign's table artifact lists every row up to this many; a larger sheet's table shows the
# rows that were not made (up to this many) and links the full manifest: a table of 10,000 rows is
# neither readable in the UI nor cheap to store.
TABLE_ROWS_MAX = 200

NOT_MADE = ("failed", "invalid", "duplicate", "pending")


def campaign_table(plan: CampaignPlan, template_id: str, key: str | None) -> None:
    """A link to the campaign's page; the manifest as a table artifact, its counts in the
    description; above ``TABLE_ROWS_MAX`` rows, the counts, the rows not made and a link to the full
    manifest (also a link artifact)."""
    description = f"Campaign {template_id}: {plan.summary()}"
    create_link_artifact(
        link=links.campaign_page_url(campaign_id(plan.output_dir)),
        link_text=f"Campaign page: {plan.summary()}",
        key=key and f"{key}-page",
        description=f"Campaign {template_id}: every recipient with poster, status, QA flags and share link",
    )
    if len(plan.entries) <= TABLE_ROWS_MAX:
        create_table_artifact([e.manifest_row() for e in plan.entries], key=key and f"{key}-manifest", description=description)
        return
    manifest_url = browser_url(plan.manifest_uri)
    not_made = [e for e in plan.entries if e.status in NOT_MADE]
    shown = not_made[:TABLE_ROWS_MAX]
    more = f" (the first {len(shown)} of {len(not_made)})" if len(not_made) > len(shown) else ""
    rows = [e.manifest_row() for e in shown] or [{"row": "", "status": "every row made", "error": ""}]
    create_table_artifact(
        rows,
        key=key and f"{key}-manifest",
        description=f"{description}. {len(plan.entries)} rows: the rows not made{more} are listed here; "
        f"every row is in the [full manifest]({manifest_url}).",
    )
    create_link_artifact(
        link=manifest_url, link_text=plan.manifest_uri, key=key and f"{key}-manifest-file", description=description
    )
