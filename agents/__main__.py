# `python -m agents`: the same entry as the `agents` script, which latches stop signals first
# thing in an agent process (see agents.cli.entry and agents.early_signals).
from agents.cli import entry

entry()
