"""tinymnet.formats.pth: PyTorch checkpoints read without torch and without executing code.

Synthetic checkpoints are assembled here opcode by opcode (no torch needed), in both the zip
and the legacy layout; when torch is installed they are also cross-checked with torch.load
and real torch.save files are compared tensor by tensor.
"""
from __future__ import annotations

import functools
import os
import pickle
import struct
import time
import zipfile

import numpy as np
import pytest

from tinymnet.errors import FormatError, TinymnetError
from tinymnet.formats import detect_format, load_checkpoint, load_state_dict
from tinymnet.formats.pth import MAGIC_NUMBER, PROTOCOL_VERSION

try:
    from _fixtures import fixture
except ImportError:  # tests/ made a package
    from ._fixtures import fixture

try:
    import torch
except ImportError:  # pragma: no cover - torch is an optional test dependency
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

# ---------------------------------------------------------------------------------------
# a tiny pickle assembler (protocol 2 opcodes), enough to write torch-style checkpoints


def _s(x: str) -> bytes:
    b = x.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _i(n: int) -> bytes:
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _g(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


MARK, TUPLE, REDUCE, EMPTY_DICT, SETITEM, STOP = b"(", b"t", b"R", b"}", b"s", b"."
BINPERSID, NEWFALSE, EMPTY_TUPLE, PROTO2 = b"Q", b"\x89", b")", b"\x80\x02"


def _tuple(items) -> bytes:
    return MARK + b"".join(_i(x) for x in items) + TUPLE


def pickled_tensor(key, numel, offset, size, stride, storage="FloatStorage",
                   func="_rebuild_tensor_v2", view=None, legacy=False) -> bytes:
    """A tensor pickled the way torch.save does; legacy persistent ids have a 6th field
    (storage view metadata, None unless ``view=(view_key, offset, size)``)."""
    pid = MARK + _s("storage") + _g("torch", storage) + _s(key) + _s("cpu") + _i(numel)
    if view is not None:
        pid += MARK + _s(view[0]) + _i(view[1]) + _i(view[2]) + TUPLE
    elif legacy:
        pid += b"N"
    pid += TUPLE + BINPERSID
    args = pid + _i(offset) + _tuple(size) + _tuple(stride)
    if func == "_rebuild_tensor_v2":
        args += NEWFALSE + _g("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
    return _g("torch._utils", func) + MARK + args + TUPLE + REDUCE


def pickled_dict(entries) -> bytes:
    """entries: [(key, pickled value bytes)] -> a whole pickle of a dict."""
    body = b"".join(_s(k) + v + SETITEM for k, v in entries)
    return PROTO2 + EMPTY_DICT + body + STOP


def make_legacy(path, main_pickle: bytes, storages, little=True):
    """storages: [(key, numel, raw bytes)] written in the given order."""
    sys_info = {"protocol_version": PROTOCOL_VERSION, "little_endian": little,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    with open(path, "wb") as f:
        f.write(pickle.dumps(MAGIC_NUMBER, protocol=2))
        f.write(pickle.dumps(PROTOCOL_VERSION, protocol=2))
        f.write(pickle.dumps(sys_info, protocol=2))
        f.write(main_pickle)
        f.write(pickle.dumps([k for k, _, _ in storages], protocol=2))
        for _key, numel, raw in storages:
            f.write(struct.pack("<q" if little else ">q", numel))
            f.write(raw)
    return path


def make_zip(path, main_pickle: bytes, storages, prefix="archive", byteorder=b"little"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", main_pickle)
        if byteorder is not None:
            z.writestr(f"{prefix}/byteorder", byteorder)
        for key, _numel, raw in storages:
            z.writestr(f"{prefix}/data/{key}", raw)
        z.writestr(f"{prefix}/version", b"3\n")
    return path


def make_zip_pth(path, tensors):
    """A zip checkpoint holding contiguous float32/int64 numpy arrays."""
    entries, storages = [], []
    for n, (name, arr) in enumerate(tensors.items()):
        arr = np.ascontiguousarray(arr)
        stype = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}[arr.dtype]
        stride = [int(s // arr.itemsize) for s in arr.strides]
        entries.append((name, pickled_tensor(str(n), arr.size, 0, arr.shape, stride, stype)))
        storages.append((str(n), arr.size, arr.tobytes()))
    return make_zip(path, pickled_dict(entries), storages)


# ---------------------------------------------------------------------------------------
# the real fixture (legacy format)


def test_efficientnet_lite0_fixture():
    path = fixture("models", "pytorch", "efficientnet-lite0-57934424.pth")
    assert detect_format(path) == "pth-legacy"
    t0 = time.perf_counter()
    sd = load_state_dict(path)
    assert time.perf_counter() - t0 < 5
    assert len(sd) == 296
    assert sum(v.size for v in sd.values()) == 4_694_073  # "4.69 M params"
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_bn0.running_var"].shape == (32,)
    assert sd["_blocks.1._expand_conv.weight"].shape == (96, 16, 1, 1)
    assert sd["_blocks.1._depthwise_conv.weight"].shape == (96, 1, 3, 3)
    assert sd["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert sd["_fc.bias"].shape == (1000,)
    for k, v in sd.items():
        assert v.flags.c_contiguous and v.dtype.isnative, k
        assert np.isfinite(v).all() if v.dtype.kind == "f" else True
    assert (sd["_bn0.running_var"] >= 0).all()  # dead channels have 0
    assert list(sd)[0] == "_conv_stem.weight"  # file order kept


@needs_torch
def test_efficientnet_lite0_matches_torch():
    path = fixture("models", "pytorch", "efficientnet-lite0-57934424.pth")
    ref = torch.load(path, map_location="cpu", weights_only=True)
    ours = load_state_dict(path)
    assert list(ours) == list(ref)
    for k, v in ref.items():
        np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)


# ---------------------------------------------------------------------------------------
# synthetic checkpoints (no torch needed)


def _synthetic(tmp_path, layout):
    legacy = layout == "legacy"

    def pickled_tensor(*args, **kw):
        return globals()["pickled_tensor"](*args, legacy=legacy, **kw)

    rng = np.random.default_rng(0)
    base = rng.standard_normal(24).astype(np.float32)  # storage "0", shared by 3 tensors
    half = rng.standard_normal(6).astype(np.float16)
    longs = np.arange(5, dtype=np.int64) * -3
    flags = np.array([1, 0, 1], dtype=np.uint8)
    entries = [
        ("full", pickled_tensor("0", 24, 0, (2, 3, 4), (12, 4, 1))),
        ("transposed", pickled_tensor("0", 24, 0, (4, 3), (1, 4))),  # non-contiguous
        ("offset_slice", pickled_tensor("0", 24, 5, (2, 2), (6, 2))),
        ("expanded", pickled_tensor("1", 6, 2, (3, 2), (0, 1), "HalfStorage")),  # stride 0
        ("scalar", pickled_tensor("2", 5, 4, (), (), "LongStorage")),
        ("empty", pickled_tensor("2", 5, 0, (0, 7), (7, 1), "LongStorage")),
        ("mask", pickled_tensor("3", 3, 0, (3,), (1,), "BoolStorage", func="_rebuild_tensor")),
    ]
    storages = [("0", 24, base.tobytes()), ("1", 6, half.tobytes()),
                ("2", 5, longs.tobytes()), ("3", 3, flags.tobytes())]
    main = pickled_dict(entries)
    path = tmp_path / f"synthetic_{layout}.bin"
    if layout == "zip":
        make_zip(path, main, storages)
    else:
        make_legacy(path, main, sorted(storages))
    expected = {
        "full": base.reshape(2, 3, 4),
        "transposed": base[:12].reshape(3, 4).T,
        "offset_slice": base[5:5 + 12].reshape(2, 6)[:, ::2][:, :2],
        "expanded": np.broadcast_to(half[2:4], (3, 2)),
        "scalar": np.array(longs[4]),
        "empty": np.zeros((0, 7), np.int64),
        "mask": np.array([True, False, True]),
    }
    return path, expected


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_synthetic_views_dtypes(tmp_path, layout):
    path, expected = _synthetic(tmp_path, layout)
    assert detect_format(path) == ("pth-zip" if layout == "zip" else "pth-legacy")
    sd = load_state_dict(path)
    assert list(sd) == list(expected)
    for k, want in expected.items():
        got = sd[k]
        assert got.dtype == want.dtype, k
        assert got.shape == want.shape, k
        assert got.flags.c_contiguous and got.flags.owndata, k
        np.testing.assert_array_equal(got, want, err_msg=k)
    # Materialized tensors are copies: writing one does not change a sibling view.
    sd["full"][0, 0, 0] = 1e9
    assert sd["transposed"][0, 0] != 1e9


@needs_torch
@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_synthetic_files_agree_with_torch(tmp_path, layout):
    path, expected = _synthetic(tmp_path, layout)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    for k, want in expected.items():
        np.testing.assert_array_equal(ref[k].numpy(), want, err_msg=k)


def test_big_endian_zip(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    main = pickled_dict([("w", pickled_tensor("0", 6, 0, (2, 3), (3, 1)))])
    path = make_zip(tmp_path / "be.pt", main, [("0", 6, arr.astype(">f4").tobytes())],
                    byteorder=b"big")
    got = load_state_dict(path)["w"]
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)


def test_big_endian_legacy(tmp_path):
    arr = np.arange(4, dtype=np.int64) - 2
    main = pickled_dict([("w", pickled_tensor("0", 4, 0, (4,), (1,), "LongStorage"))])
    path = make_legacy(tmp_path / "be.pth", main, [("0", 4, arr.astype(">i8").tobytes())],
                       little=False)
    np.testing.assert_array_equal(load_state_dict(path)["w"], arr)


def test_legacy_storage_view(tmp_path):
    base = np.arange(10, dtype=np.float32)
    t = pickled_tensor("root", 10, 1, (3,), (1,), view=("v", 4, 5))
    path = make_legacy(tmp_path / "view.pth", pickled_dict([("w", t)]), [("root", 10, base.tobytes())])
    np.testing.assert_array_equal(load_state_dict(path)["w"], base[5:8])


def test_unwraps_nested_checkpoint(tmp_path):
    arr = np.ones((2, 2), np.float32)
    inner = EMPTY_DICT + _s("conv.weight") + pickled_tensor("0", 4, 0, (2, 2), (2, 1)) + SETITEM
    main = PROTO2 + EMPTY_DICT + _s("epoch") + _i(7) + SETITEM + _s("state_dict") + inner + SETITEM + STOP
    path = make_zip(tmp_path / "ckpt.pth", main, [("0", 4, arr.tobytes())])
    sd = load_state_dict(path)
    assert list(sd) == ["conv.weight"]
    ck = load_checkpoint(path)
    assert ck["epoch"] == 7
    np.testing.assert_array_equal(ck["state_dict"]["conv.weight"], arr)


def test_no_tensor_dict(tmp_path):
    main = PROTO2 + EMPTY_DICT + _s("epoch") + _i(7) + SETITEM + STOP
    path = make_zip(tmp_path / "notensors.pth", main, [])
    with pytest.raises(FormatError, match="no dict of tensors"):
        load_state_dict(path)


# ---------------------------------------------------------------------------------------
# real torch.save files


@needs_torch
@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_save_roundtrip(tmp_path, zip_format):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=g)
    tensors = {
        "f32": torch.randn(4, 3, 3, 3, generator=g),
        "f16": torch.randn(5, 7, generator=g).half(),
        "f64": torch.randn(3, generator=g).double(),
        "i64": torch.arange(-5, 5),
        "i32": torch.arange(7, dtype=torch.int32) * 3,
        "i16": torch.arange(4, dtype=torch.int16),
        "u8": torch.arange(250, 256, dtype=torch.uint8),
        "i8": torch.arange(-3, 3, dtype=torch.int8),
        "bool": torch.tensor([True, False, True]),
        "bf16": torch.randn(9, generator=g).bfloat16(),
        "base": base,
        "transposed": base.t(),  # shares storage, non-contiguous
        "narrow": base[2:5, 1:7:2],  # offset + strides
        "expanded": torch.randn(1, 4, generator=g).expand(3, 4),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
        "num_batches_tracked": torch.tensor(12),
    }
    path = tmp_path / "t.pt"
    torch.save(tensors, path, _use_new_zipfile_serialization=zip_format)
    assert detect_format(path) == ("pth-zip" if zip_format else "pth-legacy")
    ref = torch.load(path, map_location="cpu", weights_only=True)
    ours = load_state_dict(path)
    assert list(ours) == list(tensors)
    for k, v in ref.items():
        v = v.detach()
        want = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        assert ours[k].dtype == want.dtype, k
        assert ours[k].shape == want.shape, k
        np.testing.assert_array_equal(ours[k], want, err_msg=k)


@needs_torch
def test_torch_uint16_uses_rebuild_v3(tmp_path):
    t = torch.tensor(list(range(60000, 60010)), dtype=torch.uint16)
    path = tmp_path / "u16.pt"
    torch.save({"u": t}, path)
    got = load_state_dict(path)["u"]
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, np.arange(60000, 60010))


@needs_torch
def test_torch_module_state_dict_and_wrappers(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU6(),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
    )
    sd = model.state_dict()
    for name, obj in {"plain": sd, "wrapped": {"model": sd, "epoch": 3, "lr": 0.1},
                      "state": {"state_dict": sd, "optimizer": {"step": 5}}}.items():
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        ours = load_state_dict(path)
        assert list(ours) == list(sd), name
        for k, v in sd.items():
            np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=f"{name}:{k}")


@needs_torch
def test_whole_pickled_module_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(FormatError, match="refusing to load global 'torch.nn.modules.linear.Linear'"):
        load_state_dict(path)


@needs_torch
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(FormatError, match="TorchScript"):
        load_state_dict(path)


# ---------------------------------------------------------------------------------------
# hostile files: globals are refused, never executed


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvalEvil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


def _evil_payloads(marker):
    return {
        "os.system": pickle.dumps({"w": _Evil(f"touch {marker}")}, protocol=2),
        "builtins.eval": pickle.dumps({"w": _EvalEvil(marker)}, protocol=2),
        "protocol0": pickle.dumps({"w": _Evil(f"touch {marker}")}, protocol=0),
        "protocol5": pickle.dumps({"w": _Evil(f"touch {marker}")}, protocol=5),
        "hand-written": b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR.",
    }


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "protocol0", "protocol5",
                                     "hand-written"])
