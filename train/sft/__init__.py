"""Supervised fine-tuning (GoT-R1 stage 1): prompt -> reasoning chain -> image tokens. See docs/sft.md."""
