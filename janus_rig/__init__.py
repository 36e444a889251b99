"""janus-rig: reasoning-driven image generation with a unified autoregressive model (transformers' Janus)."""

__version__ = "0.1.0"
