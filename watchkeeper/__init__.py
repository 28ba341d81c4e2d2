"""Watchkeeper command line and the embedded (single-process) deployment."""

__all__: list[str] = []
