"""Helpers the test suites share: the real broker and Redis from the outside, `agents run` as a
process, the in-process agent rig and the spend-guard checks. Fixtures live in conftest.py files
and build on these; tests import from here, never from a conftest. (Waiting on conditions is
`agents.testing.waiting`, shared with benchmarks and tools.)"""
