"""The augmentation policies a run can ask for: the one table every layer reads (torch-free).

A policy draws, per sample, a few operations (shear, rotate, colour, equalize...) with
their magnitudes, applied after pad-crop and flip and before normalisation. What each
op does and how each policy draws them lives in fastcifar/augment/ (policy_space.py);
this module holds only the names, the RandAugment knobs and their checks, so that the CLI
can offer them without loading torch.
"""
from __future__ import annotations

from fastcifar.errors import UserError, close_names_hint

POLICY_SUMMARIES = {
    "none": "no policy: pad-crop, flip and erasing only",
    "autoaugment": "AutoAugment's CIFAR-10 policy: one of 25 sub-policies of two ops",
    "randaugment": "RandAugment: --ra-n ops drawn uniformly, each at magnitude --ra-m",
    "trivialaugment": "TrivialAugmentWide: one op at a uniformly drawn magnitude",
}
AUGMENT_POLICIES = tuple(POLICY_SUMMARIES)

# RandAugment as torchvision's v2.RandAugment defaults it: 2 ops at bin 9 of 31.
RANDAUGMENT_BINS = 31
DEFAULT_RA_N = 2
DEFAULT_RA_M = 9
MAX_RA_N = 10  # steps per sample, each one pass over the image tile in the kernels


def check_policy(policy: str, ra_n: int, ra_m: int) -> None:
    """One UserError line for a policy name or RandAugment setting that cannot work."""
    if policy not in POLICY_SUMMARIES:
        raise UserError(f"unknown augmentation policy {policy!r}; "
                        f"{close_names_hint(str(policy), AUGMENT_POLICIES)}")
    if isinstance(ra_n, bool) or int(ra_n) != ra_n or not 1 <= ra_n <= MAX_RA_N:
        raise UserError(f"--ra-n (RandAugment's ops per image) must be an integer in "
                        f"[1, {MAX_RA_N}], got {ra_n}")
    if isinstance(ra_m, bool) or int(ra_m) != ra_m or not 0 <= ra_m < RANDAUGMENT_BINS:
        raise UserError(f"--ra-m (RandAugment's magnitude bin) must be an integer in "
                        f"[0, {RANDAUGMENT_BINS - 1}], got {ra_m}")
    if policy != "randaugment" and (ra_n, ra_m) != (DEFAULT_RA_N, DEFAULT_RA_M):
        raise UserError(f"--ra-n and --ra-m set RandAugment; they need --augment-policy "
                        f"randaugment (the policy is {policy})")


def policy_steps(policy: str, ra_n: int) -> int:
    """Operations each sample draws: the second dimension of the per-sample parameters."""
    return {"none": 0, "autoaugment": 2, "randaugment": int(ra_n), "trivialaugment": 1}[policy]
