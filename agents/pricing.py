"""Tokens to US dollars: the maintained `genai-prices` table, or per-model prices from the config.

Our `Usage.input_tokens` counts UNCACHED input only (Anthropic's convention); OpenAI's input/prompt
tokens include the cached ones, so an OpenAI backend subtracts `cached_tokens` before filling Usage
(`openai_usage` does it). An unknown model costs None, never 0.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.contracts import Usage


class Prices(BaseModel):
    """USD per million tokens; `prices = {input_per_mtok = 3, output_per_mtok = 15}` in backend options."""

    model_config = ConfigDict(extra="forbid")
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cache_read_per_mtok: float | None = Field(None, ge=0)    # default: the input price
    cache_write_per_mtok: float | None = Field(None, ge=0)   # default: the input price

    def cost(self, usage: Usage) -> float:
        read = self.input_per_mtok if self.cache_read_per_mtok is None else self.cache_read_per_mtok
        write = self.input_per_mtok if self.cache_write_per_mtok is None else self.cache_write_per_mtok
        return (usage.input_tokens * self.input_per_mtok + usage.output_tokens * self.output_per_mtok
                + usage.cache_read_tokens * read + usage.cache_write_tokens * write) / 1_000_000


def openai_usage(input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> Usage:
    """Usage from OpenAI's numbers, where input includes the cached part."""
    cached = min(cached_tokens or 0, input_tokens or 0)
    return Usage(input_tokens=(input_tokens or 0) - cached, output_tokens=output_tokens or 0, cache_read_tokens=cached)


def cost_usd(usage: Usage, model: str, *, provider: str | None = None, prices: Prices | None = None) -> float | None:
    """The price of `usage` on `model`; `prices` (from the config) wins over the table; unknown is None."""
    if prices is not None:
        return prices.cost(usage)
    if not model:
        return None
    import genai_prices  # lazy: loading the table takes a moment and only pricing needs it

    table_usage = genai_prices.Usage(
        input_tokens=usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
    # The provider hint first (a model name can exist at several providers), then any provider:
    # a gateway may serve one provider's model through another's wire format.
    for hint in dict.fromkeys([provider, None]):
        try:
            return float(genai_prices.calc_price(table_usage, model, provider_id=hint).total_price)
        except LookupError:
            continue
    return None
