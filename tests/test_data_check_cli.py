"""`rsbench data check ROOT --dataset NAME` on tiny fakes: a clean copy passes, a broken file is named."""

from test_data_isprs import TILES, make_potsdam
from test_data_scene_classification import make_ucmerced

from benchmark.cli import main


def test_clean_potsdam_passes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RSBENCH_DATA", str(tmp_path / "cache"))
    root = make_potsdam(tmp_path / "potsdam")
    assert main(["data", "check", str(root), "--dataset", "potsdam", "--options", "tiles=" + ",".join(TILES)]) == 0
    assert "OK" in capsys.readouterr().out


def test_truncated_potsdam_dsm_is_named_and_exit_code_is_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RSBENCH_DATA", str(tmp_path / "cache"))
    root = make_potsdam(tmp_path / "potsdam")
    dsm = root / "1_DSM" / "dsm_potsdam_02_10.tif"
    dsm.write_bytes(dsm.read_bytes()[:400])
    assert main(["data", "check", str(root), "--dataset", "potsdam", "--options", "tiles=" + ",".join(TILES)]) == 1
    captured = capsys.readouterr()
    assert "dsm_potsdam_02_10.tif" in captured.out and "problem(s)" in captured.err


def test_corrupt_ucmerced_image_is_named(tmp_path, capsys):
    root = make_ucmerced(tmp_path / "ucm", per_class=5)
    bad = root / "UCMerced_LandUse" / "Images" / "forest" / "forest03.tif"
    bad.write_bytes(b"not an image")
    assert main(["data", "check", str(root), "--dataset", "ucmerced"]) == 1
    assert "forest03.tif" in capsys.readouterr().out


def test_missing_dataset_folder(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nowhere"), "--dataset", "ucmerced"]) == 1
    assert "nowhere" in capsys.readouterr().out
