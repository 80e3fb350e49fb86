"""``devora-lab sim serve``: the offline OpenAI/Anthropic simulator on a local port.

Point agents and SDKs at it with the two exported variables; it answers until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import TYPE_CHECKING, Any, Final

from devora_lab.errors import ConfigError

if TYPE_CHECKING:
    from devora_lab.sim.server import SimServer

__all__ = ["register", "serve"]

# (option suffix, FaultConfig field, help)
_FAULTS: Final = (
    ("429", "rate_429", "rate limited, with retry-after"),
    ("500", "rate_500", "internal server error"),
    ("502", "rate_502", "bad gateway (an HTML page, as from a proxy)"),
    ("503", "rate_503", "service unavailable"),
    ("529", "rate_529", "overloaded (Anthropic; 503 on the OpenAI API)"),
    ("timeout", "rate_timeout", "hold the connection --timeout-seconds before answering"),
    ("reset", "rate_reset", "drop the connection with a TCP reset"),
    ("cut", "rate_cut_stream", "stop a stream (or a body) halfway"),
    ("malformed", "rate_malformed", "a 200 with broken JSON or a broken SSE line"),
)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    sim = commands.add_parser("sim", parents=[common],
                              help="a local, offline OpenAI/Anthropic API simulator")
    sub = sim.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    serve_parser = sub.add_parser("serve", parents=[common],
                                  help="serve the simulator until Ctrl-C")
    serve_parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8765,
                              help="default 8765; 0 picks a free port")
    serve_parser.add_argument("--seed", type=int, default=0,
                              help="fixes answers, latencies and faults (default 0)")
    serve_parser.add_argument("--latency-scale", type=float, default=1.0, metavar="X",
                              help="multiplies every delay; 0 answers at once (default 1)")
    serve_parser.add_argument("--require-key", action="store_true",
                              help="answer 401 to requests without an API key")
    serve_parser.add_argument("--retry-after", type=float, default=1.0, metavar="SECONDS",
                              help="retry-after of injected 429s (default 1)")
    serve_parser.add_argument("--timeout-seconds", type=float, default=30.0, metavar="SECONDS",
                              help="how long an injected timeout holds (default 30)")
    for suffix, field, text in _FAULTS:
        serve_parser.add_argument(f"--fault-{suffix}", dest=field, type=float, default=0.0,
                                  metavar="RATE", help=f"share of requests: {text}")
    serve_parser.set_defaults(handler=serve)


def build_server(args: argparse.Namespace) -> SimServer:
    """The (not yet started) server the options describe; ConfigError if they are invalid."""
    from devora_lab.sim.faults import FaultConfig
    from devora_lab.sim.server import SimServer

    try:
        faults = FaultConfig(**{field: getattr(args, field) for _, field, _ in _FAULTS},
                             retry_after_seconds=args.retry_after,
                             timeout_seconds=args.timeout_seconds)
        return SimServer(seed=args.seed, faults=faults, latency_scale=args.latency_scale,
                         host=args.host, port=args.port, require_key=args.require_key)
    except ValueError as exc:
        raise ConfigError(str(exc), fix="fault rates are shares between 0 and 1 that add up "
                          "to at most 1; scales and seconds are >= 0") from None


def serve(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM (or until ``stop`` is set, for tests)."""
    server = build_server(args)
    try:
        server.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}",
                          fix="pick another --port, or 0 for any free one") from None
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # `kill`/docker stop: clean exit
    try:
        for line in _banner(server, args):
            print(line, flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("devora-lab sim: stopped", flush=True)
    return 0


def _banner(server: SimServer, args: argparse.Namespace) -> list[str]:
    faults = ", ".join(f"{suffix} {getattr(args, field):.1%}" for suffix, field, _ in _FAULTS
                       if getattr(args, field) > 0) or "none"
    lines = [f"devora-lab sim: OpenAI and Anthropic APIs on {server.base_url} "
             f"(seed {args.seed}, latency scale {args.latency_scale:g}, faults: {faults})",
             "export these to point the SDKs at it:"]
    lines.extend(f"  export {name}={value}" for name, value in server.env().items())
    lines.append(f"stats: {server.base_url}/sim/stats    health: {server.base_url}/health"
                 "    Ctrl-C to stop")
    return lines
