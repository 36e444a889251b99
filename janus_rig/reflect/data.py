"""Reflection rows (WORLD/reflect.jsonl, written by `janus-rig reflect-data`) -> SFT token sequences.

Each row teaches the checker, and the actor when the decision is edit and the row has an actor target (rows of the
model's own images, `"actor": false`, teach the checker only; targets in brackets, the rest context):

    checker  encode_checker(prompt, chain)                    [encode_text(reflection)]    + pixel_values(image)
    actor    encode_actor(prompt, chain, reflection)          [encode_text(edit)]          + pixel_values(image)

Both contexts are understanding prompts (image placeholders, then the question), like the grounding records, so
the sequences use the SFT row schema of the grounding rows (`train/sft/data.py`): `grounding: True` is what makes
the collator load `image` (relative to the world directory) into `pixel_values`. Targets end with the role's end
token, which is where sampling stops: no EOS follows. The editor needs no rows of its own: it is the generation
sequence (caption -> chain -> image), which SFT already trains.
"""

from __future__ import annotations

from janus_rig.chain import ChainFormatError, parse_chain
from janus_rig.chain.roles import EDIT, parse_edit, parse_reflection
from janus_rig.reflect.prompts import encode_actor, encode_checker

ROW_FIELDS = ("id", "image", "prompt", "chain", "reflection", "decision")


def check_reflect_row(row: dict) -> tuple[str, str] | None:
    """(reason, detail) for a reflect.jsonl row that cannot be used, else None. Targets are read strictly."""
    missing = [k for k in ROW_FIELDS if not isinstance(row.get(k), str) or not row[k]]
    if missing:
        return "missing_field", f"no (or empty) {', '.join(missing)}"
    try:
        parse_chain(row["chain"], strict=True)
    except ChainFormatError as err:
        return "bad_chain", str(err)
    try:
        reflection = parse_reflection(row["reflection"], strict=True)
    except ChainFormatError as err:
        return "bad_reflection", str(err)
    if reflection.decision != row["decision"]:
        return "bad_reflection", f"decision field {row['decision']!r} but the reflection says {reflection.decision!r}"
    if "actor" in row and not isinstance(row["actor"], bool):
        return "bad_field", f"'actor' must be true or false, got {row['actor']!r}"
    if row["decision"] == EDIT and has_actor_target(row):
        if not isinstance(row.get("edit"), str):
            return "missing_field", "an edit decision needs the actor's 'edit' target (or \"actor\": false)"
        try:
            parse_edit(row["edit"], strict=True)
        except ChainFormatError as err:
            return "bad_edit", str(err)
    return None


def has_actor_target(row: dict) -> bool:
    """Whether a row teaches the actor when its decision is edit: all rows but checker-only ones (`"actor": false`)."""
    return row.get("actor", True) is not False


def _sequence(context: list[int], target: list[int], row_id: str, image: str) -> dict:
    n = len(context) + len(target)
    return {"id": row_id, "input_ids": [*context, *target], "image_mask": [False] * n,
            "loss_mask": [False] * len(context) + [True] * len(target), "image": image, "grounding": True}


def role_sequences(policy, row: dict) -> list[dict]:
    """The SFT rows of one valid reflect.jsonl row (see `check_reflect_row`): ids "<id>/checker", "<id>/actor"."""
    prompt, chain, reflection = row["prompt"], row["chain"], row["reflection"]
    rows = [_sequence(encode_checker(policy, prompt, chain), policy.encode_text(reflection),
                      f"{row['id']}/checker", row["image"])]
    if row["decision"] == EDIT and has_actor_target(row):
        rows.append(_sequence(encode_actor(policy, prompt, chain, reflection), policy.encode_text(row["edit"]),
                              f"{row['id']}/actor", row["image"]))
    return rows
