"""Helpers the test suites share: the real broker and Redis from the outside, `agents run` as a
process, and waiting on conditions. Fixtures live in conftest.py files and build on these; tests
import from here, never from a conftest."""
