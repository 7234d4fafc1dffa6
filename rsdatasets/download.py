"""``rsbench data download NAME``: datasets with a public direct link, sha256-verified, resumable, unpacked in place.

Every downloadable archive carries its sha256; :class:`Archive` cannot be built without one, so an entry
without a checksum that can be justified cannot download (``--sha256`` supplies one the user has
verified). The download goes through pooch (``pooch.retrieve``: the hash is checked before the file gets
its final name, and a file whose hash does not match is deleted). pooch's own HTTP downloader starts
every attempt from byte 0, so :class:`ResumableDownloader` (plugged into pooch) keeps the bytes of an
interrupted attempt and asks for the rest with an HTTP ``Range`` request. An archive is unpacked into a
temporary folder beside ROOT's contents and its top-level entries are then renamed into ROOT, so the
reader's layout appears whole or not at all; ``ROOT/.rsbench-download.json`` records what was unpacked,
and a second run finds it and does nothing.

Datasets behind a login or with no direct link (ISPRS Potsdam / Vaihingen, US3D, AID, DIOR, ...) have a
:class:`ManualDownload` entry: one line saying where to get them and where to put the files.

Which checksums are verified (``docs/datasets.md``, "Downloads"): no archive was downloaded while
writing this (no network), so the sha256 values are the ones TorchGeo's dataset code and independent
projects pin for the same archive URL; TorchGeo's md5 at a pinned commit is checked as well, so both
published checksums must match.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DatasetFileError

MARKER = ".rsbench-download.json"
PARTIAL = ".part"


class DownloadError(ValueError):
    """A download that cannot run or did not finish; the message is one line saying what to do."""


@dataclass(frozen=True)
class Archive:
    """One file to fetch: its URL, its name on disk and its sha256 (required)."""

    url: str
    filename: str
    sha256: str
    size: int | None = None  # bytes, where a source states it
    md5: str | None = None  # a second published checksum, checked too
    source: str = ""  # where the checksums come from

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"archive {self.filename}: sha256 must be 64 lower-case hex digits, got {self.sha256!r}")


@dataclass(frozen=True)
class DirectDownload:
    """A dataset with a public direct link: archives to fetch and the folder they unpack into."""

    archives: tuple[Archive, ...]
    layout: str  # what ROOT holds afterwards, for the message (e.g. "UCMerced_LandUse/Images/<class>/")
    note: str = ""


@dataclass(frozen=True)
class ManualDownload:
    """A dataset without a direct link: where to get it (``login``: behind a registration) and where it goes."""

    where: str
    put: str
    login: bool = False


@dataclass(frozen=True)
class NoDownload:
    """Nothing to download: generated data or the user's own data."""

    reason: str


