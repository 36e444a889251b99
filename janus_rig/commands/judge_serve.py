"""`janus-rig judge serve`: serve a local judge as an OpenAI-compatible server (see reward_models/server.py).

    janus-rig judge serve --judge shapeworld --port 8000
    janus-rig judge serve --judge hf --model /models/Qwen2.5-VL-7B-Instruct --judge-option device=cuda
    janus-rig reward --records val.jsonl --judge http://127.0.0.1:8000/v1 --out rewards.jsonl
"""

from __future__ import annotations

import argparse
import logging

from janus_rig.commands.reward import _key_value

NAME = "judge serve"
HELP = "serve a local judge (shapeworld, hf, ...) as an OpenAI-compatible chat-completions server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judge", default="shapeworld", help="a registered judge name (shapeworld, hf, ...)")
    parser.add_argument("--model", default=None, help="hf: local model directory")
    parser.add_argument("--judge-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                        help="judge keyword argument, repeatable (device=cuda, batch_size=16, ...)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port; the URL is printed)")
    parser.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body accepted, in MiB")


def run(args: argparse.Namespace) -> int:
    from reward_models.judges import make_judge
    from reward_models.server import JudgeServer

    if args.judge.startswith(("http://", "https://")):
        raise ValueError("judge serve serves a local judge; give a name, not a URL")
    if args.max_body_mb <= 0:
        raise ValueError("--max-body-mb must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    judge = make_judge(args.judge, model=args.model, **dict(args.judge_option))
    server = JudgeServer(judge, args.host, args.port, max_body=int(args.max_body_mb * 2**20))
    print(f"serving judge {judge.name} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        judge.stats.log()
        judge.close()
    return 0
