"""Resumable download of an official archive, with a progress bar and an md5 check."""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from fastcifar.errors import UserError


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def download(url: str, target: Path, timeout: float = 60.0) -> Path:
    """Fetch url into target, resuming a previous partial download (target + '.part')."""
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return target
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # the partial file is already complete
            os.replace(part, target)
            return target
        raise UserError(f"cannot download {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(
            f"cannot download {url} ({reason}); download it elsewhere and pass --source PATH"
        ) from None
    resumed = response.status == 206
    mode = "ab" if resumed else "wb"
    total = int(response.headers.get("Content-Length", 0)) + (have if resumed else 0)
    try:
        with response, open(part, mode) as out, tqdm(
            total=total or None, initial=have if resumed else 0, unit="B", unit_scale=True,
            desc=f"download {target.name}",
        ) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                bar.update(len(block))
    except OSError as exc:
        raise UserError(f"download of {url} interrupted ({exc}); run again to resume") from None
    os.replace(part, target)
    return target
