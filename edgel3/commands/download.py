"""``edgel3 download [NAME...]``: fetch official weight files into the cache and verify them.

A command module of :mod:`edgel3.cli` (see :mod:`edgel3.commands`); uses
:mod:`edgel3.weights` only (no TensorFlow).
"""

from __future__ import annotations

import argparse
import sys
import warnings

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Download official weight files into the cache and verify their hashes "
    "(files already present are verified, not downloaded again). With --unpack, also "
    "write the unpacked <name>.h5 into the cache and record its SHA-256, against which "
    "every <name>.h5 is then verified. Bundled models (tiny) ship with the package and "
    "need no download."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``download`` options to ``parser``."""
    parser.add_argument(
        "names", nargs="*", help="model names (see 'edgel3 models'); default: every official one"
    )
    parser.add_argument("--force", action="store_true", help="download again even if present")
    parser.add_argument(
        "--unpack",
        action="store_true",
        help="also write the unpacked <name>.h5 next to the cached .h5.gz and record its hash",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Download/verify each model; returns 1 if any failed."""
    from ..bundled import BUNDLED
    from ..exceptions import EdgeL3Error
    from ..specs import REGISTRY, get_spec
    from ..weights import UnverifiedWeightsWarning, download_weights, get_weights_path

    names = args.names or list(REGISTRY)
    # Check every name first: a typo fails before any download starts.
    specs = {name: None if name in BUNDLED else get_spec(name) for name in names}
    failed = 0
    for name, spec in specs.items():
        if spec is None:
            print(f"ok  {name}  {BUNDLED[name]}  (bundled)")
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UnverifiedWeightsWarning)
                if args.force or args.unpack:
                    path = download_weights(
                        spec, progress=not args.quiet, force=args.force, unpack=args.unpack
                    )
                else:
                    path = get_weights_path(spec, progress=not args.quiet)
        except EdgeL3Error as exc:
            failed += 1
            print(f"edgel3: {spec.name}: {exc}", file=sys.stderr)
            continue
        for warning in caught:  # one line each, not Python's two-line warning format
            if issubclass(warning.category, UnverifiedWeightsWarning):
                print(f"edgel3: warning: {warning.message}", file=sys.stderr)
            else:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
        print(f"ok  {spec.name}  {path}")
    return 1 if failed else 0
