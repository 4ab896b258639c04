"""C sources of an export (issue 14 point 3): ``edgel3 export ... --c-source DIR``.

The generated files compile with the system compiler, and a small C++ program that
includes them prints the array length, its alignment, some bytes and the front-end
constants, which are compared with the ``.tflite`` bytes and the Python values.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgel3.cli import main
from edgel3.export.csource import (
    c_identifier,
    c_source_paths,
    model_data_sources,
    resolver_calls,
    sidecar_mel,
    write_c_sources,
)
from edgel3.export.micro_frontend import sparse_mel
from edgel3.frontend import hann_window, mel_filterbank
from edgel3.litert import frontend_from_dict

ROOT = Path(__file__).resolve().parents[1]
GXX = shutil.which("g++")
GCC = shutil.which("gcc")


def _write_audio(folder, rng):
    """Three 2-s 8 kHz clips of tones in noise at different levels, for calibration."""
    folder.mkdir()
    t = np.arange(16000) / 8000
    for i, level in enumerate((0.5, 0.05, 0.005)):
        audio = level * np.sin(2 * np.pi * (200 + 900 * i) * t) + rng.normal(size=t.size) * 1e-3
        sf.write(folder / f"clip{i}.wav", audio, 8000, subtype="PCM_16")
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``edgel3 export tiny OUT -Q int8 --calibration AUDIO --c-source SRC``."""
    root = tmp_path_factory.mktemp("csource")
    audio = _write_audio(root / "audio", np.random.default_rng(7))
    out = root / "tiny-int8.tflite"
    code = main(
        [
            "export",
            "tiny",
            str(out),
            "-Q",
            "int8",
            "--calibration",
            str(audio),
            "--c-source",
            str(root / "src"),
            "-q",
        ]
    )
    assert code == 0
    return out, root / "src"


def test_files_and_names(exported):
    out, src = exported
    paths = c_source_paths(src, out.stem)
    assert [p.name for p in paths] == [
        "tiny_int8_model_data.cc",
        "tiny_int8_model_data.h",
        "tiny_int8_frontend.h",
    ]
    assert all(p.is_file() for p in paths) and out.is_file() and out.with_suffix(".json").is_file()
    assert sorted(p.name for p in src.iterdir()) == sorted(p.name for p in paths)  # no leftovers


def test_model_array_holds_the_file(exported):
    """The hex array parsed back is the .tflite, byte for byte (no compiler needed)."""
    out, src = exported
    text = (src / "tiny_int8_model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_tiny_int8_model_data[]" in text
    body = text[text.index("{") + 1 : text.index("};")]
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))
    assert data == out.read_bytes()
    length = int(re.search(r"g_tiny_int8_model_data_len = (\d+);", text).group(1))
    assert length == len(data)


def test_header_values_are_the_exports(exported):
    out, src = exported
    info = json.loads(out.with_suffix(".json").read_text())
    header = (src / "tiny_int8_frontend.h").read_text()

    def define(key):
        return re.search(rf"#define TINY_INT8_{key} (\S+)", header).group(1)

    config = frontend_from_dict(info["frontend"])
    assert int(define("N_FRAMES")) == config.n_frames == 50
    assert int(define("PAD_LEFT")) == config.same_padding[0]
    assert np.float32(define("INPUT_SCALE").rstrip("f")) == np.float32(info["input"]["scale"])
    assert int(define("INPUT_ZERO_POINT")) == info["input"]["zero_point"]
    assert int(define("OUTPUT_ZERO_POINT")) == info["output"]["zero_point"]
    mel = sidecar_mel(info["frontend"])
    expected = sparse_mel(mel_filterbank(config))
    np.testing.assert_array_equal(mel.first_bin, expected.first_bin)
    np.testing.assert_array_equal(mel.weights, expected.weights)
    assert int(define("MEL_WEIGHT_COUNT")) == expected.weights.size


