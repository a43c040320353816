"""tinymnet: a small hand-written CPU inference engine for the MobileNet family."""

__version__ = "0.1.0"
