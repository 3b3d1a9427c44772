"""Benchmarks: the engine against raw httpx doing the same exchange, on a local mock provider.

``python -m benchmarks`` (or ``make bench``) runs them all; see ``benchmarks/run.py``.
Scripts, not tests, and not part of the installed package.
"""
