"""Train/val/test splits."""

from patch_folders import check_consistent, read_manifest, sample_pair

from napari_patchwork.export import (
    assign_splits,
    export_patches,
)


def test_split_is_deterministic_and_exact(tmp_path):
    labels = assign_splits(10, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3)
    assert labels == assign_splits(10, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3)
    assert (labels.count("train"), labels.count("val"), labels.count("test")) == (7, 2, 1)
    assert labels != assign_splits(10, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=4)
    assert assign_splits(3, None) == ["", "", ""]
    image, mask = sample_pair()
    result = export_patches(
        tmp_path / "out", image, mask, patch_size=20, channel_axis=-1, split=(0.75, 0.25)
    )
    assert result.split_counts == {"train": 9, "val": 3}
    assert [r["split"] for r in read_manifest(tmp_path / "out")] == assign_splits(
        12, {"train": 0.75, "val": 0.25}
    )


def test_rerun_with_other_split_rewrites_only_the_manifest(tmp_path):
    image, mask = sample_pair()
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=20, channel_axis=-1, split=(0.5, 0.5))
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/*")}
    result = export_patches(
        out, image, mask, patch_size=20, channel_axis=-1, split=(0.5, 0.5), seed=1
    )
    assert result.n_written == 0 and result.n_resumed == 12
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*")} == mtimes
    assert [r["split"] for r in read_manifest(out)] == assign_splits(
        12, {"train": 0.5, "val": 0.5}, 1
    )
    check_consistent(out)
