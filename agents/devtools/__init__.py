"""Developer commands, not part of any agent: re-recording the Claude cassettes against the API
(`python -m agents.devtools.record`, run by `nox -s record`) and writing the synthetic seeds
(`python -m agents.devtools.seed`). Kept out of `agents.core` so the runtime holds only what an
agent runs."""
