"""The repository's conformance data; the tools are :mod:`engine.conformance`."""
