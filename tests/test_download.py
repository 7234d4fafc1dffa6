"""`rsbench data download` against a local HTTP server on 127.0.0.1 that the test starts: a good archive, a checksum
mismatch, a connection cut half-way then resumed, a 404; datasets behind a login get one line. No other address is
ever contacted (a guard refuses every other host)."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from test_data_scene_classification import make_ucmerced

from benchmark.cli import main
from rsdatasets import download as dl


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` (name -> bytes) with Range support; names in ``server.cut`` are cut half-way once."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        name = self.path.lstrip("/")
        self.server.log.append((name, self.headers.get("Range")))
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if name in self.server.cut:  # the connection drops after half the body, once
            self.server.cut.discard(name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


@pytest.fixture
def server(monkeypatch):
    """A local file server; and a guard: any connection to another host than 127.0.0.1 fails the test."""
    real_getaddrinfo = socket.getaddrinfo

    def only_local(host, *args, **kwargs):
        assert host in ("127.0.0.1", "localhost"), f"a test tried to reach {host}"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", only_local)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.cut, httpd.log = {}, set(), []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def archive(tmp_path):
    """A zip of a tiny UC Merced in its distributed layout (UCMerced_LandUse/Images/<class>/*.tif), padded with
    600 kB of random bytes so that half of it spans several of the downloader's 64 kB reads."""
    src = make_ucmerced(tmp_path / "src", per_class=2)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(src.rglob("*.tif")):
            zf.write(path, path.relative_to(src).as_posix())
        zf.writestr("UCMerced_LandUse/padding.bin", np.random.default_rng(0).bytes(600_000))
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def _register(monkeypatch, server, data: bytes, sha256: str, name: str = "UCMerced_LandUse.zip", md5=None) -> None:
    server.files[name] = data
    entry = dl.DirectDownload((dl.Archive(f"{server.base}/{name}", "UCMerced_LandUse.zip", sha256, md5=md5),),
                              layout="UCMerced_LandUse/Images/<class>/")  # fmt: skip
    monkeypatch.setitem(dl.DOWNLOADS, "ucmerced", entry)


def _leftovers(root: Path) -> list[str]:
    """Files a failed download must not leave: archives, partial files, unpacked folders, the marker."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_good_archive_is_verified_unpacked_into_the_readers_layout_and_not_fetched_twice(
    tmp_path, server, archive, monkeypatch, capsys
):
    data, sha = archive
    _register(monkeypatch, server, data, sha, md5=hashlib.md5(data).hexdigest())
    root = tmp_path / "ucm"
    assert main(["data", "download", "ucmerced", "--root", str(root)]) == 0
    assert (root / "UCMerced_LandUse" / "Images" / "forest").is_dir()
    assert (root / dl.MARKER).is_file() and not (root / ".download").exists()  # archive removed after unpacking
    assert not list(root.glob(".rsbench-extract-*"))
    assert main(["data", "check", str(root), "--dataset", "ucmerced"]) == 0
    assert len(server.log) == 1
    assert main(["data", "download", "ucmerced", "--root", str(root)]) == 0  # already there: no request
    assert len(server.log) == 1


def test_checksum_mismatch_deletes_the_file_and_unpacks_nothing(tmp_path, server, archive, monkeypatch, capsys):
    data, sha = archive
    _register(monkeypatch, server, data, "0" * 64)
    root = tmp_path / "ucm"
    assert main(["data", "download", "ucmerced", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "does not have the registered sha256 000000000000" in err and "nothing was unpacked" in err
    assert _leftovers(root) == [] and not (root / "UCMerced_LandUse").exists()
    # the sha256 matches but the second published checksum does not: refused as well
    _register(monkeypatch, server, data, sha, md5="f" * 32)
    assert main(["data", "download", "ucmerced", "--root", str(root)]) == 2
    assert "not its md5" in capsys.readouterr().err and _leftovers(root) == []


def test_a_connection_cut_half_way_resumes_with_a_range_request(tmp_path, server, archive, monkeypatch, capsys):
    data, sha = archive
    _register(monkeypatch, server, data, sha)
    server.cut.add("UCMerced_LandUse.zip")
    root = tmp_path / "ucm"
    assert main(["data", "download", "ucmerced", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    kept = (root / ".download" / "UCMerced_LandUse.zip.part").stat().st_size
    assert len(data) // 2 - (1 << 16) < kept <= len(data) // 2  # what arrived, less the read in progress
    assert f"interrupted after {kept} bytes" in err and "run the same command again to resume" in err
    assert not (root / "UCMerced_LandUse").exists() and not (root / dl.MARKER).exists()
    assert main(["data", "download", "ucmerced", "--root", str(root)]) == 0
    assert server.log == [("UCMerced_LandUse.zip", None), ("UCMerced_LandUse.zip", f"bytes={kept}-")]
    assert main(["data", "check", str(root), "--dataset", "ucmerced"]) == 0


def test_a_404_is_one_line_and_leaves_nothing(tmp_path, server, archive, monkeypatch, capsys):
    data, sha = archive
    _register(monkeypatch, server, data, sha)
    server.files.clear()
    root = tmp_path / "ucm"
    assert main(["data", "download", "ucmerced", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert "answered 404" in err and "127.0.0.1" in err and len(err.splitlines()) == 1
    assert _leftovers(root) == []


def test_datasets_behind_a_login_say_where_to_register_and_where_to_put_the_files(tmp_path, capsys):
    root = tmp_path / "potsdam"
    assert main(["data", "download", "potsdam", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "needs a login" in err and "isprs.org" in err and str(root) in err and "2_Ortho_RGB" in err
    assert not root.exists()
    assert main(["data", "download", "image_folder"]) == 2
    assert "your own data" in capsys.readouterr().err


def test_data_list_says_which_datasets_download(capsys):
    assert main(["data", "list"]) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.count("│") > 3}
    assert "yes" in rows["ucmerced"].split("│")[3] and "yes" in rows["resisc45"].split("│")[3]
    assert "login" in rows["potsdam"].split("│")[3] and "manual" in rows["dior"].split("│")[3]


def test_every_registered_download_carries_a_sha256():
    for name, entry in dl.DOWNLOADS.items():
        if isinstance(entry, dl.DirectDownload):
            assert all(len(a.sha256) == 64 and a.source for a in entry.archives), name
    with pytest.raises(ValueError, match="64 lower-case hex digits"):
        dl.Archive("http://127.0.0.1/x.zip", "x.zip", "not-a-checksum")
