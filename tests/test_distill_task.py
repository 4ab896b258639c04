"""Task students (``edgel3 distill-task``): the loss, the fold bookkeeping, the command.

The command runs once end to end (module fixture) on a small synthesized dataset
(3 classes x 2 folds x 3 clips of 2 s at 8 kHz) with the bundled ``tiny`` model as
teacher, two student sizes and one epoch: about 30 s. The other tests need no training.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from edgel3.cli import main
from edgel3.compress.task_data import check_unseen, teacher_overlap
from edgel3.compress.task_networks import (
    build_task_student,
    distillation_loss,
    model_files,
    soft_targets,
    student_config,
)
from edgel3.exceptions import EdgeL3Error, ParameterError

CLASSES = ("chirp", "noise", "tone")
SIZES = (0.25, 0.5)


# --------------------------------------------------------------------------- the loss


def keras_loss(temperature, hard_weight, student, teacher, labels):
    """The Keras loss on NumPy inputs, with targets packed as the pipeline packs them."""
    n = student.shape[1]
    y_true = np.concatenate(
        [soft_targets(teacher, temperature), np.eye(n, dtype=np.float32)[labels]], axis=1
    )
    loss = distillation_loss(temperature, hard_weight)(y_true, np.asarray(student, np.float32))
    return np.asarray(loss, dtype=np.float64)


def test_loss_against_a_hand_computation():
    # One window, two classes: teacher logits (2, 0), student logits (0, 1), label 0.
    T, w = 2.0, 0.25
    q0 = math.exp(1) / (math.exp(1) + math.exp(0))  # softmax((2, 0) / 2)
    s0 = math.exp(0) / (math.exp(0) + math.exp(0.5))  # softmax((0, 1) / 2)
    soft = -(q0 * math.log(s0) + (1 - q0) * math.log(1 - s0))
    hard = -math.log(math.exp(0) / (math.exp(0) + math.exp(1)))  # softmax((0, 1)), class 0
    expected = (1 - w) * T**2 * soft + w * hard
    found = keras_loss(T, w, np.array([[0.0, 1.0]]), np.array([[2.0, 0.0]]), np.array([0]))
    assert found.shape == (1,)
    # float32 arithmetic on values of order 1: a few ulps of 1e-7.
    assert abs(found[0] - expected) < 1e-5, (found, expected)


def test_loss_extremes_are_the_two_cross_entropies(rng):
    student, teacher = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    labels = rng.integers(0, 4, 5)
    log_p = student - np.log(np.exp(student).sum(axis=1, keepdims=True))
    hard = -log_p[np.arange(5), labels]
    # float32 losses of order 1-10.
    np.testing.assert_allclose(keras_loss(3.0, 1.0, student, teacher, labels), hard, rtol=1e-5)
    q = soft_targets(teacher, 3.0).astype(np.float64)
    log_s = student / 3 - np.log(np.exp(student / 3).sum(axis=1, keepdims=True))
    soft = -9.0 * (q * log_s).sum(axis=1)
    np.testing.assert_allclose(keras_loss(3.0, 0.0, student, teacher, labels), soft, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    teacher=st.lists(st.floats(-5, 5), min_size=3, max_size=3),
    shift=st.lists(st.floats(-2, 2), min_size=3, max_size=3),
    temperature=st.floats(0.5, 8),
)
def test_soft_loss_is_smallest_at_the_teacher_logits(teacher, shift, temperature):
    """For all teacher logits and perturbations: matching the teacher (up to a constant) wins."""
    teacher = np.array([teacher])
    labels = np.array([0])
    at_teacher = keras_loss(temperature, 0.0, teacher + 1.5, teacher, labels)[0]
    elsewhere = keras_loss(temperature, 0.0, teacher + np.array([shift]), teacher, labels)[0]
    assert at_teacher <= elsewhere + 1e-4 * max(1.0, abs(elsewhere))  # float32 rounding


def test_soft_targets_rows_are_distributions_softened_by_temperature(rng):
    logits = rng.normal(0, 3, size=(6, 5))
    sharp, soft = soft_targets(logits, 1.0), soft_targets(logits, 4.0)
    np.testing.assert_allclose(sharp.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(soft.sum(axis=1), 1, atol=1e-6)
    assert (soft.max(axis=1) < sharp.max(axis=1)).all()
    assert (np.argmax(soft, axis=1) == np.argmax(logits, axis=1)).all()


@pytest.mark.parametrize(
    "temperature, hard_weight, match",
    [(0, 0.5, "temperature"), (float("nan"), 0.5, "temperature"), (2, 1.5, "hard_weight")],
)
def test_bad_loss_settings(temperature, hard_weight, match):
    with pytest.raises(ParameterError, match=match):
        distillation_loss(temperature, hard_weight)


# --------------------------------------------------------------------------- students


def test_student_sizes_scale_the_tiny_architecture():
    from edgel3.compress.students import TINY_CONFIG

    assert student_config(1.0) == {
        "stem_filters": TINY_CONFIG["stem_filters"],
        "blocks": tuple(TINY_CONFIG["blocks"]),
    }
    small = student_config(0.25)
    assert small["stem_filters"] == 4 and [f for f, _ in small["blocks"]] == [8, 16, 16, 32, 32]
    assert all(f % 4 == 0 and f >= 4 for f, _ in student_config(0.1)["blocks"])
    with pytest.raises(ParameterError, match="positive number"):
        student_config(0)


def test_student_ends_in_class_logits():
    from edgel3.specs import SEA_FRONTEND

    model = build_task_student(SEA_FRONTEND, 7, width=0.25)
    assert model.input_shape == (None, 1, 8000) and model.output_shape == (None, 7)
    assert model.layers[-1].get_config()["activation"] == "linear"


# --------------------------------------------------------------------------- bookkeeping


def test_check_unseen_names_the_use_that_saw_a_test_clip():
    check_unseen([4, 5], classifier=[0, 1, 2], calibration=np.array([3]))
    with pytest.raises(EdgeL3Error, match="calibration used 1 clip"):
        check_unseen([4, 5], classifier=[0, 1], calibration=[3, 5])


def test_a_tiny_teacher_on_its_own_training_clips_is_flagged(tmp_path):
    from edgel3.bundled import tiny_card
    from edgel3.evaluate.datasets import Dataset
    from edgel3.reference import resolve_model

    seen = tiny_card()["data"]["esc10_train_clips"][0]
    dataset = Dataset(
        paths=[tmp_path / seen.replace(".flac", ".wav"), tmp_path / "5-000000-A-0.wav"],
        labels=[0, 1],
        folds=[1, 5],
        classes=["a", "b"],
        groups=["x", "y"],
    )
    assert "folds [1]" in teacher_overlap(resolve_model("tiny"), dataset)
    assert teacher_overlap(resolve_model("tiny"), dataset.subset([5])) is None


# --------------------------------------------------------------------------- the command


def write_dataset(folder, rng) -> tuple:
    """3 classes x 2 folds x 3 clips of 2 s at 8 kHz, and a ``path,label,fold`` csv."""
    folder.mkdir()
    t = np.arange(16000) / 8000
    make = {
        "chirp": lambda: np.sin(2 * np.pi * (200 + rng.uniform(600, 900) * t) * t),
        "noise": lambda: rng.standard_normal(t.size) * 0.3,
        "tone": lambda: np.sin(2 * np.pi * rng.uniform(300, 500) * t),
    }
    rows = ["path,label,fold"]
    for fold in (1, 2):
        for k in range(3):
            for label in CLASSES:
                name = f"{label}_{fold}_{k}.wav"
                sf.write(folder / name, (0.5 * make[label]()).astype(np.float32), 8000)
                rows.append(f"{name},{label},{fold}")
    csv = folder / "meta.csv"
    csv.write_text("\n".join(rows) + "\n")
    return folder, csv


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One ``edgel3 distill-task`` run: (exit status, stdout, output folder, csv rows)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("task")
    data, csv = write_dataset(root / "data", np.random.default_rng(20180216))
    out = root / "out"
    argv = [
        *("distill-task", str(data), "--metadata", str(csv), "--teacher", "tiny", "-o", str(out)),
        *("--sizes", ",".join(map(str, SIZES)), "--epochs", "1", "--calibration-windows", "8"),
        *("--cache-dir", str(root / "cache"), "-q"),
    ]
    # A process of its own: the run seeds Keras globally and loads TensorFlow.
    code = f"import sys; from edgel3.cli import main; sys.exit(main({argv!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    return proc, out, rows


def test_the_command_writes_the_table_and_the_exports(run):
    from edgel3.export.micro_frontend import frontend_cost
    from edgel3.specs import SEA_FRONTEND

    proc, out, _ = run
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "task_students.json").read_text())
    assert [row["student"] for row in report["table"]] == ["w0.25", "w0.5"]
    for name in ("task_students.txt", "task_students.md"):
        text = (out / name).read_text()
        assert "w0.25" in text and "w0.5" in text
    assert "w0.25" in proc.stdout and "teacher acc" in proc.stdout
    exported = sorted(p.name for p in (out / "models").iterdir())
    assert exported == sorted(model_files(SIZES, [1, 2]))
    smaller, larger = report["table"]
    assert smaller["params"] < larger["params"]
    assert smaller["macs_network"] < larger["macs_network"]
    for row in report["table"]:
        flash = max(
            (out / "models" / f"{row['student']}_fold{k}.tflite").stat().st_size for k in (1, 2)
        )
        assert row["flash_bytes"] == flash
        assert row["arena_bytes"] > 0 and row["macs_network"] > 0
        assert row["macs_frontend"] == frontend_cost(SEA_FRONTEND).macs  # tiny's front end
        assert row["devices"] and all(isinstance(v, bool) for v in row["devices"].values())
        for key in ("int8_accuracy", "float_accuracy", "teacher_accuracy"):
            stats = row[key]
            assert len(stats["per_fold"]) == 2 and 0 <= stats["mean"] <= 1
            assert stats["mean"] == pytest.approx(np.mean(stats["per_fold"]))


def test_the_exports_are_int8_class_logits_on_the_teacher_s_input(run):
    from edgel3.litert import LiteRTModel

    _, out, _ = run
    model = LiteRTModel(out / "models" / "w0.25_fold1.tflite")
    assert model.variant == "backbone" and model.emb_dim == len(CLASSES)
    assert np.dtype(model.input_details["dtype"]) == np.int8
    assert (model.frontend.sample_rate, model.frontend.n_mels) == (8000, 64)  # tiny's


def test_no_model_saw_audio_of_the_fold_it_is_tested_on(run):
    _, out, rows = run
    report = json.loads((out / "task_students.json").read_text())
    clips = report["clips"]
    fold_of = {name: int(fold) for name, _, fold in rows}
    assert sorted(clips) == sorted(fold_of)
    for record in report["folds"]:
        test = set(record["test"])
        assert {clips[i] for i in test} == {n for n, f in fold_of.items() if f == record["fold"]}
        others = set(range(len(clips))) - test
        assert set(record["classifier_train"]) == others
        for student in record["students"].values():
            for use in ("fit", "validation", "calibration"):
                assert test.isdisjoint(student[use]), use
            assert set(student["fit"]) | set(student["validation"]) == others
            assert set(student["fit"]).isdisjoint(student["validation"])


def test_library_defaults_are_the_command_s():
    from edgel3.commands import distill_task as command

    library = command.defaults()
    assert command.DISTILL_TASK_DEFAULTS == {k: library[k] for k in command.DISTILL_TASK_DEFAULTS}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("bad") / "data", np.random.default_rng(1))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data": "missing"}, "could not be found|No such|not found|does not exist"),
        ({"--hard-weight": "1.5"}, "hard_weight must be a number in"),
        ({"--temperature": "0"}, "temperature must be a positive number"),
        ({"--sizes": "0"}, "width must be a positive number"),
        ({"--sizes": "0.5,0.50"}, "distinct width multipliers"),
        ({"--test-folds": "7"}, "test_folds"),
        ({"--teacher": "nope"}, "neither an existing file nor a model name"),
        ({"one_fold": True}, "at least two folds"),
    ],
)
def test_bad_inputs_give_one_line_and_write_nothing(
    small_dataset, tmp_path, capsys, change, message
):
    data, csv = small_dataset
    if change.pop("one_fold", False):
        csv = tmp_path / "one.csv"
        csv.write_text(
            "path,label,fold\n"
            + "".join(f"{data}/{c}_1_{k}.wav,{c},1\n" for c in CLASSES for k in range(3))
        )
    data = tmp_path / "nowhere" if change.pop("data", None) else data
    out = tmp_path / "out"
    argv = ["distill-task", str(data), "--metadata", str(csv), "--teacher", "tiny", "-o", str(out)]
    for flag, value in change.items():
        argv += [flag, value]
    assert main([*argv, "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgel3: error:"), err
    assert re.search(message, err[0]), err[0]
    assert not out.exists()
