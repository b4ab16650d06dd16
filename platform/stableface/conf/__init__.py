"""Hydra config files: one top-level YAML per job plus preset groups (model sizes, ablations)."""
