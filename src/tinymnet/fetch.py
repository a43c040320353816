"""`tinymnet fetch NAME`: download published pretrained weights once, check them, convert them.

The bundled models (``tinymnet models``) work offline; these need network access the first
time. Each entry of :data:`MANIFEST` names a file published by torchvision (its
``IMAGENET1K_V1`` weights). As torch.hub does, the download is checked against the hash
prefix in the file name (``mobilenet_v2-b0353104.pth``: the file's sha256 starts with
``b0353104``), then converted with :func:`tinymnet.convert.convert_file` (ImageNet labels
embedded) to ``<cache>/models/NAME.tmn``, which ``--model NAME`` / ``tinymnet.load(NAME)``
then find.

Cache: ``$TINYMNET_CACHE``, else ``$XDG_CACHE_HOME/tinymnet``, else ``~/.cache/tinymnet``.
Mirror: ``$TINYMNET_FETCH_BASE_URL`` (or ``base_url=``) replaces the directory part of every
URL (``<base>/<file name>``).
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Optional

from .errors import TinymnetError
from .formats._common import sha256_file

__all__ = ["MANIFEST", "FetchError", "cache_dir", "cached_model_path", "fetch"]

_TV = "https://download.pytorch.org/models/"

#: name -> where the weights come from. The torchvision accuracies are those its model docs
#: publish for these weights (ImageNet-1k val, 224, resize 256 + centre crop).
MANIFEST = {
    "mobilenet_v2_100_224_tv": {
        "arch": "mobilenet_v2",
        "url": _TV + "mobilenet_v2-b0353104.pth",
        "description": "MobileNetV2 1.0, 224, torchvision IMAGENET1K_V1 (acc@1 71.878)",
    },
    "mobilenet_v3_large_100_224_tv": {
        "arch": "mobilenet_v3_large",
        "url": _TV + "mobilenet_v3_large-8738ca79.pth",
        "description": "MobileNetV3-Large 1.0, 224, torchvision IMAGENET1K_V1 (acc@1 74.042)",
    },
    "mobilenet_v3_small_100_224_tv": {
        "arch": "mobilenet_v3_small",
        "url": _TV + "mobilenet_v3_small-047dcff4.pth",
        "description": "MobileNetV3-Small 1.0, 224, torchvision IMAGENET1K_V1 (acc@1 67.668)",
    },
}

_HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's HASH_REGEX


class FetchError(TinymnetError):
    """A download failed (offline, HTTP error, checksum mismatch)."""


def cache_dir() -> Path:
    env = os.environ.get("TINYMNET_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tinymnet"


def cached_model_path(name: str, cache: Optional[os.PathLike] = None) -> Path:
    return Path(cache or cache_dir()) / "models" / f"{name}.tmn"


def _url_for(entry: Mapping, base_url: Optional[str]) -> str:
    base = base_url if base_url is not None else os.environ.get("TINYMNET_FETCH_BASE_URL")
    if not base:
        return entry["url"]
    return base.rstrip("/") + "/" + entry["url"].rsplit("/", 1)[-1]


def _expected_prefix(entry: Mapping) -> Optional[str]:
    if entry.get("sha256"):
        return entry["sha256"]
    m = _HASH_IN_NAME.search(entry["url"].rsplit("/", 1)[-1])
    return m.group(1) if m and m.group(1) else None


def _download(url: str, dest: Path, timeout: float, progress: Optional[Callable]) -> str:
    """Stream url -> dest (via dest.part); -> the sha256 hex digest."""
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    req = urllib.request.Request(url, headers={"User-Agent": "tinymnet"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(part, "wb") as f:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            bar = progress(total) if progress else None
            try:
                while True:
                    block = resp.read(1 << 16)
                    if not block:
                        break
                    f.write(block)
                    h.update(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
    except urllib.error.HTTPError as e:
        part.unlink(missing_ok=True)
        raise FetchError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise FetchError(f"cannot download {url}: {reason}. `tinymnet fetch` needs network "
                         "access (set TINYMNET_FETCH_BASE_URL to use a mirror); the bundled "
                         "models work offline: `tinymnet models`") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return h.hexdigest()


def fetch(name: str, *, force: bool = False, base_url: Optional[str] = None,
          cache: Optional[os.PathLike] = None, manifest: Optional[Mapping] = None,
          timeout: float = 60.0, progress: Optional[Callable] = None,
          log: Optional[Callable[[str], None]] = None) -> Path:
    """Download, check and convert the model ``name`` (see :data:`MANIFEST`); returns the
    path of its ``.tmn`` in the cache. Already fetched: returns it at once (``force`` to
    download again). ``progress(total_bytes)`` may return a bar with ``update(n)``/``close()``.
    """
    manifest = MANIFEST if manifest is None else manifest
    if name not in manifest:
        from .bundled import bundled_names

        bundled = bundled_names()
        hint = (f"; {name} is bundled with tinymnet, no download needed" if name in bundled
                else "")
        raise TinymnetError(f"unknown model to fetch {name!r}: known {', '.join(manifest)}"
                            + hint)
    entry = manifest[name]
    root = Path(cache or cache_dir())
    out = cached_model_path(name, root)
    say = log or (lambda msg: None)
    if out.is_file() and not force:
        say(f"{name}: already fetched: {out}")
        return out
    url = _url_for(entry, base_url)
    fname = entry["url"].rsplit("/", 1)[-1]
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    src = downloads / fname
    expected = _expected_prefix(entry)
    if src.is_file() and not force and expected and sha256_file(src).startswith(expected):
        say(f"{name}: using the downloaded {src}")
    else:
        say(f"{name}: downloading {url}")
        digest = _download(url, src, timeout, progress)
        if expected and not digest.startswith(expected):
            src.unlink(missing_ok=True)
            raise FetchError(f"{url}: checksum mismatch: sha256 {digest} does not start with "
                             f"{expected} (the file is corrupt or not the published one)")
        if not expected:  # pragma: no cover - every entry has a hash
            say(f"{name}: no published hash to check (sha256 {digest})")
    from .bundled import imagenet_labels
    from .convert import convert_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}.tmn")
    try:
        convert_file(str(src), str(tmp), arch=entry.get("arch"), labels=imagenet_labels())
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    say(f"{name}: converted to {out}")
    return out


