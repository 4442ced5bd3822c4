from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="spokenlm_plugin",
    version="0.1.0",
    description="fairseq plugin for spoken language modeling on phoneme-aware speech units",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.12,<3.13",
    packages=find_packages(include=["spokenlm_plugin", "spokenlm_plugin.*"]),
    include_package_data=True,
    package_data={"spokenlm_plugin": ["resources/*", "resources/**/*"]},
    install_requires=[
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "fairseq-fixed==0.12.3.1",
        "numpy<2",
        "scipy<1.18",
        "faiss-cpu",
        "fastabx",
        "sentencepiece",
        "editdistance",
        "soundfile",
        "npy-append-array",
        "matplotlib",
        "scikit-learn",
        "joblib",
        "safetensors",
        "tqdm",
        "pysptk==1.0.1",
        "torchdtw>=0.4.0",
    ],
    extras_require={
        # GPU machines: faiss with CUDA (k-means fit / assign on the GPU). It ships the same `faiss`
        # module as faiss-cpu: install it over the CPU build (see README, "GPU machines").
        "gpu": ["faiss-gpu-cu12"],
        # `convert-hubert --from hf`: Hugging Face checkpoints are read by transformers, then
        # converted by torchaudio's importer.
        "hf": ["transformers==5.23.0"],
        "test": ["pytest", "pytest-timeout==2.4.0", "ruff==0.17.6", "mypy==2.4.1", "transformers==5.23.0"],
    },
    entry_points={"console_scripts": ["spokenlm=spokenlm_plugin.cli:main"]},
)
