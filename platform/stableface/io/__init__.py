"""Storage (local paths and s3:// URIs) and media I/O (video and audio)."""
