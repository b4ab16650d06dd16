"""StableFace: motion-stable talking-face re-lip-syncing (Ling et al.) as a platform on Ray."""

__version__ = "0.1.0"
