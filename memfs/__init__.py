"""memfs: every caller's agent memory as an ordinary directory, on one FUSE mount."""

__version__ = "0.1.0"
