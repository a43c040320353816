"""The pretrained models bundled with tinymnet (installed as ``tinymnet.weights``).

Data only: ``*.tmn`` model files, ``manifest.json`` (names, sha256, sources, fixture top-1
counts) and ``NOTICE`` (sources and licences). ``build.py`` beside them regenerates them from
the shared fixtures; it is a development tool and is not installed.
"""
