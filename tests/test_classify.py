"""`tinymnet classify` and tinymnet.Classifier on small random-weight models and images made
here (the bundled models are covered in test_bundled.py).

JSON: one array; each element {"path", "predictions": [{"class", "label", "score"}]} or
{"path", "error"}; `class` is the ImageNet-1k index (a TF model's background output 0 is
dropped: TF index i -> class i - 1) and `score` the softmax over the 1000 real classes.
Exit status 0 when all images were classified, 1 when any failed, 2 for usage errors.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

import tinymnet  # noqa: E402
from tinymnet import cli  # noqa: E402
from tinymnet.classify import Classifier, classify_paths, collect_images  # noqa: E402
from tinymnet.errors import TinymnetError  # noqa: E402

try:
    from _classify_helpers import (LABELS_1000, random_rgb, tf_style_tmn, torchvision_style_tmn,
                                   truncated_jpeg, write_image)
except ImportError:  # tests/ made a package
    from ._classify_helpers import (LABELS_1000, random_rgb, tf_style_tmn,
                                    torchvision_style_tmn, truncated_jpeg, write_image)


@pytest.fixture(scope="module")
def tf_tmn(tmp_path_factory):
    return str(tf_style_tmn(tmp_path_factory.mktemp("models") / "tf.tmn"))


@pytest.fixture(scope="module")
def tv_tmn(tmp_path_factory):
    return str(torchvision_style_tmn(tmp_path_factory.mktemp("models") / "tv.tmn"))


@pytest.fixture(scope="module")
def tf_clf(tf_tmn):
    return Classifier(tf_tmn)


@pytest.fixture()
def photos(tmp_path):
    """A folder of good images (nested, several formats) plus a non-image file."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    write_image(d / "a.jpg", 48, 64, seed=1)
    write_image(d / "b.PNG", 64, 40, seed=2)
    write_image(d / "sub" / "c.bmp", 30, 30, seed=3)
    write_image(d / "sub" / "d.gif", 50, 70, seed=4)
    write_image(d / "sub" / "e.webp", 33, 45, seed=5)
    (d / "notes.txt").write_text("not an image, skipped")
    return d


def run_json(capsys, *argv):
    code = cli.main(["classify", "--format", "json", *map(str, argv)])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


# ---------------------------------------------------------------------------------------------
# JSON schema and the background class


def test_json_schema_and_scores(capsys, photos, tf_tmn, tf_clf):
    code, doc, err = run_json(capsys, photos, "--model", tf_tmn, "--top-k", 3)
    assert code == 0, err
    assert isinstance(doc, list) and len(doc) == 5
    want = sorted(str(p) for p in photos.rglob("*") if p.suffix.lower() != ".txt" and p.is_file())
    assert sorted(r["path"] for r in doc) == want
    assert [r["path"] for r in doc] == collect_images([str(photos)])[0]  # sorted walk order
    for r in doc:
        assert set(r) == {"path", "predictions"}
        preds = r["predictions"]
        assert len(preds) == 3
        for p in preds:
            assert set(p) == {"class", "label", "score"}
            assert isinstance(p["class"], int) and 0 <= p["class"] < 1000
            assert p["label"] == LABELS_1000[p["class"]]
            assert isinstance(p["score"], float) and 0 < p["score"] <= 1
        assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)
        # the scores are the softmax over the 1000 real classes of the model's logits
        x = tf_clf.prepare(r["path"])
        logits = tf_clf.model(x[None])[0].astype(np.float64)
        assert logits.shape == (1001,)
        probs = _softmax(logits[1:])  # background (TF output 0) excluded
        for p in preds:
            assert p["score"] == pytest.approx(probs[p["class"]], rel=1e-6, abs=1e-9)
        assert preds[0]["class"] == int(np.argmax(logits[1:]))
    assert "5 images classified" in err and "0 failed" in err


def test_classes_are_tf_index_minus_one(tf_clf):
    """Force a TF output: the background-dropped class index is the TF index - 1."""
    img = random_rgb(40, 40)
    x = tf_clf.prepare(img)
    logits = tf_clf.model(x[None])[0]
    tf_index = int(np.argmax(logits[1:])) + 1
    r = tf_clf.classify(img, top_k=1)[0]
    assert r["predictions"][0]["class"] == tf_index - 1
    assert tf_clf.num_outputs == 1001 and tf_clf.num_classes == 1000 and tf_clf.label_offset == 1


