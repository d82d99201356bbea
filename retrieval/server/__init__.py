"""``retrieval serve``: an HTTP API (JSON, OpenAPI schema at ``/openapi.json``) and a web page over one index.

- ``state.py``: what the server holds (the searcher, a lazily loaded detector, the limits) and the thread
  that moves it to each newly committed state of the index.
- ``pictures.py``: gallery files as JPEG pictures and thumbnails, never a file outside the gallery.
- ``app.py``: the application; ``routes/``: its routes (``gallery``, ``search``, ``service``), ``deps.py``: what
  they share, ``schemas.py``: the JSON answers, ``errors.py``: one-line error answers.
- ``auth.py``: the token every request but the page's files must carry, and no open non-loopback address.
- ``run.py``: the port checked and bound, then uvicorn. ``static/``: the page (plain HTML, CSS, JavaScript).
"""

from .app import create_app
from .state import ServerLimits, ServerState

__all__ = ["ServerLimits", "ServerState", "create_app"]
