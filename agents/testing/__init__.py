"""Every test double, beside the port it stands in for: an in-memory broker, the Claude
stand-ins, a fake clock, a fake InfluxDB endpoint, log capture, an environment cleaner and a
condition wait.

The scripted client stands in for the model where a test needs a *specific* answer (batch,
flag, a new interval, critical) that dry-run mode never gives; it plugs into the real
DecisionEngine through `build_engine(..., client=...)`, so guard, parsing and clamping are the
real ones. `MemoryBroker` routes and settles like the real broker (tests/contract runs both);
it is for unit tests and in-process measurements of the handling paths, integration tests use
the real broker.
"""

from __future__ import annotations

# Each double has its own module; re-exported so tests, benchmarks and tools import every test
# helper from one place.
from agents.testing.broker import MemoryBroker as MemoryBroker
from agents.testing.broker import Message as Message
from agents.testing.broker import Published as Published
from agents.testing.broker import bodies as bodies
from agents.testing.claude import EngineRig as EngineRig
from agents.testing.claude import FakeMessagesAPI as FakeMessagesAPI
from agents.testing.claude import ScriptedClient as ScriptedClient
from agents.testing.claude import consumer_reply as consumer_reply
from agents.testing.claude import engine_rig as engine_rig
from agents.testing.claude import message_json as message_json
from agents.testing.claude import mock_client as mock_client
from agents.testing.claude import monitor_reply as monitor_reply
from agents.testing.claude import publisher_reply as publisher_reply
from agents.testing.clock import FakeClock as FakeClock
from agents.testing.env import AGENT_VARIABLES as AGENT_VARIABLES
from agents.testing.env import AI_VARIABLES as AI_VARIABLES
from agents.testing.env import clean_env as clean_env
from agents.testing.influx import FakeInflux as FakeInflux
from agents.testing.logs import LogCapture as LogCapture
from agents.testing.logs import LogEvent as LogEvent
from agents.testing.logs import capture_logs as capture_logs
from agents.testing.logs import parse_line as parse_line
from agents.testing.logs import parse_lines as parse_lines
from agents.testing.logs import select as select
from agents.testing.waiting import WaitTimeout as WaitTimeout
from agents.testing.waiting import wait_until as wait_until
