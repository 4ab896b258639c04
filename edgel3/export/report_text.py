"""Text rendering of a :class:`~edgel3.export.memory.MemoryReport`."""

from __future__ import annotations


def fmt_bytes(n: int) -> str:
    """``409,600 B (400.0 KiB)``."""
    if n >= 1024 * 1024:
        return f"{n:,} B ({n / 1024 / 1024:.2f} MiB)"
    if n >= 1024:
        return f"{n:,} B ({n / 1024:.1f} KiB)"
    return f"{n:,} B"


def _short(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.2f} MiB"
    return f"{n / 1024:.1f} KiB"


def _macs(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.3f} G"
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    return f"{n:,}"


def format_report(report, *, layers: bool = True) -> str:
    """Render the report as aligned text tables."""
    lines = [f"Memory report: {report.name} ({report.source})"]
    shape_in = tuple(report.input_shape)
    shape_out = tuple(report.output_shape)
    lines.append(f"  input {shape_in} -> output {shape_out}  (per 1-s window, batch 1)")
    fe = report.frontend
    if fe:
        lines.append(
            f"  front end: {fe['sample_rate']} Hz, n_dft {fe['n_dft']}, hop {fe['n_hop']}, "
            f"{fe['n_mels']} mels x {fe['n_frames']} frames; "
            f"{_macs(fe['macs_stft_dense_dft'])} STFT (as a dense DFT) + "
            f"{_macs(fe['macs_mel'])} mel MACs; {fe['constants']:,} constants"
        )
    lines.append(
        f"  parameters: {report.params:,}  (conv/dense kernels {report.kernel_params:,}, "
        f"non-zero {report.nonzero_kernel_params:,}, sparsity {report.sparsity:.2f} %)"
    )
    macs = report.macs
    lines.append(
        f"  MACs per window: network {_macs(macs['network'])} (conv {_macs(macs['conv'])}, "
        f"dense {_macs(macs['dense'])}); front end {_macs(macs['frontend'])}"
    )
    big = report.largest_activation
    sizes = ", ".join(f"{k} {fmt_bytes(v)}" for k, v in big["bytes"].items())
    lines.append(f"  largest activation: {tuple(big['shape'])} {big['name']}: {sizes}")
    if report.measured:
        m = report.measured
        lines.append(
            f"  exported file: {fmt_bytes(m['file_bytes'])}; stored constants "
            f"{fmt_bytes(m['constant_bytes'])} "
            f"({', '.join(f'{k} {v:,}' for k, v in m['constant_bytes_by_dtype'].items())}); "
            f"activations {', '.join(m['activation_dtypes'])}"
        )
        if m["dequantized_weight_bytes"]:
            lines.append(
                f"  float16 weights are dequantized at load time: "
                f"{fmt_bytes(m['dequantized_weight_bytes'])} more RAM"
            )
    lines.append("")
    lines.append("  static size (stored parameters x bytes per value)")
    lines.append(
        f"  {'precision':10} {'dense':>14} {'bitmap+values':>14} {'CSR':>14} {'best':>14} "
        f"{'non-zero kernel values':>24}"
    )
    for precision, row in report.static.items():
        lines.append(
            f"  {precision:10} {row['dense']:>14,} {row['bitmap']:>14,} {row['csr']:>14,} "
            f"{row['best']:>14,} {row['nonzero_kernel_values']:>24,}"
        )
    lines.append("")
    lines.append("  peak activations (bytes; worst kernel)")
    for schedule, by_precision in report.peaks.items():
        cells = "; ".join(
            f"{key} {fmt_bytes(v['bytes'])}" + (f" at {v['node']}" if v["node"] else "")
            for key, v in by_precision.items()
        )
        lines.append(f"  {_SCHEDULE_LABELS[schedule]:10} {cells}")
    if report.checks:
        lines.append("")
        lines.extend(_budget_table(report))
    if layers:
        lines.append("")
        key = "exported" if report.measured else "float32"
        lines.append(
            f"  {'layer':32} {'op':24} {'output':>18} {'params':>10} {'non-zero':>9} "
            f"{'MACs':>10} {'live seq':>11} {'live in-pl':>11}   ({key})"
        )
        for row in report.layers:
            nz = f"{100 * row['nonzero_kernel'] / row['kernel']:.1f}%" if row["kernel"] else "-"
            shape = str(tuple(row["output_shape"]))
            seq, inplace = _short(row["live_bytes_sequential"]), _short(row["live_bytes_inplace"])
            lines.append(
                f"  {row['name'][:32]:32} {row['op'][:24]:24} {shape:>18} "
                f"{row['params']:>10,} {nz:>9} {_macs(row['macs']):>10} {seq:>11} {inplace:>11}"
            )
    return "\n".join(lines)


_SCHEDULE_LABELS = {None: "", "sequential": "sequential", "arena": "arena", "inplace": "in-place"}


def _budget_table(report) -> list[str]:
    lines = []
    for budget in dict.fromkeys(c["budget"] for c in report.checks):
        checks = [c for c in report.checks if c["budget"] == budget]
        limits = {c["item"]: c["limit"] for c in checks}
        note = (
            "  (ram = activations + 1-s float32 window + one STFT frame)" if "ram" in limits else ""
        )
        lines.append(
            f"  budget {budget}: "
            + ", ".join(f"{item} {_short(limit)}" for item, limit in limits.items())
            + note
        )
        items = [item for item in ("inference", "ram") if item in limits]
        header = f"  {'row':16}{'flash':>20}   {'schedule':10}" + "".join(f"{i:>20}" for i in items)
        lines.append(header)
        cell = {(c["row"], c["item"], c["schedule"]): c for c in checks}

        def fmt(c):
            return f"{('PASS ' if c['ok'] else 'FAIL ') + _short(c['bytes']):>20}"

        for row in dict.fromkeys(c["row"] for c in checks):
            flash = cell.get((row, "flash", None))
            schedules = (
                [s for s in _SCHEDULE_LABELS if s and (row, items[0], s) in cell] if items else []
            )
            for n, schedule in enumerate(schedules or [None]):
                first = f"  {row if n == 0 else '':16}"
                first += fmt(flash) if (flash and n == 0) else " " * 20
                first += f"   {_SCHEDULE_LABELS[schedule]:10}"
                lines.append(first + "".join(fmt(cell[(row, i, schedule)]) for i in items))
    return lines
