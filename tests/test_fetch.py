"""`tinymnet fetch`: download + hash check + conversion, against a local HTTP server on
127.0.0.1 serving a torchvision-layout state dict made here. The real network is never used:
every test points the download at the local server (``base_url=`` or
``$TINYMNET_FETCH_BASE_URL``) or at a closed local port (offline)."""
from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

import tinymnet
from tinymnet import cli, fetch as fetch_mod
from tinymnet.errors import TinymnetError
from tinymnet.fetch import FetchError, cache_dir, cached_model_path, fetch
from tinymnet.models import build

try:
    from test_formats_pth import make_zip_pth
except ImportError:  # tests/ made a package
    from .test_formats_pth import make_zip_pth

NAME = "mobilenet_v3_small_100_224_tv"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TINYMNET_CACHE", str(cache))
    monkeypatch.delenv("TINYMNET_FETCH_BASE_URL", raising=False)
    return cache


@pytest.fixture(scope="module")
def state_dict_file(tmp_path_factory):
    """A torchvision mobilenet_v3_small state dict (random weights) in torch's zip format,
    named as torch.hub names files: <name>-<first 8 hex digits of its sha256>.pth."""
    g = build("mobilenet_v3_small", seed=3)
    d = tmp_path_factory.mktemp("pth")
    raw = make_zip_pth(d / "raw.pth", {k: np.asarray(v, np.float32) for k, v in g.params.items()})
    digest = hashlib.sha256(Path(raw).read_bytes()).hexdigest()
    path = d / f"mobilenet_v3_small-{digest[:8]}.pth"
    os.replace(raw, path)
    return path, digest


@pytest.fixture(scope="module")
def server(tmp_path_factory, state_dict_file):
    """http://127.0.0.1:PORT serving a folder with the state dict, plus the same bytes under
    torchvision's real file name (whose published hash they do not have)."""
    root = tmp_path_factory.mktemp("www")
    src, _ = state_dict_file
    (root / "models").mkdir()
    shutil.copy(src, root / "models" / src.name)
    shutil.copy(src, root / "models" / "mobilenet_v3_small-047dcff4.pth")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Quiet, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/models"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/models"


def _manifest_for(state_dict_file):
    path, _ = state_dict_file
    return {NAME: {"arch": "mobilenet_v3_small",
                   "url": f"https://download.example.invalid/models/{path.name}",
                   "description": "test"}}


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYMNET_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TINYMNET_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "tinymnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "tinymnet"


def test_manifest_uses_torchvision_published_files():
    urls = {n: e["url"] for n, e in fetch_mod.MANIFEST.items()}
    assert urls == {
        "mobilenet_v2_100_224_tv": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        "mobilenet_v3_large_100_224_tv":
            "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth",
        "mobilenet_v3_small_100_224_tv":
            "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
    }
    assert fetch_mod._expected_prefix(fetch_mod.MANIFEST["mobilenet_v2_100_224_tv"]) == "b0353104"


def test_fetch_downloads_checks_and_converts(server, state_dict_file, isolated_cache,
                                             closed_port_url):
    src, digest = state_dict_file
    logs = []
    out = fetch(NAME, base_url=server, manifest=_manifest_for(state_dict_file), log=logs.append)
    assert out == cached_model_path(NAME) == isolated_cache / "models" / f"{NAME}.tmn"
    assert (isolated_cache / "downloads" / src.name).read_bytes() == src.read_bytes()
    assert any(f"{server}/{src.name}" in m for m in logs)

    from tinymnet.formats.tmn import load_tmn

    tm = load_tmn(out)
    assert len(tm.labels) == 1000 and tm.labels[285] == "Egyptian cat"
    assert tm.provenance["sha256"] == digest and tm.provenance["arch"] == "mobilenet_v3_small"
    assert tm.preprocess["recipe"] == "torchvision"
    # tinymnet.load / Classifier find it by name now
    clf = tinymnet.Classifier(NAME)
    assert clf.name == NAME and clf.num_classes == 1000 and clf.label_offset == 0
    r = clf.classify(np.full((64, 80, 3), 120, np.uint8), top_k=3)[0]
    assert len(r["predictions"]) == 3
    # fetched once: no network needed any more
    assert fetch(NAME, base_url=closed_port_url, manifest=_manifest_for(state_dict_file)) == out


def test_hash_mismatch_is_an_error(server, isolated_cache, monkeypatch):
    """The real manifest entry, served from the local mirror with bytes whose sha256 does not
    start with torchvision's published prefix 047dcff4."""
    monkeypatch.setenv("TINYMNET_FETCH_BASE_URL", server)
    with pytest.raises(FetchError, match="checksum mismatch: sha256 [0-9a-f]{64} does not "
                                         "start with 047dcff4"):
        fetch(NAME)
    assert not cached_model_path(NAME).exists()
    assert not any((isolated_cache / "downloads").iterdir())  # nothing bad left behind


def test_http_error(server):
    manifest = {NAME: {"arch": "mobilenet_v3_small", "url": "https://x.invalid/nope-12345678.pth"}}
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(NAME, base_url=server, manifest=manifest)


def test_offline_is_a_clear_message(closed_port_url, capsys, monkeypatch):
    with pytest.raises(FetchError, match="needs network access") as e:
        fetch("mobilenet_v2_100_224_tv", base_url=closed_port_url)
    assert "mobilenet_v2-b0353104.pth" in str(e.value)
    monkeypatch.setenv("TINYMNET_FETCH_BASE_URL", closed_port_url)
    assert cli.main(["fetch", "mobilenet_v2_100_224_tv"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("tinymnet: error:")]
    assert len(errors) == 1 and "needs network access" in errors[0]
    assert "bundled models work offline" in errors[0]


def test_cli_fetch_then_classify(server, state_dict_file, monkeypatch, capsys, tmp_path):
    path, _ = state_dict_file
    monkeypatch.setitem(fetch_mod.MANIFEST, NAME, _manifest_for(state_dict_file)[NAME])
    monkeypatch.setenv("TINYMNET_FETCH_BASE_URL", server)
    # not fetched yet: the model name says how to get it
    with pytest.raises(TinymnetError, match=f"tinymnet fetch {NAME}"):
        tinymnet.load(NAME)
    assert cli.main(["fetch", NAME]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(cached_model_path(NAME))
    assert "downloading" in err and "converted" in err
    from PIL import Image

    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(img)
    assert cli.main(["classify", str(img), "--model", NAME, "--format", "json"]) == 0
    assert cli.main(["fetch", NAME]) == 0  # again: already there
    assert "already fetched" in capsys.readouterr().err


def test_unknown_names(capsys):
    assert cli.main(["fetch", "resnet50"]) == 2
    assert "unknown model to fetch 'resnet50'" in capsys.readouterr().err
    assert cli.main(["fetch", "mobilenet_v2_100_224_tf"]) == 2
    assert "bundled with tinymnet, no download needed" in capsys.readouterr().err
