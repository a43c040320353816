"""info_table / info_totals / format_info on hand-countable graphs (the published model counts
are checked in test_models.py)."""

import numpy as np

from tinymnet.graph import GraphBuilder
from tinymnet.info import format_info, info_table, info_totals
from tinymnet.models import build
from tinymnet.passes import optimize


def small_graph():
    b = GraphBuilder("small", (8, 8, 3))
    x = b.conv2d(b.input, "stem", 16, 3, stride=2, padding=1)  # 4x4x16
    x = b.batchnorm(x, "bn", 1e-5)
    x = b.add("activation", [x], "act", activation="relu")
    x = b.conv2d(x, "dw", 16, 3, padding=1, groups=16, bias=True)
    x = b.conv2d(x, "grouped", 16, 1, groups=4)
    x = b.squeeze_excite(x, "se", 8)
    x = b.add("max_pool2d", [x], "pool", kernel=2)  # 2x2x16
    x = b.add("global_avg_pool", [x], "gap")
    x = b.add("flatten", [x], "flat")
    x = b.linear(x, "fc", 10)
    return b.build([x])


def test_rows_by_hand():
    rows = {r["name"]: r for r in info_table(small_graph())}
    assert list(rows) == ["stem", "bn", "act", "dw", "grouped", "se", "pool", "gap", "flat", "fc"]
    stem = rows["stem"]
    assert (stem["op"], stem["kernel"], stem["stride"], stem["output_shape"]) == (
        "conv2d",
        "3x3",
        "2",
        (1, 4, 4, 16),
    )
    assert stem["params"] == 16 * 3 * 9 and stem["macs"] == 16 * 16 * 27
    assert stem["activation_bytes"] == 4 * 4 * 16 * 4
    assert rows["bn"]["params"] == 32 and rows["bn"]["macs"] == 0  # gamma/beta, not the stats
    assert rows["act"]["activation"] == "relu"
    assert rows["dw"]["kernel"] == "3x3 dw" and rows["dw"]["params"] == 16 * 9 + 16
    assert rows["dw"]["macs"] == 16 * 16 * 9
    assert rows["grouped"]["kernel"] == "1x1 g4" and rows["grouped"]["macs"] == 16 * 16 * 4
    assert rows["se"]["params"] == 2 * 16 * 8 + 8 + 16 and rows["se"]["macs"] == 2 * 16 * 8
    assert (rows["pool"]["kernel"], rows["pool"]["stride"]) == ("2x2", "2")
    assert rows["gap"]["kernel"] == "global"
    assert rows["fc"]["output_shape"] == (1, 10) and rows["fc"]["macs"] == 160


def test_totals_and_peak():
    g = small_graph()
    rows = info_table(g)
    t = info_totals(g)
    assert t["params"] == sum(r["params"] for r in rows)
    assert t["macs"] == sum(r["macs"] for r in rows)
    assert t["activation_bytes"] == sum(r["activation_bytes"] for r in rows)
    # Peak: two 4x4x16 tensors (a node's input and output) beat input + stem output.
    assert (8 * 8 * 3 + 4 * 4 * 16) * 4 < t["peak_activation_bytes"] == 2 * (4 * 4 * 16) * 4


def test_folding_changes_params_not_macs():
    g = build("mobilenet_v2", width=0.5, resolution=96)
    before, after = info_totals(g), info_totals(optimize(g))
    assert after["macs"] == before["macs"]
    n_bn = sum(n.op == "batchnorm" for n in g.nodes)
    assert n_bn > 0 and after["params"] < before["params"]  # BN gamma+beta become one bias
    assert after["activation_bytes"] < before["activation_bytes"]
    assert after["peak_activation_bytes"] <= before["peak_activation_bytes"]


def test_format_info_text():
    g = small_graph()
    text = format_info(g)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["name", "op", "kernel", "stride"]
    assert any(l.startswith("stem ") and "1x4x4x16" in l and "6,912" in l for l in lines)
    t = info_totals(g)
    assert f"{t['params']:,} params" in lines[-1] and f"{t['macs']:,} MACs" in lines[-1]
    assert len(lines) == 2 + len(g.nodes) + 2
    # The published-model view reads well at a glance.
    assert "300,774,272 MACs" in format_info(build("mobilenet_v2"))
    assert np.all([len(l) < 160 for l in format_info(build("mobilenet_v3_large")).splitlines()])
