"""Reading run files written by older fastcifar versions: config.json and checkpoints.

Every config.json carries `schema_version` and every checkpoint a `format`; a file
without one, or with an older one, goes through the migrations below, one version at a
time, before anything reads it. A renamed field is renamed here (never dropped and
defaulted), so a run started by an older fastcifar resumes with the settings it had.
A file from a newer fastcifar is refused in one line.

config.json schema versions
  0  (no schema_version; fastcifar up to commit aecc1fc, 2026-12-01)
  1  `lr` (the peak lr after batch scaling) is named `peak_lr`; `schema_version` added
  2  adds from_config (null), target_acc (null), stop_at_target (false), tensorboard
     (false): the experiment options, off in every run written before them
  3  the airbench94 recipe (issue 15): `tta` is a level (0, 1, 2), not a bool; new fields
     triangle, bn_lr_scale, whiten_bias_epochs, crop_padding, pad_mode, flip_mode,
     lookahead, lookahead_decay, lookahead_every; `epochs` may be fractional; the model
     `airbench94` is now airbench's exact net, and the earlier one is `airbench94_v0`
  4  the `autoaugment` switch becomes `augment_policy` ("autoaugment" or "none"), with
     RandAugment's `ra_n` and `ra_m` (set to their defaults: unused by those policies)

checkpoint formats
  1  epoch, step, model, optimizer, ema, grad_scaler, rng (one per rank), history
  2  adds `config_schema`: the config.json schema the run was written with
  3  adds the position inside the epoch: `batch` (batches of epoch `epoch` + 1 already
     trained; 0 at an epoch boundary) and `partial_epoch` (None at a boundary, else that
     epoch's metric sums, BN buffers and train time so far, one entry per rank); every
     older checkpoint was written at an epoch boundary
  4  adds `lookahead`: the lookahead's slow weights (None without lookahead)
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from fastcifar.errors import UserError

CONFIG_SCHEMA_VERSION = 4
CHECKPOINT_FORMAT = 4


def _config_0_to_1(data: dict) -> dict:
    if "lr" in data:
        data["peak_lr"] = data.pop("lr")
    return data


def _config_1_to_2(data: dict) -> dict:
    data.update(from_config=None, target_acc=None, stop_at_target=False, tensorboard=False)
    return data


def _config_2_to_3(data: dict) -> dict:
    """The airbench94 recipe's fields, set to what runs before it did."""
    data["tta"] = 1 if data.get("tta") else 0
    data.update(triangle=[0.2, 0.23, 0.07], bn_lr_scale=1.0, whiten_bias_epochs=None,
                crop_padding=4, pad_mode="zero", flip_mode="random", lookahead=False,
                lookahead_decay=0.95, lookahead_every=5)
    if data.get("model") == "airbench94":
        data["model"] = "airbench94_v0"  # the net such a run trained
    return data


def _config_3_to_4(data: dict) -> dict:
    autoaugment = data.pop("autoaugment", False)  # the earlier schemas' own default
    if not isinstance(autoaugment, bool):
        raise UserError(f"config.json's autoaugment must be true or false, got {autoaugment!r}")
    data["augment_policy"] = "autoaugment" if autoaugment else "none"
    data["ra_n"], data["ra_m"] = 2, 9  # RandAugment's defaults then: unused by either policy
    return data


def _checkpoint_1_to_2(state: dict) -> dict:
    state["config_schema"] = 0
    return state


def _checkpoint_2_to_3(state: dict) -> dict:
    state["batch"] = 0
    state["partial_epoch"] = None
    return state


def _checkpoint_3_to_4(state: dict) -> dict:
    state["lookahead"] = None
    return state


CONFIG_MIGRATIONS: dict[int, Callable[[dict], dict]] = {
    0: _config_0_to_1,
    1: _config_1_to_2,
    2: _config_2_to_3,
    3: _config_3_to_4,
}
CHECKPOINT_MIGRATIONS: dict[int, Callable[[dict], dict]] = {
    1: _checkpoint_1_to_2,
    2: _checkpoint_2_to_3,
    3: _checkpoint_3_to_4,
}


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
