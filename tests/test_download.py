"""The resumable download, against a small HTTP server on loopback (no traffic leaves)."""
import http.server
import threading

import pytest

from fastcifar.download import download
from fastcifar.errors import UserError

PAYLOAD = bytes(range(256)) * 4000  # 1,024,000 bytes


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    ranges = []

    def do_GET(self):
        if self.path != "/cifar.tar.gz":
            self.send_error(404)
            return
        start = 0
        header = self.headers.get("Range")
        _RangeHandler.ranges.append(header)
        if header:
            start = int(header.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        self.wfile.write(PAYLOAD[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _RangeHandler.ranges = []
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