def test_hostile_global_is_refused_not_executed(tmp_path, layout, payload):
    marker = tmp_path / "PWNED"
    main = _evil_payloads(marker)[payload]
    path = tmp_path / f"evil_{layout}.pth"
    if layout == "zip":
        make_zip(path, main, [])
    else:
        make_legacy(path, main, [])
    expected = {"os.system": "posix.system" if os.name == "posix" else "nt.system",
                "protocol0": "posix.system" if os.name == "posix" else "nt.system",
                "protocol5": "posix.system" if os.name == "posix" else "nt.system",
                "builtins.eval": "builtins.eval", "hand-written": "os.system"}[payload]
    for reader in (load_state_dict, load_checkpoint):
        with pytest.raises(FormatError) as ei:
            reader(path)
        msg = str(ei.value)
        assert f"refusing to load global '{expected}'" in msg
        assert str(path) in msg
    assert not marker.exists(), "the pickled command was executed!"


@needs_torch
def test_hostile_torch_save_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "x": _Evil(f"touch {marker}")}, path)
    with pytest.raises(FormatError, match="refusing to load global '(posix|nt).system'"):
        load_state_dict(path)
    assert not marker.exists()


def test_refusal_happens_before_any_call(tmp_path):
    # A REDUCE of an allowed global whose *argument* is built by a refused one.
    marker = tmp_path / "PWNED"
    inner = pickle.dumps(_Evil(f"touch {marker}"), protocol=2)[2:-1]  # drop PROTO/STOP
    main = PROTO2 + _g("collections", "OrderedDict") + MARK + inner + TUPLE + REDUCE + STOP
    path = make_zip(tmp_path / "nested_evil.pth", main, [])
    with pytest.raises(FormatError, match="refusing"):
        load_state_dict(path)
    assert not marker.exists()


