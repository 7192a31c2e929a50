from setuptools import find_packages, setup

# fairseq is not in install_requires: the only build that imports on Python 3.11
# (fairseq-fixed) declares torchaudio, which would pull a multi-GB CUDA torch.
# scripts/setup.sh installs it with --no-deps; constraints.txt pins every version.
setup(
    name="fairseq_compress",
    version="0.1.0",
    description="fairseq plugin: train Transformers efficiently, then compress them",
    packages=find_packages(include=["fairseq_compress", "fairseq_compress.*"]),
    package_data={"fairseq_compress": ["config/**/*.yaml", "studies/configs/*.yaml", "corpus/*.txt"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.6",
        "numpy",
        "hydra-core>=1.3",
        "omegaconf>=2.3",
        "sacrebleu>=2.0",
        "sentencepiece",
        "matplotlib",
        # fairseq-fixed's runtime dependencies, minus torchaudio
        "regex",
        "tqdm",
        "bitarray",
        "cffi",
        "packaging",
        "scikit-learn",
    ],
    extras_require={
        "export": ["ctranslate2", "transformers", "safetensors", "tokenizers"],
        "test": ["pytest", "pytest-xdist"],
    },
    entry_points={"console_scripts": ["fairseq-compress=fairseq_compress.cli:main"]},
)
