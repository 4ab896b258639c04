"""Tests of edgel3.weights: registry URLs, search order, offline downloads, legacy reader."""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from edgel3 import legacy_h5, weights
from edgel3.exceptions import WeightsError
from edgel3.specs import REGISTRY, WEIGHTS_COMMIT, get_spec

from .conftest import SEA64_GZ, serve_directory

ROOT = Path(__file__).resolve().parents[1]
SEA64 = get_spec("sea-64")
SEA64_SHA1 = "f3535405c91fe8da71f6456adb8a061213324239"
# Not available locally: any sparse file is a 404 on the test server.
SPARSE = get_spec("edgel3_ft_audio_sparsity_95.45")


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def dead_url(monkeypatch):
    """EDGEL3_WEIGHTS_URL pointing at a port nobody listens on (a just-closed socket's)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    monkeypatch.setenv("EDGEL3_WEIGHTS_URL", url)
    return url


@pytest.fixture(scope="module")
def sea64():
    """SEA-64 read once per module (reading is ~0.1 s, but many tests use it)."""
    return legacy_h5.read_legacy_h5(SEA64_GZ)


def _cache() -> Path:
    return Path(os.environ["EDGEL3_CACHE_DIR"])


def _cache_contents() -> list[str]:
    cache = _cache()
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# --------------------------------------------------------------------------- registry, hashes


def test_registry_urls_pinned_and_names_keep_float_text():
    assert len(REGISTRY) == 20
    for spec in REGISTRY.values():
        assert spec.url == (
            f"https://github.com/ksangeeta2429/edgel3/raw/{WEIGHTS_COMMIT}/{spec.filename}"
        )
        assert len(spec.blob_sha1) == 40
    names = set(REGISTRY)
    for text in ("87.0", "81.0", "95.45"):
        assert f"edgel3_kd_audio_sparsity_{text}" in names
    assert "edgel3_ft_audio_sparsity_87" not in names


def test_blob_sha1_matches_git():
    # Known git values: `git hash-object /dev/null` and of b"hello\n".
    assert weights.blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert weights.blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


@pytest.mark.shared
def test_shared_sea64_matches_registry_hash():
    assert SEA64.blob_sha1 == SEA64_SHA1
    assert weights.file_blob_sha1(SEA64_GZ) == SEA64_SHA1
    assert weights.blob_sha1(SEA64_GZ.read_bytes()) == SEA64_SHA1
    weights.verify_weights(SEA64_GZ, SEA64)  # no error


@pytest.mark.shared
def test_shipped_unpacked_hash_is_sea64s_gunzipped_bytes():
    # One hash kind for unpacked files: SHA-256 (docs/models.rst §1.3); only SEA-64's is shipped.
    import hashlib

    unpacked = gzip.decompress(SEA64_GZ.read_bytes())
    assert len(unpacked) == 6_025_848
    assert SEA64.unpacked_sha256 == hashlib.sha256(unpacked).hexdigest()
    assert [s.name for s in REGISTRY.values() if s.unpacked_sha256] == [SEA64.name]


def test_official_spec_of_reads_the_claim_in_a_name():
    assert weights.official_spec_of("/x/edgel3_sea_ust_audio_emb_64.h5") == SEA64
    assert weights.official_spec_of("edgel3_sea_ust_audio_emb_64.h5.gz") == SEA64
    assert weights.official_spec_of("edgel3_ft_audio_sparsity_95.45.h5") == SPARSE
    for name in ("mine.h5", "edgel3_sea_ust_audio_emb_64.keras", "sea-64.h5"):
        assert weights.official_spec_of(name) is None


# --------------------------------------------------------------------------- locations


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEL3_CACHE_DIR", str(tmp_path))
    assert weights.cache_dir() == tmp_path
    monkeypatch.delenv("EDGEL3_CACHE_DIR")
    assert weights.cache_dir().name == "edgel3"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, SEA64.url),
        ("http://127.0.0.1:8765/", f"http://127.0.0.1:8765/{SEA64.filename}"),
        ("http://127.0.0.1:8765", f"http://127.0.0.1:8765/{SEA64.filename}"),
        ("https://h/x/{filename}?raw=1", f"https://h/x/{SEA64.filename}?raw=1"),
        ("https://h/{ref}/{filename}", f"https://h/{WEIGHTS_COMMIT}/{SEA64.filename}"),
    ],
)
def test_weights_url(monkeypatch, env, expected):
    if env is not None:
        monkeypatch.setenv("EDGEL3_WEIGHTS_URL", env)
    assert weights.weights_url(SEA64) == expected


def test_weights_url_rejects_non_url(monkeypatch):
    monkeypatch.setenv("EDGEL3_WEIGHTS_URL", "/some/dir")
    with pytest.raises(WeightsError, match="EDGEL3_WEIGHTS_URL='/some/dir' is not a URL"):
        weights.weights_base_url()


def test_search_order(monkeypatch, tmp_path):
    # find_weights does not hash-check, so placeholder files are enough here.
    explicit, env_dir, cache = (tmp_path / d for d in ("explicit", "env", "cache"))
    for directory in (explicit, env_dir, cache):
        directory.mkdir()
        (directory / SEA64.filename).write_bytes(b"x")
    monkeypatch.setenv("EDGEL3_CACHE_DIR", str(cache))
    monkeypatch.setenv("EDGEL3_WEIGHTS_DIR", str(env_dir))

    assert weights.find_weights(SEA64, explicit) == explicit / SEA64.filename
    assert weights.find_weights(SEA64, explicit / SEA64.filename) == explicit / SEA64.filename
    assert weights.find_weights(SEA64) == env_dir / SEA64.filename
    (env_dir / SEA64.filename).unlink()
    assert weights.find_weights(SEA64) == cache / SEA64.filename
    (cache / SEA64.filename).unlink()
    assert weights.find_weights(SEA64) is None


def test_weights_dir_finds_unpacked_h5(monkeypatch, tmp_path):
    # 0.2.1 left unpacked `<name>.h5` files; the gzipped one wins when both exist.
    (tmp_path / "edgel3_sea_ust_audio_emb_64.h5").write_bytes(b"x")
    monkeypatch.setenv("EDGEL3_WEIGHTS_DIR", str(tmp_path))
    assert weights.find_weights("sea-64") == tmp_path / "edgel3_sea_ust_audio_emb_64.h5"
    (tmp_path / SEA64.filename).write_bytes(b"x")
    assert weights.find_weights("sea-64") == tmp_path / SEA64.filename


@pytest.mark.shared
def test_weights_dir_env_reads_shared_in_place(sea64_weights_dir, dead_url):
    # Verified in place, no download attempted (the URL is dead).
    assert weights.get_weights_path(SEA64) == sea64_weights_dir / SEA64.filename


def test_explicit_path_missing(tmp_path):
    missing = tmp_path / "nope.h5.gz"
    with pytest.raises(WeightsError, match="nope.h5.gz.*does not exist"):
        weights.find_weights(SEA64, missing)
    with pytest.raises(WeightsError, match="holds neither"):
        weights.find_weights(SEA64, tmp_path)


def test_missing_weights_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEL3_WEIGHTS_DIR", str(tmp_path / "absent"))
    with pytest.raises(WeightsError, match="EDGEL3_WEIGHTS_DIR=.*absent.*is not a directory"):
        weights.find_weights(SEA64)


# --------------------------------------------------------------------------- downloads (offline)


@pytest.mark.shared
def test_download_into_cache(served_weights, capfd):
    path = weights.get_weights_path(SEA64)
    assert path == _cache() / SEA64.filename
    assert weights.file_blob_sha1(path) == SEA64_SHA1
    # Nothing but the final file and its hash record: the temporary download directory
    # and the cache's lock file are gone.
    assert _cache_contents() == [SEA64.filename, "verified.json"]
    # pooch's INFO chatter is silenced unless progress=True.
    assert capfd.readouterr().err == ""


@pytest.mark.shared
def test_cache_hit_skips_download(served_weights, monkeypatch):
    path = weights.download_weights(SEA64)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("EDGEL3_WEIGHTS_URL", f"http://127.0.0.1:{sock.getsockname()[1]}/")
    assert weights.get_weights_path(SEA64) == path
    assert weights.download_weights(SEA64) == path  # valid cached file, force=False


@pytest.mark.shared
def test_download_corrupted_copy(tmp_path, monkeypatch):
    data = bytearray(SEA64_GZ.read_bytes())
    data[len(data) // 2] ^= 0xFF
    served = tmp_path / "served"
    served.mkdir()
    (served / SEA64.filename).write_bytes(bytes(data))
    with serve_directory(served) as url:
        monkeypatch.setenv("EDGEL3_WEIGHTS_URL", url)
        with pytest.raises(WeightsError, match=f"expected {SEA64_SHA1}") as info:
            weights.download_weights(SEA64)
    assert url in str(info.value)
    assert _cache_contents() == []


def _check_failure_message(spec, url: str) -> str:
    with pytest.raises(WeightsError) as info:
        weights.get_weights_path(spec)
    message = str(info.value)
    assert spec.filename in message
    assert url + spec.filename in message  # the exact URL tried
    assert str(_cache()) in message  # where to put the file by hand
    assert _cache_contents() == []
    return message


def test_download_unreachable_server(dead_url):
    assert "could not connect" in _check_failure_message(SEA64, dead_url)


def test_download_http_404(served_weights):
    # No sparse file is served (only SEA-64 exists locally).
    assert "HTTP 404" in _check_failure_message(SPARSE, served_weights)


def test_download_failure_names_weights_dir(dead_url, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEL3_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match=f"in '{tmp_path}' \\(EDGEL3_WEIGHTS_DIR\\)"):
        weights.get_weights_path(SEA64)


def test_no_download_when_disabled(served_weights):
    with pytest.raises(WeightsError, match="not found and download=False"):
        weights.get_weights_path(SEA64, download=False)
    assert _cache_contents() == []


@pytest.mark.shared
def test_corrupt_cache_detected_then_repaired(served_weights):
    cache = _cache()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / SEA64.filename).write_bytes(SEA64_GZ.read_bytes()[:-10])
    with pytest.raises(WeightsError, match="Delete it and download it again"):
        weights.get_weights_path(SEA64)
    # An explicit download replaces the corrupt file.
    weights.download_weights(SEA64)
    assert weights.file_blob_sha1(cache / SEA64.filename) == SEA64_SHA1


def test_named_gz_in_weights_dir_is_verified(monkeypatch, tmp_path):
    (tmp_path / SEA64.filename).write_bytes(b"not the file")
    monkeypatch.setenv("EDGEL3_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="git blob SHA-1"):
        weights.get_weights_path(SEA64)
    # An explicit file with a user's own name cannot be hash-checked; it is returned as is.
    other = tmp_path / "mine.h5.gz"
    other.write_bytes(b"x")
    assert weights.get_weights_path(SEA64, weights_path=other) == other


# --------------------------------------------------------------------------- legacy reader


def _write_h5_without_weights(path: Path) -> None:
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = "2.0.9"
        h5.create_group("something_else")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.write_bytes(SEA64_GZ.read_bytes()[: 1 << 20]), "corrupt or truncated gzip"),
        (lambda p: p.write_bytes(gzip.compress(b"plain text, not HDF5")), "not a readable HDF5"),
        (lambda p: p.write_bytes(b"plain text"), "named .gz but is not gzip"),
    ],
    ids=["truncated-gz", "gz-of-non-hdf5", "not-gzip"],
)
@pytest.mark.shared
def test_read_corrupt_gz(tmp_path, make, match):
    path = tmp_path / "bad.h5.gz"
    make(path)
    with pytest.raises(WeightsError, match=match) as info:
        legacy_h5.read_legacy_h5(path)
    assert str(path) in str(info.value)


def test_read_non_hdf5_and_missing_group(tmp_path):
    text = tmp_path / "text.h5"
    text.write_bytes(b"plain text")
    with pytest.raises(WeightsError, match="not a readable HDF5"):
        legacy_h5.read_legacy_h5(text)
    empty = tmp_path / "empty.h5"
    _write_h5_without_weights(empty)
    with pytest.raises(WeightsError, match="no 'model_weights' group"):
        legacy_h5.read_legacy_h5(empty)


@pytest.mark.shared
def test_read_sea64_layout(sea64):
    assert sea64.keras_version == "2.0.9"
    assert len(sea64.layer_names) == 32
    assert sea64.layer_names[:3] == ["input_1", "melspectrogram_1", "batch_normalization_1"]
    assert sea64.layer_names[-1] == "flatten_1"
    assert len(sea64.weighted_layers) == 18
    assert sum(len(arrays) for _, _, arrays in sea64.weighted_layers) == 55
    assert sea64.n_values == 1_482_916
    assert all(a.dtype == np.float32 for _, _, arrays in sea64.weighted_layers for a in arrays)

    cfg = sea64.melspec_config()
    assert (cfg["n_dft"], cfg["n_hop"], cfg["sr"], cfg["n_mels"]) == (1024, 160, 8000, 64)

    # Load order from weight_names, not h5py's alphabetical order (beta < gamma).
    name, var_names, arrays = sea64.weighted_layers[1]
    assert name == "batch_normalization_1"
    assert [v.split("/")[-1] for v in var_names] == [
        "gamma:0",
        "beta:0",
        "moving_mean:0",
        "moving_variance:0",
    ]
    # docs/frontend.rst §5 gives the input-BN values, so this pins each array to its name.
    np.testing.assert_array_equal(
        np.concatenate(arrays), np.float32([0.91400796, -0.17106737, -26.149736, 114.146545])
    )
    kernels = sea64.conv_kernels()
    assert [n for n, _ in kernels][-1] == "audio_embedding_layer"
    assert [k.shape[-1] for _, k in kernels] == [32, 32, 64, 64, 128, 128, 64, 64]


@pytest.mark.shared
def test_unpacked_h5_reads_identically(sea64, tmp_path):
    h5_path = tmp_path / "edgel3_sea_ust_audio_emb_64.h5"
    with gzip.open(SEA64_GZ, "rb") as src, open(h5_path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    unpacked = legacy_h5.read_legacy_h5(h5_path)
    assert unpacked.layer_names == sea64.layer_names
    assert unpacked.config == sea64.config
    assert len(unpacked.weighted_layers) == len(sea64.weighted_layers)
    for (n1, v1, a1), (n2, v2, a2) in zip(unpacked.weighted_layers, sea64.weighted_layers):
        assert (n1, v1) == (n2, v2)
        for x, y in zip(a1, a2):
            np.testing.assert_array_equal(x, y)  # same bytes, so exactly equal
    # The SHA-256 of SEA-64's unpacked bytes ships with edgel3: the file is verified.
    assert weights.verify_weights(h5_path, SEA64) is True
    assert legacy_h5.infer_spec(unpacked) == SEA64


# --------------------------------------------------------------------------- spec inference


@pytest.mark.shared
def test_infer_spec_official(sea64):
    spec = legacy_h5.infer_spec(sea64)
    assert spec == SEA64  # frontend, filters, head, emb_dim, hash, everything


@pytest.mark.shared
def test_infer_spec_without_config_uses_kapre_shapes(sea64):
    bare = dataclasses.replace(sea64, config=None)
    assert bare.melspec_config() is None
    assert legacy_h5.infer_spec(bare).frontend == SEA64.frontend


@pytest.mark.shared
def test_infer_spec_user_file(sea64):
    user = dataclasses.replace(sea64, path=Path("my_student.h5"))
    spec = legacy_h5.infer_spec(user)
    assert spec.name == "my_student"
    assert (spec.frontend, spec.filters, spec.head, spec.emb_dim, spec.model_type) == (
        SEA64.frontend,
        SEA64.filters,
        "bn_relu",
        64,
        "sea",
    )
    assert spec.blob_sha1 is None and not spec.legacy_api
    assert legacy_h5.infer_spec(user, name="custom").name == "custom"


@pytest.mark.shared
def test_infer_spec_without_head_bn(sea64):
    # Dropping batch_normalization_9 gives the sparse-style head (17 weighted layers).
    no_head = dataclasses.replace(
        sea64, path=Path("x.h5"), weighted_layers=sea64.weighted_layers[:-1]
    )
    assert legacy_h5.infer_spec(no_head).head == "none"


@pytest.mark.shared
def test_infer_spec_registry_mismatch(sea64):
    misnamed = dataclasses.replace(sea64, path=Path("edgel3_sea_ust_audio_emb_128.h5.gz"))
    with pytest.raises(WeightsError, match="named like official model '.*_emb_128'"):
        legacy_h5.infer_spec(misnamed)


@pytest.mark.shared
def test_infer_spec_unsupported_architecture(sea64):
    layers = list(sea64.weighted_layers)
    del layers[3:5]  # drop conv2d_2 and its BN: 7 convs
    broken = dataclasses.replace(sea64, path=Path("x.h5"), weighted_layers=layers)
    # The message lists every weighted layer's shapes.
    with pytest.raises(WeightsError, match=r"unsupported architecture.*conv2d_1 \[\(3, 3, 1, 32\)"):
        legacy_h5.infer_spec(broken)


def test_interrupted_download_leaves_nothing(monkeypatch):
    import pooch

    def interrupted(url, *, known_hash, fname, path, downloader):
        Path(path, fname).write_bytes(b"half a file")  # what an interrupted fetch leaves
        raise KeyboardInterrupt

    monkeypatch.setattr(pooch, "retrieve", interrupted)
    with pytest.raises(KeyboardInterrupt):
        weights.download_weights(SEA64)
    assert _cache_contents() == []


@pytest.mark.shared
def test_progress_download_restores_pooch_logger(served_weights):
    import pooch

    level = pooch.get_logger().level
    path = weights.download_weights("sea-64", progress=True, force=True)
    assert weights.file_blob_sha1(path) == SEA64_SHA1
    assert pooch.get_logger().level == level


def test_import_is_light():
    # pooch and h5py are imported inside the functions that need them; no TensorFlow at all.
    code = (
        "import sys, edgel3.weights; "
        "print(sorted(m for m in ('pooch', 'h5py', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
