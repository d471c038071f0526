"""Resumable download of an official archive, with a progress bar and an md5 check.

The bytes arrive in `<target>.part`, which is renamed to `target` only once it holds
exactly the size the server announced: a connection dropped mid-transfer leaves the
partial file to resume from, never a truncated archive under the final name.
"""
from __future__ import annotations

import errno
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from fastcifar.errors import UserError
from fastcifar.sources import file_digest
from fastcifar.storage import require_free_space


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def download(url: str, target: Path, timeout: float = 60.0, accept_md5=None,
             log=print) -> Path:
    """Fetch url into target, resuming a previous partial download (target + '.part').

    accept_md5: the md5s a cached target may have to be reused (the official archives');
    a cached file that matches none is downloaded again. None reuses it unchecked.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if accept_md5 is None or file_digest(target, "md5") in accept_md5:
            return target
        log(f"warning: {target} is not the official archive (md5 differs); downloading it again")
        target.unlink()
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    response = _open(url, have, timeout, part)
    if response is None:  # the server has nothing past `have`: the partial file is whole
        os.replace(part, target)
        return target
    have, total = _resume_point(response, have, part, url)
    if total is not None:
        require_free_space(part.parent, total - have)
    have = _receive(response, part, have, total, url, target.name)
    if total is not None and have != total:
        if have < total:
            raise _interrupted(url, have, total)
        part.unlink()
        raise UserError(f"{url}: got {have} bytes, more than the {total} announced; "
                        "removed the partial file, run again")
    os.replace(part, target)
    return target


def _open(url: str, have: int, timeout: float, part: Path):
    """The response for the bytes from `have` on, or None when the partial file is whole."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range not satisfiable: check the partial file's size
            if _total_from_range(exc.headers.get("Content-Range")) == have:
                return None
            part.unlink()
            raise UserError(f"{url}: the partial download {part} does not match the file "
                            "on the server; removed it, run again") from None
        raise UserError(f"cannot download {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        reason = " ".join(str(reason).split())  # a bad status line carries its own CR LF
        raise UserError(
            f"cannot download {url} ({reason}); download it elsewhere and pass --source PATH"
        ) from None


def _resume_point(response, have: int, part: Path, url: str) -> tuple[int, int | None]:
    """(bytes already on disk that this response continues, total size or None)."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status != 206:  # the whole file from byte 0
        return 0, length
    content_range = response.headers.get("Content-Range", "")
    start = content_range.removeprefix("bytes ").split("-", 1)[0]
    if start.isdigit() and int(start) != have:
        response.close()
        part.unlink()
        raise UserError(f"{url}: the server resumed at byte {start}, not {have}; "
                        "removed the partial file, run again")
    total = _total_from_range(content_range)
    if total is None and length is not None:
        total = have + length
    return have, total


def _total_from_range(content_range: str | None) -> int | None:
    """The total of a Content-Range header ('bytes 0-9/10' or 'bytes */10'), if given."""
    total = (content_range or "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _receive(response, part: Path, have: int, total: int | None, url: str, name: str) -> int:
    """Append the response body to `part`; return the bytes it then holds."""

    try:
        with response, open(part, "ab" if have else "wb") as out, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=f"download {name}",
        ) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                have += len(block)
                bar.update(len(block))
    except (OSError, http.client.HTTPException) as exc:
        if getattr(exc, "errno", None) == errno.ENOSPC:
            raise UserError(f"{part.parent}: disk full while downloading {url}; free some "
                            "space and run again to resume") from None
        raise _interrupted(url, have, total) from None
    return have


def _interrupted(url: str, have: int, total: int | None) -> UserError:
    of_total = f" of {total}" if total is not None else ""
    return UserError(f"{url}: download interrupted at {have}{of_total} bytes; "
                     "run again to resume")
