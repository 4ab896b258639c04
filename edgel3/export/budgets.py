"""Device memory budgets: named ones (``cortex-m7``, ``nrf52840``...) and user-defined.

Named budgets are the device presets of :mod:`edgel3.export.devices`;
:func:`parse_budget` also reads ``'name:flash=2MiB,ram=1MiB,inference=512KiB,code=128KiB'``.

Sizes are bytes; ``K``/``KB``/``KiB`` all mean 1024 bytes and ``M``/``MB``/``MiB``
1024², as in microcontroller datasheets.
"""

from __future__ import annotations

import numbers
import re

from ..checks import check_non_negative_int, is_real
from ..exceptions import ParameterError
from .devices import DEVICES, KIB, MIB, Budget

__all__ = ["KIB", "MIB", "Budget", "BUDGETS", "parse_budget", "parse_size"]

#: Named budgets: the device presets of :mod:`edgel3.export.devices` (one table).
BUDGETS: dict[str, Budget] = DEVICES

_UNITS = {"": 1, "b": 1, "k": KIB, "kb": KIB, "kib": KIB, "m": MIB, "mb": MIB, "mib": MIB}


def parse_size(text) -> int:
    """Read a size: an int (bytes) or a string like ``'512KiB'``, ``'2 MB'``, ``'1.5M'``.

    ``K``, ``KB`` and ``KiB`` all mean 1024 bytes; ``M``, ``MB``, ``MiB`` 1024².

    Parameters
    ----------
    text : int or str

    Returns
    -------
    int
        Bytes.

    Raises
    ------
    ParameterError
        If the text is not a non-negative size.
    """
    if is_real(text) and isinstance(text, numbers.Integral):
        return check_non_negative_int(text, "size")
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if match is None or match.group(2).lower() not in _UNITS:
        raise ParameterError(
            f"Invalid size {text!r}: expected bytes or a number with a unit "
            "(B, KiB/KB/K, MiB/MB/M), e.g. '512KiB'."
        )
    return int(round(float(match.group(1)) * _UNITS[match.group(2).lower()]))


def parse_budget(spec) -> Budget:
    """Turn a budget name, a spec string, a mapping or a :class:`Budget` into a Budget.

    Parameters
    ----------
    spec : str, dict or Budget
        A name from :data:`BUDGETS` (``'cortex-m7'``, ``'nrf52840'``...), or
        ``'[name:]flash=2MiB,ram=1MiB,inference=512KiB,code=128KiB'`` (any
        subset; ``code`` is flash kept for code, default 0), or a dict with
        those keys.

    Raises
    ------
    ParameterError
        For unknown names, keys or sizes.
    """
    if isinstance(spec, Budget):
        return spec
    if isinstance(spec, dict):
        items = dict(spec)
        name = str(items.pop("name", "custom"))
    else:
        text = str(spec).strip()
        if text.lower() in BUDGETS:
            return BUDGETS[text.lower()]
        if "=" not in text:
            raise ParameterError(
                f"Unknown budget {text!r}: use one of {sorted(BUDGETS)} or "
                "'name:flash=2MiB,ram=1MiB,inference=512KiB,code=128KiB'."
            )
        name, _, body = text.rpartition(":")
        items = {}
        for part in filter(None, (p.strip() for p in body.split(","))):
            key, _, value = part.partition("=")
            items[key.strip().lower()] = value
        name = name.strip() or "custom"
    unknown = set(items) - {"flash", "ram", "inference", "code"}
    if unknown or not set(items) - {"code"}:
        raise ParameterError(
            f"Invalid budget {spec!r}: keys must be among flash, ram, inference (and code); "
            f"got {sorted(items) or 'none'}."
        )
    return Budget(name, **{key: parse_size(value) for key, value in items.items()})
