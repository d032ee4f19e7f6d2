"""Constrained decoding: grammar compilation and token masks (xgrammar)."""
