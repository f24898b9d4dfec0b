import sys

# Catch a stop signal from the very first line of an agent process (see agents.early_signals).
if sys.argv[1:2] and sys.argv[1] in ("publisher", "consumer", "monitor"):
    from agents import early_signals

    early_signals.latch()

from agents.cli import entry

entry()
