"""Knowledge distillation: train any student to reproduce a teacher's embeddings (MSE).

The teacher is an edgel3 model, a saved Keras model or any Python callable
(see :func:`edgel3.compress.data.as_teacher`); the student is any Keras model
mapping ``(batch, 1, sr)`` audio to ``(batch, d)`` (the SEA and sparse
families, a pruned or filter-reduced model, or one of
:mod:`edgel3.compress.students`).

Two ways to get targets:

- **cached** (default): the teacher embeds every window once
  (:func:`~edgel3.compress.data.teacher_targets`, optionally kept in an
  ``.npz``), then training never calls it again;
- **on the fly**: with an :class:`~edgel3.compress.augment.Augmenter`, each
  training batch is augmented and the teacher embeds the augmented audio.

When the student starts with edgel3's mel layer and is a plain chain of
layers, training runs on log-mel patches (precomputed once when there is no
augmentation), which is several times faster than feeding audio; the layers
are shared, so the returned student takes audio as usual.

The machinery follows the original recipe (docs/compress.rst): Adam, a
validation split, ``EarlyStopping(val_loss)`` with the best weights restored,
``ReduceLROnPlateau``, best-checkpoint saving, resumable training
(``BackupAndRestore``), a per-epoch CSV log and a progress bar.  TensorFlow
places the work on a GPU when one is visible, on the CPU otherwise.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import check_fraction, check_output_path, check_positive_int
from ..exceptions import ParameterError
from .data import WindowSet
from .teachers import as_teacher, teacher_targets, to_rate

__all__ = [
    "DistillResult",
    "distill",
    "split_frontend",
    "validation_split",
    "calibrate_batchnorm",
]

logger = logging.getLogger(__name__)

_PRECOMPUTE_LIMIT = 2**31  # bytes of precomputed mel inputs kept in memory at most


@dataclass
class DistillResult:
    """Outcome of :func:`distill`.

    Attributes
    ----------
    model : keras.Model
        The trained student (audio in), with the best validation weights.
    history : dict
        Per-epoch ``loss``, ``val_loss``, ``mae``, ``val_mae``, ``learning_rate``.
    initial_val_loss : float
        Validation MSE before training.
    best_val_loss : float
    epochs : int
        Epochs run (in this call).
    device : str
        ``'GPU'`` or ``'CPU'``.
    checkpoint : pathlib.Path or None
        The best student saved as ``.keras``.
    """

    model: object
    history: dict
    initial_val_loss: float
    best_val_loss: float
    epochs: int
    device: str
    checkpoint: Path | None = None


def split_frontend(student):
    """Split a student into its mel layer and the network after it, when possible.

    Returns
    -------
    (mel_layer, body) or (None, None)
        ``body`` maps log-mel patches ``(batch, mels, frames, 1)`` to
        embeddings and shares its layers with ``student``.
    """
    import keras

    from ..layers import MelSpectrogram

    layers = student.layers
    if len(layers) < 3 or not isinstance(layers[1], MelSpectrogram):
        return None, None
    try:
        body = keras.Model(layers[1].output, student.output, name=f"{student.name}_body")
    except Exception as exc:  # graphs that do not split cleanly train on audio instead
        logger.debug("cannot split %s after its mel layer: %s", student.name, exc)
        return None, None
    return layers[1], body


def validation_split(data: WindowSet, fraction: float, rng: np.random.Generator):
    """Split window indices into train/validation, keeping each source file on one side.

    With a single source file its windows are split instead.

    Returns
    -------
    (train_index, val_index) : np.ndarray
    """
    fraction = check_fraction(fraction, "validation_split")
    groups = np.where(data.file_index >= 0, data.file_index, -1 - np.arange(len(data)))
    unique = rng.permutation(np.unique(groups))
    counts = {g: c for g, c in zip(*np.unique(groups, return_counts=True))}
    chosen, total = [], 0
    for group in unique:
        if total >= fraction * len(data):
            break
        chosen.append(group)
        total += counts[group]
    is_val = np.isin(groups, chosen)
    if is_val.all():  # a single source file: split its windows instead
        is_val = np.zeros(len(data), dtype=bool)
        is_val[rng.permutation(len(data))[: max(1, int(round(fraction * len(data))))]] = True
    if is_val.all() or not is_val.any():
        raise ParameterError(f"Cannot split {len(data)} window(s) into training and validation.")
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _device() -> str:
    import tensorflow as tf

    return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"


def _make_batches_class():
    import keras

    class _Batches(keras.utils.PyDataset):
        """Shuffled training batches; augments and calls the teacher when asked."""

        def __init__(self, get_x, get_y, n, batch_size, rng):
            super().__init__(workers=1, use_multiprocessing=False)
            self.get_x, self.get_y, self.n = get_x, get_y, n
            self.batch_size, self.rng = batch_size, rng
            self.order = rng.permutation(n)

        def __len__(self):
            return math.ceil(self.n / self.batch_size)

        def __getitem__(self, index):
            rows = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
            return self.get_x(rows, self.get_y)

        def on_epoch_end(self):
            self.order = self.rng.permutation(self.n)

    return _Batches


def calibrate_batchnorm(model, inputs: np.ndarray) -> None:
    """Set every BatchNormalization's moving statistics to those of ``inputs``.

    A fresh student's moving means/variances (0/1) are far from the data's
    (log-mel values lie in [-80, 0] dB), and with momentum 0.99 they need
    hundreds of steps to catch up, during which validation losses mean little.
    One forward pass in training mode with momentum 0 fixes that.
    """
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0
        model(inputs, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def _make_time_limit_callback(seconds: float):
    import time

    import keras

    class _TimeLimit(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            if time.monotonic() - self.start > seconds:
                logger.info("time limit of %.0f s reached after epoch %d", seconds, epoch + 1)
                self.model.stop_training = True

    return _TimeLimit()


def _make_checkpoint_callback(student, path: Path):
    import keras

    from .pruning import save_model

    class _SaveBest(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best = math.inf

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get("val_loss", math.inf)
            if value < self.best:
                self.best = value
                save_model(student, path)  # atomic: a kill never leaves half a best.keras

    return _SaveBest()


def distill(
    student,
    data: WindowSet,
    targets: np.ndarray | None = None,
    *,
    teacher=None,
    augment: Callable | None = None,
    target_transform: Callable | None = None,
    validation: float | tuple = 0.1,
    epochs: int = 50,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    patience: int = 10,
    lr_patience: int = 5,
    lr_factor: float = 0.1,
    min_delta: float = 1e-4,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    target_cache: str | os.PathLike | None = None,
    train_on_mel: bool = True,
    calibrate_bn: bool = True,
    time_limit: float | None = None,
    jit_compile: bool | str = False,
    seed: int = 20180216,
    verbose: int = 1,
) -> DistillResult:
    """Train ``student`` with MSE to the teacher's embeddings of ``data``.

    Parameters
    ----------
    student : keras.Model
        Audio ``(batch, 1, sr)`` -> ``(batch, d)``; trained in place and returned.
    data : WindowSet
        Training audio windows (see :func:`~edgel3.compress.data.load_windows`).
    targets : np.ndarray [shape=(len(data), d)], optional
        Precomputed targets; computed with ``teacher`` when omitted.
    teacher : optional
        Anything :func:`~edgel3.compress.data.as_teacher` accepts; needed when
        ``targets`` is omitted or ``augment`` is given.
    augment : callable, optional
        ``augment(windows, rng) -> windows`` (e.g. an
        :class:`~edgel3.compress.augment.Augmenter`) applied to each training
        batch; its targets are then computed by the teacher on the fly.
    target_transform : callable, optional
        Applied to teacher outputs computed on the fly (e.g. SEA's projection);
        ``targets`` must already be transformed.
    validation : float or (WindowSet, np.ndarray)
        Fraction of source files held out, or an explicit (windows, targets) pair.
    epochs, batch_size, learning_rate : int, int, float
        Adam training settings.
    patience, lr_patience, lr_factor, min_delta : int, int, float, float
        Early stopping and ``ReduceLROnPlateau`` on the validation loss.
    checkpoint_dir : path-like, optional
        Where ``best.keras`` (the best student), ``history.csv`` and the
        resumable training state (``backup/``) go.
    resume : bool
        Continue an interrupted run from ``checkpoint_dir/backup``.
    target_cache : path-like, optional
        ``.npz`` cache of the teacher targets (see :func:`teacher_targets`).
    train_on_mel : bool
        Train the network after the mel layer on log-mel patches when the
        student allows it (faster; same result).
    calibrate_bn : bool
        Before training, set the BatchNormalization moving statistics from one
        batch of up to 512 training windows (fresh students; skipped on resume).
    time_limit : float, optional
        Stop after the epoch during which this many seconds of training have
        passed (a wall-clock budget; the best weights are still restored).
    jit_compile : bool or 'auto'
        XLA compilation of the training step.
    seed : int
        Seed of the validation split, shuffling and augmentation.
    verbose : {0, 1, 2}
        0 silent, 1 progress bar, 2 one line per epoch.

    Returns
    -------
    DistillResult

    Raises
    ------
    ParameterError
        For missing targets/teacher, shape mismatches or bad settings
        (``resume`` without ``checkpoint_dir`` included).
    OutputError
        If ``checkpoint_dir`` (checked first) or ``target_cache`` (checked before the
        teacher runs) cannot be written.
    """
    import keras

    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    # Every setting and output name is checked before the teacher runs or training starts.
    if not isinstance(validation, tuple):
        check_fraction(validation, "validation_split")
    if resume and checkpoint_dir is None:
        raise ParameterError("resume=True continues a run saved in checkpoint_dir: give it.")
    if checkpoint_dir is not None:
        check_output_path(checkpoint_dir, "checkpoint_dir", folder=True)
    rng = np.random.default_rng(seed)
    if targets is None or augment is not None:
        if teacher is None:
            raise ParameterError(
                "distill needs a teacher when targets are not given or augment is used."
            )
        teacher = as_teacher(teacher)
    if targets is None:
        targets = teacher_targets(teacher, data, cache=target_cache, progress=verbose > 0)
        if target_transform is not None:
            targets = target_transform(targets)
    targets = np.asarray(targets, dtype=np.float32)
    if targets.ndim != 2 or len(targets) != len(data):
        raise ParameterError(
            f"targets must have shape ({len(data)}, d); got shape {targets.shape}."
        )
    if student.output_shape[-1] != targets.shape[1]:
        raise ParameterError(
            f"The student outputs {student.output_shape[-1]} values; targets have "
            f"{targets.shape[1]}. Build the student with emb_dim={targets.shape[1]}."
        )
    if isinstance(validation, tuple):
        val_data, val_targets = validation
        train_index = np.arange(len(data))
    else:
        train_index, val_index = validation_split(data, float(validation), rng)
        val_data, val_targets = data.subset(val_index), targets[val_index]

    from ..runners import model_sample_rate

    student_sr = model_sample_rate(student)
    mel_layer, body = split_frontend(student) if train_on_mel else (None, None)
    trained = body if body is not None else student

    def to_input(windows, sr):
        windows = to_rate(windows, sr, student_sr)
        if body is None:
            return windows[:, None, :]
        from ..frontend import melspectrogram

        return melspectrogram(
            windows, mel_layer.config, filterbank=np.asarray(mel_layer.filterbank)
        )

    val_x = to_input(np.asarray(val_data.windows), val_data.sr)
    val_y = np.asarray(val_targets, dtype=np.float32)
    windows = data.windows
    precomputed = None
    if augment is None and body is not None:
        size = len(train_index) * int(np.prod(body.input_shape[1:])) * 4
        if size <= _PRECOMPUTE_LIMIT:
            precomputed = np.concatenate(
                [
                    to_input(np.asarray(windows[train_index[i : i + 1024]]), data.sr)
                    for i in range(0, len(train_index), 1024)
                ]
            )

    def get_batch(rows, _):
        index = train_index[rows]
        if precomputed is not None:
            return precomputed[rows], targets[index]
        batch = np.asarray(windows[index], dtype=np.float32)
        if augment is None:
            return to_input(batch, data.sr), targets[index]
        batch = augment(batch, rng)
        y = teacher(batch, data.sr)
        if target_transform is not None:
            y = target_transform(y)
        return to_input(batch, data.sr), np.asarray(y, dtype=np.float32)

    batches = _make_batches_class()(get_batch, None, len(train_index), int(batch_size), rng)
    trained.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="mse",
        metrics=["mae"],
        jit_compile=jit_compile,
    )
    if calibrate_bn and not resume:
        sample = np.sort(rng.choice(len(train_index), min(512, len(train_index)), replace=False))
        calibrate_batchnorm(trained, get_batch(sample, None)[0])
    initial = float(trained.evaluate(val_x, val_y, batch_size=batch_size, verbose=0)[0])
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", min_delta=min_delta, patience=patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=lr_factor, patience=lr_patience, min_lr=1e-7
        ),
    ]
    if time_limit is not None:
        callbacks.append(_make_time_limit_callback(float(time_limit)))
    checkpoint = None
    if checkpoint_dir is not None:
        folder = Path(checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        backup = folder / "backup"
        if not resume and backup.exists():
            shutil.rmtree(backup)
        checkpoint = folder / "best.keras"
        callbacks += [
            _make_checkpoint_callback(student, checkpoint),
            keras.callbacks.CSVLogger(str(folder / "history.csv"), append=resume),
            keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=False),
        ]
    device = _device()
    logger.info(
        "distilling %s on %s: %d train / %d val windows",
        student.name,
        device,
        len(train_index),
        len(val_y),
    )
    history = trained.fit(
        batches,
        validation_data=(val_x, val_y),
        epochs=int(epochs),
        callbacks=callbacks,
        verbose=verbose,
    )
    values = history.history
    best = min(values.get("val_loss") or [initial])
    return DistillResult(
        model=student,
        history={k: [float(v) for v in vs] for k, vs in values.items()},
        initial_val_loss=initial,
        best_val_loss=float(best),
        epochs=len(values.get("loss", [])),
        device=device,
        checkpoint=checkpoint,
    )
