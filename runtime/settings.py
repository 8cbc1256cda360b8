"""Every run-time option, declared once.

From each declaration derive: the artifact's command-line flag (argparse, here), the build tool's
flag of the same name (click, in bundler/cli.py), the environment variable and the help text.
A value's precedence, lowest first: built-in default, the default baked at build time, the
environment variable, the flag given at launch. Overriding one setting never resets another.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, make_dataclass
from typing import Any

from runtime.errors import SettingsError

ENV_PREFIX = "LLAMABUNDLE_"


@dataclass(frozen=True)
class Option:
    name: str
    flags: tuple[str, ...]
    type: type
    default: Any
    help: str
    metavar: str | None = None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def parse(self, text: str) -> Any:
        if self.type is bool:
            return text.strip().lower() in ("1", "true", "yes", "on")
        return self.type(text)


OPTIONS: tuple[Option, ...] = (
    Option("host", ("--host",), str, "127.0.0.1",
           "Address to listen on. Anything but loopback needs --api-key.", "ADDR"),
    Option("port", ("--port",), int, 8080,
           "Port to listen on; the next free one is used if it is taken.", "PORT"),
    Option("nobrowser", ("--nobrowser",), bool, False,
           "Do not open the chat page in a browser."),
    Option("ctx_size", ("-c", "--ctx-size"), int, 4096,
           "Context size in tokens (0 = the model's trained context).", "N"),
    Option("threads", ("-t", "--threads"), int, 0,
           "CPU threads for generation (0 = one per physical core).", "N"),
    Option("temp", ("--temp",), float, 0.8, "Sampling temperature.", "T"),
    Option("top_p", ("--top-p",), float, 0.95, "Nucleus sampling threshold.", "P"),
    Option("top_k", ("--top-k",), int, 40, "Sample from the K most likely tokens.", "K"),
    Option("repeat_penalty", ("--repeat-penalty",), float, 1.1,
           "Penalty for repeated tokens (1.0 = none).", "X"),
    Option("n_predict", ("-n", "--n-predict"), int, 512,
           "Most tokens to generate per answer (-1 = until the context is full).", "N"),
    Option("system_prompt", ("--system-prompt",), str, "",
           "System prompt used when a chat gives none.", "TEXT"),
    Option("api_key", ("--api-key",), str, "",
           "Require 'Authorization: Bearer KEY' on every API route.", "KEY"),
)


# The settings type is made from OPTIONS, so a new option needs one line, above, and nothing else.
Settings = make_dataclass(
    "Settings", [(o.name, o.type, o.default) for o in OPTIONS], frozen=True)


def validate_value(option: Option, value: Any) -> Any:
    """Coerces and range-checks one value; raises SettingsError with a message for the user."""
    try:
        value = option.parse(value) if isinstance(value, str) and option.type is not str else value
        value = option.type(value)
    except (TypeError, ValueError):
        raise SettingsError(
            f"{option.flags[-1]}: expected {option.type.__name__}, got {value!r}") from None
    bounds = {"port": (0, 65535), "ctx_size": (0, 1 << 20), "threads": (0, 1024),
              "temp": (0.0, 100.0), "top_p": (0.0, 1.0), "top_k": (0, 1 << 20),
              "repeat_penalty": (0.0, 100.0), "n_predict": (-1, 1 << 20)}
    if option.name in bounds:
        low, high = bounds[option.name]
        if not low <= value <= high:
            raise SettingsError(f"{option.flags[-1]}: {value} is out of range [{low}, {high}]")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve(baked: Mapping[str, Any], given: Mapping[str, Any],
            environ: Mapping[str, str] = os.environ) -> Any:
    """Merges the layers for every option; `given` holds only the flags typed at launch."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        value = option.default
        if option.name in baked:
            value = baked[option.name]
        if option.env in environ:
            value = option.parse(environ[option.env])
        if given.get(option.name) is not None:
            value = given[option.name]
        values[option.name] = validate_value(option, value)
    settings = Settings(**values)
    if not is_loopback(settings.host) and not settings.api_key:
        raise SettingsError(
            f"--host {settings.host} would expose the model to the network; "
            "set --api-key KEY as well (or use --host 127.0.0.1)")
    return settings


def add_arguments(parser: argparse.ArgumentParser, baked: Mapping[str, Any]) -> None:
    """Adds one argparse flag per option; defaults stay None so we know what was typed."""
    for option in OPTIONS:
        shown = baked.get(option.name, option.default)
        help_text = f"{option.help} (default: {shown!r}; env {option.env})"
        if option.type is bool:
            parser.add_argument(*option.flags, dest=option.name, action="store_const",
                                const=True, default=None, help=help_text)
        else:
            parser.add_argument(*option.flags, dest=option.name, type=option.type,
                                default=None, metavar=option.metavar, help=help_text)
