"""tinymnet: a small hand-written CPU inference engine for the MobileNet family.

``import tinymnet`` loads nothing heavy: submodules come in on first use.
"""

__version__ = "0.1.0"

__all__ = ["load", "Model", "Classifier", "__version__"]


def __getattr__(name):
    if name in ("load", "Model"):
        from . import model

        return getattr(model, name)
    if name == "Classifier":
        from .classify import Classifier

        return Classifier
    raise AttributeError(f"module 'tinymnet' has no attribute {name!r}")
