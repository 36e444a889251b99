from setuptools import find_packages, setup

setup(
    name="janus-rig",
    version="0.1.0",
    description="Reasoning-driven image generation with a unified autoregressive model (GoT-R1 / RL-RIG style): "
    "SFT, GRPO, reflection, rewards and evaluation on transformers' Janus.",
    python_requires=">=3.10",
    packages=find_packages(include=["janus_rig*", "reward_models*", "data_prep*", "train*"]),
    package_data={"": ["*.yaml", "*.json", "*.jsonl", "*.txt"], "data_prep": ["prompt_sets/*/*", "prompt_sets/*.md"]},
    include_package_data=True,
    install_requires=[
        # torch is pinned by the Makefile to the CPU build before this runs (a bare "torch" pulls CUDA wheels).
        "torch>=2.4",
        # 5.24 renamed the layers' `past_key_values` argument to `cache` (the old name warns, and goes in 5.40); our
        # rollout passes `cache=`, which 5.20-5.23 would silently drop into **kwargs. 5.25 renamed the Trainer's
        # `gradient_checkpointing` to `activation_checkpointing` (the old name warns); our recipes use the new one.
        "transformers>=5.25,<6",
        "accelerate>=1.0",
        "trl>=1.0",
        "peft>=0.15",
        "datasets>=3.0",
        "tokenizers>=0.21",
        "pillow>=10",
        "numpy>=1.26",
        "pyyaml>=6",
        "tqdm>=4.66",
        "matplotlib>=3.8",
    ],
    extras_require={
        # tensorboard: `--report_to tensorboard` (docs/tracking.md) and tests/test_tracking.py; wandb is never a
        # dependency (install it yourself for `--report_to wandb`). import-linter: the layer contracts
        # (.importlinter, tests/test_layers.py).
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "tensorboard>=2.14", "import-linter>=2.1"],
        # The aesthetic term. open_clip imports torchvision, whose PyPI wheels are built against torch's CUDA build and
        # fail to import beside the CPU-only torch: install a matching torch + torchvision pair first (`make
        # test-clip` builds .venv-clip with torch==2.14.1 torchvision==0.29.1). open_clip >= 3 reads local-dir: models.
        "clip": ["open_clip_torch>=3.0,<4", "torchvision"],
        # flash-attn: `attn_implementation: flash_attention_2`, which the janus_pro_* recipes set (docs/presets.md).
        "gpu": ["flash-attn>=2.5", "deepspeed>=0.14"],
    },
    entry_points={"console_scripts": ["janus-rig=janus_rig.cli:main"]},
)
