"""Reading run files written by older fastcifar versions: config.json and checkpoints.

Every config.json carries `schema_version` and every checkpoint a `format`; a file
without one, or with an older one, goes through the migrations below, one version at a
time, before anything reads it. A renamed field is renamed here (never dropped and
defaulted), so a run started by an older fastcifar resumes with the settings it had.
A file from a newer fastcifar is refused in one line.

config.json schema versions
  0  (no schema_version; fastcifar up to commit aecc1fc, 2026-12-01)
  1  `lr` (the peak lr after batch scaling) is named `peak_lr`; `schema_version` added
  2  the `autoaugment` switch becomes `augment_policy` ("autoaugment" or "none"), with
     RandAugment's `ra_n` and `ra_m` (set to their defaults: unused by those policies)

checkpoint formats
  1  epoch, step, model, optimizer, ema, grad_scaler, rng (one per rank), history
  2  adds `config_schema`: the config.json schema the run was written with
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from fastcifar.errors import UserError

CONFIG_SCHEMA_VERSION = 2
CHECKPOINT_FORMAT = 2


def _config_0_to_1(data: dict) -> dict:
    if "lr" in data:
        data["peak_lr"] = data.pop("lr")
    return data


def _config_1_to_2(data: dict) -> dict:
    autoaugment = data.pop("autoaugment", False)  # schema 1's own default
    if not isinstance(autoaugment, bool):
        raise UserError(f"config.json's autoaugment must be true or false, got {autoaugment!r}")
    data["augment_policy"] = "autoaugment" if autoaugment else "none"
    data["ra_n"], data["ra_m"] = 2, 9  # RandAugment's defaults then: unused by either policy
    return data


def _checkpoint_1_to_2(state: dict) -> dict:
    state["config_schema"] = 0
    return state


CONFIG_MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _config_0_to_1, 1: _config_1_to_2}
CHECKPOINT_MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _checkpoint_1_to_2}


def _upgrade(data: dict, key: str, version: Any, latest: int, migrations, what: str) -> dict:
    if isinstance(version, bool) or not isinstance(version, int) or version < min(migrations):
        raise UserError(f"{what} has an unknown {key} {version!r}")
    if version > latest:
        raise UserError(f"{what} was written by a newer fastcifar ({key} {version}, this "
                        f"version reads up to {latest}); upgrade fastcifar to use it")
    while version < latest:
        data = migrations[version](data)
        version += 1
    data[key] = latest
    return data


def migrate_config(data: Mapping[str, Any], what: str = "config.json") -> dict:
    """A saved config's fields as today's schema names them."""
    if not isinstance(data, Mapping):
        raise UserError(f"{what} does not hold a fastcifar run config (not an object)")
    data = dict(data)
    return _upgrade(data, "schema_version", data.get("schema_version", 0),
                    CONFIG_SCHEMA_VERSION, CONFIG_MIGRATIONS, what)


def migrate_checkpoint(state: dict, what: str) -> dict:
    """A loaded checkpoint as today's format lays it out."""
    return _upgrade(dict(state), "format", state.get("format"), CHECKPOINT_FORMAT,
                    CHECKPOINT_MIGRATIONS, what)
