"""``edgel3 [embed] INPUT...``: embeddings of audio files, saved as ``.npz`` or Parquet.

Keeps every option of edgel3 0.2.1 (``sea`` models too) and adds recursion,
``--batch-size``, ``--overwrite``, ``--model``, ``--fast-resample``, progress bars,
and batch extraction (``--jobs``, ``--manifest``, ``--shard``, ``--format parquet``,
``--engine ray``; see docs/scale.rst). Without a batch option the files are
embedded in this process by :func:`edgel3.runs.process_files`; with one, by
:mod:`edgel3.batch` (worker processes or Ray). Defaults are
:func:`edgel3.core.process_file`'s.
"""

from __future__ import annotations

import argparse
import sys

from ..specs import EMB_DIMS, MODEL_TYPES, RETRAIN_TYPES, SPARSITIES
from ..version import __version__
from . import COMMANDS
from .common import (
    add_hop_size,
    add_no_centering,
    add_output,
    add_quiet,
    positive_float,
    positive_int,
    shard,
    signature_defaults,
)

__all__ = [
    "DESCRIPTION",
    "EPILOG",
    "EMBED_DEFAULTS",
    "NO_AUDIO_STATUS",
    "add_arguments",
    "run",
    "defaults",
    "no_audio_message",
    "report_results",
]

DESCRIPTION = (
    "Compute edgel3 embeddings of audio files and save them as .npz "
    "(arrays 'embedding' and 'timestamps'). Other commands (each with --help): "
    + ", ".join(f"'edgel3 {name}'" for name in COMMANDS if name != "embed")
    + "."
)

EPILOG = (
    "A path named like a command is a command when it comes first: embed it with "
    "'edgel3 embed models', 'edgel3 ./models' or 'edgel3 models/'. "
    "TensorFlow's own log lines are hidden unless you set TF_CPP_MIN_LOG_LEVEL "
    "(0 shows them all) or give --debug. See docs/cli.rst."
)

#: Defaults of :func:`edgel3.core.process_file`, repeated here because importing
#: :mod:`edgel3.core` (SciPy) would make ``--help`` slow; :func:`defaults` reads them
#: from the library and the tests check that the two are equal.
EMBED_DEFAULTS = {
    "output_dir": None,
    "suffix": None,
    "model": None,
    "model_type": "sparse",
    "emb_dim": 128,
    "retrain_type": "ft",
    "sparsity": 95.45,
    "center": True,
    "hop_size": 0.1,
    "batch_size": 64,
}

#: Exit status when no audio file is found (edgel3 0.2.1's ``sys.exit(-1)``).
NO_AUDIO_STATUS = -1


