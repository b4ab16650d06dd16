"""Catalogs of input videos, the per-speaker dataset layout, and training sequences."""
