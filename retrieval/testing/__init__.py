"""Data generators and helpers shared by the tests, the benchmarks and the demo scripts (not used by indexing
or search): ``demo_data`` (the demo gallery and queries), ``shapes`` (a small YOLO detection dataset),
``vectors`` (clustered unit vectors), ``live_server`` (``retrieval serve`` in a child process)."""
