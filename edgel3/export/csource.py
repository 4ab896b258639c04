"""C sources of a backbone export for a TensorFlow Lite Micro application.

Three files per export ``NAME.tflite`` (docs/deploy_mcu.rst shows how an
application uses them):

``NAME_model_data.cc`` / ``NAME_model_data.h``
    The flatbuffer as ``alignas(16) const unsigned char g_NAME_model_data[]`` and
    its length ``g_NAME_model_data_len``, the way TFLM examples include a model.
``NAME_frontend.h``
    The front end's constants (docs/frontend.rst §4): sample rate, ``n_dft``,
    ``n_hop``, mels, frames, TF 'SAME' padding, the periodic Hann window, the
    sparse mel filterbank (first bin, count and weights per band), the
    normalisation constants (1e-10 amplitude floor, -80 dB) and the export's exact
    int8 input and output scale and zero point. C and C++ both include it.

Everything is read from the ``.tflite`` file and its sidecar JSON, so the header
describes exactly the file next to it. Float constants are printed with 9
significant digits: the compiler rounds them back to the same float32 values.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from ..checks import check_output_path
from ..exceptions import OutputError, ParameterError, WeightsError
from ..files import atomic_write
from ..frontend import hann_window
from ..litert import frontend_from_dict, read_sidecar
from ..version import __version__
from .micro_frontend import DYNAMIC_RANGE_DB, INT16_SCALE, POWER_FLOOR, SparseMel

__all__ = [
    "c_identifier",
    "c_source_paths",
    "check_c_source_dir",
    "model_data_sources",
    "resolver_calls",
    "frontend_header",
    "sidecar_mel",
    "write_c_sources",
]

#: kapre's amplitude floor (docs/frontend.rst §4.5).
AMIN = 1e-10
_BYTES_PER_LINE = 12
_VALUES_PER_LINE = 6


def c_identifier(name: str) -> str:
    """A C identifier made from a file stem: other characters become ``_``.

    Examples
    --------
    >>> c_identifier("sea-64 int8"), c_identifier("64bands")
    ('sea_64_int8', 'm_64bands')
    """
    ident = re.sub(r"\W", "_", str(name), flags=re.ASCII)
    if not ident or ident[0].isdigit():
        ident = f"m_{ident}"
    return ident


def c_source_paths(directory, name: str) -> tuple[Path, Path, Path]:
    """The three files written for the export ``name``: model data .cc, .h, front end .h.

    Parameters
    ----------
    directory : path-like
    name : str
        The export's file stem (made a C identifier by :func:`c_identifier`).

    Returns
    -------
    tuple of pathlib.Path
    """
    ident = c_identifier(name)
    directory = Path(directory)
    return (
        directory / f"{ident}_model_data.cc",
        directory / f"{ident}_model_data.h",
        directory / f"{ident}_frontend.h",
    )


def check_c_source_dir(directory, name: str) -> tuple[Path, Path, Path]:
    """Check, before any work, that the C sources of ``name`` can be written in ``directory``.

    The folder may exist (files in it are replaced) or be made; it must not be a
    file, and none of the three names may be a folder.

    Returns
    -------
    tuple of pathlib.Path
        :func:`c_source_paths`.

    Raises
    ------
    OutputError
        If ``directory`` is a file (or lies under one), is not writable, or a
        target name is a folder.
    ParameterError
        If ``directory`` is not a path.
    """
    folder = check_output_path(directory, "--c-source", folder=True)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f'--c-source "{folder}" is a file; give a folder for the C sources.')
    paths = c_source_paths(folder, name)
    for path in paths:
        check_output_path(path, "--c-source")
    return paths


def _c_float(value) -> str:
    text = f"{float(value):.9g}"
    if not any(c in text for c in ".en"):
        text += ".0"
    return f"{text}f"


def _rows(items: list[str], per_line: int) -> str:
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return ",\n".join(f"    {line}" for line in lines)


def _guard(filename: str) -> str:
    return re.sub(r"\W", "_", filename, flags=re.ASCII).upper() + "_"


def resolver_calls(flatbuffer: bytes) -> list[str]:
    """The ``MicroMutableOpResolver`` methods an export needs, one per operator type.

    TFLite Micro names them after the builtin operator: ``CONV_2D`` -> ``AddConv2D``,
    ``REDUCE_MAX`` -> ``AddReduceMax``.

    Parameters
    ----------
    flatbuffer : bytes
        A ``.tflite`` file's content.

    Returns
    -------
    list of str
        Sorted, e.g. ``['AddAdd', 'AddConv2D', ...]``.
    """
    from .graph import graph_from_tflite

    graph = graph_from_tflite(flatbuffer)
    ops = {node.label for node in graph.nodes}
    if graph.dequantized_bytes:  # fp16 weights: DEQUANTIZE ops the graph folds away
        ops.add("DEQUANTIZE")
    return sorted(
        "Add" + "".join(w if w[0].isdigit() else w.capitalize() for w in op.split("_"))
        for op in ops
    )


def model_data_sources(flatbuffer: bytes, name: str, *, source: str = "") -> tuple[str, str]:
    """The ``.cc`` and ``.h`` texts that hold a flatbuffer as an aligned C array.

    The header also lists the operator types for the application's
    ``tflite::MicroMutableOpResolver`` and defines ``NAME_OP_COUNT``, its size.

    Parameters
    ----------
    flatbuffer : bytes
        The ``.tflite`` file's content.
    name : str
        File stem (see :func:`c_identifier`).
    source : str
        The file it came from, for the comment.

    Returns
    -------
    cc, h : str
    """
    ident = c_identifier(name)
    header_name = f"{ident}_model_data.h"
    digest = hashlib.sha256(flatbuffer).hexdigest()
    about = (
        f"// Generated by edgel3 {__version__} from {source or name + '.tflite'} "
        f"({len(flatbuffer)} bytes, sha256 {digest}).\n"
        "// Do not edit: regenerate with 'edgel3 export ... --c-source DIR'.\n"
    )
    guard = _guard(header_name)
    calls = resolver_calls(flatbuffer) if flatbuffer else []
    header = (
        f"{about}#ifndef {guard}\n#define {guard}\n\n"
        "// The flatbuffer, 16-byte aligned as TensorFlow Lite Micro requires.\n"
        f"extern const unsigned char g_{ident}_model_data[];\n"
        f"extern const unsigned int g_{ident}_model_data_len;\n\n"
        f"// Operators: tflite::MicroMutableOpResolver<{ident.upper()}_OP_COUNT> resolver;\n"
        + "".join(f"//   resolver.{call}();\n" for call in calls)
        + f"#define {ident.upper()}_OP_COUNT {len(calls)}\n\n"
        f"#endif  // {guard}\n"
    )
    body = _rows([f"0x{b:02x}" for b in flatbuffer], _BYTES_PER_LINE)
    source_text = (
        f'{about}#include "{header_name}"\n\n'
        f"alignas(16) const unsigned char g_{ident}_model_data[] = {{\n{body}\n}};\n"
        f"const unsigned int g_{ident}_model_data_len = {len(flatbuffer)};\n"
    )
    return source_text, header


def sidecar_mel(frontend: dict) -> SparseMel:
    """The sparse mel filterbank an export's sidecar describes (``frontend.filterbank``).

    Raises
    ------
    WeightsError
        If the description has no filterbank or one of the wrong size.
    """
    try:
        bands = frontend["filterbank"]
        firsts = [int(band["start_bin"]) for band in bands]
        weights = [np.asarray(band["weights"], dtype=np.float32) for band in bands]
        n_bins, n_mels = int(frontend["n_bins"]), int(frontend["n_mels"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(
            f"The export's front-end description lacks its filterbank: {exc}"
        ) from exc
    if len(bands) != n_mels:
        raise WeightsError(f"The export describes {len(bands)} mel bands; expected {n_mels}.")
    return SparseMel(
        np.asarray(firsts, dtype=np.int32),
        np.asarray([w.size for w in weights], dtype=np.int32),
        np.concatenate(weights) if weights else np.zeros(0, np.float32),
        n_bins,
    )


def frontend_header(description: dict, name: str, *, source: str = "") -> str:
    """The text of ``NAME_frontend.h`` for an export's sidecar description.

    Parameters
    ----------
    description : dict
        The sidecar JSON of a backbone export (:func:`edgel3.litert.read_sidecar`).
    name : str
        File stem (see :func:`c_identifier`).
    source : str
        The export's file name, for the comment.

    Returns
    -------
    str

    Raises
    ------
    ParameterError
        If the export is not a backbone (its front end is inside the graph).
    WeightsError
        If the description lacks the front end or the input/output quantization.
    """
    if description.get("variant") != "backbone" or "frontend" not in description:
        raise ParameterError(
            "C sources are for backbone exports (log-mel input), whose front end runs on the "
            f"device; this export is variant={description.get('variant')!r}. Export with "
            "--variant backbone (the default for quantized exports)."
        )
    try:
        frontend = description["frontend"]
        config = frontend_from_dict(frontend)
        io = {key: description[key] for key in ("input", "output")}
        pad_left, pad_right = (int(v) for v in frontend["same_padding"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"The export's description is incomplete: {exc}") from exc
    mel = sidecar_mel(frontend)
    prefix = c_identifier(name).upper()
    lower = c_identifier(name)
    guard = _guard(f"{lower}_frontend.h")
    defines = [
        ("SAMPLE_RATE", config.sample_rate, "Hz; one window = SAMPLE_RATE int16 samples"),
        ("N_DFT", config.n_dft, "FFT size and Hann window length"),
        ("N_HOP", config.n_hop, "samples between STFT frames"),
        ("N_BINS", config.n_bins, "N_DFT / 2 + 1"),
        ("N_MELS", config.n_mels, "rows of the input patch, low band first"),
        ("N_FRAMES", config.n_frames, "columns of the input patch"),
        ("PAD_LEFT", pad_left, "zeros before the window (TF 'SAME' padding)"),
        ("PAD_RIGHT", pad_right, "zeros after the window"),
        ("MEL_WEIGHT_COUNT", int(mel.counts.sum()), f"length of {lower}_mel_weights"),
        ("INT16_SCALE", _c_float(INT16_SCALE), "int16 -> float32, exact (arm_q15_to_float)"),
        ("AMIN", _c_float(AMIN), "kapre's floor on the mel amplitude sqrt(power)"),
        ("POWER_FLOOR", _c_float(POWER_FLOOR), "the same floor on mel power: AMIN^2"),
        ("TOP_DB", _c_float(DYNAMIC_RANGE_DB), "dB below the window's maximum kept"),
        ("INPUT_SCALE", _c_float(io["input"]["scale"]), "input quantization"),
        ("INPUT_ZERO_POINT", int(io["input"]["zero_point"]), ""),
        ("OUTPUT_SCALE", _c_float(io["output"]["scale"]), "output quantization"),
        ("OUTPUT_ZERO_POINT", int(io["output"]["zero_point"]), ""),
        ("EMBEDDING_SIZE", int(description.get("emb_dim", io["output"]["shape"][-1])), ""),
    ]
    lines = [
        f"// Generated by edgel3 {__version__}: the front end of {source or name + '.tflite'} "
        f"({description.get('source_model', '')}, {description.get('quantization', '')}).",
        "// Do not edit: regenerate with 'edgel3 export ... --c-source DIR'.",
        "//",
        "// Per 1-s window of SAMPLE_RATE int16 samples (docs/deploy_mcu.rst):",
        "//   frame j = samples [j*N_HOP - PAD_LEFT, j*N_HOP - PAD_LEFT + N_DFT), zeros outside;",
        "//   x[n] = (float)q[n] * INT16_SCALE * hann_window[n]; X = real FFT of x (N_DFT);",
        "//   P[k] = re^2 + im^2; mel[b] = sum_i mel_weights[off_b + i] * P[mel_first_bin[b] + i]",
        "//   for i < mel_count[b] (off_b = sum of the counts before b);",
        "//   dB = 5 * log10f(fmaxf(mel, POWER_FLOOR))  (= 10 log10(max(sqrt(mel), AMIN)));",
        "//   dB -= max over the window's N_MELS x N_FRAMES cells; dB = fmaxf(dB, -TOP_DB);",
        "//   input[b * N_FRAMES + j] =",
        "//       clamp(roundf(dB / INPUT_SCALE) + INPUT_ZERO_POINT, -128, 127).",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stdint.h>",
        "",
    ]
    for key, value, comment in defines:
        tail = f"  // {comment}" if comment else ""
        lines.append(f"#define {prefix}_{key} {value}{tail}")
    window = [_c_float(v) for v in hann_window(config.n_dft)]
    arrays = [
        ("float", "hann_window", f"{prefix}_N_DFT", window),
        ("uint16_t", "mel_first_bin", f"{prefix}_N_MELS", [str(v) for v in mel.first_bin]),
        ("uint16_t", "mel_count", f"{prefix}_N_MELS", [str(v) for v in mel.counts]),
        ("float", "mel_weights", f"{prefix}_MEL_WEIGHT_COUNT", [_c_float(v) for v in mel.weights]),
    ]
    for ctype, label, size, values in arrays:
        per_line = _VALUES_PER_LINE if ctype == "float" else 16
        lines += [
            "",
            f"static const {ctype} {lower}_{label}[{size}] = {{",
            _rows(values, per_line),
            "};",
        ]
    lines += ["", f"#endif  // {guard}", ""]
    return "\n".join(lines)


def write_c_sources(model_path, directory, *, name: str | None = None) -> tuple[Path, ...]:
    """Write the C sources of an export (``.tflite`` plus its sidecar) into ``directory``.

    Each file is written atomically (:class:`edgel3.files.atomic_write`);
    ``edgel3 export --c-source`` writes them together with the export instead
    (all files appear, or none).

    Parameters
    ----------
    model_path : path-like
        A backbone export; its sidecar JSON must sit next to it.
    directory : path-like
        Folder for the three files (made if missing).
    name : str, optional
        Stem of the file and symbol names; default the export's file stem.

    Returns
    -------
    tuple of pathlib.Path
        The model data ``.cc`` and ``.h`` and the front-end ``.h``
        (:func:`c_source_paths`).

    Raises
    ------
    ParameterError
        If the export is not a backbone.
    WeightsError
        If the file or its sidecar is missing or incomplete.
    OutputError
        If ``directory`` is a file or a file cannot be written.

    Examples
    --------
    >>> write_c_sources("tiny_int8.tflite", "src/")             # doctest: +SKIP
    (PosixPath('src/tiny_int8_model_data.cc'), PosixPath('src/tiny_int8_model_data.h'),
     PosixPath('src/tiny_int8_frontend.h'))
    """
    model_path = Path(model_path)
    name = model_path.stem if name is None else str(name)
    paths = check_c_source_dir(directory, name)
    if not model_path.is_file():
        raise WeightsError(f'Model file "{model_path}" could not be found.')
    description = read_sidecar(model_path)
    if description is None:
        raise WeightsError(f'"{model_path}" has no sidecar JSON describing its front end.')
    header = frontend_header(description, name, source=model_path.name)
    cc, h = model_data_sources(model_path.read_bytes(), name, source=model_path.name)
    for path, text in zip(paths, (cc, h, header)):
        with atomic_write(path) as handle:
            handle.write(text.encode("utf-8"))
    return paths
