"""retrieval: find where else an object appears in a gallery of photos.

Python API (the CLI only wraps these)::

    from retrieval import IndexSettings, build_index, Searcher, evaluate, index_info

    build_index("gallery/", "my-index", IndexSettings(embedder="roi"))   # create, or update

    searcher = Searcher("my-index")
    for result in searcher.query("photo.jpg", box=(10, 20, 200, 240), top_k=10):
        print(result.rank, result.score, result.image, result.box)
    print(evaluate("my-index", "gt.json")["mAP"])

The names are imported on first use (PEP 562), so ``import retrieval`` stays cheap: the CLI's ``--help``
and ``info`` never import torch or FAISS.
"""

from __future__ import annotations

from . import torchvision_import
from .errors import RetrievalError
from .lazy import lazy_attributes

torchvision_import.install()  # torchvision without TorchDynamo: about 2 s less start-up per command

_WHERE = {
    "IndexSettings": "retrieval.settings",
    "IndexSummary": "retrieval.pipeline.writer",
    "LoadedImage": "retrieval.images",
    "Query": "retrieval.search.queries",
    "Rerank": "retrieval.search.rerank",
    "SearchResult": "retrieval.search.searcher",
    "Searcher": "retrieval.search.searcher",
    "build_index": "retrieval.pipeline.build",
    "evaluate": "retrieval.search.evaluate",
    "index_info": "retrieval.index.info",
    "load_image": "retrieval.images",
    "remove_images": "retrieval.index.remove",
}


__getattr__ = lazy_attributes(__name__, _WHERE)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = ["RetrievalError", *sorted(_WHERE)]
