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


def _over(n: int) -> str:
    return f"{n:,} B" if n < 1024 else _short(n)


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
    lines.extend(_micro_lines(report))
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


def _micro_lines(report) -> list[str]:
    """The LiteRT-Micro arena: the interpreter's own figures, or the labelled estimate."""
    micro = report.micro
    if not micro:
        return []
    if micro["source"] == "tflite-micro":
        what = f"tflite-micro {micro.get('version', '')}".rstrip()
    elif report.measured is None:
        what = "estimate for the int8 export: planner head + tail margin"
    else:
        what = "estimate: planner head + tail margin"
    lines = [
        f"  LiteRT-Micro arena ({what}): head {fmt_bytes(micro['head'])} + tail "
        f"{fmt_bytes(micro['tail'])} (persistent buffers {micro['persistent']:,} B) = total "
        f"{fmt_bytes(micro['total'])}"
    ]
    if micro.get("note"):
        lines.append(f"    ({micro['note']})")
    return lines


def _cell(check) -> str:
    return ("PASS " if check["ok"] else "FAIL ") + _short(check["bytes"])


def _budget_table(report) -> list[str]:
    lines = []
    items = ("flash", "inference", "ram")
    for budget in dict.fromkeys(c["budget"] for c in report.checks):
        checks = [c for c in report.checks if c["budget"] == budget]
        limits = {c["item"]: c["limit"] for c in checks}
        lines.append(
            f"  budget {budget}: "
            + ", ".join(f"{item} {_short(limits[item])}" for item in items if item in limits)
        )
        shown = [item for item in items if item in limits]
        lines.append(f"  {'export':16}{'arena':>14}" + "".join(f"{i:>20}" for i in shown))
        cell = {(c["row"], c["item"]): c for c in checks}
        for row in report.exports:
            label = row["export"]
            lines.append(
                f"  {label:16}{row['source']:>14}"
                + "".join(f"{_cell(cell[(label, i)]):>20}" for i in shown)
            )
    if report.checks:
        lines.append(
            "  (flash = file + front-end tables + the budget's code allowance; inference = "
            "arena total; ram = arena total + front-end buffers + audio ring buffer)"
        )
    return lines


def format_device_table(table: dict) -> str:
    """Render :meth:`~edgel3.export.memory.MemoryReport.device_table` as text."""
    devices = table["devices"]
    short = {"flash": "flash", "inference": "arena", "ram": "RAM"}
    cells = [
        [
            "fits"
            if result["ok"]
            else f"{short[result['limiting']]} +{_over(result['over_bytes'])}"
            for result in (row["fits"][name] for name in devices)
        ]
        for row in table["rows"]
    ]
    width = 2 + max([len(name) for name in devices] + [len(c) for row in cells for c in row])
    lines = [f"Device fits: {table['model']}"]
    header = f"  {'export':16}{'arena':>14}{'flash need':>13}{'RAM need':>13}"
    lines.append(header + "".join(f"{name:>{width}}" for name in devices))
    for row, texts in zip(table["rows"], cells):
        need = row["need"]
        line = (
            f"  {row['export']:16}{row['source']:>14}{_short(need['flash']):>13}"
            f"{_short(need['ram']):>13}"
        )
        lines.append(line + "".join(f"{text:>{width}}" for text in texts))
    lines.append("")
    lines.append("  devices (flash / RAM / largest block for the arena / code allowance):")
    for name, d in devices.items():
        sizes = " / ".join("-" if d[k] is None else _short(d[k]) for k in ("flash", "ram"))
        block = "-" if d["inference"] is None else _short(d["inference"])
        lines.append(f"  {name:12} {sizes} / {block} / {_short(d['code'])}  {d['board']}")
        if d["source"]:
            lines.append(f"  {'':12} source: {d['source']}")
    lines.append(
        "  cells: fits, or the limit most exceeded and by how much; flash need excludes the "
        "code allowance; 'estimate' rows have the tail margin (docs/export.rst)"
    )
    return "\n".join(lines)
