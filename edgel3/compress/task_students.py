"""Task students: distil a teacher's embedding + classifier into a small int8 classifier.

The pipeline of Cerutti et al. (Interspeech 2019) for a labelled dataset with
predefined folds (docs/task_students.rst). For each held-out fold ``k``:

1. **teacher**: the teacher model's embeddings of every window (hop
   ``hop_size``; the model itself is never trained) and a frame classifier
   (:func:`edgel3.evaluate.classifiers.make_classifier`, quick settings)
   fitted on the windows of the *other* folds; a clip's score is the mean of
   its window probabilities, as in :func:`edgel3.evaluate.evaluate`;
2. **targets**: per training *window*, the teacher classifier's class
   log-probabilities (its logits up to a constant, which no softmax sees),
   softened with the temperature
   (:func:`~edgel3.compress.task_networks.soft_targets`);
3. **students**: for each width multiplier, a depthwise-separable classifier
   on the teacher's log-mel input
   (:func:`~edgel3.compress.task_networks.build_task_student`) trained on the
   other folds' windows with
   :func:`~edgel3.compress.task_networks.distillation_loss`, early-stopped on
   a share of their source recordings;
4. **int8**: each student exported by :func:`edgel3.export.export_model`
   (full-integer, log-mel input) with calibration patches drawn from the
   training windows, and scored on fold ``k`` through LiteRT.

Which clips each model saw (classifier, student training and validation,
int8 calibration) is recorded per fold and checked against the held-out
fold's clips (:func:`~edgel3.compress.task_data.check_unseen`): no fold's
audio ever trains or calibrates a model that is tested on it.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ..checks import check_choice, check_fraction, check_hop_size, check_positive_int
from ..exceptions import EdgeL3Warning, ParameterError
from .distill import calibrate_batchnorm
from .task_data import check_unseen, load_task_data, teacher_frontend, teacher_overlap
from .task_networks import (
    DEFAULT_SIZES,
    build_task_student,
    check_kd_options,
    check_sizes,
    distillation_loss,
    model_files,
    size_name,
    soft_targets,
)

__all__ = ["TASK_CLASSIFIERS", "distill_task", "DEFAULT_SIZES"]

logger = logging.getLogger(__name__)

#: Frame classifiers the teacher may use (quick settings of :func:`make_classifier`).
TASK_CLASSIFIERS = ("logreg", "mlp")


# --------------------------------------------------------------------------- one fold


def _mean_clip_accuracy(window_proba, data, clips, labels) -> float:
    from ..evaluate.metrics import aggregate_frames

    counts = np.bincount(data.clip[data.windows_of(clips)], minlength=len(labels))[clips]
    scores = aggregate_frames(window_proba, counts)
    return float(np.mean(np.argmax(scores, axis=1) == labels[clips]))


def _softmax(logits: np.ndarray) -> np.ndarray:
    return soft_targets(logits, 1.0)


def _fit_teacher(classifier, X, y, groups, seed):
    from threadpoolctl import threadpool_limits

    from ..evaluate.classifiers import make_classifier

    estimator, _ = make_classifier(classifier, quick=True, seed=seed)
    kwargs = {"clf__groups": groups} if classifier == "mlp" else {}
    with threadpool_limits(1, user_api="blas"):  # small fits: one thread is fastest
        return estimator.fit(X, y, **kwargs)


def _teacher_log_proba(estimator, X, n_classes) -> np.ndarray:
    proba = np.full((len(X), n_classes), 1e-7)
    proba[:, estimator.classes_.astype(int)] = np.maximum(estimator.predict_proba(X), 1e-7)
    return np.log(proba)


def _split_validation(clips, groups, fraction, seed):
    from sklearn.model_selection import GroupShuffleSplit

    clip_groups = np.asarray([groups[i] for i in clips])
    if len(set(clip_groups)) < 2:
        raise ParameterError(
            "The training folds hold a single source recording: nothing to hold out for "
            "the students' early stopping."
        )
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    fit, val = next(splitter.split(clips, groups=clip_groups))
    return clips[fit], clips[val]


def _train_student(student, x, y, val, options, on_epoch):
    import keras

    from .distill import split_frontend

    _, body = split_frontend(student)
    sample = np.linspace(0, len(x) - 1, min(512, len(x))).round().astype(int)
    calibrate_batchnorm(body, x[sample])
    body.compile(
        optimizer=keras.optimizers.Adam(learning_rate=options["learning_rate"]),
        loss=distillation_loss(options["temperature"], options["hard_weight"]),
    )
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=options["patience"], restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(1, options["patience"] // 2)
        ),
        keras.callbacks.LambdaCallback(on_epoch_end=on_epoch),
    ]
    history = body.fit(
        x,
        y,
        validation_data=val,
        epochs=options["epochs"],
        batch_size=options["batch_size"],
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
    losses = history.history["val_loss"]
    return body, {"epochs": len(losses), "best_epoch": int(np.argmin(losses)) + 1}


def _run_fold(fold, data, dataset, options, model_dir, bar) -> dict:
    """Teacher classifier, then every student size, for one held-out fold."""
    import keras

    from ..export.convert import export_model
    from ..litert import LiteRTModel
    from ..tf_logging import quiet_native_logs

    labels, n_classes = dataset.labels, len(dataset.classes)
    test = np.array([i for i, f in enumerate(dataset.folds) if f == fold])
    train = np.array([i for i, f in enumerate(dataset.folds) if f != fold])
    train_w, test_w = data.windows_of(train), data.windows_of(test)
    groups = np.asarray(dataset.groups)
    teacher = _fit_teacher(
        options["classifier"],
        data.embeddings[train_w],
        labels[data.clip[train_w]],
        groups[data.clip[train_w]],
        options["seed"],
    )
    log_proba = _teacher_log_proba(teacher, data.embeddings, n_classes)
    record = {
        "fold": fold,
        "test": test.tolist(),
        "classifier_train": train.tolist(),
        "teacher_accuracy": _mean_clip_accuracy(np.exp(log_proba[test_w]), data, test, labels),
        "students": {},
    }
    bar.update(1)
    fit, val = _split_validation(train, groups, options["validation_fraction"], options["seed"])
    targets = np.concatenate(
        [soft_targets(log_proba, options["temperature"]), np.eye(n_classes)[labels[data.clip]]],
        axis=1,
    ).astype(np.float32)
    fit_w, val_w = data.windows_of(fit), data.windows_of(val)
    n_cal = min(options["calibration_windows"], len(train_w))
    cal_w = train_w[np.linspace(0, len(train_w) - 1, n_cal).round().astype(int)]
    calibration = np.unique(data.clip[cal_w])
    # Before any student is trained: what the models of this fold will use.
    check_unseen(
        test, classifier=train, student_fit=fit, student_validation=val, calibration=calibration
    )
    for width in options["sizes"]:
        name = size_name(width)
        keras.utils.set_random_seed(options["seed"])
        student = build_task_student(options["frontend"], n_classes, width=width)

        def on_epoch(epoch, logs, name=name):
            bar.set_postfix_str(f"fold {fold} {name} epoch {epoch + 1} val {logs['val_loss']:.3f}")

        body, training = _train_student(
            student,
            data.patches[fit_w],
            targets[fit_w],
            (data.patches[val_w], targets[val_w]),
            options,
            on_epoch,
        )
        path = Path(model_dir) / model_files([width], [fold])[0]
        with quiet_native_logs():  # the converter's and LiteRT's C++ log lines
            export_model(student, path, quantization="int8", calibration=data.patches[cal_w])
            int8_logits = LiteRTModel(path).predict_features(data.patches[test_w])
        float_logits = body.predict(data.patches[test_w], batch_size=256, verbose=0)
        record["students"][name] = {
            "width": float(width),
            "fit": fit.tolist(),
            "validation": val.tolist(),
            "calibration": calibration.tolist(),
            "calibration_windows": int(n_cal),
            **training,
            "float_accuracy": _mean_clip_accuracy(_softmax(float_logits), data, test, labels),
            "int8_accuracy": _mean_clip_accuracy(_softmax(int8_logits), data, test, labels),
            "file": path.name,
        }
        keras.backend.clear_session()
        bar.update(1)
    return record


# --------------------------------------------------------------------------- the run


def distill_task(
    dataset,
    metadata=None,
    *,
    layout: str = "auto",
    teacher="sea-64",
    classifier: str = "logreg",
    sizes=DEFAULT_SIZES,
    temperature: float = 4.0,
    hard_weight: float = 0.5,
    folds=None,
    test_folds=None,
    hop_size: float = 0.5,
    center: bool = True,
    epochs: int = 40,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    patience: int = 6,
    validation_fraction: float = 0.15,
    calibration_windows: int = 200,
    seed: int = 20180216,
    model_dir=None,
    cache_dir=None,
    verbose: bool = False,
) -> dict:
    """Distil a teacher (embedding + classifier) into int8 task students, fold by fold.

    See the module docstring for the pipeline and docs/task_students.rst for
    the measured ESC-10 table.

    Parameters
    ----------
    dataset : Dataset or path-like
        A single-label :class:`~edgel3.evaluate.datasets.Dataset` with folds,
        or its audio folder read with ``metadata`` and ``layout``.
    metadata : path-like, optional
    layout : {'auto', 'esc50', 'us8k', 'generic'}
    teacher : str, path-like or keras.Model
        The embedding model (any model :func:`edgel3.reference.resolve_model`
        accepts that has a log-mel front end).
    classifier : {'logreg', 'mlp'}
        The teacher's frame classifier (quick settings, no grid search).
    sizes : sequence of float
        Width multipliers of the students
        (:func:`~edgel3.compress.task_networks.student_config`).
    temperature : float
        Distillation temperature ``T``.
    hard_weight : float
        Weight of the hard-label term in [0, 1] (:func:`distillation_loss`).
    folds : sequence, optional
        Use only the clips of these folds.
    test_folds : sequence, optional
        Hold out only these folds (default: every fold).
    hop_size : float
        Seconds between windows (teacher and students alike).
    center : bool
    epochs, batch_size, learning_rate, patience : int, int, float, int
        Student training (Adam; early stopping on the validation loss, best
        weights restored; the learning rate halves after ``patience // 2``
        epochs without improvement).
    validation_fraction : float
        Share of the training folds' source recordings held out for early stopping.
    calibration_windows : int
        Training windows (evenly spaced) that calibrate each int8 export.
    seed : int
        Seeds the classifier, the validation split and each student's
        initialisation and shuffling (``keras.utils.set_random_seed``, which
        also sets Python's and NumPy's global seeds).
    model_dir : path-like, optional
        Where the exports go (``w0.5_fold1.tflite`` and its ``.json``); a
        temporary folder, removed at the end, when None.
    cache_dir : path-like, optional
        Embedding cache of the teacher (see
        :func:`edgel3.evaluate.embeddings.embed_files`).
    verbose : bool
        Progress bars.

    Returns
    -------
    dict
        The report (see :mod:`edgel3.compress.task_report`): ``dataset``,
        ``teacher``, ``settings``, ``clips`` (names; folds index into them),
        ``folds`` (per fold the clip indices each model used and the
        accuracies), ``table`` (one row per size), ``timings``, ``notes``.

    Raises
    ------
    ParameterError
        For bad options, a multi-label dataset, or folds that cannot be held
        out; raised before anything is embedded or trained.
    AudioError, WeightsError
        For unreadable clips or teacher files.
    """
    from tqdm.auto import tqdm

    from ..checks import check_flag, check_non_negative_int
    from ..evaluate.datasets import Dataset, load_dataset
    from ..evaluate.protocol import check_splits
    from ..reference import resolve_model
    from .task_report import build_report

    start = time.perf_counter()
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset, metadata, layout=layout)
    if dataset.multilabel:
        raise ParameterError("distill_task needs single-label classes; got a multi-label dataset.")
    if folds is not None:
        dataset = dataset.subset(folds)
    check_choice(classifier, TASK_CLASSIFIERS, "classifier")
    sizes = check_sizes(sizes)
    temperature, hard_weight, learning_rate = check_kd_options(
        temperature, hard_weight, learning_rate
    )
    options = {
        "classifier": classifier,
        "sizes": sizes,
        "temperature": temperature,
        "hard_weight": hard_weight,
        "epochs": check_positive_int(epochs, "epochs"),
        "batch_size": check_positive_int(batch_size, "batch_size"),
        "learning_rate": learning_rate,
        "patience": check_positive_int(patience, "patience"),
        "validation_fraction": check_fraction(validation_fraction, "validation_fraction"),
        "calibration_windows": check_positive_int(calibration_windows, "calibration_windows"),
        "seed": check_non_negative_int(seed, "seed"),
    }
    hop_size, center = check_hop_size(hop_size), check_flag(center, "center")
    held_out = check_splits(
        dataset.labels,
        dataset.folds,
        test_folds=test_folds,
        groups=dataset.groups,
        classes=dataset.classes,
        names=dataset.describe,
    )
    reference = resolve_model(teacher)
    options["frontend"] = teacher_frontend(reference)
    notes = [note] if (note := teacher_overlap(reference, dataset)) else []
    for note in notes:
        warnings.warn(note, EdgeL3Warning, stacklevel=2)
    data = load_task_data(
        dataset,
        reference,
        options["frontend"],
        hop_size=hop_size,
        center=center,
        cache_dir=cache_dir,
        verbose=verbose,
    )
    prepared = time.perf_counter()
    records = []
    with tempfile.TemporaryDirectory(prefix="edgel3_task_") as scratch:
        out = Path(model_dir) if model_dir is not None else Path(scratch)
        total = len(held_out) * (1 + len(sizes))
        with tqdm(total=total, unit="model", desc="students", disable=not verbose) as bar:
            for fold in held_out:
                records.append(_run_fold(fold, data, dataset, options, out, bar))
        trained = time.perf_counter()
        report = build_report(
            dataset,
            reference,
            records,
            out,
            settings={**options, "hop_size": hop_size, "center": center},
            notes=notes,
        )
    report["timings"] = {
        "data_s": prepared - start,
        "training_s": trained - prepared,
        "total_s": time.perf_counter() - start,
    }
    return report
