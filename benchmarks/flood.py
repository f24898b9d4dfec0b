"""A load generator that out-runs the consumers: publishes at a fixed rate without per-message
confirms (Locust with one confirm round trip per request tops out near 1,600 msg/s here).

    python -m benchmarks.flood --vhost V --rate 3000 --seconds 60 --sent sent-1.txt

Bodies are valid book messages, built before the clock starts. Pacing is by schedule: every
few milliseconds the process sends whatever the target rate says is due by now, so a stall is
caught up rather than lost and the offered rate is what was asked for, as long as the process
keeps up (its achieved rate is reported, and the caller judges). Each send appends
`message_id epoch` to the sent file, for the end-to-end latency join with the consumer agents'
"Message consumed" lines. No publisher confirms (that is what makes it fast): the caller checks
what arrived by that join and by the queues draining.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import pika

from agents.vocab import EXCHANGE
from benchmarks import rabbit
from benchmarks.baselines import make_messages


def run(vhost: str, rate: float, seconds: float, sent_path: str, seed: int) -> dict[str, float]:
    total = int(rate * seconds)
    messages = make_messages(total, seed, publisher_id="flood")
    connection = pika.BlockingConnection(rabbit.params(vhost))
    channel = connection.channel()
    sent_file = open(sent_path, "w", buffering=1 << 20)  # noqa: SIM115 (closed below)
    sent = 0
    lag_max = 0.0
    try:
        started = time.time()
        while sent < total:
            now = time.time()
            due = min(total, int((now - started) * rate) + 1)
            if due <= sent:
                # Sleep to the next message's slot, at most a few ms (pika keeps heartbeats).
                connection.sleep(min(0.005, max(0.0, (sent + 1) / rate - (now - started))))
                continue
            lag_max = max(lag_max, (due - sent) / rate)
            while sent < due:
                message = messages[sent]
                channel.basic_publish(
                    EXCHANGE,
                    message.genre,
                    message.body,
                    pika.BasicProperties(
                        content_type="application/json",
                        delivery_mode=2,
                        message_id=message.message_id,
                        timestamp=int(now),
                    ),
                )
                sent_file.write(f"{message.message_id} {time.time():.6f}\n")
                sent += 1
        elapsed = time.time() - started
    finally:
        sent_file.close()
        connection.close()
    return {
        "target_rate": rate,
        "sent": sent,
        "seconds": round(elapsed, 3),
        "achieved_rate": round(sent / elapsed, 1) if elapsed > 0 else 0.0,
        "max_lag_s": round(lag_max, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vhost", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--sent", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = run(args.vhost, args.rate, args.seconds, args.sent, args.seed)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
