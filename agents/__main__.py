# `python -m agents`, which is how the fleet starts every agent: catch stop signals before
# importing anything else (the CLI module included), so a Ctrl-C to the whole group while the
# child is still starting is an ordinary stop, not a traceback (see agents.early_signals).
import sys

from agents import early_signals
from agents.vocab import AGENT_TYPES

if sys.argv[1:2] and sys.argv[1] in AGENT_TYPES:
    early_signals.latch()

from agents.cli import entry  # after the latch, on purpose

entry()
