"""Names the tools' options offer, importable without torch (for the CLI's option declarations)."""

EXPORT_FORMATS = ("per-image", "features")
