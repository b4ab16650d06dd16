"""Provenance of dubbed videos: an invisible watermark, C2PA content credentials, and reading both."""
