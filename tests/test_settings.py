"""Settings in-process: precedence of the layers, bounds, and errors that name their source."""

from __future__ import annotations

import argparse

import pytest

from runtime.errors import SettingsError
from runtime.settings import BY_NAME, OPTIONS, Settings, add_arguments, resolve


def test_precedence_is_default_then_baked_then_environment_then_flag():
    assert resolve({}, {}, environ={}).temp == 0.8
    assert resolve({"temp": 0.5}, {}, environ={}).temp == 0.5
    env = {"LLAMABUNDLE_TEMP": "0.3"}
    assert resolve({"temp": 0.5}, {}, environ=env).temp == 0.3
    assert resolve({"temp": 0.5}, {"temp": 0.1}, environ=env).temp == 0.1


def test_overriding_one_setting_keeps_the_other_baked_ones():
    settings = resolve({"temp": 0.5, "top_k": 7}, {"top_k": 3}, environ={})
    assert (settings.temp, settings.top_k) == (0.5, 3)


def test_a_flag_left_out_is_none_and_does_not_override():
    settings = resolve({"port": 9000}, {"port": None}, environ={})
    assert settings.port == 9000


@pytest.mark.parametrize(("name", "value"), [("port", 65536), ("top_p", 1.5), ("temp", -1),
                                             ("n_predict", -2), ("ctx_size", -1)])
def test_values_out_of_bounds_name_the_flag(name, value):
    with pytest.raises(SettingsError) as e:
        resolve({}, {name: value}, environ={})
    assert str(e.value).startswith(BY_NAME[name].flag + ":") and "out of range" in str(e.value)


def test_a_bad_environment_number_names_the_variable():
    with pytest.raises(SettingsError, match=r"^LLAMABUNDLE_PORT: expected an integer, got 'abc'$"):
        resolve({}, {}, environ={"LLAMABUNDLE_PORT": "abc"})


@pytest.mark.parametrize("word", ["ture", "maybe", "2"])
def test_a_mistyped_environment_boolean_is_an_error_not_false(word):
    with pytest.raises(SettingsError, match=r"^LLAMABUNDLE_NOBROWSER: expected true or false"):
        resolve({}, {}, environ={"LLAMABUNDLE_NOBROWSER": word})


@pytest.mark.parametrize(("word", "value"), [("1", True), ("Yes", True), ("on", True),
                                             ("false", False), ("0", False), ("", False)])
def test_environment_booleans_accept_the_usual_words(word, value):
    assert resolve({}, {}, environ={"LLAMABUNDLE_NOBROWSER": word}).nobrowser is value


def test_an_environment_value_out_of_bounds_names_the_variable():
    with pytest.raises(SettingsError, match=r"^LLAMABUNDLE_TOP_P: 2.0 is out of range"):
        resolve({}, {}, environ={"LLAMABUNDLE_TOP_P": "2"})


def test_a_public_host_needs_an_api_key():
    with pytest.raises(SettingsError, match="--api-key"):
        resolve({}, {"host": "0.0.0.0"}, environ={})
    assert resolve({}, {"host": "0.0.0.0", "api_key": "k"}, environ={}).host == "0.0.0.0"
    assert resolve({}, {"host": "::1"}, environ={}).host == "::1"


def test_every_field_of_settings_is_one_option_with_flag_env_and_help():
    assert [o.name for o in OPTIONS] == list(Settings.__dataclass_fields__)
    for option in OPTIONS:
        assert option.flag.startswith("--") and option.help and option.env.isupper()
        assert isinstance(option.default, option.type)
        if option.type in (int, float) and option.name not in ("port",):
            assert option.low is not None and option.low <= option.default <= option.high


def test_argparse_flags_come_from_the_declarations_and_show_baked_defaults():
    parser = argparse.ArgumentParser()
    add_arguments(parser, {"temp": 0.25})
    args = parser.parse_args(["-c", "1024", "--nobrowser"])
    assert args.ctx_size == 1024 and args.nobrowser is True and args.temp is None
    assert "default: 0.25" in parser.format_help().replace("\n", " ").replace("  ", " ")
