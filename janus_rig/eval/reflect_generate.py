"""The reflection loop as a benchmark's generator: `eval geneval --reflect K` draws each sample with K rounds of
generate -> check -> act -> edit and keeps the final image, plus the image after every round.

    generate_fn = reflect_generate(ReflectConfig(rounds=2))
    run_geneval(policy, entries, out, RolloutConfig(group_size=4), generate_fn=generate_fn, oracle=True)
    # summary.json metrics: overall, position, ..., overall@r0, overall@r1, overall@r2, position@r0, ...

It is a `janus_rig.eval.geneval_run.GenerateFn`: the same batches and seeds as the plain generator (batch b is
drawn with seed + b), and since the loop's generator draws the first images first, the images after round 0 are
exactly those `eval geneval` without --reflect writes with the same seed.
"""

from __future__ import annotations

import time

from janus_rig.eval.geneval_run import Draw, GenerateFn
from janus_rig.reflect.loop import ActFn, CheckFn, ReflectConfig, act, check, reflect
from janus_rig.reflect.report import round_record
from janus_rig.rollout.config import RolloutConfig


def reflect_generate(config: ReflectConfig, checker: CheckFn = check, actor: ActFn = act) -> GenerateFn:
    """A GenerateFn running `reflect` with `config` (K = config.rounds) on each batch: one Draw per row with its
    result's image and plan (`LoopResult.chosen`: after the last edit, or the best-rated with final "best"),
    `round_images` (K + 1: after 0..K rounds) and, in `extra`, the first chain, the number of edits and every
    round's record (`round_record`). `checker` and `actor` are the loop's roles (scripted in tests)."""

    def generate(policy, prompts: list[str], rollout_config: RolloutConfig, seed: int) -> list[Draw]:
        started = time.perf_counter()
        result = reflect(policy, prompts, config, rollout_config, seed=seed, checker=checker, actor=actor)
        seconds = time.perf_counter() - started
        after = result.images_after_rounds(config.rounds)
        truncated = result.initial.truncated.tolist()
        G = rollout_config.group_size
        draws = []
        for r, p in enumerate(result.initial.prompt_index.tolist()):  # rows are prompt-major
            rounds, final = result.traces[r], result.chosen(r)
            draws.append(Draw(
                prompt_index=p, sample=r % G, image=final.image, chain=final.plan, truncated=truncated[r],
                seed=seed, timings={"reflect_s": seconds},  # of the whole batch
                extra={"initial_chain": result.initial.chains[r], "edits": sum(t.status == "edited" for t in rounds),
                       "reflect": [round_record(t) for t in rounds]},
                round_images=after[r]))
        return draws

    return generate
