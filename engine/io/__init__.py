"""The I/O layer: the transport (the only importer of httpx) and the drivers that run plans."""
