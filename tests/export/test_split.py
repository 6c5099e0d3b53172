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


# -- leak-free splits: blocks with a buffer, whole images ---------------------------------

import csv  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from napari_patchwork.export import (  # noqa: E402
    ExportError,
    block_split,
    export_batch,
    image_splits,
    leaking_patches,
)
from napari_patchwork.grid import make_grid  # noqa: E402


def _touching(a, b):
    """(len(a), len(b)): the closed boxes intersect (distance 0), written out with numpy."""
    low = np.maximum(a[:, None, 0], b[None, :, 0])
    high = np.minimum(a[:, None, 1], b[None, :, 1])
    return np.all(low <= high, axis=-1)


def _touch_pairs(boxes, labels):
    """Every pair of patches of different splits at distance 0 (all pairs compared)."""
    labels = np.asarray(labels, dtype=object)
    different = (labels[:, None] != labels[None, :]) & (labels[:, None] != "")
    different &= labels[None, :] != ""
    i, j = np.nonzero(np.triu(_touching(boxes, boxes) & different, 1))
    return list(zip(i.tolist(), j.tolist()))


def _reference_buffer(boxes, rank):
    """The buffer rule written out plainly: ranks in increasing order, a patch is left out
    if it touches a kept patch of a lower rank (compared with every such patch)."""
    out = np.zeros(len(boxes), dtype=bool)
    for r in sorted(set(rank.tolist()))[1:]:
        mine, kept = np.flatnonzero(rank == r), np.flatnonzero((rank < r) & ~out)
        out[mine] = _touching(boxes[mine], boxes[kept]).any(axis=1)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.tuples(st.integers(8, 70), st.integers(8, 70)),
    patch=st.integers(3, 16),
    stride_part=st.floats(0.25, 1.5),
    block_factor=st.floats(1.0, 4.0),
    fractions=st.sampled_from([(0.5, 0.5), (0.8, 0.2), (0.7, 0.2, 0.1), (0.34, 0.33, 0.33)]),
    edge=st.sampled_from(["drop", "pad", "shift"]),
    seed=st.integers(0, 2**16),
)
def test_blocked_split_never_lets_patches_of_two_splits_overlap_or_touch(
    shape, patch, stride_part, block_factor, fractions, edge, seed
):
    assume(min(shape) >= patch)
    stride = max(1, int(patch * stride_part))  # overlapping, touching and gapped grids
    block = int(patch * block_factor)
    grid = make_grid(shape, patch, stride, edge)
    boxes = np.stack([grid.boxes[:, 0], grid.clipped_boxes()[:, 1]], axis=1)
    split = dict(zip(("train", "val", "test"), fractions))
    try:
        result = block_split(boxes, block, split, seed)
    except ExportError as err:  # too few blocks for the splits: said so
        assert "too few for the split" in str(err)
        return
    labels = result.labels
    assert _touch_pairs(boxes, labels) == []
    # every patch carries its block's split, and is left out only as the buffer
    assert [lab == "" for lab in labels] == result.buffer.tolist()
    order = sorted(split, key=lambda n: (split[n], -list(split).index(n)))
    full = block_split(boxes, block, split, seed)  # reproducible
    assert full.labels == labels and np.array_equal(full.blocks, result.blocks)
    # the buffer is exactly the rule's (brute force)
    centres = (boxes[:, 0] + boxes[:, 1] - 1) // 2
    assert np.array_equal(result.blocks, centres // block)
    unique, which = np.unique(result.blocks, axis=0, return_inverse=True)
    block_labels = assign_splits(len(unique), split, seed)
    drawn = np.array(block_labels, dtype=object)[np.asarray(which).ravel()]
    rank = np.array([order.index(s) for s in drawn])
    assert np.array_equal(result.buffer, _reference_buffer(boxes, rank))
    for i in np.flatnonzero(~result.buffer):
        assert labels[i] == drawn[i]
    assert result.n_buffer == int(result.buffer.sum()) and result.n_blocks == len(unique)


def test_buffer_is_minimal_for_a_touching_grid():
    # 8 x 8 patches of 4 px in 16 px blocks: 2 x 2 blocks of 4 x 4 patches, train 3, val 1
    grid = make_grid((32, 32), 4)
    boxes = grid.boxes
    result = block_split(boxes, 16, {"train": 0.75, "val": 0.25}, seed=0)
    val_block = result.blocks[[s == "val" for s in result.labels]][0]
    # the val block keeps its 16 patches; train gives up the ring of patches touching it:
    # 4 + 4 along the two shared sides and 1 at the shared corner
    assert result.labels.count("val") == 16
    assert result.n_buffer == 9 and result.labels.count("train") == 64 - 16 - 9
    assert val_block.tolist() in ([0, 0], [0, 1], [1, 0], [1, 1])


def test_leaking_patches_with_one_split_or_none_leaves_nothing_out():
    boxes = make_grid((20, 20), 5, 2).boxes
    assert not leaking_patches(boxes, np.zeros(len(boxes), dtype=int)).any()
    assert leaking_patches(boxes[:0], np.zeros(0, dtype=int)).shape == (0,)


def test_block_errors_say_what_to_change():
    boxes = make_grid((64, 64), 16).boxes
    with pytest.raises(ExportError, match="smaller than the patches.*at least the patch size"):
        block_split(boxes, 8, {"train": 0.5, "val": 0.5})
    with pytest.raises(ExportError, match="1 block of .*'val' would get none.*smaller block"):
        block_split(boxes, 64, {"train": 0.5, "val": 0.5})
    with pytest.raises(ExportError, match="needs block_size"):
        export_patches("never", np.zeros((64, 64)), patch_size=16, split=(0.5, 0.5),
                       split_by="blocks")  # fmt: skip
    with pytest.raises(ExportError, match="block_size is for split_by='blocks'"):
        export_patches("never", np.zeros((64, 64)), patch_size=16, split=(0.5, 0.5),
                       block_size=32)  # fmt: skip
    with pytest.raises(ExportError, match="no split is given"):
        export_patches("never", np.zeros((64, 64)), patch_size=16, split_by="blocks",
                       block_size=32)  # fmt: skip
    with pytest.raises(ExportError, match="use export_batch"):
        export_patches("never", np.zeros((64, 64)), patch_size=16, split=(0.5, 0.5),
                       split_by="image")  # fmt: skip
    with pytest.raises(ExportError, match="split_by='rows' is not known"):
        export_patches("never", np.zeros((64, 64)), patch_size=16, split_by="rows")


def test_blocked_export_records_blocks_buffer_and_fractions(tmp_path):
    image = np.arange(120 * 160, dtype=np.uint16).reshape(120, 160)
    out = tmp_path / "out"
    result = export_patches(
        out, image, patch_size=20, stride=10, split={"train": 0.7, "val": 0.3},
        split_by="blocks", block_size=40, seed=5,
    )  # fmt: skip
    plan_boxes = make_grid(image.shape, 20, 10).boxes
    expected = block_split(plan_boxes, 40, {"train": 0.7, "val": 0.3}, seed=5)
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert result.n_buffer == expected.n_buffer > 0
    assert result.n_patches == len(rows) == len(plan_boxes) - expected.n_buffer
    assert result.n_candidates == result.n_patches  # the buffer is never tried
    for row in rows:
        i = int(row["index"])
        assert row["split"] == expected.labels[i]
        assert [int(row["block_y"]), int(row["block_x"])] == expected.blocks[i].tolist()
        centre = (
            (int(row["y0"]) + int(row["y1"]) - 1) // 2,
            (int(row["x0"]) + int(row["x1"]) - 1) // 2,
        )
        assert [c // 40 for c in centre] == expected.blocks[i].tolist()
    counts = {"train": expected.labels.count("train"), "val": expected.labels.count("val")}
    assert result.split_counts == counts
    total = sum(counts.values())
    assert result.split_fractions == {k: v / total for k, v in counts.items()}
    assert f"{expected.n_buffer} left out as a buffer between splits" in result.message
    assert f"val {counts['val']} ({counts['val'] / total:.2f})" in result.message
    info = json.loads((out / "dataset.json").read_text())
    assert info["split_by"] == "blocks" and info["block_size"] == [40, 40]
    assert info["n_buffer"] == expected.n_buffer and info["split_counts"] == counts
    # what was written: no two patches of different splits overlap or touch
    boxes = np.array([[[int(r["y0"]), int(r["x0"])], [int(r["y1"]), int(r["x1"])]] for r in rows])
    assert _touch_pairs(boxes, [r["split"] for r in rows]) == []
    check_consistent(out)
    # the same export again is reproducible; a per-patch split after it drops the block columns
    again = export_patches(
        out, image, patch_size=20, stride=10, split={"train": 0.7, "val": 0.3},
        split_by="blocks", block_size=40, seed=5,
    )  # fmt: skip
    assert again.rows == result.rows and again.n_written == 0
    plain = export_patches(out, image, patch_size=20, stride=10, split=(0.7, 0.3), seed=5)
    assert plain.n_patches == len(plan_boxes) and "block_y" not in plain.rows[0]
    check_consistent(out)


def test_blocks_are_in_output_pixels_when_downsampled(tmp_path):
    image = np.zeros((128, 128), dtype=np.uint8)
    result = export_patches(
        tmp_path / "o", image, patch_size=8, downsample=2, split=(0.5, 0.5),
        split_by="blocks", block_size=16,
    )  # fmt: skip
    for row in result.rows:  # a block is 16 output px = 32 source px
        assert row["block_y"] == (row["out_y0"] + row["out_valid_y1"] - 1) // 2 // 16
        assert row["block_y"] == (row["y0"] + row["valid_y1"] - 1) // 2 // 32


def test_split_by_image_keeps_each_image_whole(tmp_path):
    rng = np.random.default_rng(0)
    inputs = [(f"img{i}", rng.integers(0, 255, (40 + 8 * i, 48), dtype=np.uint8), None)
              for i in range(5)]  # fmt: skip
    split = {"train": 0.6, "val": 0.2, "test": 0.2}
    batch = export_batch(tmp_path / "b", inputs, patch_size=8, split=split, split_by="image",
                         seed=2)  # fmt: skip
    assert list(batch.image_split) == image_splits(5, split, seed=2)
    assert sorted(batch.image_split) == ["test", "train", "train", "train", "val"]
    for (name, image, _), result, label in zip(inputs, batch.results, batch.image_split):
        rows = list(csv.DictReader(open(tmp_path / "b" / name / "manifest.csv")))
        assert {r["split"] for r in rows} == {label}
        assert len(rows) == (image.shape[0] // 8) * 6
        assert result.split_counts[label] == len(rows)
        assert (
            json.loads((tmp_path / "b" / name / "dataset.json").read_text())["split_by"] == "image"
        )
    total = sum(r.n_patches for r in batch.results)
    assert sum(batch.split_counts.values()) == total
    assert batch.split_fractions == {k: v / total for k, v in batch.split_counts.items()}
    assert batch.message.startswith(f"{total} patches from 5 images (train ")
    with pytest.raises(ExportError, match=r"too few images \(2\).*'test' would get none"):
        export_batch(tmp_path / "c", inputs[:2], patch_size=8, split=split, split_by="image")
    with pytest.raises(ExportError, match="names repeat"):
        export_batch(tmp_path / "d", inputs[:1] * 2, patch_size=8)