def test_labels_with_background_line_are_fitted(tmp_path):
    """A model whose 1001 labels start with "background" (as `tinymnet convert` embeds them)."""
    from tinymnet.formats.tmn import load_tmn, save_tmn

    src = tf_style_tmn(tmp_path / "a.tmn")
    tm = load_tmn(src)
    save_tmn(tmp_path / "b.tmn", tm.graph, labels=["background"] + LABELS_1000,
             preprocess=tm.preprocess)
    clf = Classifier(str(tmp_path / "b.tmn"))
    assert clf.labels == LABELS_1000
    r = clf.classify(random_rgb(20, 20), top_k=2)[0]
    assert r["predictions"][0]["label"] == f"class {r['predictions'][0]['class']}"


def test_1000_class_model_keeps_every_output(tv_tmn):
    clf = Classifier(tv_tmn)
    assert clf.label_offset == 0 and clf.num_classes == 1000
    img = random_rgb(70, 50)
    logits = clf.model(clf.prepare(img)[None])[0].astype(np.float64)
    r = clf.classify(img, top_k=1000)[0]
    assert len(r["predictions"]) == 1000
    assert sum(p["score"] for p in r["predictions"]) == pytest.approx(1.0, abs=1e-9)
    assert r["predictions"][0]["class"] == int(np.argmax(logits))


# ---------------------------------------------------------------------------------------------
# bad files, exit statuses


def test_bad_files_in_a_folder(capsys, photos, tf_tmn):
    truncated_jpeg(photos / "broken.jpg")
    (photos / "sub" / "fake.png").write_text("this is text, not a PNG")
    code, doc, err = run_json(capsys, photos, "--model", tf_tmn, "--batch-size", 2)
    assert code == 1
    assert "Traceback" not in err
    errors = {os.path.basename(r["path"]): r["error"] for r in doc if "error" in r}
    assert set(errors) == {"broken.jpg", "fake.png"}
    assert "truncated" in errors["broken.jpg"]
    assert "cannot decode" in errors["fake.png"]
    for r in doc:
        assert set(r) in ({"path", "predictions"}, {"path", "error"})
    assert sum("predictions" in r for r in doc) == 5  # the rest were still classified
    assert err.count("tinymnet: warning:") == 2 and "broken.jpg" in err and "fake.png" in err
    assert "5 images classified" in err and "2 failed" in err


def test_missing_file_is_a_failed_entry(capsys, tmp_path, tf_tmn):
    good = write_image(tmp_path / "ok.png")
    code, doc, err = run_json(capsys, good, tmp_path / "missing.jpg", "--model", tf_tmn)
    assert code == 1
    assert "predictions" in doc[0] and "no such file" in doc[1]["error"]


def test_all_good_exits_0_and_single_file_prints_no_summary(capsys, tmp_path, tf_tmn):
    p = write_image(tmp_path / "one.jpg")
    code, doc, err = run_json(capsys, p, "--model", tf_tmn)
    assert code == 0 and len(doc) == 1 and len(doc[0]["predictions"]) == 5
    assert err == ""


def test_empty_folder(capsys, tmp_path, tf_tmn):
    (tmp_path / "empty").mkdir()
    code, doc, err = run_json(capsys, tmp_path / "empty", "--model", tf_tmn)
    assert code == 1 and doc == [] and "no images found" in err


@pytest.mark.parametrize("argv,fragment", [
    (["--model", "mobilenet_v2"], "architecture, not a bundled model"),
    (["--model", "no_such_model"], "unknown model"),
    (["--model", "missing/m.tmn"], "no such file"),
    (["--top-k", "0"], "must be >= 1"),
    (["--batch-size", "x"], "not an integer"),
    (["--format", "xml"], "invalid choice"),
    (["--preprocess", "squash"], "invalid choice"),
    (["--threads", "0"], "must be >= 1"),
])
def test_usage_errors_exit_2(capsys, tmp_path, argv, fragment):
    p = write_image(tmp_path / "x.png")
    try:
        code = cli.main(["classify", str(p), *argv])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_no_path_is_a_usage_error():
    with pytest.raises(SystemExit) as e:
        cli.main(["classify"])
    assert e.value.code == 2