def defaults() -> dict:
    """Defaults of :func:`edgel3.core.process_file` (imports :mod:`edgel3.core`)."""
    from ..core import process_file

    return signature_defaults(process_file)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``embed`` options to ``parser`` (edgel3 0.2.1's, short flags included)."""
    d = EMBED_DEFAULTS
    parser.epilog = EPILOG
    parser.add_argument(
        "inputs", nargs="*", help="audio files and/or directories (optional with --manifest)"
    )
    add_output(
        parser,
        "directory for the .npz files (default: next to each input)",
        dest="output_dir",
        aliases=("--output-dir",),
        metavar="DIR",
        default=d["output_dir"],
    )
    parser.add_argument(
        "-x",
        "--suffix",
        default=d["suffix"],
        help="string appended to output names: NAME_SUFFIX.npz (default: none, NAME.npz)",
    )
    parser.add_argument(
        "-mtype",
        "--model-type",
        choices=MODEL_TYPES,
        default=d["model_type"],
        help="model family",
    )
    parser.add_argument(
        "-e",
        "--emb-dim",
        type=int,
        choices=EMB_DIMS,
        default=d["emb_dim"],
        help="embedding size of 'sea' models",
    )
    parser.add_argument(
        "-retrain",
        "--retrain-type",
        choices=RETRAIN_TYPES,
        default=d["retrain_type"],
        help="retraining of 'sparse' models: fine-tuning or knowledge distillation",
    )
    parser.add_argument(
        "-sp",
        "--model-sparsity",
        type=positive_float,
        choices=SPARSITIES,
        default=d["sparsity"],
        metavar="PERCENT",
        help="sparsity of 'sparse' models: "
        + ", ".join(f"{sparsity:g}" for sparsity in SPARSITIES),
    )
    parser.add_argument(
        "--model",
        default=d["model"],
        help="a model name (see 'edgel3 models': tiny, sea-64, official file stems) or a "
        "model file (.h5, .h5.gz, .keras, .tflite); overrides the four options above "
        "(default: chosen by them)",
    )
    add_no_centering(parser, "do not pad half a window at the start (timestamps = window starts)")
    add_hop_size(parser, d["hop_size"], "seconds between windows")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=d["batch_size"],
        help="windows per forward pass",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute every file, even one whose output is up to date (default: an output is "
        "kept only if it was made from the same input, model, options and edgel3 version; any "
        "other is recomputed)",
    )
    parser.add_argument(
        "--keep-existing",
        action="store_true",
        help="keep every existing output without checking how it was made (edgel3 0.2.1's rule)",
    )
    parser.add_argument(
        "--fast-resample",
        action="store_true",
        help="resample with soxr/polyphase instead of the exact legacy resampler: much faster, "
        "but embeddings differ from the official pipeline (see docs/performance.rst)",
    )
    parser.add_argument(
        "--runtime",
        choices=("auto", "numpy", "keras"),
        default="auto",
        help="what runs the model: 'numpy' without TensorFlow (.h5/.h5.gz weight files, i.e. "
        "every official model, and .keras files such as tiny); 'keras' TensorFlow; 'auto' the "
        "one that finishes sooner (default: %(default)s; see docs/runtime.rst)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail a file whose data is shorter than its header declares (default: embed "
        "what is present and warn)",
    )
    parser.add_argument(
        "--no-recursive", action="store_true", help="do not descend into subdirectories"
    )
    _add_batch_arguments(parser)
    add_quiet(parser, "no progress bar or summary")
    parser.add_argument("--version", action="version", version=f"edgel3 {__version__}")


def _add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of batch extraction (:mod:`edgel3.batch`; docs/scale.rst)."""
    group = parser.add_argument_group("many files (see docs/scale.rst)")
    group.add_argument(
        "--manifest",
        metavar="FILE",
        help="list of input files: .txt (one path per line) or .csv (column 'path'); "
        "relative paths are relative to FILE's folder (default: none)",
    )
    group.add_argument(
        "-j",
        "--jobs",
        type=positive_int,
        default=None,
        help="worker processes, each loading the model once (default: 1, in this process); "
        "with --engine ray, model actors (default: one per CPU of the cluster)",
    )
    group.add_argument(
        "--format",
        choices=("npz", "parquet"),
        default=None,
        help="one .npz per file, or a Parquet dataset in -o DIR (one row per window: path, "
        "timestamp, embedding, model) (default: npz; parquet with --engine ray)",
    )
    group.add_argument(
        "--shard",
        type=shard,
        metavar="I/N",
        help="embed only shard I of N (0-based, e.g. $SLURM_ARRAY_TASK_ID/4), chosen by a "
        "hash of each path: the N shards cover every file exactly once (default: all files)",
    )
    group.add_argument(
        "--errors-file",
        metavar="FILE",
        help="append failed files to FILE (JSON lines: path, error, run, time) "
        "(default: report them on stderr only)",
    )
    group.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="'ray': a Ray Data pipeline on a local Ray instance or a cluster "
        "(pip install edgel3[ray]) (default: %(default)s)",
    )
    group.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to join ('auto', 'ray://head:10001'); default: $RAY_ADDRESS or "
        "a new local instance",
    )


def no_audio_message(inputs) -> str:
    """edgel3 0.2.1's message when no audio file is found in ``inputs`` (printed on stdout)."""
    return f"Edgel3: No WAV files found in {inputs}. Aborting."


def run(args: argparse.Namespace) -> int:
    """Embed the files.

    Returns
    -------
    int
        0; 1 if any file failed; 2 for a usage error; :data:`NO_AUDIO_STATUS` (-1, as
        in edgel3 0.2.1) when the inputs hold no audio file.
    """
    from ..batch import gather_inputs, search_roots
    from ..runs import process_files

    if not args.inputs and not args.manifest:
        print("edgel3: error: give audio files/directories or --manifest FILE.", file=sys.stderr)
        return 2
    if args.ray_address and args.engine != "ray":
        print("edgel3: error: --ray-address needs --engine ray.", file=sys.stderr)
        return 2
    if args.overwrite and args.keep_existing:
        print("edgel3: error: --overwrite and --keep-existing exclude each other.", file=sys.stderr)
        return 2
    files = gather_inputs(args.inputs, manifest=args.manifest, recursive=not args.no_recursive)
    if not files:
        print(no_audio_message(args.inputs + ([args.manifest] if args.manifest else [])))
        return NO_AUDIO_STATUS
    options = dict(
        output_dir=args.output_dir,
        model=args.model,
        model_type=args.model_type,
        emb_dim=args.emb_dim,
        retrain_type=args.retrain_type,
        sparsity=args.model_sparsity,
        center=not args.no_centering,
        hop_size=args.hop_size,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        fast_resample=args.fast_resample,
        strict=args.strict,
        runtime=args.runtime,
        progress=not args.quiet,
    )
    batch = (args.jobs, args.format, args.shard, args.manifest, args.errors_file)
    roots = search_roots(args.inputs, manifest=args.manifest)
    if args.engine == "local" and all(option is None for option in batch):
        # No batch option: every file in this process, with one loaded model.
        results = process_files(
            files, suffix=args.suffix, keep_existing=args.keep_existing, roots=roots, **options
        )
        return report_results(results, args.quiet)
    options.update(shard=args.shard, errors_file=args.errors_file)
    if args.engine == "ray":
        from ..batch import embed_files_ray

        summary = embed_files_ray(
            files,
            address=args.ray_address,
            concurrency=args.jobs,
            output_format=args.format or "parquet",
            **options,
        )
    else:
        from ..batch import embed_files

        summary = embed_files(
            files,
            suffix=args.suffix,
            keep_existing=args.keep_existing,
            roots=roots,
            jobs=args.jobs or 1,
            output_format=args.format or "npz",
            **options,
        )
    return report_results(summary.results, args.quiet, summary)


def report_results(results, quiet: bool, summary=None) -> int:
    """Print failures and per-file warnings (stderr) and the counts (stdout, unless ``quiet``).

    Parameters
    ----------
    results : list of edgel3.runs.FileResult
    quiet : bool
    summary : edgel3.batch.RunSummary, optional
        Adds the throughput line.

    Returns
    -------
    int
        The exit status: 1 if any file failed, else 0.
    """
    counts = {
        status: sum(r.status == status for r in results)
        for status in ("written", "skipped", "failed")
    }
    stale = [r for r in results if r.status == "written" and r.note]
    warned = [r for r in results if r.status == "written" and r.warnings]
    for result in results:
        if result.status == "failed":
            print(f"edgel3: failed: {result.path}: {result.error}", file=sys.stderr)
        for message in result.warnings:  # a message that names its file is printed as is
            where = "" if str(result.path) in message else f"{result.path}: "
            print(f"edgel3: warning: {where}{message}", file=sys.stderr)
    if not quiet:
        replaced = f" ({len(stale)} replacing stale outputs)" if stale else ""
        kept = " (up to date; --overwrite recomputes them)" if counts["skipped"] else ""
        print(
            f"{counts['written']} written{replaced}, {counts['skipped']} skipped{kept}, "
            f"{counts['failed']} failed, of {len(results)} files."
        )
        for result in stale[:5]:
            print(f"  recomputed {result.output}: {result.note}")
        if len(stale) > 5:
            print(f"  ... and {len(stale) - 5} more recomputed")
        if warned:
            print(f"{len(warned)} written with warnings (see above).")
        if summary is not None and counts["written"]:
            print(
                f"{summary.files_per_second:.2f} files/s, "
                f"{summary.audio_seconds_per_second:.1f} audio-seconds/s "
                f"({summary.seconds:.1f} s in all)."
            )
    return 1 if counts["failed"] else 0
