"""The networks behind the crop embedders: each module builds a ``crop_embedder.Trunk`` (heavy imports here,
so that the entry modules of ``models/embedders`` stay light)."""
