"""The StableFace Ray Serve application: ``serve.app:app`` (see app.py for the deployment graph)."""