_PROGRAM = r"""
#include <cstdint>
#include <cstdio>
#include "tiny_int8_model_data.h"
#include "tiny_int8_frontend.h"

int main() {
  const unsigned char* data = g_tiny_int8_model_data;
  std::printf("len %u\n", g_tiny_int8_model_data_len);
  std::printf("ops %d\n", TINY_INT8_OP_COUNT);
  std::printf("aligned %d\n", (int)(reinterpret_cast<std::uintptr_t>(data) % 16 == 0));
  std::printf("bytes %u %u %u\n", data[0], data[4], data[g_tiny_int8_model_data_len - 1]);
  std::printf("input %.9g %d\n", (double)TINY_INT8_INPUT_SCALE, TINY_INT8_INPUT_ZERO_POINT);
  std::printf("output %.9g %d\n", (double)TINY_INT8_OUTPUT_SCALE, TINY_INT8_OUTPUT_ZERO_POINT);
  std::printf("sizes %d %d %d %d %d\n", TINY_INT8_SAMPLE_RATE, TINY_INT8_N_DFT, TINY_INT8_N_HOP,
              TINY_INT8_N_MELS, TINY_INT8_N_FRAMES);
  std::printf("floors %.9g %.9g %.9g\n", (double)TINY_INT8_AMIN, (double)TINY_INT8_POWER_FLOOR,
              (double)TINY_INT8_TOP_DB);
  std::printf("hann %.9g %.9g\n", (double)tiny_int8_hann_window[1],
              (double)tiny_int8_hann_window[TINY_INT8_N_DFT / 2]);
  int last = TINY_INT8_N_MELS - 1;
  std::printf("mel %u %u %.9g %.9g\n", (unsigned)tiny_int8_mel_first_bin[last],
              (unsigned)tiny_int8_mel_count[last], (double)tiny_int8_mel_weights[0],
              (double)tiny_int8_mel_weights[TINY_INT8_MEL_WEIGHT_COUNT - 1]);
  return 0;
}
"""


@pytest.mark.skipif(GXX is None, reason="no C++ compiler (g++) on this machine")
def test_sources_compile_and_hold_the_values(exported, tmp_path):
    out, src = exported
    program = tmp_path / "main.cc"
    program.write_text(_PROGRAM)
    flags = ["-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{src}"]
    obj = tmp_path / "model_data.o"
    subprocess.run(
        [GXX, *flags, "-c", str(src / "tiny_int8_model_data.cc"), "-o", str(obj)], check=True
    )
    binary = tmp_path / "main"
    subprocess.run([GXX, *flags, str(program), str(obj), "-o", str(binary)], check=True)
    lines = dict(
        line.split(" ", 1)
        for line in subprocess.run([binary], check=True, capture_output=True, text=True)
        .stdout.strip()
        .splitlines()
    )
    data = out.read_bytes()
    info = json.loads(out.with_suffix(".json").read_text())
    assert int(lines["len"]) == len(data)
    assert lines["aligned"] == "1"
    assert int(lines["ops"]) == len(resolver_calls(data))
    assert [int(v) for v in lines["bytes"].split()] == [data[0], data[4], data[-1]]
    for key in ("input", "output"):
        scale, zero_point = lines[key].split()
        assert np.float32(scale) == np.float32(info[key]["scale"])  # the exact float32
        assert int(zero_point) == info[key]["zero_point"]
    assert [int(v) for v in lines["sizes"].split()] == [8000, 1024, 160, 64, 50]
    amin, floor, top = (np.float32(v) for v in lines["floors"].split())
    assert (amin, floor, top) == (np.float32(1e-10), np.float32(1e-20), np.float32(80))
    window = hann_window(1024)
    assert [np.float32(v) for v in lines["hann"].split()] == [window[1], window[512]]
    mel = sparse_mel(mel_filterbank(frontend_from_dict(info["frontend"])))
    first, count, w0, w_last = lines["mel"].split()
    assert (int(first), int(count)) == (mel.first_bin[-1], mel.counts[-1])
    assert (np.float32(w0), np.float32(w_last)) == (mel.weights[0], mel.weights[-1])


@pytest.mark.skipif(GCC is None, reason="no C compiler (gcc) on this machine")
def test_frontend_header_is_valid_c(exported, tmp_path):
    _, src = exported
    program = tmp_path / "main.c"
    program.write_text(
        '#include "tiny_int8_frontend.h"\n'
        "int main(void) { return (int)tiny_int8_mel_count[0] - (int)tiny_int8_mel_count[0]; }\n"
    )
    subprocess.run(
        [GCC, "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{src}", "-c", str(program)],
        check=True,
        cwd=tmp_path,
    )


