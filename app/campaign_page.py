"""``/campaigns/<id>?exp=..&sig=..``: one campaign on one server-rendered page, a row per
recipient: poster, status, QA flags, cost, views, and links to the share page, the preview and the
video; the manifest to download. The link is signed like a media link (``loom.links``): whoever
was given it can open it, nobody can guess another.

A row's details come from the recipient's record beside its video (read in parallel: a
thousand rows on a gs:// home are a thousand reads); the page is plain HTML, images load lazily.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from html import escape

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import HTMLResponse

from loom import links, shares, storage
from loom.campaign import read_manifest_rows, registered_campaign
from loom.media.share_assets import output_stem

router = APIRouter(include_in_schema=False)

READERS = 16

# Words in a QA warning and the flag they raise on the page.
FLAGS = {"conceal": "concealed frames", "box": "flagged box", "track": "flagged box", "lip": "lip-sync skipped", "face": "no face"}


def qa_flags(record: dict) -> list[str]:
    texts = [str(w) for w in record.get("warnings") or []]
    for patch in record.get("patches") or []:
        texts += [str(w) for w in (patch.get("qa") or {}).get("warnings") or []]
    render = record.get("render") or {}
    if render.get("concealed_frames"):
        texts.append(f"{render['concealed_frames']} concealed frames")
    found = []
    for text in texts:
        flag = next((f for word, f in FLAGS.items() if word in text.lower()), "warning")
        if flag not in found:
            found.append(flag)
    return found


def _record(row: dict[str, str]) -> dict:
    uri = row.get("output_uri") or ""
    if row.get("status") not in ("done", "skipped") or not uri:
        return {}
    record_uri = f"{output_stem(uri)}.json"
    try:
        return json.loads(storage.read_text(record_uri)) if storage.exists(record_uri) else {}
    except (OSError, ValueError):
        return {}


def _view_count(record: dict) -> int:
    token = record.get("share_token")
    return len(shares.views(token)) if token else 0


def _row_html(row: dict[str, str], record: dict, views: int) -> str:
    state = escape(row.get("status", ""))
    poster = record.get("poster_uri")
    img = f'<img loading="lazy" width="160" src="{escape(links.browser_url(poster))}" alt="poster">' if poster else ""
    cells = [escape(row.get("row", "")), img, escape(row.get("recipient", "")), f'<span class="s {state}">{state}</span>']
    flags = qa_flags(record)
    error = row.get("error") or ""
    cells.append(escape(", ".join(flags)) + (f'<div class="err">{escape(error)}</div>' if error else ""))
    cost = record.get("cost") or {}
    cells.append(f"{cost.get('cpu_s', 0):.1f} CPU-s<br>${cost.get('price_total', 0):.6f}" if cost else "")
    cells.append(f'<span class="views">{views}</span>' if record else "")
    anchors = []
    if record.get("share_token"):
        anchors.append(f'<a class="share" href="{escape(links.share_page_url(record["share_token"]))}">share page</a>')
    if record.get("preview_uri"):
        anchors.append(f'<a href="{escape(links.browser_url(record["preview_uri"]))}">preview</a>')
    if record.get("output_uri"):
        anchors.append(f'<a href="{escape(links.browser_url(record["output_uri"]))}">video</a>')
    cells.append(" · ".join(anchors))
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def campaign_html(campaign: dict[str, str]) -> str:
    rows = read_manifest_rows(campaign["manifest_uri"])
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        records = list(pool.map(_record, rows))
        views = list(pool.map(_view_count, records))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.get("status", "")] = counts.get(row.get("status", ""), 0) + 1
    price = sum((r.get("cost") or {}).get("price_total", 0.0) for r in records)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    body = "\n".join(_row_html(row, record, n) for row, record, n in zip(rows, records, views))
    manifest = escape(links.browser_url(campaign["manifest_uri"]))
    title = escape(f"Campaign {campaign.get('template_id', '')}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="robots" content="noindex">
<style>
body{{font:14px system-ui,sans-serif;margin:1rem 2rem;color:#222}}
table{{border-collapse:collapse;width:100%}} td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:middle}}
th{{position:sticky;top:0;background:#f4f4f4}} img{{display:block;border-radius:3px;min-height:20px;background:#eee}}
.s{{padding:1px 6px;border-radius:8px;background:#eee}} .done,.skipped{{background:#d7f5dd}} .failed,.invalid{{background:#fbd9d9}}
.err{{color:#a00;font-size:12px}}
</style></head><body>
<h1>{title}</h1>
<p>{len(rows)} rows: {escape(summary)} · estimated cost ${price:.4f} · <a id="manifest" href="{manifest}" download>manifest.csv</a></p>
<table id="rows"><thead><tr><th>row</th><th>poster</th><th>recipient</th><th>status</th><th>QA</th><th>cost</th><th>views</th><th>links</th></tr></thead>
<tbody>
{body}
</tbody></table>
</body></html>
"""


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(campaign_id: str, exp: int = 0, sig: str = "") -> HTMLResponse:
    try:
        links.check_page("campaign", campaign_id, exp, sig)
    except links.BadLink as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"link: {exc} (ask for a new link)") from None
    campaign = registered_campaign(campaign_id)
    if campaign is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such campaign")
    return HTMLResponse(campaign_html(campaign), headers={"Cache-Control": "no-store"})
