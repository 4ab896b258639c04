"""The task-student table: deployment figures of each int8 student next to its accuracy.

:func:`build_report` turns the per-fold records of
:func:`edgel3.compress.task_students.distill_task` into its report (a dict,
what ``task_students.json`` holds) with one row per student size;
:func:`format_table` and :func:`format_markdown` print it, :func:`write_report`
writes the three files. The figures of a size come from its int8 exports
(one per held-out fold, same architecture): the largest over the folds is
reported.

- parameters, flash bytes (the ``.tflite`` flatbuffer) and network MACs per
  1-s window: :func:`edgel3.export.memory.memory_report`;
- arena: the interpreter's total (``MemoryReport.micro['total']``: head, tail
  and persistent buffers);
- front-end MACs per window: :func:`edgel3.export.micro_frontend.frontend_cost`;
- device presets the export fits: ``MemoryReport.device_fits()``.

Accuracies are clip accuracies on each held-out fold, mean and standard
deviation (``ddof=0``) over the folds, as :func:`edgel3.evaluate.evaluate`
reports them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..evaluate.metrics import mean_std
from ..files import atomic_write
from ..version import __version__

__all__ = [
    "deployment_figures",
    "build_report",
    "format_table",
    "format_markdown",
    "write_report",
    "REPORT_FILES",
]

#: The files :func:`write_report` writes into its folder.
REPORT_FILES = ("task_students.json", "task_students.txt", "task_students.md")


def deployment_figures(path, frontend) -> dict:
    """What an int8 export needs on a device, from the memory report of the file.

    Parameters
    ----------
    path : path-like
        A ``.tflite`` export (with its sidecar JSON).
    frontend : FrontendConfig
        The front end the device computes before the network.

    Returns
    -------
    dict
        ``params``, ``flash_bytes``, ``arena_bytes``, ``arena_source``
        (``'tflite-micro'`` or ``'estimate'``), ``macs_network``,
        ``macs_frontend`` and ``devices`` (preset name -> fits).
    """
    from ..export.memory import memory_report
    from ..export.micro_frontend import frontend_cost

    report = memory_report(path, budgets=())
    return {
        "params": int(report.params),
        "flash_bytes": int(report.measured["file_bytes"]),
        "arena_bytes": int(report.micro["total"]),
        "arena_source": str(report.micro.get("source", "")),
        "macs_network": int(report.macs["network"]),
        "macs_frontend": int(frontend_cost(frontend).macs),
        "devices": {name: bool(ok) for name, ok in report.device_fits().items()},
    }


def _largest(figures: list[dict]) -> dict:
    """One size's figures over its folds' exports: the largest of each, fits if all fit."""
    out = dict(figures[0])
    for key in ("params", "flash_bytes", "arena_bytes", "macs_network", "macs_frontend"):
        out[key] = max(f[key] for f in figures)
    out["devices"] = {name: all(f["devices"][name] for f in figures) for name in out["devices"]}
    return out


def build_report(dataset, reference, records, model_dir, *, settings: dict, notes) -> dict:
    """The report of a :func:`~edgel3.compress.task_students.distill_task` run.

    Parameters
    ----------
    dataset : Dataset
    reference : ModelReference
        The teacher model.
    records : list of dict
        One per held-out fold (clip indices each model used, accuracies, files).
    model_dir : path-like
        Where the exports are.
    settings : dict
        The run's options (the front end included).
    notes : list of str

    Returns
    -------
    dict
        ``dataset``, ``teacher``, ``settings``, ``clips``, ``folds``, ``table``,
        ``notes`` (``timings`` is added by the caller).
    """
    frontend = settings["frontend"]
    teacher = mean_std([r["teacher_accuracy"] for r in records])
    table = []
    for width in settings["sizes"]:
        name = next(n for n, s in records[0]["students"].items() if s["width"] == width)
        runs = [r["students"][name] for r in records]
        figures = _largest(
            [deployment_figures(Path(model_dir) / s["file"], frontend) for s in runs]
        )
        table.append(
            {
                "student": name,
                "width": width,
                **figures,
                "int8_accuracy": mean_std([s["int8_accuracy"] for s in runs]),
                "float_accuracy": mean_std([s["float_accuracy"] for s in runs]),
                "teacher_accuracy": teacher,
                "epochs": [s["epochs"] for s in runs],
            }
        )
    return {
        "format": "edgel3-task-students",
        "edgel3_version": __version__,
        "dataset": {
            "name": dataset.name,
            "clips": len(dataset),
            "classes": list(dataset.classes),
            "folds": [_plain(f) for f in dataset.fold_names],
            "metadata": dataset.metadata,
        },
        "teacher": {
            "model": reference.describe(),
            "classifier": settings["classifier"],
            "accuracy": teacher,
        },
        "settings": {
            **{k: v for k, v in settings.items() if k != "frontend"},
            "frontend": {
                "sample_rate": frontend.sample_rate,
                "n_dft": frontend.n_dft,
                "n_hop": frontend.n_hop,
                "n_mels": frontend.n_mels,
            },
        },
        "clips": [str(p.name) for p in dataset.paths],
        "folds": [{**r, "fold": _plain(r["fold"])} for r in records],
        "table": table,
        "notes": list(notes),
    }


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------- text


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _macs(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def _acc(stats: dict) -> str:
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


_COLUMNS = (
    "student",
    "params",
    "int8 flash",
    "arena",
    "MACs front end",
    "MACs network",
    "int8 acc %",
    "float acc %",
    "teacher acc %",
    "fits",
)


def _rows(report: dict) -> list[tuple]:
    rows = []
    for row in report["table"]:
        fits = [name for name, ok in row["devices"].items() if ok]
        rows.append(
            (
                row["student"],
                f"{row['params']:,}",
                _kib(row["flash_bytes"]),
                _kib(row["arena_bytes"]) + ("" if row["arena_source"] == "tflite-micro" else "*"),
                _macs(row["macs_frontend"]),
                _macs(row["macs_network"]),
                _acc(row["int8_accuracy"]),
                _acc(row["float_accuracy"]),
                _acc(row["teacher_accuracy"]),
                ", ".join(fits) or "none",
            )
        )
    return rows


def _caption(report: dict) -> str:
    data, teacher, settings = report["dataset"], report["teacher"], report["settings"]
    folds = [str(f["fold"]) for f in report["folds"]]
    return (
        f"Task students on {data['name']} ({data['clips']} clips, {len(data['classes'])} classes), "
        f"leave-one-fold-out over folds {', '.join(folds)}; teacher {teacher['model']['name']} + "
        f"{teacher['classifier']}; T={settings['temperature']:g}, hard weight "
        f"{settings['hard_weight']:g}, hop {settings['hop_size']:g} s."
    )


def _footnotes(report: dict) -> list[str]:
    lines = [
        "Accuracy: clip accuracy on each held-out fold (mean of window probabilities), mean ± "
        "std over folds. Sizes: largest over the folds' int8 exports. MACs per 1-s window.",
    ]
    if any(row["arena_source"] != "tflite-micro" for row in report["table"]):
        lines.append("* arena estimated (tflite-micro not installed).")
    lines += [f"Note: {note}" for note in report["notes"]]
    return lines


def format_table(report: dict) -> str:
    """The report's table as aligned text (what ``edgel3 distill-task`` prints)."""
    rows = [_COLUMNS, *_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = [_caption(report), ""]
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", *_footnotes(report)])


def format_markdown(report: dict) -> str:
    """The report's table as Markdown."""
    lines = [_caption(report), "", "| " + " | ".join(_COLUMNS) + " |"]
    lines.append("|" + "---|" * len(_COLUMNS))
    lines += ["| " + " | ".join(row) + " |" for row in _rows(report)]
    return "\n".join([*lines, "", *_footnotes(report)]) + "\n"


def write_report(report: dict, folder, *, paths=None) -> list[Path]:
    """Write ``task_students.json``, ``.txt`` and ``.md``, each atomically.

    Parameters
    ----------
    report : dict
    folder : path-like
        Where the files go (made if missing).
    paths : sequence of path-like, optional
        The three files' paths instead (e.g. staged by the command line).

    Returns
    -------
    list of pathlib.Path
    """
    paths = [Path(p) for p in (paths or [Path(folder) / n for n in REPORT_FILES])]
    texts = (
        json.dumps(report, indent=1, default=_plain) + "\n",
        format_table(report) + "\n",
        format_markdown(report),
    )
    for path, text in zip(paths, texts):
        with atomic_write(path) as handle:
            handle.write(text.encode("utf-8"))
    return paths