def test_bad_directory_writes_nothing(tmp_path, capsys):
    blocker = tmp_path / "src"
    blocker.write_text("a file, not a folder")
    out = tmp_path / "tiny.tflite"
    args = ["export", "tiny", str(out), "-Q", "int8", "--calibration", str(tmp_path)]
    assert main([*args, "--c-source", str(blocker)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgel3: error:") and "--c-source" in err and len(err.splitlines()) == 1
    assert blocker.read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no export either
    # The full variant keeps its front end in the graph: nothing for a device to compute.
    assert main(["export", "tiny", str(out), "--c-source", str(tmp_path / "c")]) == 1
    assert "backbone" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_failed_c_sources_leave_no_export(tmp_path, monkeypatch, capsys):
    """The export and its C sources appear together or not at all (one staging step)."""
    from edgel3.exceptions import OutputError
    from edgel3.export import csource

    def broken(*args, **kwargs):
        raise OutputError("disk full")

    monkeypatch.setattr(csource, "write_c_sources", broken)
    out = tmp_path / "tiny.tflite"
    args = ["export", "tiny", str(out), "--variant", "backbone", "--c-source", str(tmp_path)]
    assert main(args) == 1
    assert "disk full" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_library_writer(exported, tmp_path):
    out, src = exported
    paths = write_c_sources(out, tmp_path / "again", name="sea 64")
    assert [p.name for p in paths] == [
        "sea_64_model_data.cc",
        "sea_64_model_data.h",
        "sea_64_frontend.h",
    ]
    assert "g_sea_64_model_data_len" in paths[1].read_text()
    assert "#define SEA_64_N_MELS 64" in paths[2].read_text()


def test_identifiers():
    assert c_identifier("tiny-int8.v2") == "tiny_int8_v2"
    assert c_identifier("8k") == "m_8k"


def test_resolver_lists_the_interpreters_operators(exported):
    """The header's resolver calls are the operators LiteRT finds in the file."""
    from ai_edge_litert.interpreter import Interpreter

    out, src = exported
    ops = {d["op_name"] for d in Interpreter(model_path=str(out))._get_ops_details()}
    calls = resolver_calls(out.read_bytes())
    assert len(calls) == len(ops) and "AddConv2D" in calls and "AddDepthwiseConv2D" in calls
    header = (src / "tiny_int8_model_data.h").read_text()
    assert all(f"resolver.{call}();" in header for call in calls)
    assert f"#define TINY_INT8_OP_COUNT {len(calls)}" in header
    cc, _ = model_data_sources(out.read_bytes(), "x")
    assert cc.count("\n    0x") == -(-len(out.read_bytes()) // 12)  # 12 bytes a line


#: A test double of CMSIS-DSP's ``arm_math.h`` for the documented front end: the radix-2
#: butterflies, bit reversal and split step of edgel3.export.micro_fft, in C.
_ARM_MATH = r"""
#ifndef ARM_MATH_H
#define ARM_MATH_H
#include <math.h>
#include <stdint.h>
typedef float float32_t;
typedef int arm_status;
typedef struct { int fftLenRFFT; } arm_rfft_fast_instance_f32;
static const double kPi = 3.14159265358979323846;
static inline arm_status arm_rfft_fast_init_f32(arm_rfft_fast_instance_f32* S, uint16_t n) {
  S->fftLenRFFT = n;
  return 0;
}
static inline void arm_rfft_fast_f32(const arm_rfft_fast_instance_f32* S, float32_t* p,
                                     float32_t* out, uint8_t ifft) {
  const int n = S->fftLenRFFT, m = n / 2;
  (void)ifft;
  for (int half = m / 2; half >= 1; half /= 2) {
    const int block = 2 * half;
    for (int g = 0; g < m; g += block) {
      for (int j = 0; j < half; ++j) {
        const int i = g + j, l = i + half;
        const float a0 = p[2 * i] + p[2 * l], xt = p[2 * i] - p[2 * l];
        const float yt = p[2 * i + 1] - p[2 * l + 1], a1 = p[2 * l + 1] + p[2 * i + 1];
        p[2 * i] = a0;
        p[2 * i + 1] = a1;
        if (half == 1) {
          p[2 * l] = xt;
          p[2 * l + 1] = yt;
        } else {
          const float c = (float)cos(2.0 * kPi * j / block);
          const float s = (float)sin(2.0 * kPi * j / block);
          p[2 * l] = xt * c + yt * s;
          p[2 * l + 1] = yt * c - xt * s;
        }
      }
    }
  }
  int bits = 0;
  while ((1 << bits) < m) ++bits;
  for (int k = 0; k < m; ++k) {
    int r = 0;
    for (int b = 0; b < bits; ++b) r |= ((k >> b) & 1) << (bits - 1 - b);
    if (r > k) {
      float t = p[2 * k]; p[2 * k] = p[2 * r]; p[2 * r] = t;
      t = p[2 * k + 1]; p[2 * k + 1] = p[2 * r + 1]; p[2 * r + 1] = t;
    }
  }
  const float t1a = p[0] + p[0], t1b = p[1] + p[1];
  out[0] = 0.5f * (t1a + t1b);
  out[1] = 0.5f * (t1a - t1b);
  for (int k = 1; k < m; ++k) {
    const float xar = p[2 * k], xai = p[2 * k + 1];
    const float xbr = p[2 * (m - k)], xbi = p[2 * (m - k) + 1];
    const double angle = 2.0 * kPi * k / n;
    const float twr = (float)sin(angle), twi = (float)cos(angle);
    const float ta = xbr - xar, tb = xbi + xai;
    const float p0 = twr * ta, p1 = twi * ta, p2 = twr * tb, p3 = twi * tb;
    out[2 * k] = 0.5f * (xar + xbr + p0 + p3);
    out[2 * k + 1] = 0.5f * (xai - xbi + p1 - p2);
  }
}
#endif
"""

_DRIVER = r"""
#include <cstdint>
#include <cstdio>
#include "tiny_int8_frontend.h"
void frontend_init(void);
void frontend_compute(const int16_t* window, int8_t* input);
int main(int argc, char** argv) {
  if (argc != 3) return 2;
  std::FILE* in = std::fopen(argv[1], "rb");
  std::FILE* out = std::fopen(argv[2], "wb");
  static int16_t window[TINY_INT8_SAMPLE_RATE];
  static int8_t input[TINY_INT8_N_MELS * TINY_INT8_N_FRAMES];
  frontend_init();
  while (std::fread(window, sizeof(int16_t), TINY_INT8_SAMPLE_RATE, in) == TINY_INT8_SAMPLE_RATE) {
    frontend_compute(window, input);
    std::fwrite(input, 1, sizeof input, out);
  }
  std::fclose(out);
  return 0;
}
"""


def _documented_frontend() -> str:
    """The ``frontend.cc`` code block of docs/deploy_mcu.rst."""
    text = (ROOT / "docs" / "deploy_mcu.rst").read_text()
    start = text.index(":caption: frontend.cc")
    lines = text[start:].splitlines()[2:]
    block = []
    for line in lines:
        if line and not line.startswith("   "):
            break
        block.append(line[3:])
    return "\n".join(block)


@pytest.mark.skipif(GXX is None, reason="no C++ compiler (g++) on this machine")
def test_documented_frontend_computes_the_reference(exported, tmp_path):
    """docs/deploy_mcu.rst's front end, compiled with the generated header, gives the int8
    patches of edgel3.export.micro_frontend (the same float32 operations in the same order;
    only glibc's log10f and NumPy's log10 may differ by an ulp, which moves a code only at
    a rounding boundary)."""
    from edgel3.export.micro_frontend import micro_melspectrogram, quantize_patches, to_int16
    from edgel3.specs import SEA_FRONTEND

    out, src = exported
    (tmp_path / "arm_math.h").write_text(_ARM_MATH)
    (tmp_path / "frontend.cc").write_text(_documented_frontend())
    (tmp_path / "driver.cc").write_text(_DRIVER)
    binary = tmp_path / "frontend"
    subprocess.run(
        [
            GXX,
            "-std=c++17",
            "-O2",
            "-ffp-contract=off",  # round every operation, as the reference does
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{src}",
            f"-I{tmp_path}",
            str(tmp_path / "frontend.cc"),
            str(tmp_path / "driver.cc"),
            "-o",
            str(binary),
        ],
        check=True,
    )
    rng = np.random.default_rng(9)
    t = np.arange(8000) / 8000
    windows = to_int16(
        np.stack(
            [
                np.zeros(8000),  # digital silence
                np.where(np.sin(2 * np.pi * 3 * t) >= 0, 1.0, -1.0),  # full scale
                np.clip(rng.normal(size=8000) * 2, -1, 1),  # clipped
                0.3 * np.sin(2 * np.pi * 440 * t) + 1e-3 * rng.normal(size=8000),
                1e-3 * rng.normal(size=8000),  # quiet
                0.1 * np.sin(2 * np.pi * (100 * t + 1500 * t**2)),  # chirp
            ]
        )
    )
    (tmp_path / "windows.raw").write_bytes(windows.astype("<i2").tobytes())
    subprocess.run([binary, tmp_path / "windows.raw", tmp_path / "codes.raw"], check=True)
    found = np.frombuffer((tmp_path / "codes.raw").read_bytes(), np.int8).reshape(6, 64, 50, 1)
    info = json.loads(out.with_suffix(".json").read_text())
    scale, zero_point = info["input"]["scale"], info["input"]["zero_point"]
    expected = quantize_patches(micro_melspectrogram(windows, SEA_FRONTEND), scale, zero_point)
    differ = found != expected
    assert differ.mean() <= 1e-3 and np.abs(found.astype(int) - expected).max() <= 1
    assert np.all(found[0] == np.int8(round(0 / scale) + zero_point))  # silence: all 0 dB
