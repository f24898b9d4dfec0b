"""Shared runtime: settings, logs, metrics, broker, clock and the AI decision engine."""
