"""``GET /docs``: interactive documentation of the API (Swagger UI) over
``/openapi.json``, its assets served from the swagger-ui-py package, so that
it works offline and without a CDN."""

from __future__ import annotations

import importlib.resources

from pyramid.httpexceptions import HTTPNotFound
from pyramid.request import Request
from pyramid.response import FileResponse, Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from api.resources import Root

ASSETS = importlib.resources.files("swagger_ui") / "static"
# What the page loads; nothing else of the package's folder is served.
SERVED = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
# Relative links: the page works under any path prefix (root_path).
PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>API documentation</title>
<link rel="icon" href="docs/favicon-32x32.png">
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/start.js"></script>
</body>
</html>
"""
START = b"""window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
});
"""


@view_config(context=Root, name="docs", request_method="GET", permission=NO_PERMISSION_REQUIRED)
def documentation(context: Root, request: Request) -> Response:
    """The page at ``/docs``, and its assets at ``/docs/{file}``."""
    if not request.subpath:
        return Response(body=PAGE, content_type="text/html", charset="utf-8")
    (name,) = request.subpath if len(request.subpath) == 1 else ("",)
    if name == "start.js":
        return Response(body=START, content_type="text/javascript", charset="utf-8")
    if name not in SERVED:
        raise HTTPNotFound()
    with importlib.resources.as_file(ASSETS / name) as path:
        response = FileResponse(str(path), request=request, content_type=SERVED[name])
    response.cache_control = "public, max-age=86400"
    return response
