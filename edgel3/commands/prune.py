"""``edgel3 prune``: magnitude pruning, filter/depth reduction and sensitivity sweeps.

A command module of :mod:`edgel3.cli` (see :mod:`edgel3.commands`); TensorFlow loads
inside :func:`run` only.
"""

from __future__ import annotations

import argparse
import json

from .common import add_output, float_list, int_list, positive_int

__all__ = [
    "DESCRIPTION",
    "add_arguments",
    "run",
    "parse_plan",
    "METRIC_NAMES",
    "SWEEP_DEFAULTS",
]

DESCRIPTION = (
    "Compress an edgel3 model: per-layer magnitude pruning to a plan (official plans "
    "53.5 ... 95.45, 97, 98, 99 or one sparsity per conv), L1 filter pruning, depth "
    "reduction; or run a pruning sensitivity sweep on audio. Order: depth, filters, plan."
)


#: ``--metric`` choices and the sweep's defaults: those of
#: :func:`edgel3.compress.sensitivity.sensitivity_sweep`, repeated so that ``--help`` does
#: not import the compression package (tests/test_cli_grammar.py checks they are equal).
METRIC_NAMES = ("relative_l2", "cosine", "mse")
SWEEP_DEFAULTS = {"sparsities": [70, 80, 85, 90, 95], "metric": "relative_l2"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``prune`` options to ``parser``."""
    parser.add_argument("model", help="official model name (sea-64, ...), 'tiny' or a model file")
    add_output(
        parser,
        "the compressed model file to write: .keras, or .h5/.h5.gz in the legacy layout "
        "(required with --plan, --filters or --depth)",
    )
    parser.add_argument(
        "--plan",
        type=parse_plan,
        metavar="PLAN",
        help="official plan name (53.5 ... 95.45, 97, 98, 99) or comma-separated per-conv "
        "sparsities in percent (default: no magnitude pruning)",
    )
    parser.add_argument(
        "--filters",
        type=int_list,
        metavar="N,N,...",
        help="filters to keep per conv, e.g. 16,16,32,... (default: all)",
    )
    parser.add_argument(
        "--depth",
        type=positive_int,
        metavar="N",
        help="keep the first N convs; the embedding comes from the last one kept (default: all)",
    )
    parser.add_argument(
        "--sensitivity",
        nargs="+",
        metavar="AUDIO",
        help="instead of pruning: sweep each conv's sensitivity on windows of these audio "
        "files/folders (default: no sweep)",
    )
    parser.add_argument(
        "--sparsities",
        type=float_list,
        default=SWEEP_DEFAULTS["sparsities"],
        metavar="S,S,...",
        help="sweep: sparsities in percent tried per conv",
    )
    parser.add_argument(
        "--metric",
        choices=METRIC_NAMES,
        default=SWEEP_DEFAULTS["metric"],
        help="sweep: how embeddings of the pruned model are compared with the original's",
    )
    parser.add_argument(
        "--max-windows",
        type=positive_int,
        default=256,
        metavar="N",
        help="sweep: audio windows compared, evenly spaced",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def parse_plan(text: str) -> str | list[float]:
    """argparse type of ``--plan``: per-conv sparsities ``'0,85,...'`` -> a list; else the name.

    A plan name (``'95.45'``, ``'87'``) never contains a comma, so it is left for
    :func:`edgel3.compress.pruning.prune_model` to look up (and reject if unknown).
    """
    return float_list(text) if "," in text else text


def run(args: argparse.Namespace) -> int:
    """Prune (or sweep) and print the report; returns 0."""
    from ..checks import check_output_path
    from ..compress import filters, pruning
    from ..exceptions import ParameterError
    from ..reference import resolve_model
    from ..runners import model_sample_rate

    # Every option is checked before the model loads.
    given = {"--plan": args.plan, "--filters": args.filters, "--depth": args.depth}
    edits = [flag for flag, value in {**given, "-o": args.output}.items() if value]
    if args.sensitivity and edits:
        raise ParameterError(
            f"--sensitivity runs a sweep and writes no model: leave out {', '.join(edits)}."
        )
    if not (args.sensitivity or args.plan or args.filters or args.depth):
        raise ParameterError("Nothing to do: give --plan, --filters, --depth or --sensitivity.")
    if not args.sensitivity:
        if not args.output:
            raise ParameterError("Give the output model file with -o/--output.")
        check_output_path(args.output, "-o/--output", suffixes=pruning.MODEL_SUFFIXES)
    model = resolve_model(args.model).load()
    if args.sensitivity:
        import numpy as np

        from ..compress.data import load_windows
        from ..compress.sensitivity import sensitivity_sweep

        data = load_windows(args.sensitivity, model_sample_rate(model))
        rows = np.linspace(0, len(data) - 1, min(args.max_windows, len(data))).astype(int)
        result = sensitivity_sweep(
            model, data.windows[rows][:, None, :], sparsities=args.sparsities, metric=args.metric
        )
        print(json.dumps(result.to_dict(), indent=1) if args.json else result.to_text())
        return 0
    if args.depth:
        model = filters.reduce_depth(model, args.depth)
    if args.filters:
        model, _ = filters.prune_filters(model, args.filters)
    report = pruning.sparsity_report(model)
    if args.plan:
        model, report = pruning.prune_model(model, args.plan)
    pruning.save_model(model, args.output)
    if args.json:
        rows = [
            {
                "layer": r.name,
                "weights": r.n_weights,
                "nonzero": r.nonzero,
                "target": r.target,
                "sparsity": r.sparsity,
            }
            for r in report
        ]
        print(json.dumps({"output": args.output, "params": model.count_params(), "layers": rows}))
    else:
        print(pruning.format_report(report))
        print(f"wrote {args.output} ({model.count_params()} parameters)")
    return 0