def test_build_cannot_mutate_allowed_objects(tmp_path):
    # BUILD (opcode 'b') on a tensor placeholder trying to swap its checked stride.
    t = pickled_tensor("0", 4, 0, (4,), (1,))
    state = b"N" + EMPTY_DICT + _s("stride") + MARK + _i(-1000) + TUPLE + SETITEM + b"\x86"
    main = PROTO2 + EMPTY_DICT + _s("w") + t + state + b"b" + SETITEM + STOP
    path = make_zip(tmp_path / "build.pth", main, [("0", 4, np.zeros(4, np.float32).tobytes())])
    with pytest.raises(FormatError):
        load_state_dict(path)


# ---------------------------------------------------------------------------------------
# inconsistent sizes never read out of bounds or allocate wildly


def _one(tmp_path, name, tensor_bytes, storages, layout="zip"):
    main = pickled_dict([("w", tensor_bytes)])
    path = tmp_path / f"{name}.pth"
    return (make_zip if layout == "zip" else make_legacy)(path, main, storages)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("case", ["past_end", "offset_past_end", "neg_stride", "neg_size",
                                  "expand_bomb", "storage_claims_huge", "size_stride_len"])
def test_inconsistent_tensor_is_refused(tmp_path, layout, case):
    four = np.arange(4, dtype=np.float32).tobytes()
    pt = functools.partial(pickled_tensor, legacy=layout == "legacy")
    cases = {
        "past_end": (pt("0", 4, 0, (5,), (1,)), [("0", 4, four)], "reads element"),
        "offset_past_end": (pt("0", 4, 4, (1,), (1,)), [("0", 4, four)], "reads element"),
        "neg_stride": (pt("0", 4, 3, (4,), (-1,)), [("0", 4, four)], "negative"),
        "neg_size": (pt("0", 4, 0, (-4,), (1,)), [("0", 4, four)], "negative"),
        "expand_bomb": (pt("0", 4, 0, (100000, 100000, 1000), (0, 0, 0)),
                        [("0", 4, four)], "expand to more than"),
        "storage_claims_huge": (pt("0", 2**40, 0, (4,), (1,)), [("0", 2**40, four)],
                                "storage|truncated|holds"),
        "size_stride_len": (pt("0", 4, 0, (2, 2), (1,)), [("0", 4, four)], "differ"),
    }
    tensor, storages, pattern = cases[case]
    path = _one(tmp_path, case, tensor, storages, layout)
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match=pattern) as ei:
        load_state_dict(path)
    assert str(path) in str(ei.value)
    assert time.perf_counter() - t0 < 2


