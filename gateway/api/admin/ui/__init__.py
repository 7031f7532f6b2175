"""The admin console: a static single-page app served at `/admin/ui`.

The page itself is public; everything it shows comes from the admin API, which the browser calls
with the admin key the user types in (kept in sessionStorage, so it is gone with the tab).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from starlette.responses import FileResponse, RedirectResponse

from gateway.api.admin.routes import require_admin
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


def refuse_other_credentials(request: Request) -> None:
    """The console's files carry no data and load without credentials (a browser navigating cannot
    send the admin key), but a request that presents a key must present the admin key: a tenant
    key is refused here as on every other /admin route."""
    if "authorization" in request.headers or "x-api-key" in request.headers:
        require_admin(request)


router = APIRouter(
    prefix="/admin/ui",
    tags=["admin: console"],
    include_in_schema=False,
    dependencies=[Depends(refuse_other_credentials)],
)


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
