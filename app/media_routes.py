"""``/media/<token>/<name>``: local files behind signed, expiring links (``loom.links``).

No API key: the token is the permission, and it names one file until it expires. Byte ranges are
answered with 206 (Starlette's ``FileResponse``), so a browser's player can seek and Safari plays.
"""

from __future__ import annotations

import mimetypes
import os

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from loom import links

router = APIRouter(include_in_schema=False)


@router.api_route("/media/{token}/{name}", methods=["GET", "HEAD"])
def media(token: str, name: str) -> FileResponse:
    try:
        path = links.open_media_token(token)
    except links.BadLink as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"link: {exc} (ask for a new link)") from None
    if not os.path.isfile(path):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="link: the file is no longer there")
    media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})
