"""The bare pika consumer as a process of its own, for the whole-process drain comparison.

    python -m benchmarks.raw_consumer --vhost V --prefetch 50

Consumes both queues with manual acks, the agent's prefetch and a `json.loads` of every body
(the least any consumer of these messages does), one ack per message; runs until terminated.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from types import FrameType

import pika

from agents.vocab import QUEUES
from benchmarks import rabbit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vhost", required=True)
    parser.add_argument("--prefetch", type=int, required=True)
    args = parser.parse_args(argv)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    connection = pika.BlockingConnection(rabbit.params(args.vhost))
    channel = connection.channel()

    def on_message(ch: object, method: object, properties: object, body: bytes) -> None:
        json.loads(body)
        channel.basic_ack(delivery_tag=method.delivery_tag)  # type: ignore[attr-defined]

    for queue in QUEUES:
        channel.basic_qos(prefetch_count=args.prefetch)
        channel.basic_consume(queue, on_message, auto_ack=False)
    print("consuming", flush=True)
    while not stopping:
        connection.process_data_events(time_limit=0.25)
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