def test_huge_length_opcode_does_not_allocate(tmp_path):
    # BINBYTES8 claiming 2**60 bytes: the C unpickler would try to allocate it up front.
    main = b"\x80\x04" + b"\x8e" + struct.pack("<Q", 2**60) + b"abc" + STOP
    path = make_zip(tmp_path / "bytes8.pth", main, [])
    with pytest.raises(FormatError, match="malformed or truncated pickle"):
        load_state_dict(path)


def test_huge_memo_index_does_not_allocate(tmp_path):
    # LONG_BINPUT 0x7fffffff: the C unpickler would grow and zero-fill a 16 GiB memo array.
    main = PROTO2 + EMPTY_DICT + b"r" + struct.pack("<I", 0x7FFFFFFF) + STOP
    path = make_zip(tmp_path / "memo.pth", main, [])
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="memo index"):
        load_state_dict(path)
    assert time.perf_counter() - t0 < 1


def test_missing_storage_record(tmp_path):
    main = pickled_dict([("w", pickled_tensor("7", 4, 0, (4,), (1,)))])
    path = make_zip(tmp_path / "missing.pth", main, [])
    with pytest.raises(FormatError, match="no record"):
        load_state_dict(path)


def test_legacy_unlisted_and_mismatched_storage(tmp_path):
    main = pickled_dict([("w", pickled_tensor("0", 4, 0, (4,), (1,)))])
    four = np.zeros(4, np.float32).tobytes()
    with pytest.raises(FormatError, match="never referenced"):
        load_state_dict(make_legacy(tmp_path / "a.pth", main, [("0", 4, four), ("9", 1, b"\0" * 4)]))
    with pytest.raises(FormatError, match="holds 3 elements on disk"):
        load_state_dict(make_legacy(tmp_path / "b.pth", main, [("0", 3, four[:12])]))
    with pytest.raises(FormatError, match="data is missing"):
        load_state_dict(make_legacy(tmp_path / "c.pth", main, []))