def test_exit_statuses_from_the_real_entry_point(tmp_path, tf_tmn):
    good = write_image(tmp_path / "ok.png")
    bad = tmp_path / "bad.png"
    bad.write_text("text")

    def run(*argv):
        p = subprocess.run([sys.executable, "-m", "tinymnet.cli", "classify", *map(str, argv)],
                           capture_output=True, text=True, timeout=120)
        assert "Traceback" not in p.stderr
        return p.returncode, p.stdout, p.stderr

    code, out, err = run(good, "--model", tf_tmn, "--format", "json")
    assert code == 0 and json.loads(out)[0]["path"] == str(good)
    code, out, err = run(good, bad, "--model", tf_tmn, "--format", "json")
    assert code == 1 and "error" in json.loads(out)[1] and "bad.png" in err
    code, out, err = run(good, "--model", "mobilenet_v3_small")
    assert code == 2 and err.startswith("tinymnet: error: ")
    assert "%|" not in err  # no progress bar when stderr is not a terminal


# ---------------------------------------------------------------------------------------------
# table and CSV, preprocessing, batching


def test_csv_format(capsys, photos, tf_tmn):
    truncated_jpeg(photos / "zz.jpg")
    code = cli.main(["classify", str(photos), "--model", tf_tmn, "--format", "csv",
                     "--top-k", "2"])
    out = capsys.readouterr().out
    assert code == 1
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["path", "rank", "class", "label", "score", "error"]
    good = [r for r in rows if not r["error"]]
    assert len(good) == 10 and {r["rank"] for r in good} == {"1", "2"}
    for r in good:
        assert 0 <= int(r["class"]) < 1000 and r["label"] == f"class {r['class']}"
        assert 0 < float(r["score"]) <= 1
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["path"].endswith("zz.jpg") and bad[0]["class"] == ""


