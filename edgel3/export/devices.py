"""Device presets (the boards used for audio sensing) and what an export needs on them.

One table, :data:`DEVICES`, holds every named budget: ``--budget NAME`` and
``--device NAME`` read the same entries (:data:`edgel3.export.budgets.BUDGETS`
is this table). Sizes follow the datasheets: ``KB``/``MB`` there are 1024 and
1024² bytes.

What an export needs (:func:`needs`), the same for budgets and devices:

``flash``
    the ``.tflite`` file + the front end's constant tables (window, FFT
    twiddles, sparse mel weights: :func:`edgel3.export.micro_frontend.frontend_cost`)
    + the budget's ``code`` allowance (LiteRT-Micro runtime, kernels and the
    application; :data:`CODE_ALLOWANCE` for the presets);
``inference``
    the interpreter's arena total (head + tail, :mod:`edgel3.export.micro`),
    which must be one contiguous block;
``ram``
    the arena total + the front end's working buffers + the audio ring buffer
    (int16 samples of one window plus one hop, :data:`RING_HOP_SIZE`) + fp32
    copies of float16 weights (LiteRT dequantizes them at load time).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = [
    "KIB",
    "MIB",
    "CODE_ALLOWANCE",
    "RING_HOP_SIZE",
    "Budget",
    "DEVICES",
    "select_devices",
    "device_table",
    "needs",
    "check_needs",
    "fit",
]

KIB = 1024
MIB = 1024 * 1024

#: Flash kept for code on the device presets (bytes): LiteRT-Micro's interpreter (its
#: README: the core runtime fits in 16 KB on a Cortex-M3), the kernels an edgel3 export
#: registers (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX_POOL_2D, REDUCE_MAX, ADD,
#: MUL, RESHAPE; with CMSIS-NN, tens of KB), CMSIS-DSP's real FFT and the application
#: (drivers, audio capture). An allowance, not a measurement of an edgel3 firmware:
#: override it with ``code=`` in a budget string.
CODE_ALLOWANCE = 128 * KIB
#: Seconds of audio the ring buffer holds beyond one window: edgel3's default hop, so
#: the next hop is recorded while a window is computed.
RING_HOP_SIZE = 0.1


@dataclass(frozen=True)
class Budget:
    """Memory limits of a target device, in bytes (``None``: not checked).

    Parameters
    ----------
    name : str
    flash : int, optional
        Room for the model file, its front-end tables and ``code``.
    ram : int, optional
        Room for the arena, the front end's buffers and the audio ring buffer.
    inference : int, optional
        Room for the arena alone (the largest contiguous RAM block).
    code : int
        Flash kept for code (runtime, kernels, application); 0 for a budget that
        only counts the model.
    board : str
        What the preset describes.
    source : str
        Where its figures come from (datasheet).
    """

    name: str
    flash: int | None = None
    ram: int | None = None
    inference: int | None = None
    code: int = 0
    board: str = ""
    source: str = ""


#: Named budgets: microcontroller boards used for audio sensing (docs/export.rst, "Devices").
DEVICES: dict[str, Budget] = {
    budget.name: budget
    for budget in (
        Budget(
            "cortex-m7",
            flash=2 * MIB,
            ram=1 * MIB,
            inference=512 * KIB,  # the largest SRAM block (AXI SRAM) holds the arena
            code=CODE_ALLOWANCE,
            board="SONYC mote: STM32H7-class Cortex-M7 (STM32H743), 2 MB flash, 1 MB RAM",
            source="STM32H743xI datasheet DS12110 (st.com/resource/en/datasheet/stm32h743zi"
            ".pdf): 2 MB flash, 1 MB RAM of which 512 KB AXI SRAM; Bello et al., SONYC, "
            "CACM 62(2), 2019",
        ),
        Budget(
            "stm32l476",
            flash=1 * MIB,
            ram=128 * KIB,
            inference=96 * KIB,  # SRAM1; SRAM2 (32 KB) is a separate block
            code=CODE_ALLOWANCE,
            board="STM32L476 Cortex-M4F, 1 MB flash, 128 KB SRAM (96 KB SRAM1 + 32 KB SRAM2)",
            source="STM32L476xx datasheet DS10198 (st.com/resource/en/datasheet/stm32l476rg.pdf)",
        ),
        Budget(
            "nrf52840",
            flash=1 * MIB,
            ram=256 * KIB,
            inference=256 * KIB,
            code=CODE_ALLOWANCE,
            board="Nordic nRF52840 Cortex-M4F, 1 MB flash, 256 KB RAM",
            source="nRF52840 Product Specification (docs.nordicsemi.com/bundle/ps_nrf52840)",
        ),
        Budget(
            "esp32-s3",
            flash=8 * MIB,
            ram=512 * KIB,
            code=CODE_ALLOWANCE,
            board="Espressif ESP32-S3 (Xtensa LX7), 512 KB SRAM; flash is external: 8 MB "
            "assumed (ESP32-S3-WROOM-1-N8 module)",
            source="ESP32-S3 Series Datasheet (espressif.com/sites/default/files/"
            "documentation/esp32-s3_datasheet_en.pdf); ESP32-S3-WROOM-1 datasheet (N8: 8 MB)",
        ),
        Budget(
            "rp2040",
            flash=2 * MIB,
            ram=264 * KIB,
            inference=256 * KIB,  # four striped 64 KB banks; the two 4 KB banks are apart
            code=CODE_ALLOWANCE,
            board="Raspberry Pi RP2040 (dual Cortex-M0+), 264 KB SRAM; 2 MB QSPI flash on "
            "the Pico board",
            source="RP2040 Datasheet (datasheets.raspberrypi.com/rp2040/rp2040-datasheet.pdf);"
            " Raspberry Pi Pico Datasheet (datasheets.raspberrypi.com/pico/pico-datasheet.pdf)",
        ),
    )
}


def select_devices(names=None) -> list[Budget]:
    """Device presets by name; ``'all'`` (or None) is every preset, in :data:`DEVICES` order.

    Parameters
    ----------
    names : str, Budget or sequence of them, optional
        Preset names (any case), ``'all'``, or :class:`Budget` objects (kept as given).

    Raises
    ------
    ParameterError
        For a name that is not a preset.
    """
    from ..exceptions import ParameterError

    chosen: dict[str, Budget] = {}
    if names is None or isinstance(names, (str, Budget)):
        names = ["all" if names is None else names]
    for name in names:
        if isinstance(name, Budget):
            chosen[name.name] = name
            continue
        key = str(name).strip().lower()
        if key == "all":
            chosen.update(DEVICES)
        elif key in DEVICES:
            chosen[key] = DEVICES[key]
        else:
            raise ParameterError(
                f"Unknown device {name!r}: use 'all' or one of {', '.join(DEVICES)}."
            )
    return list(chosen.values())


def needs(
    *,
    model_bytes: int,
    arena_bytes: int,
    frontend=None,
    dequantized_bytes: int = 0,
    hop_size: float = RING_HOP_SIZE,
) -> dict:
    """Flash and RAM one export needs on a device, besides the code allowance.

    Parameters
    ----------
    model_bytes : int
        The ``.tflite`` file (or its estimate).
    arena_bytes : int
        The interpreter's arena total (or its estimate).
    frontend : FrontendConfig, optional
        The front end the device computes (None: not counted; its tables and
        buffers are not counted either when ``n_dft`` is not a power of two).
    dequantized_bytes : int
        fp32 copies of float16 weights made at load time.
    hop_size : float
        Seconds of audio the ring buffer holds beyond one window.

    Returns
    -------
    dict
        ``flash`` and ``ram`` (bytes) and their parts: ``flash_parts``
        (``model``, ``frontend_tables``), ``ram_parts`` (``arena``,
        ``frontend_buffers``, ``audio_ring``, ``dequantized_weights``).
    """
    tables = buffers = ring = 0
    if frontend is not None:
        from ..exceptions import ParameterError
        from .micro_frontend import frontend_cost

        ring = 2 * (frontend.frame_length + int(round(hop_size * frontend.sample_rate)))
        try:
            cost = frontend_cost(frontend)
        except ParameterError:  # no radix-2 FFT (n_dft not a power of two): not counted
            cost = None
        if cost is not None:
            tables, buffers = cost.table_bytes, cost.buffer_bytes
    flash_parts = {"model": int(model_bytes), "frontend_tables": int(tables)}
    ram_parts = {
        "arena": int(arena_bytes),
        "frontend_buffers": int(buffers),
        "audio_ring": int(ring),
        "dequantized_weights": int(dequantized_bytes),
    }
    return {
        "flash": sum(flash_parts.values()),
        "ram": sum(ram_parts.values()),
        "inference": int(arena_bytes),
        "flash_parts": flash_parts,
        "ram_parts": ram_parts,
    }


def check_needs(need: dict, budget: Budget) -> list[dict]:
    """One check per limit the budget sets: ``item``, ``bytes``, ``limit``, ``ok``."""
    wanted = {
        "flash": need["flash"] + budget.code,
        "inference": need["inference"],
        "ram": need["ram"],
    }
    checks = []
    for item in ("flash", "inference", "ram"):
        limit = getattr(budget, item)
        if limit is not None:
            value = int(wanted[item])
            checks.append({"item": item, "bytes": value, "limit": int(limit), "ok": value <= limit})
    return checks


def fit(need: dict, budget: Budget) -> dict:
    """Whether an export fits a device, and by how much the first failing limit is over.

    Returns
    -------
    dict
        ``ok`` (bool), ``limiting`` (``'flash'``, ``'inference'``, ``'ram'`` or None),
        ``over_bytes`` (how far over that limit) and ``checks``
        (:func:`check_needs`).
    """
    checks = check_needs(need, budget)
    failed = [c for c in checks if not c["ok"]]
    worst = max(failed, key=lambda c: c["bytes"] / max(c["limit"], 1), default=None)
    return {
        "ok": not failed,
        "limiting": worst["item"] if worst else None,
        "over_bytes": worst["bytes"] - worst["limit"] if worst else 0,
        "checks": checks,
    }


def device_table(model: str, exports: list, devices=None) -> dict:
    """Which export fits which device (see :meth:`~edgel3.export.memory.MemoryReport.device_table`).

    Parameters
    ----------
    model : str
        The model's name.
    exports : list of dict
        ``MemoryReport.exports``: ``export``, ``source`` and ``need`` per export.
    devices : str, Budget or sequence of them, optional
        See :func:`select_devices`; default every preset.
    """
    chosen = select_devices(devices)
    rows = [
        {
            "export": row["export"],
            "source": row["source"],
            "need": row["need"],
            "fits": {d.name: fit(row["need"], d) for d in chosen},
        }
        for row in exports
    ]
    described = {d.name: {k: v for k, v in asdict(d).items() if k != "name"} for d in chosen}
    return {"model": model, "devices": described, "rows": rows}
