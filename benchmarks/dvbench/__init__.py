"""The dataver vs DVC benchmark harness, one job per module (see benchmarks/README.md).

Run it as ``python benchmarks/run.py``; ``cli.main`` is the entry point.
"""