def test_table_format(capsys, tmp_path, tf_tmn):
    p = write_image(tmp_path / "t.jpg")
    bad = tmp_path / "bad.gif"
    bad.write_bytes(b"GIF89a")
    assert cli.main(["classify", str(p), str(bad), "--model", tf_tmn, "--top-k", "3"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(p)
    assert len(lines) == 1 + 3 + 2
    for rank, line in enumerate(lines[1:4], 1):
        fields = line.split()
        assert fields[0] == str(rank) and 0 < float(fields[1]) <= 1
        assert line.endswith(f"class {fields[2]}")
    assert lines[4] == str(bad) and lines[5].startswith("  error: ")


def test_preprocess_flag(capsys, tmp_path, tf_tmn, tf_clf):
    p = write_image(tmp_path / "wide.png", 40, 120, seed=7)
    _, crop, _ = run_json(capsys, p, "--model", tf_tmn, "--top-k", 1000)
    _, resize, _ = run_json(capsys, p, "--model", tf_tmn, "--top-k", 1000,
                            "--preprocess", "resize")
    api = Classifier(tf_tmn, preprocess="resize").classify(str(p), top_k=1000)
    assert resize[0]["predictions"] == api[0]["predictions"]
    assert crop[0]["predictions"] == tf_clf.classify(str(p), top_k=1000)[0]["predictions"]
    assert crop[0]["predictions"] != resize[0]["predictions"]


def test_batch_size_does_not_change_results(capsys, photos, tf_tmn):
    _, one, _ = run_json(capsys, photos, "--model", tf_tmn, "--batch-size", 1)
    _, many, _ = run_json(capsys, photos, "--model", tf_tmn, "--batch-size", 4)
    assert [r["path"] for r in one] == [r["path"] for r in many]
    for a, b in zip(one, many):
        assert [p["class"] for p in a["predictions"]] == [p["class"] for p in b["predictions"]]
        for pa, pb in zip(a["predictions"], b["predictions"]):
            assert pa["score"] == pytest.approx(pb["score"], rel=1e-4, abs=1e-7)


def test_pipeline_keeps_order_with_failures(tmp_path, tf_clf):
    paths = []
    for i in range(11):
        p = tmp_path / f"{i:02d}.png"
        if i in (0, 4, 5, 10):
            p.write_text("junk")
        else:
            write_image(p, seed=i)
        paths.append(str(p))
    out = list(classify_paths(tf_clf, paths, top_k=1, batch_size=3))
    assert [r["path"] for r in out] == paths
    assert [("error" in r) for r in out] == [i in (0, 4, 5, 10) for i in range(11)]
    direct = tf_clf.classify(paths, top_k=1)
    assert [r.get("predictions", [{}])[0].get("class") for r in out] == \
           [r.get("predictions", [{}])[0].get("class") for r in direct]


def test_decode_errors_inside_the_thread_are_raised(tf_clf, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("engine-side bug")

    monkeypatch.setattr(tf_clf, "prepare", boom)
    with pytest.raises(RuntimeError, match="engine-side bug"):
        list(classify_paths(tf_clf, ["x.png"], top_k=1))


# ---------------------------------------------------------------------------------------------
# the Python API


def test_classifier_on_paths_pil_and_arrays(tmp_path, tf_tmn):
    clf = tinymnet.Classifier(tf_tmn)
    arr = random_rgb(45, 61, seed=11)
    path = tmp_path / "img.png"
    Image.fromarray(arr).save(path)
    by_path = clf.classify(path, top_k=4)
    by_str = clf.classify([str(path)], top_k=4)
    by_pil = clf.classify(Image.fromarray(arr), top_k=4)
    by_arr = clf.classify(arr, top_k=4)
    by_batch = clf.classify(np.stack([arr, arr]), top_k=4)
    assert by_path[0]["path"] == str(path) and by_pil[0]["path"] is None
    preds = by_path[0]["predictions"]
    assert len(preds) == 4

    def same(got):  # a batch of >= threads images runs whole images per thread, a single
        # image row-split: the sums round differently in the last bits
        assert [(p["class"], p["label"]) for p in got] == [(p["class"], p["label"]) for p in preds]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in preds], rel=1e-5)

    for other in (by_str[0], by_pil[0], by_arr[0], by_batch[0], by_batch[1]):
        same(other["predictions"])
    mixed = clf.classify([arr, str(path), Image.fromarray(arr)], top_k=4)
    for m in mixed:
        same(m["predictions"])
    with pytest.raises(TinymnetError, match="uint8"):
        clf.classify(arr.astype(np.float32))
    with pytest.raises(TinymnetError, match="top_k"):
        clf.classify(arr, top_k=0)


def test_classifier_from_a_loaded_model(tf_tmn):
    m = tinymnet.load(tf_tmn)
    clf = tinymnet.Classifier(m, preprocess="resize")
    assert clf.model is m and "preprocess=resize" in repr(clf)
    with pytest.raises(TinymnetError, match="preprocess must be"):
        tinymnet.Classifier(m, preprocess="stretch")


def test_default_classifier_is_the_bundled_default():
    clf = tinymnet.Classifier()
    assert clf.name == "mobilenet_v2_100_224_tf"
    assert clf.num_classes == 1000 and clf.labels[0].startswith("tench")
    r = clf.classify(random_rgb(100, 150), top_k=5)[0]
    assert len(r["predictions"]) == 5


def test_model_without_a_recipe_is_refused(tmp_path):
    from tinymnet.formats.tmn import save_tmn
    from tinymnet.models import build

    save_tmn(tmp_path / "m.tmn", build("mobilenet_v1", width=0.25, resolution=32))
    with pytest.raises(TinymnetError, match="no preprocessing recipe"):
        Classifier(str(tmp_path / "m.tmn"))


def test_progress_bar_only_on_a_terminal(capsys, photos, tf_tmn, monkeypatch):
    pytest.importorskip("tqdm")

    class TTY(io.StringIO):
        def isatty(self):
            return True

    fake = TTY()
    monkeypatch.setattr(sys, "stderr", fake)
    assert cli.main(["classify", str(photos), "--model", tf_tmn, "--format", "json"]) == 0
    err = fake.getvalue()
    assert "%|" in err and "/5 [" in err and "img/s" in err  # tqdm's bar, then the summary
    assert "5 images classified" in err
    assert len(json.loads(capsys.readouterr().out)) == 5


def test_readme_classifier_example_runs(capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "Classifier" in b]
    assert blocks, "README lost its Classifier example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1] and lines[0].startswith("None [(")


def test_threads_give_the_same_results(capsys, tmp_path, tf_tmn):
    p = write_image(tmp_path / "x.png")
    _, one, _ = run_json(capsys, p, "--model", tf_tmn, "--threads", "1")
    _, two, _ = run_json(capsys, p, "--model", tf_tmn, "--threads", "2")
    assert [q["class"] for q in one[0]["predictions"]] == [q["class"] for q in two[0]["predictions"]]
    for a, b in zip(one[0]["predictions"], two[0]["predictions"]):
        assert abs(a["score"] - b["score"]) <= 1e-5
