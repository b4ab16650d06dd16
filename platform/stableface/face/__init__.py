"""Faces: landmark backends, the iBUG-68 view, tracking and crops, the linear 3D face model, rasters."""