TORCHGEO = "TorchGeo torchgeo/datasets/{name}.py (md5 at commit 7ea0616, sha256 in its later sha256 version)"
#: Built-in datasets; a dataset class may instead carry its own ``download`` attribute (a plugin does).
DOWNLOADS: dict[str, DirectDownload | ManualDownload | NoDownload] = {
    "ucmerced": DirectDownload(
        (Archive(
            url="https://hf.co/datasets/torchgeo/ucmerced/resolve/7c5ef3454d9b1cccfa7ccde0c01fc8f00a45909a/"
                "UCMerced_LandUse.zip",
            filename="UCMerced_LandUse.zip",
            sha256="06c539ef28703a58fb07bd2837991ac7c48b813b00bb12ac197efd813a18daeb",
            size=332_468_434, md5="5b7ec56793786b6dc8a908e8854ac0e4", source=TORCHGEO.format(name="ucmerced"),
        ),),
        layout="UCMerced_LandUse/Images/<class>/*.tif",
        note="TorchGeo's unmodified mirror of the authors' UCMerced_LandUse.zip",
    ),
    "resisc45": DirectDownload(
        (Archive(
            url="https://hf.co/datasets/isaaccorley/resisc45/resolve/883edc0eee77b2c84225472f10f126e3ed83fa6e/"
                "NWPU-RESISC45.zip",
            filename="NWPU-RESISC45.zip",
            sha256="beeecd0b63656290ae6d65cf7763185b0c1c4c54a753ef8088d6fba3faaf1f53",
            size=427_389_445, md5="75206b2e16446591afa88e2628744886", source=TORCHGEO.format(name="resisc45"),
        ),),
        layout="NWPU-RESISC45/<class>/*.jpg",
        note="the Hugging Face mirror TorchGeo downloads from",
    ),
    "potsdam": ManualDownload(
        "request access with the ISPRS form at https://www.isprs.org/education/benchmarks/UrbanSemLab/default.aspx",
        "unpack the zips you need into ROOT (2_Ortho_RGB/, 1_DSM/, 5_Labels_all/, ...; docs/datasets.md)", True),
    "vaihingen": ManualDownload(
        "request access with the ISPRS form at https://www.isprs.org/education/benchmarks/UrbanSemLab/default.aspx",
        "unpack ISPRS_semantic_labeling_Vaihingen.zip and the ground-truth zips into ROOT (top/, dsm/, "
        "gts_for_participants/; docs/datasets.md)", True),
    "us3d": ManualDownload(
        "create a free IEEE DataPort account and download 'Data Fusion Contest 2019 (DFC2019)' at "
        "https://ieee-dataport.org/open-access/data-fusion-contest-2019-dfc2019",
        "unpack Train-Track1-RGB*.zip and Train-Track1-Truth.zip into ROOT (docs/datasets.md)", True),
    "aid": ManualDownload("AID.zip is shared through OneDrive / Baidu links on https://captain-whu.github.io/AID/",
                          "unzip it into ROOT so that ROOT/AID/<Class>/ exists (docs/datasets_more.md)"),
    "levir_cd": ManualDownload("train/val/test.zip are shared through Google Drive / Baidu links on "
                               "https://justchenhao.github.io/LEVIR/",
                               "unzip them into ROOT so that ROOT/train/A/ exists (docs/datasets_more.md)"),
    "second": ManualDownload("SECOND is shared through Baidu / Google Drive links on https://captain-whu.github.io/SCD/",
                             "point ROOT at the extracted SECOND_train_set/ (docs/datasets_more.md)"),
    "cdd": ManualDownload("ChangeDetectionDataset.zip is shared through a Google Drive link in Lebedev et al. 2018",
                          "point ROOT at its Real/ folder (docs/datasets_more.md)"),
    "dior": ManualDownload("DIOR is shared through Google Drive / Baidu links on https://gcheng-nwpu.github.io/",
                           "unzip the images, annotations and ImageSets into ROOT (docs/datasets_more.md)"),
    "dota": ManualDownload("DOTA v1.0 is shared through Google Drive / Baidu links on "
                           "https://captain-whu.github.io/DOTA/dataset.html",
                           "unzip train/ and val/ images and labelTxt-v1.0 into ROOT (docs/datasets_more.md)"),
    "synthetic": NoDownload("generated on first use (rsbench data synth)"),
    "image_folder": NoDownload("your own data (docs/datasets.md, 'Your own data')"),
    "mmseg_segmentation": NoDownload("your own data (docs/datasets.md, 'Your own data')"),
    "change_pairs": NoDownload("your own data (docs/datasets.md, 'Your own data')"),
    "voc_detection": NoDownload("your own data (docs/datasets.md, 'Your own data')"),
}  # fmt: skip


def download_entry(name: str) -> DirectDownload | ManualDownload | NoDownload | None:
    """The download entry of a registered dataset: its class's ``download`` attribute, else the table above."""
    from . import dataset_class

    own = getattr(dataset_class(name), "download", None)
    return own if isinstance(own, DirectDownload | ManualDownload | NoDownload) else DOWNLOADS.get(name)


def describe(name: str) -> str:
    """One cell of ``rsbench data list``: ``yes`` (direct link, sha256), ``login``, ``manual`` or ``-``."""
    entry = download_entry(name)
    if isinstance(entry, DirectDownload):
        return "yes"
    if isinstance(entry, ManualDownload):
        return "login" if entry.login else "manual"
    return "-"


def default_root(name: str) -> Path:
    """``$RSBENCH_DATA_ROOT/<name>``, else ``data/<name>`` (where the sweep presets look)."""
    return Path(os.environ.get("RSBENCH_DATA_ROOT", "data")).expanduser() / name


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ResumableDownloader:
    """A pooch downloader that resumes: written by hand because pooch's ``HTTPDownloader`` (1.8) always
    starts from byte 0 and streams into a fresh temporary file that it deletes on failure (1.8, 1.9).

    Bytes received go to ``partial`` (``<archive>.part``), which survives a cut connection; the next
    attempt asks for the rest with ``Range: bytes=<have>-``. A server answering 206 with the matching
    ``Content-Range`` is appended to; one that ignores the range (200) is read from the start; 416 means
    the part is already whole. Once the body is complete the part becomes pooch's output file, whose
    hash pooch then checks. A cut connection loses at most the ``chunk_size`` bytes being read.
    """

    def __init__(self, partial: Path, timeout: float = 60.0, chunk_size: int = 1 << 16,
                 progress: Any = None) -> None:  # fmt: skip
        self.partial, self.timeout, self.chunk_size, self.progress = Path(partial), timeout, chunk_size, progress

    def __call__(self, url: str, output_file: str, pooch: Any, check_only: bool = False) -> bool | None:
        import requests

        if check_only:
            response = requests.head(url, timeout=self.timeout, allow_redirects=True)
            return response.status_code == 200
        have = self.partial.stat().st_size if self.partial.is_file() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout, allow_redirects=True) as response:
            if response.status_code != 416:
                response.raise_for_status()
                resumed = have and response.status_code == 206 and \
                    response.headers.get("Content-Range", "").startswith(f"bytes {have}-")
                expected = response.headers.get("Content-Length")
                total = (have if resumed else 0) + int(expected) if expected is not None else None
                self._write(response, "ab" if resumed else "wb", have if resumed else 0, total)
                if total is not None and self.partial.stat().st_size != total:
                    raise requests.exceptions.ConnectionError(
                        f"connection closed after {self.partial.stat().st_size} of {total} bytes")
        shutil.move(str(self.partial), output_file)
        return None

    def _write(self, response: Any, mode: str, start: int, total: int | None) -> None:
        with open(self.partial, mode) as fh:
            done = start
            for chunk in response.iter_content(chunk_size=self.chunk_size):
                fh.write(chunk)
                done += len(chunk)
                if self.progress is not None:
                    self.progress(done, total)


