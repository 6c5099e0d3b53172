"""``napari-patchwork tile --place ...``: placed patches from the command line."""

import csv

import numpy as np
import pytest
import tifffile

from napari_patchwork.cli import main
from napari_patchwork.folder import read_patch_folder


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (100, 140, 3), dtype=np.uint8)
    labels = np.zeros((100, 140), np.uint16)
    labels[10:20, 10:26] = 3
    labels[50:80, 60:100] = 7
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    (tmp_path / "pts.csv").write_text("y,x\n20,30\n60.4,99.6\n")
    return tmp_path


def tile(files, *args):
    return main(["tile", str(files / "img.tif"), "--size", "16", "--no-preview", "-q", *args])


def rows(folder):
    with open(folder / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_objects_points_random_balanced_from_the_command_line(files):
    lab = str(files / "lab.tif")
    assert tile(files, "--mask", lab, "--place", "objects", "--edge", "shift",
                "-o", str(files / "o")) == 0  # fmt: skip
    assert [(r["instance_id"], r["area"]) for r in rows(files / "o")] == [
        ("3", "160"),
        ("7", "1200"),
    ]
    assert tile(files, "--place", "points", "--points", str(files / "pts.csv"),
                "-o", str(files / "p")) == 0  # fmt: skip
    patches = read_patch_folder(files / "p")
    np.testing.assert_array_equal(patches.starts + 8, [[20, 30], [60, 100]])
    # world units: the CSV in micrometres with a pixel size of 0.5
    (files / "um.csv").write_text("10,15\n")
    assert tile(files, "--place", "points", "--points", str(files / "um.csv"), "--points-units",
                "world", "--scale", "0.5", "0.5", "-o", str(files / "w")) == 0  # fmt: skip
    np.testing.assert_array_equal(read_patch_folder(files / "w").starts + 8, [[20, 30]])
    for seed_dir in ("r1", "r2"):
        assert tile(files, "--mask", lab, "--place", "random", "-n", "6", "--seed", "4",
                    "--min-foreground", "0.5", "--max-overlap", "0.5",
                    "-o", str(files / seed_dir)) == 0  # fmt: skip
    assert rows(files / "r1") == rows(files / "r2") and len(rows(files / "r1")) == 6
    assert all(float(r["foreground_fraction"]) >= 0.5 for r in rows(files / "r1"))
    assert tile(files, "--mask", lab, "--place", "balanced", "-n", "4", "--classes", "3", "7",
                "-o", str(files / "b")) == 0  # fmt: skip
    assert sorted(r["class"] for r in rows(files / "b")) == ["3"] * 4 + ["7"] * 4


def test_placement_notes_are_printed(files, capsys):
    args = ["--place", "random", "-n", "500", "--max-overlap", "0", "-o", str(files / "r")]
    assert main(["tile", str(files / "img.tif"), "--size", "16", "--no-preview", *args]) == 0
    out = capsys.readouterr().out
    assert "random patches: no more fit" in out and "of 500" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--place", "points"], "--place points needs --points FILE.csv"),
        (["--points", "pts.csv"], "--points is for --place points"),
        (["--place", "random"], "--place random needs -n N"),
        (["--place", "balanced", "-n", "2"], "--place balanced reads the labels of --mask"),
        (["--place", "objects", "-n", "2"], "-n is for --place random or balanced"),
        (["--place", "random", "-n", "2", "--classes", "1"], "--classes is for"),
        (["--place", "objects", "--stride", "8"], "--stride lays the regular grid"),
        (["--place", "random", "-n", "2", "--max-overlap", "2"], "--max-overlap must be a"),
        (
            ["--place", "points", "--points", "pts.csv", "--points-units", "world"],
            "needs the image's pixel size",
        ),  # fmt: skip
        (["--place", "points", "--points", "missing.csv"], "cannot read the points file"),
        (["--place", "points", "--points", "far.csv"], "lie outside the image"),
    ],
)
def test_bad_placement_options_say_what_to_change(files, capsys, monkeypatch, args, message):
    monkeypatch.chdir(files)
    (files / "far.csv").write_text("500,500\n")
    assert tile(files, *args, "-o", str(files / "out")) == 2
    assert message in capsys.readouterr().err
    assert not (files / "out").exists()
