"""Prices per model in one table: US dollars per million input / output tokens.

The specification's cost formula (input x $3/M + output x $15/M) is the Sonnet-4.x row. Model ids
may carry a date suffix (`claude-haiku-4-5-20251001`), so lookup takes the longest known prefix.
An unknown model is priced at `UNKNOWN_MODEL_PRICE`, dearer than any current Claude model, so the
spend caps stay a true bound even when someone configures a model this table has never seen.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6

    @property
    def dearest_per_token(self) -> float:
        return max(self.input_per_mtok, self.output_per_mtok) / 1e6


PRICES: dict[str, Price] = {
    "claude-haiku-5-5": Price(0.10, 0.50),
    "claude-sonnet-5-5": Price(2.0, 10.0),
    "claude-opus-5-5": Price(4.0, 20.0),
    "claude-sonnet-4-6": Price(3.0, 15.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),  # the specification's model and prices
    "claude-sonnet-4": Price(3.0, 15.0),
    "claude-haiku-4-5": Price(1.0, 5.0),
    "claude-opus-4-1": Price(15.0, 75.0),
    "claude-opus-4": Price(15.0, 75.0),
}

UNKNOWN_MODEL_PRICE = Price(15.0, 75.0)

FREE = Price(0.0, 0.0)


def price_for(model: str) -> Price:
    """The price of `model`, or the conservative `UNKNOWN_MODEL_PRICE` when it is not listed."""
    known = lookup(model)
    return known if known is not None else UNKNOWN_MODEL_PRICE


def lookup(model: str) -> Price | None:
    if model in PRICES:
        return PRICES[model]
    prefixes = [name for name in PRICES if model.startswith(name + "-")]
    return PRICES[max(prefixes, key=len)] if prefixes else None
