"""``retrieval serve``: an HTTP API (JSON, OpenAPI schema at ``/openapi.json``) and a web page over one index.

- ``state.py``: what the server holds (the searcher, a lazily loaded detector, the limits) and the thread
  that moves it to each newly committed state of the index.
- ``pictures.py``: gallery files as JPEG pictures and thumbnails, never a file outside the gallery.
- ``app.py``: the routes. ``static/``: the page (plain HTML, CSS and JavaScript, no build step).
"""

from .app import create_app
from .state import ServerLimits, ServerState

__all__ = ["ServerLimits", "ServerState", "create_app"]
