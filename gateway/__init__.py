"""Mijnwebwinkel → Exact Online integration gateway."""

__version__ = "0.1.0"