def test_wrong_magic_and_version(tmp_path):
    p = tmp_path / "plain.pkl"
    p.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(FormatError, match="pickle that is not a PyTorch checkpoint"):
        load_state_dict(p)
    q = tmp_path / "ver.pth"
    q.write_bytes(pickle.dumps(MAGIC_NUMBER, protocol=2) + pickle.dumps(999, protocol=2))
    with pytest.raises(FormatError, match="protocol version"):
        load_state_dict(q)


def test_zip_without_data_pkl(tmp_path):
    p = tmp_path / "other.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(FormatError, match="not a PyTorch checkpoint"):
        load_state_dict(p)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_every_truncation_is_a_format_error(tmp_path, layout):
    path, _ = _synthetic(tmp_path, layout)
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    for n in range(0, len(data), max(1, len(data) // 97)):
        cut.write_bytes(data[:n])
        with pytest.raises(FormatError) as ei:
            load_state_dict(cut)
        assert str(cut) in str(ei.value)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_bit_flips_never_leak_other_exceptions(tmp_path, layout):
    path, _ = _synthetic(tmp_path, layout)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    bad = tmp_path / "flipped.pth"
    for _ in range(150):
        d = bytearray(data)
        for pos in rng.integers(0, len(d), size=3):
            d[pos] ^= 1 << int(rng.integers(0, 8))
        bad.write_bytes(bytes(d))
        try:
            load_state_dict(bad)
        except FormatError as exc:
            assert str(bad) in str(exc)


def test_format_error_is_a_value_error():
    assert issubclass(FormatError, TinymnetError) and issubclass(FormatError, ValueError)
    e = FormatError("broken", "/x/y.pth")
    assert str(e) == "/x/y.pth: broken" and e.path == "/x/y.pth" and e.reason == "broken"


def test_module_has_no_torch_dependency():
    import tinymnet.formats.pth as m

    src = open(m.__file__).read()
    assert "import torch" not in src
