"""Integration tests share the Ray fixtures of tests/conftest.py (ray_local, two_node_cluster)."""
