"""The resumable download, against a small HTTP server on loopback (no traffic leaves)."""
import hashlib
import http.server
import threading

import pytest

from fastcifar.download import download
from fastcifar.errors import UserError

PAYLOAD = bytes(range(256)) * 4000  # 1,024,000 bytes


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    ranges = []
    cut_after = None  # send only this many body bytes, then close the connection

    def do_GET(self):
        if self.path == "/garbage":  # not HTTP at all: http.client raises BadStatusLine
            self.wfile.write(b"this is not an http response\r\n\r\n")
            return
        if self.path != "/cifar.tar.gz":
            self.send_error(404)
            return
        start = 0
        header = self.headers.get("Range")
        _RangeHandler.ranges.append(header)
        if header:
            start = int(header.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        body = PAYLOAD[start:]
        self.wfile.write(body if self.cut_after is None else body[: self.cut_after])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    _RangeHandler.ranges = []
    _RangeHandler.cut_after = None
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_fetches_the_whole_file(tmp_path, server):
    target = download(f"{server}/cifar.tar.gz", tmp_path / "cifar.tar.gz")
    assert target.read_bytes() == PAYLOAD
    assert _RangeHandler.ranges == [None]
    assert not (tmp_path / "cifar.tar.gz.part").exists()


def test_download_resumes_a_partial_file(tmp_path, server):
    (tmp_path / "cifar.tar.gz.part").write_bytes(PAYLOAD[:300_000])
    target = download(f"{server}/cifar.tar.gz", tmp_path / "cifar.tar.gz")
    assert target.read_bytes() == PAYLOAD
    assert _RangeHandler.ranges == ["bytes=300000-"]


def test_http_error_is_one_clear_line(tmp_path, server):
    with pytest.raises(UserError, match="cannot download .*/missing.tar.gz: HTTP 404"):
        download(f"{server}/missing.tar.gz", tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()


def test_dropped_connection_keeps_the_part_file_and_resumes(tmp_path, server):
    _RangeHandler.cut_after = 400_000
    target = tmp_path / "cifar.tar.gz"
    with pytest.raises(UserError) as failure:
        download(f"{server}/cifar.tar.gz", target)
    assert str(failure.value).endswith(
        "download interrupted at 400000 of 1024000 bytes; run again to resume")
    assert not target.exists()  # never a truncated file under the final name
    assert (tmp_path / "cifar.tar.gz.part").stat().st_size == 400_000
    with pytest.raises(UserError, match="interrupted at 800000 of 1024000 bytes"):
        download(f"{server}/cifar.tar.gz", target)  # a resumed transfer cut off again
    _RangeHandler.cut_after = None
    assert download(f"{server}/cifar.tar.gz", target).read_bytes() == PAYLOAD
    assert _RangeHandler.ranges == [None, "bytes=400000-", "bytes=800000-"]


def test_cached_download_is_checked_before_reuse(tmp_path, server):
    target = tmp_path / "cifar.tar.gz"
    target.write_bytes(PAYLOAD[:1000])  # a truncated file an older version left behind
    official = {hashlib.md5(PAYLOAD).hexdigest()}
    messages = []
    download(f"{server}/cifar.tar.gz", target, accept_md5=official, log=messages.append)
    assert target.read_bytes() == PAYLOAD and _RangeHandler.ranges == [None]
    assert "downloading it again" in messages[0]
    download(f"{server}/cifar.tar.gz", target, accept_md5=official)  # now reused as is
    assert _RangeHandler.ranges == [None]


def test_complete_part_file_is_finished_without_a_body(tmp_path, server):
    (tmp_path / "cifar.tar.gz.part").write_bytes(PAYLOAD)
    target = download(f"{server}/cifar.tar.gz", tmp_path / "cifar.tar.gz")
    assert target.read_bytes() == PAYLOAD
    assert _RangeHandler.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_broken_http_is_one_clear_line(tmp_path, server):
    with pytest.raises(UserError, match="cannot download .*/garbage .*--source PATH") as failure:
        download(f"{server}/garbage", tmp_path / "x.tar.gz")
    assert "\n" not in str(failure.value)
