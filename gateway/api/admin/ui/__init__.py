"""The admin console: a static single-page app served at `/admin/ui`.

The page itself is public; everything it shows comes from the admin API, which the browser calls
with the admin key the user types in (kept in sessionStorage, so it is gone with the tab).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, RedirectResponse

from gateway.errors import GatewayError

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_FILES = {p.name: p for p in STATIC.iterdir() if p.suffix in _TYPES}
_HEADERS = {
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
    "referrer-policy": "no-referrer",
}

router = APIRouter(prefix="/admin/ui", tags=["admin: console"], include_in_schema=False)


@router.get("")
async def console_root() -> RedirectResponse:
    return RedirectResponse("/admin/ui/")


@router.get("/")
async def console_index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/static/{name}")
async def console_static(name: str) -> FileResponse:
    path = _FILES.get(name)
    if path is None:
        raise GatewayError(404, f"No console file {name!r}.", type="not_found", code="not_found")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)
