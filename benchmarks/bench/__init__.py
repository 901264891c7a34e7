"""The benchmarks' code. The entry points are ``benchmarks/simulate.py``, ``features.py``,
``train.py`` and ``serve.py``; what they share (the simulated-log cache, CPU and memory
sampling, the in-turns protocol, tables) is in :mod:`bench.common`."""
