"""books-agents: AI agents on RabbitMQ that ask Claude at runtime, under hard cost controls."""

__version__ = "0.1.0"
