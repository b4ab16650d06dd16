"""Thin Ray adapters: each module's ``run(cfg)`` wires library functions into Ray Data/Train/Serve."""
