"""``edgel3 models``: every model name the library accepts, and which are available offline.

The names are :func:`edgel3.reference.model_names`'s, so the list is exactly what
``--model`` (and ``get_embedding(model=...)``) accept by name: the bundled
models (``tiny``), the short names (``sea-64``, ``sparse-kd-87.0``) and the
official file stems. Nothing is loaded or downloaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["DESCRIPTION", "add_arguments", "run", "model_rows"]

DESCRIPTION = (
    "List every model name edgel3 accepts (--model NAME): bundled models, short names and "
    "official weight-file stems, with the weight file found locally (if any). Model files "
    "(.h5, .h5.gz, .keras, .tflite) are accepted by path as well."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``models`` options to ``parser``."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _bundled_row(name: str, path: Path) -> dict:
    """A bundled model's row; its sizes come from the model card beside the file."""
    from ..specs import REGISTRY

    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    teacher = REGISTRY.get(card.get("teacher", {}).get("model"))
    return {
        "model_type": card.get("architecture", {}).get("family", "bundled").split()[0],
        "retrain_type": None,
        "sparsity": None,
        "emb_dim": card.get("architecture", {}).get("emb_dim"),
        # A distilled student keeps its teacher's front end (see docs/model_card_tiny.md).
        "sample_rate": teacher.sample_rate if teacher else None,
        "in_0.2.1_api": False,
        "local_file": str(path),
    }


def model_rows() -> list[dict]:
    """One row per accepted name (see :func:`edgel3.reference.model_names`).

    Returns
    -------
    list of dict
        ``name``, ``kind`` ('bundled', 'short', 'official'), ``model`` (the
        official stem a name resolves to, or the bundled file), ``model_type``,
        ``retrain_type``, ``sparsity``, ``emb_dim``, ``sample_rate``,
        ``in_0.2.1_api`` and ``local_file`` (the weight file found without
        downloading, or None).
    """
    from ..reference import model_names
    from ..specs import REGISTRY
    from ..weights import find_weights

    rows = []
    for entry in model_names():
        row = {"name": entry["name"], "kind": entry["kind"], "model": entry["model"]}
        if entry["kind"] == "bundled":
            row.update(_bundled_row(entry["name"], Path(entry["model"])))
        else:
            spec = REGISTRY[entry["model"]]
            path = find_weights(spec)
            row.update(
                {
                    "model_type": spec.model_type,
                    "retrain_type": spec.retrain_type,
                    "sparsity": spec.sparsity,
                    "emb_dim": spec.emb_dim,
                    "sample_rate": spec.sample_rate,
                    "in_0.2.1_api": spec.legacy_api,
                    "local_file": str(path) if path else None,
                }
            )
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON); returns 0."""
    rows = model_rows()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(
        f"{'name':30} {'kind':8} {'type':6} {'retrain':7} {'sparsity':8} {'emb':>4} {'sr':>6}  "
        "local"
    )
    for row in rows:
        print(
            f"{row['name']:30} {row['kind']:8} {row['model_type']:6} "
            f"{row['retrain_type'] or '-':7} {row['sparsity'] or '-'!s:8} "
            f"{row['emb_dim'] or '-'!s:>4} {row['sample_rate'] or '-'!s:>6}  "
            f"{row['local_file'] or '-'}"
        )
    return 0
