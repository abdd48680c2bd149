"""Our own CSS and JS, and the three files of xterm.js the set-up script installs.

xterm.js is never committed: `scripts/setup/seat.sh` runs `npm ci` in this folder from
package.json and its lockfile, and the server serves exactly these files from
node_modules. Without them the seat page says how to install them.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator.messages import N_
from orchestrator.web.i18n import page_language
from orchestrator.web.rendering import STATIC, text, with_headers

NODE_MODULES = Path(__file__).resolve().parent / "node_modules"
VENDOR = {
    "xterm.js": NODE_MODULES / "@xterm/xterm/lib/xterm.js",
    "xterm.css": NODE_MODULES / "@xterm/xterm/css/xterm.css",
    "addon-fit.js": NODE_MODULES / "@xterm/addon-fit/lib/addon-fit.js",
}
MISSING = N_("xterm.js is not installed: run scripts/setup/seat.sh (npm ci in orchestrator/web)")
NOT_FOUND = N_("not found")


def vendor_ready() -> bool:
    return all(p.is_file() for p in VENDOR.values())


def vendor(request: Request) -> Response:
    path = VENDOR.get(request.path_params["name"])
    if path is None:
        return text(404, NOT_FOUND, page_language(request))
    if not path.is_file():
        return text(404, MISSING, page_language(request))
    kind = "text/css" if path.suffix == ".css" else "text/javascript"
    return with_headers(FileResponse(path, media_type=kind))


def no_icon(request: Request) -> Response:
    """Browsers ask for an icon on every site: none, and no error in their console."""
    return Response(status_code=204)


def routes() -> list[Route | Mount]:
    return [
        Route("/favicon.ico", no_icon, methods=["GET", "HEAD"]),
        Route("/static/vendor/{name}", vendor, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
