"""Benchmarks: `nox -s bench` (`python -m benchmarks.run`) against the local RabbitMQ.

Absolute numbers on a shared 2-core machine are noise; every headline figure is a ratio against a
baseline measured in the same run, in interleaved rounds, reported as a median with its spread.
Locust runs as a subprocess only: it monkey-patches the process with gevent on import.
"""
