"""Settings (docs/api.md, "Settings"): config.toml, then environment variables, then
flags; later wins.

Every setting has one row in SETTINGS: its name in config.toml, its environment
variable, its type and its default. The command line (server.cli) passes flags as a
dict of the same names.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path


class ConfigError(Exception):
    """A setting cannot be used; the message is one sentence for the operator."""


@dataclass(frozen=True)
class Settings:
    data: str = ""  # "" = the default order (docs/operations.md, "Data")
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 0  # 0 = one per CPU
    state_dir: str = "results"
    max_queue: int = 10_000  # jobs queued or running before POSTs get 503
    max_results: int = 100_000  # finished jobs kept; older ones are evicted (410)
    admin_token: str = ""
    log_file: str = "webserver.log"
    shutdown_linger: float = 5.0
    fsync: bool = False  # fsync the journal and every result before "done"
    client_timeout: float = 15.0  # seconds for a request's headers, or its body, to arrive
    job_timeout: float = 60.0  # seconds a worker may hold a batch before it is killed
    poll_grace: float = 0.05  # a get_results without ?wait= waits this long for a running job
    broker: str = ""  # redis://HOST:PORT/DB: cluster mode (docs/cluster.md)
    claim_timeout: float = 10.0  # cluster: seconds before a silent worker's jobs are taken
    frontends: int = 1  # cluster mode: front-end processes sharing the port

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


ENVIRONMENT = {
    "data": "LESTATS_DATA",
    "host": "LESTATS_HOST",
    "port": "LESTATS_PORT",
    "workers": "TP_NUM_OF_THREADS",
    "state_dir": "LESTATS_STATE_DIR",
    "max_queue": "LESTATS_MAX_QUEUE",
    "max_results": "LESTATS_MAX_RESULTS",
    "admin_token": "LESTATS_ADMIN_TOKEN",
    "log_file": "LESTATS_LOG_FILE",
    "shutdown_linger": "LESTATS_SHUTDOWN_LINGER",
    "fsync": "LESTATS_FSYNC",
    "client_timeout": "LESTATS_CLIENT_TIMEOUT",
    "job_timeout": "LESTATS_JOB_TIMEOUT",
    "poll_grace": "LESTATS_POLL_GRACE",
    "broker": "LESTATS_BROKER",
    "claim_timeout": "LESTATS_CLAIM_TIMEOUT",
    "frontends": "LESTATS_FRONTENDS",
}
DEFAULT_CONFIG = "config.toml"
# A grace is meant to cover a job's usual latency; a client that wants to wait long
# asks for it with ?wait=.
MAX_POLL_GRACE = 1.0


def load_settings(
    config: str | None = None, flags: dict | None = None, environ: os._Environ | dict | None = None
) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict = {}
    values.update(_read_toml(config))
    for name, variable in ENVIRONMENT.items():
        if environ.get(variable, "") != "":
            values[name] = environ[variable]
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    types = {f.name: f.type for f in fields(Settings)}
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(types))})"
        )
    settings = Settings(**{k: _convert(k, types[k], v) for k, v in values.items()})
    _check(settings)
    return settings


def _read_toml(config: str | None) -> dict:
    path = Path(config or DEFAULT_CONFIG)
    if config is None and not path.exists():
        return {}
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as TOML ({exc})") from None


def _convert(name: str, kind: str, value):
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}={value!r} is not a valid {kind}") from None


def _check(settings: Settings) -> None:
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"port {settings.port} is out of range 0-65535")
    for name in ("workers", "max_queue", "max_results"):
        if getattr(settings, name) < (0 if name == "workers" else 1):
            raise ConfigError(f"setting {name} must be positive")
    if settings.shutdown_linger < 0:
        raise ConfigError("setting shutdown_linger must not be negative")
    for name in ("client_timeout", "job_timeout"):
        if not getattr(settings, name) > 0:
            raise ConfigError(f"setting {name} must be positive")
    if not 0 <= settings.poll_grace <= MAX_POLL_GRACE:  # also rejects nan
        raise ConfigError(f"setting poll_grace must be between 0 and {MAX_POLL_GRACE:g} seconds")
    if not settings.claim_timeout > 0:
        raise ConfigError("setting claim_timeout must be positive")
    if settings.broker and not settings.broker.startswith(("redis://", "unix://")):
        raise ConfigError(f"broker {settings.broker!r} is not a redis:// or unix:// URL")
    if settings.frontends < 1:
        raise ConfigError("setting frontends must be at least 1")
    if settings.frontends > 1 and settings.port == 0:
        raise ConfigError("frontends > 1 needs a fixed port (they share it)")
    if settings.frontends > 1 and not settings.broker:
        raise ConfigError(
            "frontends > 1 needs the cluster mode (broker): the "
            "front-ends share their jobs through it"
        )
