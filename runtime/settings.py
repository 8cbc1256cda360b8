"""Every run-time option, declared once, as a field of `Settings`.

From each declaration derive: the artifact's command-line flag (argparse, here), the build tool's
flag of the same name (click, in bundler/cli.py), the environment variable, the help text, the
bounds a value is checked against, and the bounds of the matching request field
(runtime/web/schemas.py). A value's precedence, lowest first: built-in default, the default
baked at build time, the environment variable, the flag given at launch. Overriding one setting
never resets another.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.errors import SettingsError

ENV_PREFIX = "LLAMABUNDLE_"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Option:
    name: str
    flags: tuple[str, ...]
    type: type
    default: Any
    help: str
    metavar: str | None = None
    low: float | None = None  # inclusive bounds, for numbers
    high: float | None = None
    secret: bool = False  # a baked value is never printed (--help, --info, inspect): see shown()

    def shown(self, value: Any) -> Any:
        """The value as --help, --info and `inspect` print it: a secret one only as set or
        not, since whoever may run an artifact need not be allowed to read its baked key."""
        if self.secret and value:
            return HIDDEN
        return value

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return self.flags[-1]

    def parse(self, text: str, where: str) -> Any:
        """A value from text (an environment variable); `where` names it in the error."""
        if self.type is bool:
            word = text.strip().lower()
            if word not in TRUE_WORDS + FALSE_WORDS:
                raise SettingsError(f"{where}: expected true or false, got {text!r}")
            return word in TRUE_WORDS
        return self.check(text, where)

    def check(self, value: Any, where: str | None = None) -> Any:
        """Coerces and range-checks one value; raises SettingsError naming `where`."""
        where = where or self.flag
        try:
            value = self.type(value)
        except (TypeError, ValueError):
            raise SettingsError(
                f"{where}: expected {_TYPE_WORDS[self.type]}, got {value!r}") from None
        if self.low is not None and self.high is not None and not self.low <= value <= self.high:
            raise SettingsError(f"{where}: {value} is out of range [{self.low}, {self.high}]")
        return value


HIDDEN = "(set, not shown)"
_TYPE_WORDS = {int: "an integer", float: "a number", str: "text", bool: "true or false"}
MAX_TOKENS = 1 << 20


def _option(*flags: str, default: Any, help: str, metavar: str | None = None,
            low: float | None = None, high: float | None = None, secret: bool = False) -> Any:
    # name and type are filled in from the field itself (Settings below): declared once.
    spec = {"flags": flags, "help": help, "metavar": metavar, "low": low, "high": high,
            "secret": secret}
    return dataclasses.field(default=default, metadata={"option": spec})


@dataclass(frozen=True)
class Settings:
    host: str = _option("--host", default="127.0.0.1", metavar="ADDR",
                        help="Address to listen on. Anything but loopback needs --api-key.")
    port: int = _option("--port", default=8080, metavar="PORT", low=0, high=65535,
                        help="Port to listen on; the next free one is used if it is taken.")
    ollama_port: int = _option("--ollama-port", default=11434, metavar="PORT", low=0,
                               high=65535, help="Also answer on this port, Ollama's, so that "
                               "Ollama clients find the model with no setup; skipped when "
                               "taken (0 = off).")
    nobrowser: bool = _option("--nobrowser", default=False,
                              help="Do not open the chat page in a browser.")
    ctx_size: int = _option("-c", "--ctx-size", default=4096, metavar="N", low=0, high=MAX_TOKENS,
                            help="Context size in tokens (0 = the model's trained context).")
    threads: int = _option("-t", "--threads", default=0, metavar="N", low=0, high=1024,
                           help="CPU threads for generation (0 = one per physical core).")
    parallel: int = _option("-np", "--parallel", default=4, metavar="N", low=1, high=64,
                            help="Requests decoded together (they share the context).")
    temp: float = _option("--temp", default=0.8, metavar="T", low=0.0, high=100.0,
                          help="Sampling temperature.")
    top_p: float = _option("--top-p", default=0.95, metavar="P", low=0.0, high=1.0,
                           help="Nucleus sampling threshold.")
    top_k: int = _option("--top-k", default=40, metavar="K", low=0, high=MAX_TOKENS,
                         help="Sample from the K most likely tokens.")
    repeat_penalty: float = _option("--repeat-penalty", default=1.1, metavar="X", low=0.0,
                                    high=100.0, help="Penalty for repeated tokens (1.0 = none).")
    n_predict: int = _option("-n", "--n-predict", default=512, metavar="N", low=-1,
                             high=MAX_TOKENS, help="Most tokens to generate per answer "
                             "(-1 = until the context is full, 0 = none).")
    system_prompt: str = _option("--system-prompt", default="", metavar="TEXT",
                                 help="System prompt used when a chat gives none.")
    api_key: str = _option("--api-key", default="", metavar="KEY", secret=True,
                           help="Require 'Authorization: Bearer KEY' on every API route.")


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
OPTIONS: tuple[Option, ...] = tuple(
    Option(f.name, type=_TYPES[str(f.type)], default=f.default, **f.metadata["option"])
    for f in dataclasses.fields(Settings))
BY_NAME = {o.name: o for o in OPTIONS}


def shown_defaults(baked: Mapping[str, Any]) -> dict[str, Any]:
    """Baked settings as they may be printed: secret ones only as set."""
    return {name: BY_NAME[name].shown(value) if name in BY_NAME else value
            for name, value in baked.items()}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve(baked: Mapping[str, Any], given: Mapping[str, Any],
            environ: Mapping[str, str] = os.environ) -> Settings:
    """Merges the layers for every option; `given` holds only the flags typed at launch."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        value = option.check(baked[option.name]) if option.name in baked else option.default
        if option.env in environ:
            value = option.parse(environ[option.env], option.env)
        if given.get(option.name) is not None:
            value = option.check(given[option.name])
        values[option.name] = value
    settings = Settings(**values)
    if not is_loopback(settings.host) and not settings.api_key:
        raise SettingsError(
            f"--host {settings.host} would expose the model to the network; "
            "set --api-key KEY as well (or use --host 127.0.0.1)")
    return settings


def add_arguments(parser: argparse.ArgumentParser, baked: Mapping[str, Any]) -> None:
    """Adds one argparse flag per option; defaults stay None so we know what was typed."""
    for option in OPTIONS:
        shown = option.shown(baked.get(option.name, option.default))
        help_text = f"{option.help} (default: {shown!r}; env {option.env})"
        if option.type is bool:
            parser.add_argument(*option.flags, dest=option.name, action="store_const",
                                const=True, default=None, help=help_text)
        else:
            parser.add_argument(*option.flags, dest=option.name, type=option.type,
                                default=None, metavar=option.metavar, help=help_text)
