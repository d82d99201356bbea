"""retrieval: find where else an object appears in a gallery of photos.

Python API (the CLI only wraps these)::

    from retrieval import IndexSettings, build_index, Searcher, evaluate, index_info

    build_index("gallery/", "my-index", IndexSettings(embedder="roi"))   # create, or update

    searcher = Searcher("my-index")
    for result in searcher.query("photo.jpg", box=(10, 20, 200, 240), top_k=10):
        print(result.rank, result.score, result.image, result.box)
    print(evaluate("my-index", "gt.json")["mAP"])
"""

from .errors import RetrievalError
from .search.evaluate import evaluate
from .sources.images import LoadedImage, load_image
from .pipeline.build import IndexSummary, build_index
from .index.info import index_info
from .index.remove import remove_images
from .search.searcher import Searcher, SearchResult
from .settings import IndexSettings

__all__ = [
    "IndexSettings",
    "IndexSummary",
    "LoadedImage",
    "RetrievalError",
    "SearchResult",
    "Searcher",
    "build_index",
    "evaluate",
    "index_info",
    "load_image",
    "remove_images",
]
