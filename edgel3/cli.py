"""Command-line interface: ``edgel3 [embed] INPUT...``, ``edgel3 models``, ``edgel3 download``.

The embedding command keeps every option of edgel3 0.2.1 (works for ``sea``
too) and adds recursion, ``--batch-size``, ``--overwrite``, ``--model`` and
progress bars. Heavy modules are imported inside the handlers, so
``edgel3 --help`` does not load TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from ._argtypes import positive_float, positive_int, signature_defaults
from .exceptions import EdgeL3Error
from .specs import EMB_DIMS, MODEL_TYPES, REGISTRY, RETRAIN_TYPES, SPARSITIES, get_spec
from .version import __version__

__all__ = ["main", "build_parser"]

logger = logging.getLogger("edgel3")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def _other_commands() -> list[str]:
    return [name for name in (*_COMMANDS, *PLUGIN_COMMANDS) if name != "embed"]


def _library_defaults() -> dict:
    """Defaults of :func:`edgel3.core.process_file`, the single source for CLI defaults."""
    from .core import process_file

    return signature_defaults(process_file)


def _embed_parser(prog: str) -> argparse.ArgumentParser:
    d = _library_defaults()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Compute edgel3 embeddings of audio files and save them as .npz "
        "(arrays 'embedding' and 'timestamps'). Other commands (each with --help): "
        + ", ".join(f"'edgel3 {name}'" for name in _other_commands())
        + ".",
    )
    parser.add_argument(
        "inputs", nargs="*", help="audio files and/or directories (optional with --manifest)"
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        default=d["output_dir"],
        help="directory for the .npz files (default: next to each input)",
    )
    parser.add_argument(
        "-x",
        "--suffix",
        default=d["suffix"],
        help="string appended to output names: NAME_SUFFIX.npz",
    )
    parser.add_argument(
        "--model-type",
        choices=MODEL_TYPES,
        default=d["model_type"],
        help="model family (default: %(default)s)",
    )
    parser.add_argument(
        "--emb-dim",
        type=int,
        choices=EMB_DIMS,
        default=d["emb_dim"],
        help="embedding size of 'sea' models (default: %(default)s)",
    )
    parser.add_argument(
        "--retrain-type",
        choices=RETRAIN_TYPES,
        default=d["retrain_type"],
        help="retraining of 'sparse' models (default: %(default)s)",
    )
    parser.add_argument(
        "--model-sparsity",
        type=float,
        choices=SPARSITIES,
        default=d["sparsity"],
        help="sparsity of 'sparse' models (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        default=d["model"],
        help="an official model name (see 'edgel3 models') or a weight file; "
        "overrides the four options above",
    )
    parser.add_argument(
        "--no-centering",
        action="store_true",
        help="do not pad half a window at the start (timestamps = window starts)",
    )
    parser.add_argument(
        "--hop-size",
        type=positive_float,
        default=d["hop_size"],
        help="hop between windows in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=d["batch_size"],
        help="windows per forward pass (default: %(default)s)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute files whose output already exists (default: skip them)",
    )
    parser.add_argument(
        "--fast-resample",
        action="store_true",
        help="resample with soxr/polyphase instead of the exact legacy resampler: much faster, "
        "but embeddings differ from the official pipeline (see docs/performance.rst)",
    )
    parser.add_argument(
        "--no-recursive", action="store_true", help="do not descend into subdirectories"
    )
    _add_batch_options(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--version", action="version", version=f"edgel3 {__version__}")
    _add_common(parser)
    return parser


def _shard(text: str) -> tuple[int, int]:
    from .parallel import parse_shard

    try:
        return parse_shard(text)
    except EdgeL3Error as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    """Options of batch extraction (edgel3.parallel, edgel3.distributed; docs/scale.rst)."""
    group = parser.add_argument_group("many files (see docs/scale.rst)")
    group.add_argument(
        "--manifest",
        metavar="FILE",
        help="list of input files: .txt (one path per line) or .csv (column 'path'); "
        "relative paths are relative to FILE's folder",
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
        type=_shard,
        metavar="I/N",
        help="embed only shard I of N (0-based, e.g. $SLURM_ARRAY_TASK_ID/4), chosen by a "
        "hash of each path: the N shards cover every file exactly once",
    )
    group.add_argument(
        "--errors-file",
        metavar="FILE",
        help="append failed files to FILE (JSON lines: path, error, run, time)",
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


def _run_embed(args: argparse.Namespace) -> int:
    from .core import process_files
    from .parallel import gather_inputs

    if not args.inputs and not args.manifest:
        print("edgel3: error: give audio files/directories or --manifest FILE.", file=sys.stderr)
        return 2
    files = gather_inputs(args.inputs, manifest=args.manifest, recursive=not args.no_recursive)
    if not files:
        print("edgel3: no audio files found in the given inputs.", file=sys.stderr)
        return 1
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
        progress=not args.quiet,
    )
    batch = (args.jobs, args.format, args.shard, args.manifest, args.errors_file)
    simple = args.engine == "local" and all(option is None for option in batch)
    if args.fast_resample and not simple:
        print(
            "edgel3: error: --fast-resample works without the batch options "
            "(--jobs, --format, --shard, --manifest, --errors-file, --engine).",
            file=sys.stderr,
        )
        return 2
    if args.ray_address and args.engine != "ray":
        print("edgel3: error: --ray-address needs --engine ray.", file=sys.stderr)
        return 2
    if simple:
        # No batch option: 0.2.1's behaviour (only .npz files, existing outputs skipped).
        results = process_files(
            files, suffix=args.suffix, fast_resample=args.fast_resample, **options
        )
        return _report(results, args.quiet)
    options.update(shard=args.shard, errors_file=args.errors_file)
    if args.engine == "ray":
        from .distributed import embed_files_ray

        summary = embed_files_ray(
            files,
            address=args.ray_address,
            concurrency=args.jobs,
            output_format=args.format or "parquet",
            **options,
        )
    else:
        from .parallel import embed_files

        summary = embed_files(
            files,
            suffix=args.suffix,
            jobs=args.jobs or 1,
            output_format=args.format or "npz",
            **options,
        )
    return _report(summary.results, args.quiet, summary)


def _report(results, quiet: bool, summary=None) -> int:
    counts = {
        status: sum(r.status == status for r in results)
        for status in ("written", "skipped", "failed")
    }
    for result in results:
        if result.status == "failed":
            print(f"edgel3: failed: {result.path}: {result.error}", file=sys.stderr)
    if not quiet:
        print(
            f"{counts['written']} written, {counts['skipped']} skipped (output exists; "
            f"use --overwrite), {counts['failed']} failed, of {len(results)} files."
        )
        if summary is not None and counts["written"]:
            print(
                f"{summary.files_per_second:.2f} files/s, "
                f"{summary.audio_seconds_per_second:.1f} audio-seconds/s "
                f"({summary.seconds:.1f} s in all)."
            )
    return 1 if counts["failed"] else 0


def _models_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="List the official edgel3 models.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_common(parser)
    return parser


def _run_models(args: argparse.Namespace) -> int:
    from .weights import find_weights

    rows = []
    for spec in REGISTRY.values():
        path = find_weights(spec)
        rows.append(
            {
                "name": spec.name,
                "model_type": spec.model_type,
                "retrain_type": spec.retrain_type,
                "sparsity": spec.sparsity,
                "emb_dim": spec.emb_dim,
                "sample_rate": spec.sample_rate,
                "in_0.2.1_api": spec.legacy_api,
                "local_file": str(path) if path else None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':34} {'type':6} {'retrain':7} {'sparsity':8} {'emb':>4} {'sr':>6}  local")
    for row in rows:
        print(
            f"{row['name']:34} {row['model_type']:6} {row['retrain_type'] or '-':7} "
            f"{row['sparsity'] or '-'!s:8} {row['emb_dim']:>4} {row['sample_rate']:>6}  "
            f"{row['local_file'] or '-'}"
        )
    return 0


def _download_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Download official weight files into the cache and verify their hashes "
        "(files already present are verified, not downloaded again).",
    )
    parser.add_argument("names", nargs="*", help="model names (see 'edgel3 models'); default: all")
    parser.add_argument("--force", action="store_true", help="download again even if present")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    _add_common(parser)
    return parser


def _run_download(args: argparse.Namespace) -> int:
    from .weights import download_weights, get_weights_path

    specs = [get_spec(name) for name in args.names] or list(REGISTRY.values())
    failed = 0
    for spec in specs:
        try:
            if args.force:
                path = download_weights(spec, progress=not args.quiet, force=True)
            else:
                path = get_weights_path(spec, progress=not args.quiet)
        except EdgeL3Error as exc:
            failed += 1
            print(f"edgel3: {spec.name}: {exc}", file=sys.stderr)
            continue
        print(f"ok  {spec.name}  {path}")
    return 1 if failed else 0


_COMMANDS = {
    "models": (_models_parser, _run_models),
    "download": (_download_parser, _run_download),
    "embed": (_embed_parser, _run_embed),
}

#: Commands implemented in other modules, imported only when invoked. Each module
#: defines ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``.
PLUGIN_COMMANDS: dict[str, str] = {
    "export": "edgel3.export.cli",
    "memory-report": "edgel3.export.memory_cli",
    "evaluate": "edgel3.evaluate.cli",
    "prune": "edgel3.compress.cli_prune",
    "distill": "edgel3.compress.cli_distill",
    "sea": "edgel3.compress.cli_sea",
}


def _plugin(command: str):
    import importlib

    module = importlib.import_module(PLUGIN_COMMANDS[command])

    def make(prog: str) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=prog, description=module.DESCRIPTION)
        module.add_arguments(parser)
        _add_common(parser)
        return parser

    return make, module.run


def _command(command: str):
    return _COMMANDS[command] if command in _COMMANDS else _plugin(command)


def build_parser(command: str = "embed") -> argparse.ArgumentParser:
    """Return the argument parser of a command (``'embed'``, ``'models'``, ...)."""
    make, _ = _command(command)
    return make("edgel3" if command == "embed" else f"edgel3 {command}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 errors, 2 usage).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (``sys.argv[1:]`` by default).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "embed"
    if argv and (argv[0] in _COMMANDS or argv[0] in PLUGIN_COMMANDS):
        command = argv.pop(0)
    _, run = _command(command)
    try:
        args = build_parser(command).parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
        return int(exc.code or 0)
    logging.basicConfig(level=logging.ERROR, format="edgel3: %(message)s")
    if not args.debug:
        # TensorFlow's C++ info/warning logs are noise for CLI users (the few lines it prints
        # before its logger initialises cannot be silenced from here).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return run(args)
    except EdgeL3Error as exc:
        if args.debug:
            raise
        print(f"edgel3: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgel3: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
