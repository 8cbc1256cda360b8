"""Request fields shared by the dialects, validated by pydantic: a caller's mistake becomes a
400 naming the field. Numeric bounds come from the matching setting's declaration
(runtime/settings.py), so a flag and a request field can never disagree.

Unknown fields are ignored, as OpenAI's clients send fields we have no use for."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from runtime.settings import BY_NAME

MAX_STOPS = 16


def _few_stops(value: str | list[str] | None) -> str | list[str] | None:
    if isinstance(value, list) and len(value) > MAX_STOPS:
        raise ValueError(f"at most {MAX_STOPS} stop sequences")
    return value


# Every dialect's `stop`: one string or a list of at most MAX_STOPS.
Stops = Annotated[str | list[str] | None, AfterValidator(_few_stops)]


def bounded(setting: str, **kwargs: Any) -> Any:
    """An optional request field bounded as the setting of that name is."""
    option = BY_NAME[setting]
    return Field(None, ge=option.low, le=option.high, **kwargs)


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SamplingFields(Request):
    """Sampling fields every generating dialect accepts, under llama.cpp's and OpenAI's names."""

    temperature: float | None = bounded("temp")
    top_p: float | None = bounded("top_p")
    top_k: int | None = bounded("top_k")
    repeat_penalty: float | None = bounded("repeat_penalty")
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)  # OpenAI's bounds
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=-(1 << 63), le=(1 << 64) - 1)
    stop: Stops = None
    stream: bool = False
    model: str | None = None

    def sampling(self) -> dict[str, Any]:
        """The sampling keywords of `Defaults.request` (None: the bundle's default)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                "repeat_penalty": self.repeat_penalty, "seed": self.seed,
                "presence_penalty": self.presence_penalty,
                "frequency_penalty": self.frequency_penalty}
