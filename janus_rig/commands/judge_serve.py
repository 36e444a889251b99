"""`janus-rig judge serve`: serve a local judge as an OpenAI-compatible server (see reward_models/server.py).

    janus-rig judge serve --judge shapeworld --port 8000
    janus-rig judge serve --judge hf --model /models/Qwen2.5-VL-7B-Instruct --judge-option device=cuda \
        --judge-option batch_size=32 --max-batch 32
    JANUS_RIG_JUDGE_API_KEY=... janus-rig judge serve --host 0.0.0.0 --workers 4
    janus-rig reward --records val.jsonl --judge http://127.0.0.1:8000/v1 --out rewards.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging

from janus_rig.commands.reward import _key_value
from reward_models.server import ServerConfig, api_key_from_env

NAME = "judge serve"
HELP = "serve a local judge (shapeworld, hf, ...) as an OpenAI-compatible chat-completions server"
_DEFAULTS = ServerConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judge", default="shapeworld", help="a registered judge name (shapeworld, hf, ...)")
    parser.add_argument("--model", default=None, help="hf: local model directory")
    parser.add_argument("--judge-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                        help="judge keyword argument, repeatable (device=cuda, batch_size=16, ...)")
    parser.add_argument("--host", default=_DEFAULTS.host, help=ServerConfig.help("host"))
    parser.add_argument("--port", type=int, default=_DEFAULTS.port, help=ServerConfig.help("port"))
    parser.add_argument("--max-body-mb", type=float, default=_DEFAULTS.max_body / 2**20,
                        help="largest request body accepted, in MiB (413 above it, refused before it is read)")
    parser.add_argument("--max-pending-mb", type=float, default=_DEFAULTS.max_pending_bytes / 2**20,
                        help="request bodies held at once over all connections, in MiB; a request that would pass "
                             "it gets 503 with Retry-After (the http judge retries it)")
    parser.add_argument("--workers", type=int, default=_DEFAULTS.workers, help=ServerConfig.help("workers"))
    parser.add_argument("--max-connections", type=int, default=_DEFAULTS.max_connections,
                        help=ServerConfig.help("max_connections"))
    parser.add_argument("--idle-timeout", type=float, default=_DEFAULTS.idle_timeout,
                        help=ServerConfig.help("idle_timeout"))
    parser.add_argument("--request-timeout", type=float, default=_DEFAULTS.request_timeout,
                        help=ServerConfig.help("request_timeout"))
    parser.add_argument("--max-batch", type=int, default=_DEFAULTS.max_batch, help=ServerConfig.help("max_batch"))
    parser.add_argument("--batch-window", type=float, default=_DEFAULTS.batch_window,
                        help=ServerConfig.help("batch_window"))
    parser.add_argument("--api-key", default=None, help=ServerConfig.help("api_key") +
                        " (the variable keeps the key out of the process list)")


def server_config(args: argparse.Namespace) -> ServerConfig:
    for flag in ("max_body_mb", "max_pending_mb"):
        if not getattr(args, flag) > 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be positive")
    return ServerConfig(
        host=args.host, port=args.port, max_body=int(args.max_body_mb * 2**20),
        max_pending_bytes=int(args.max_pending_mb * 2**20), workers=args.workers,
        max_connections=args.max_connections, idle_timeout=args.idle_timeout, request_timeout=args.request_timeout,
        api_key=args.api_key or api_key_from_env(), max_batch=args.max_batch, batch_window=args.batch_window,
    )


def run(args: argparse.Namespace) -> int:
    from reward_models.judges import make_judge
    from reward_models.server import JudgeServer

    if args.judge.startswith(("http://", "https://")):
        raise ValueError("judge serve serves a local judge; give a name, not a URL")
    config = server_config(args)  # bad settings fail before the judge loads
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    judge = make_judge(args.judge, model=args.model, **dict(args.judge_option))
    server = JudgeServer(judge, config)
    print(f"serving judge {judge.name} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        logging.getLogger(__name__).info("judge calls %s", json.dumps(server.batch_summary()))
        judge.stats.log()
        judge.close()
    return 0
