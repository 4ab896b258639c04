"""Packaging for edgel3. Weights are never downloaded at install time (see README)."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "edgel3" / "version.py").read_text(), version)

setup(
    name="edgel3",
    version=version["__version__"],
    description="Compact audio embeddings from compressed Look-Listen-Learn (L3) networks",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    url="https://github.com/ksangeeta2429/edgel3",
    license="MIT",
    packages=find_packages(include=["edgel3", "edgel3.*"]),
    include_package_data=True,
    package_data={"edgel3.bundled": ["tiny.keras", "tiny.json"]},  # the offline model
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "soundfile>=0.12",
        "numba>=0.57",
        "tensorflow>=2.16",  # first release with Keras 3
        "keras>=3.0",
        "h5py>=3.0",
        "pooch>=1.6",
        "tqdm>=4.60",
        "threadpoolctl>=3",  # BLAS thread counts (edgel3.threads, edgel3.blas)
    ],
    extras_require={
        # One line per optional stack; "test" pulls in every stack the test suite exercises.
        "eval": ["scikit-learn>=1.3", "matplotlib>=3.7", "threadpoolctl>=3"],
        "fast": ["soxr>=0.3"],  # fast_resample=True (SciPy's polyphase resampler without it)
        "export": ["ai-edge-litert>=2.0"],  # the LiteRT runtime; converting needs TensorFlow
        # The LiteRT-Micro interpreter (memory-report's arena head/tail/total); nightly-only
        # releases, so the bound names a pre-release (which also lets pip pick them).
        "micro": ["tflite-micro>=0.dev20250101"],
        "ray": ["ray[data]>=2.10", "pyarrow>=14"],  # 2.10: from_items(override_num_blocks=)
        "test": [
            "pytest>=7",
            "hypothesis>=6.80",  # property tests: every embedding path agrees
            "ruff>=0.6",
            "scikit-learn>=1.6",  # check_estimator's expected_failed_checks
            "matplotlib>=3.7",
            "threadpoolctl>=3",
            "ai-edge-litert>=2.0",
            "tflite-micro>=0.dev20250101",
            "ray[data]>=2.10",
            "pyarrow>=14",
            "pandas>=2.2",  # tests read Parquet datasets as the docs tell users to (.list)
            "datasets>=2.14",  # Hugging Face Dataset.from_parquet on edgel3's Parquet output
            "sphinx>=7",  # tests/test_docs.py builds the docs with -W
            "numpydoc>=1.6",
        ],
        "docs": ["sphinx>=7", "numpydoc>=1.6"],
    },
    entry_points={"console_scripts": ["edgel3=edgel3.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio :: Analysis",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