def _extract(archive: Path, root: Path) -> list[str]:
    """Unpack ``archive`` into a temporary folder in ``root``, then rename its top-level entries into ``root``.

    An entry that already exists in ``root`` is kept (an earlier run moved it in whole). Paths that would
    leave the folder are refused (zipfile drops them; tarfile's ``data`` filter rejects them).
    """
    staging = root / f".rsbench-extract-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(staging, filter="data")
        else:
            raise DatasetFileError(archive, "neither a zip nor a tar archive; the link may serve a web page")
        entries = sorted(p.name for p in staging.iterdir() if p.name != "__MACOSX")
        for entry in entries:
            if not (root / entry).exists():
                os.replace(staging / entry, root / entry)
        return entries
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(name: str, root: str | Path | None = None, sha256: str | None = None, keep_archive: bool = False,
             progress: Any = None) -> Path:  # fmt: skip
    """Fetch, verify and unpack dataset ``name`` into ``root`` (default :func:`default_root`); returns ``root``.

    ``sha256`` replaces the registry's checksum (one archive only): for a mirror the user verified. A dataset
    without a direct link is a :class:`DownloadError` saying where to get it and where to put it.
    """
    import pooch
    import requests

    pooch.get_logger().setLevel("WARNING")  # its "Downloading data from ..." lines; errors come as one line here
    entry = download_entry(name)
    root = Path(root).expanduser() if root is not None else default_root(name)
    if isinstance(entry, ManualDownload):
        how = "needs a login: " if entry.login else "has no direct download link: "
        raise DownloadError(f"{name} {how}{entry.where}; then {entry.put.replace('ROOT', str(root))}")
    if not isinstance(entry, DirectDownload):
        reason = entry.reason if isinstance(entry, NoDownload) else "no download is registered for it"
        raise DownloadError(f"{name} cannot be downloaded: {reason}")
    archives = list(entry.archives)
    if sha256 is not None:
        if len(archives) != 1:
            raise DownloadError(f"{name} has {len(archives)} archives; --sha256 applies to one")
        archives = [Archive(archives[0].url, archives[0].filename, sha256.lower(), source="--sha256")]
    marker = root / MARKER
    wanted = [a.sha256 for a in archives]
    if marker.is_file() and json.loads(marker.read_text()).get("sha256") == wanted:
        return root
    cache = root / ".download"
    cache.mkdir(parents=True, exist_ok=True)
    unpacked: list[str] = []
    for archive in archives:
        partial = cache / f"{archive.filename}{PARTIAL}"
        try:
            path = Path(pooch.retrieve(archive.url, known_hash=f"sha256:{archive.sha256}", fname=archive.filename,
                                       path=cache, downloader=ResumableDownloader(partial, progress=progress)))
        except requests.exceptions.HTTPError as err:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{name}: {archive.url} answered {err.response.status_code} "
                                f"({err.response.reason}); the link may have moved: report it, or download by hand "
                                f"and unpack into {root}") from err  # fmt: skip
        except requests.exceptions.RequestException as err:
            got = partial.stat().st_size if partial.is_file() else 0
            raise DownloadError(f"{name}: download of {archive.filename} interrupted after {got} bytes "
                                f"({type(err).__name__}); run the same command again to resume") from err
        except ValueError as err:  # pooch: the hash does not match (the file is already deleted)
            raise DownloadError(f"{name}: {archive.filename} does not have the registered sha256 "
                                f"{archive.sha256[:12]}...; the file was deleted, nothing was unpacked "
                                f"(corrupted transfer or a changed file: try again, or report it)") from err
        if archive.md5 is not None and file_digest(path, "md5") != archive.md5:
            path.unlink()
            raise DownloadError(f"{name}: {archive.filename} matches its sha256 but not its md5 {archive.md5}; "
                                "deleted, nothing was unpacked; report it")  # fmt: skip
        unpacked += _extract(path, root)
        if not keep_archive:
            path.unlink()
    tmp = marker.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"dataset": name, "sha256": wanted, "entries": unpacked,
                               "urls": [a.url for a in archives]}, indent=1))  # fmt: skip
    os.replace(tmp, marker)
    if not keep_archive and not any(cache.iterdir()):
        cache.rmdir()
    return root

