"""config.toml < environment < flags (docs/api.md, "Settings")."""

from __future__ import annotations

import pytest

from server.config import ConfigError, Settings, load_settings


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}) == Settings()


def test_later_sources_win(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('port = 6000\nhost = "0.0.0.0"\nworkers = 3\nshutdown_linger = 1\n')
    settings = load_settings(
        str(config),
        {"port": 7000, "host": None},
        environ={"LESTATS_PORT": "6500", "TP_NUM_OF_THREADS": "4", "LESTATS_FSYNC": "true"},
    )
    assert (settings.port, settings.host, settings.workers) == (7000, "0.0.0.0", 4)
    assert settings.shutdown_linger == 1.0 and settings.fsync is True


def test_project_config_file_parses():
    from tests.support.live import ROOT

    assert load_settings(str(ROOT / "config.toml"), environ={}) == Settings()


@pytest.mark.parametrize(
    "environ, fragment",
    [
        ({"LESTATS_PORT": "five"}, "port"),
        ({"LESTATS_PORT": "70000"}, "out of range"),
        ({"TP_NUM_OF_THREADS": "-1"}, "workers"),
        ({"LESTATS_FSYNC": "maybe"}, "fsync"),
    ],
)
def test_bad_values_are_one_clear_sentence(tmp_path, monkeypatch, environ, fragment):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(environ=environ)


def test_unknown_key_and_bad_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 'red'\n")
    with pytest.raises(ConfigError, match="colour"):
        load_settings(str(bad), environ={})
    bad.write_text("port = \n")
    with pytest.raises(ConfigError, match="TOML"):
        load_settings(str(bad), environ={})
    with pytest.raises(ConfigError, match="no such"):
        load_settings(str(tmp_path / "missing.toml"), environ={})


def test_client_timeout_setting():
    assert load_settings(None, environ={}).client_timeout == 15.0
    assert load_settings(None, environ={"LESTATS_CLIENT_TIMEOUT": "2.5"}).client_timeout == 2.5
    with pytest.raises(ConfigError):
        load_settings(None, environ={"LESTATS_CLIENT_TIMEOUT": "0"})


def test_poll_grace_setting(tmp_path):
    assert Settings().poll_grace == 0.05
    config = tmp_path / "c.toml"
    config.write_text("poll_grace = 0.2\n")
    assert load_settings(str(config), environ={}).poll_grace == 0.2
    assert load_settings(str(config), environ={"LESTATS_POLL_GRACE": "0"}).poll_grace == 0.0
    for bad in ("-0.1", "2", "nan", "soon"):
        with pytest.raises(ConfigError, match="poll_grace"):
            load_settings(None, environ={"LESTATS_POLL_GRACE": bad})
