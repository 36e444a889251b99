"""The rollout engine: sample chains and images from the policy (with per-token log-probs), and region-locked edits."""

from janus_rig.rollout.config import RolloutConfig
from janus_rig.rollout.regions import patch_mask, token_masks
from janus_rig.rollout.sampler import Rollout, edit, sample

__all__ = ["Rollout", "RolloutConfig", "edit", "patch_mask", "sample", "token_masks"]
