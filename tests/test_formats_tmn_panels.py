"""GEMM weights stored packed in a .tmn file (``save_tmn(..., gemm_panels=NR)``): both readers
give back the same weights, the C++ plan uses them in place when NR is its ISA's panel width
and repacks them otherwise, with bit-identical outputs either way; bad entries are refused
with the tensor's name."""
import gc
import json
import re
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinymnet
from tinymnet import _C, kernels
from tinymnet.errors import FormatError
from tinymnet.formats.tmn import (GEMM_PANEL_WIDTHS, load_tmn, pack_gemm_panels,
                                  packed_gemm_floats, save_tmn, unpack_gemm_panels)
from tinymnet.models import build
from tinymnet.runtime import CompiledModel, compile_graph

_FIXED = struct.Struct("<8sIIQQQI20x")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 70), k=st.integers(1, 40), nr=st.sampled_from(GEMM_PANEL_WIDTHS),
       with_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_panel_layout_round_trips(n, k, nr, with_bias, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    packed = pack_gemm_panels(w, bias, nr)
    assert packed.size == packed_gemm_floats(n, k, nr)
    np.testing.assert_array_equal(unpack_gemm_panels(packed, n, k, nr), w)
    # panel 0: the bias row, then row kk holds W[0:width, kk]; columns past n are zero
    width = nr // 2 if n <= nr // 2 else nr
    first = packed[:(k + 1) * width].reshape(k + 1, width)
    cols = min(width, n)
    np.testing.assert_array_equal(first[0, :cols], bias[:cols] if with_bias else 0)
    np.testing.assert_array_equal(first[1:, :cols], w[:cols].T)
    assert not first[:, cols:].any()


@pytest.fixture(scope="module", params=["mobilenet_v3_small", "ghostnet"])
def graph(request):
    # V3-Small: 1x1 convs, squeeze-excite FCs, a classifier; GhostNet: 1x1 convs whose outputs
    # are concatenated (the plan may keep only their first channels: never in place)
    kw = {"width": 0.5} if request.param == "mobilenet_v3_small" else {}
    return build(request.param, resolution=64, num_classes=10, **kw)


@pytest.fixture(scope="module")
def files(graph, tmp_path_factory):
    d = tmp_path_factory.mktemp("panels")
    paths = {None: d / "plain.tmn"}
    save_tmn(paths[None], graph, optimize=True)
    for nr in GEMM_PANEL_WIDTHS:
        paths[nr] = d / f"p{nr}.tmn"
        save_tmn(paths[nr], graph, optimize=True, gemm_panels=nr)
    return paths


def _header(path):
    buf = open(path, "rb").read()
    hsize = _FIXED.unpack_from(buf, 0)[3]
    return json.loads(buf[64:64 + hsize])


def test_both_readers_read_the_same_weights(files):
    plain = load_tmn(files[None]).graph.params
    for nr in GEMM_PANEL_WIDTHS:
        tensors = _header(files[nr])["tensors"]
        packed = [k for k, m in tensors.items() if m.get("gemm_panels") == nr]
        assert len(packed) >= 10  # every 1x1 conv, SE FC and classifier of these nets
        params = load_tmn(files[nr]).graph.params
        assert set(params) == set(plain)
        for k in plain:
            np.testing.assert_array_equal(params[k], plain[k], err_msg=k)


@pytest.mark.parametrize("isa", kernels.available_isas())
def test_outputs_are_bit_identical_in_place_or_repacked(files, isa):
    x = np.random.default_rng(3).standard_normal((2, 64, 64, 3)).astype(np.float32)
    with kernels.use_isa(isa):
        native = _C.gemm_panel_width()
        plain = tinymnet.load(files[None], threads=1)
        want = plain(x)
        for nr in GEMM_PANEL_WIDTHS:
            model = tinymnet.load(files[nr], threads=1)
            assert model._compiled.graph is None  # the C++ fast path
            np.testing.assert_array_equal(model(x), want, err_msg=f"panels {nr} on {isa}")
            if nr == native:  # used in place: the plan packs (almost) nothing itself
                assert model.weight_bytes < 0.2 * plain.weight_bytes
                assert 0.8 * plain.weight_bytes < model.mapped_weight_bytes < plain.weight_bytes
            else:
                assert model.weight_bytes == plain.weight_bytes
                assert model.mapped_weight_bytes == 0


def test_weights_outlive_the_file_object(files):
    x = np.random.default_rng(4).standard_normal((1, 64, 64, 3)).astype(np.float32)
    path = str(files[_C.gemm_panel_width()])
    want = tinymnet.load(files[None], threads=1)(x)
    f = _C.TmnFile(path)
    compiled = CompiledModel.from_tmn(f, 1)
    del f
    gc.collect()
    np.testing.assert_array_equal(compiled(x), want)  # the ops keep the mapping alive


def _rewrite(path, out, edit_header=None, edit_tensor=None):
    """Copy a .tmn with its JSON header and/or one tensor's bytes changed (sizes, offsets and
    the CRC recomputed), as a writer with other ideas would."""
    buf = open(path, "rb").read()
    _, version, flags, hsize, data_offset, data_size, _ = _FIXED.unpack_from(buf, 0)
    header = json.loads(buf[64:64 + hsize])
    data = bytearray(buf[data_offset:data_offset + data_size])
    if edit_tensor:
        name, values = edit_tensor
        meta = header["tensors"][name]
        data[meta["offset"]:meta["offset"] + meta["nbytes"]] = values.astype("<f4").tobytes()
    if edit_header:
        edit_header(header)
    hbytes = json.dumps(header).encode()
    offset = (64 + len(hbytes) + 63) // 64 * 64
    crc = zlib.crc32(bytes(data), zlib.crc32(hbytes))
    with open(out, "wb") as f:
        f.write(_FIXED.pack(b"TINYMNET", version, flags, len(hbytes), offset, len(data), crc))
        f.write(hbytes + b"\0" * (offset - 64 - len(hbytes)) + bytes(data))


def _packed_gemm_with_bias(path):
    tensors = _header(path)["tensors"]
    graph = load_tmn(path).graph
    for node in graph.nodes:
        w, b = node.params.get("weight"), node.params.get("bias")
        if w and b and tensors[w].get("gemm_panels"):
            return w, b, graph
    raise AssertionError("no packed GEMM with a bias")


def test_panels_whose_bias_rows_disagree_are_repacked(files, tmp_path):
    path = files[_C.gemm_panel_width()]
    w, b, graph = _packed_gemm_with_bias(path)
    new_bias = graph.params[b] + 0.5
    out = tmp_path / "bias.tmn"
    _rewrite(path, out, edit_tensor=(b, new_bias))
    changed = load_tmn(out).graph  # the Python reader: weights from the panels, this bias
    np.testing.assert_array_equal(changed.params[b], new_bias)
    x = np.random.default_rng(5).standard_normal((1, 64, 64, 3)).astype(np.float32)
    model = tinymnet.load(out, threads=1)
    assert model._compiled.graph is None
    want = compile_graph(changed, threads=1)(x)
    assert np.abs(model(x) - want).max() <= 1e-5 * np.abs(want).max()
    assert not np.array_equal(want, tinymnet.load(path, threads=1)(x))


def _set(name, key, value):
    def edit(header):
        header["tensors"][name][key] = value
    return edit


@pytest.mark.parametrize("key, value, message", [
    ("gemm_panels", 12, "gemm_panels 12 .8, 16 or 32 expected"),
    ("gemm_panels", "16", "malformed gemm_panels"),
    ("gemm_panels", 16.5, "gemm_panels"),
    ("shape", "drop-last", "malformed gemm_panels"),
    ("shape", "grow-k", "does not match"),
    ("dtype", "int32", "malformed gemm_panels"),
])
def test_malformed_panel_entries_are_refused(files, tmp_path, key, value, message):
    path = files[16]
    w, _, _ = _packed_gemm_with_bias(path)
    shape = _header(path)["tensors"][w]["shape"]
    if value == "drop-last":
        value = shape[:-1] if len(shape) == 4 else shape + [1]  # 3-D either way
    elif value == "grow-k":
        value = [shape[0], shape[1] + 1, *shape[2:]]
    out = tmp_path / "bad.tmn"
    _rewrite(path, out, edit_header=_set(w, key, value))
    with pytest.raises(ValueError, match=re.escape(f"{out}: tensor '{w}'") + f".*{message}"):
        _C.TmnFile(str(out))
    with pytest.raises(FormatError, match=f"tensor '{w}'"):
        tinymnet.load(out)


def test_save_refuses_bad_panel_widths(graph, tmp_path):
    for bad in (12, 0, True, "avx2"):
        with pytest.raises(ValueError, match="gemm_panels"):
            save_tmn(tmp_path / "x.tmn", graph, optimize=True, gemm_panels=bad)
    with pytest.raises(ValueError, match="needs optimize=True"):
        save_tmn(tmp_path / "x.tmn", graph, gemm_panels=16)
    assert not list(tmp_path.iterdir())


def test_info_reports_weights_used_in_place(files, capsys):
    from tinymnet import cli

    assert cli.main(["info", str(files[_C.gemm_panel_width()])]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("compiled plan ("))
    assert "MiB used in place from the file)" in line
    assert cli.main(["info", str(files[None])]) == 0
    assert "in place" not in capsys.readouterr().out


@pytest.mark.parametrize("panels", ["8", "none"])
def test_convert_repacks_a_tmn_for_another_width(files, tmp_path, capsys, panels):
    from tinymnet import cli

    out = tmp_path / "again.tmn"
    assert cli.main(["convert", str(files[16]), "-o", str(out), "--gemm-panels", panels]) == 0
    assert f"from {files[16].name} (tmn, sha256 " in capsys.readouterr().out
    widths = {m.get("gemm_panels") for m in _header(out)["tensors"].values()}
    assert widths == ({None, 8} if panels == "8" else {None})
    x = np.random.default_rng(6).standard_normal((1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(tinymnet.load(out, threads=1)(x),
                                  tinymnet.load(files[None], threads=1)(x))


def test_model_keeps_working_after_its_file_is_replaced_or_deleted(graph, tmp_path):
    """The mapping the plan reads its panels from survives the file being renamed over (as
    save_tmn and convert do) or deleted: the old inode stays until the model is freed."""
    path = tmp_path / "m.tmn"
    save_tmn(path, graph, optimize=True, gemm_panels="native")
    x = np.random.default_rng(7).standard_normal((1, 64, 64, 3)).astype(np.float32)
    model = tinymnet.load(path, threads=1)
    assert model.mapped_weight_bytes > 0
    want = model(x)
    other = build("mobilenet_v3_small", width=0.75, resolution=64, num_classes=10)
    save_tmn(path, other, optimize=True, gemm_panels="native")  # renamed over the old file
    np.testing.assert_array_equal(model(x), want)
    path.unlink()
    gc.collect()
    np.testing.assert_array_equal(model(x), want)
