"""``/v/<token>``: the page a recipient opens: the video in an HTML5 player with its poster, the
recipient's name in the title and Open Graph tags (so chat apps and CRMs unfurl it), no sign-in.

Each page view is recorded (time, user agent: ``loom.shares``). A revoked share answers 410.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from loom import links, shares

router = APIRouter(include_in_schema=False)


def share_html(share: shares.Share, page_url: str) -> str:
    video = escape(links.browser_url(share.output_uri))
    poster = escape(links.browser_url(share.poster_uri)) if share.poster_uri else ""
    title = escape(f"A video for {share.recipient}")
    return f"""<!doctype html>
<html lang="en"><head>
<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta property="og:type" content="video.other">
<meta property="og:title" content="{title}">
<meta property="og:url" content="{escape(page_url)}">
<meta property="og:image" content="{poster}">
<meta property="og:video" content="{video}">
<meta property="og:video:type" content="video/mp4">
<meta name="twitter:card" content="player">
<meta name="robots" content="noindex">
<style>
body{{margin:0;background:#111;color:#eee;font:16px system-ui,sans-serif;display:flex;flex-direction:column;align-items:center}}
h1{{font-weight:500;font-size:1.3rem;margin:1.2rem}}
video{{width:min(960px,96vw);background:#000;border-radius:6px}}
</style></head>
<body>
<h1>{title}</h1>
<video id="video" controls playsinline preload="auto" poster="{poster}" src="{video}"></video>
</body></html>
"""


@router.get("/v/{token}", response_class=HTMLResponse)
def share_page(token: str, request: Request, user_agent: str | None = Header(default=None)) -> HTMLResponse:
    share = shares.load_share(token)
    if share is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such video")
    if share.revoked:
        raise HTTPException(status.HTTP_410_GONE, detail="this video is no longer shared")
    shares.record_view(token, user_agent or "")
    return HTMLResponse(share_html(share, links.share_page_url(token)), headers={"Cache-Control": "no-store"})
