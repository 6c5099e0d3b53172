"""Placements: patches around objects, at points, at random and balanced by class."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.measure import regionprops

from napari_patchwork.placement import (
    PlacedPatches,
    Placement,
    PlacementError,
    place,
    read_points_csv,
    world_to_pixels,
)


def blobs(shape=(120, 160), n=12, seed=0, size=(3, 9)):
    """An instance mask of ``n`` rectangles (ids 1..n, scattered ids) that may touch."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for i in range(n):
        h, w = rng.integers(*size, size=2)
        y, x = rng.integers(0, shape[0] - h), rng.integers(0, shape[1] - w)
        labels[y : y + h, x : x + w] = 10 * (i + 1)
    return labels


def centre_pixels(placed: PlacedPatches) -> np.ndarray:
    return placed.boxes[:, 0] + np.asarray(placed.patch_size) // 2


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "tiles"}, "choose one of grid, objects, points, random, balanced"),
        ({"kind": "random"}, "needs n, the number of patches"),
        ({"kind": "balanced", "n": 0}, "at least 1"),
        ({"kind": "objects", "n": 3}, "n applies to 'random' and 'balanced'"),
        ({"kind": "points"}, "needs points"),
        ({"kind": "points", "points": [1, 2]}, r"\(N, ndim\) array"),
        ({"kind": "points", "points": [[1, np.nan]]}, "NaN"),
        ({"kind": "random", "n": 2, "classes": [1]}, "classes apply to 'objects' and 'balanced'"),
        ({"kind": "objects", "classes": []}, "classes is empty"),
        ({"kind": "objects", "centre": "middle"}, "'centroid' or 'bbox'"),
        ({"kind": "random", "n": 5, "max_overlap": 1.5}, "max_overlap must be a fraction"),
        ({"kind": "random", "n": 2.5}, "whole number"),
    ],
)
def test_bad_placements_say_what_to_change(changes, message):
    with pytest.raises(PlacementError, match=message):
        Placement(**changes)


def test_placement_is_normalised_and_recorded():
    p = Placement(kind="balanced", n=4.0, classes=[3, 1, 3], seed=7)
    assert p.n == 4 and p.classes == (1, 3)
    assert p.to_json() == {
        "kind": "balanced",
        "n": 4,
        "classes": [1, 3],
        "seed": 7,
        "min_foreground": 0.0,
        "max_overlap": 1.0,
        "centre": "centroid",
        "connected": False,
    }
    assert Placement(kind="points", points=[[1, 2], [3, 4]]).to_json()["n_points"] == 2
    with pytest.raises(PlacementError, match="reads a label mask"):
        place(Placement(kind="objects"), (10, 10), 4)


# -- objects ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    patch=st.integers(1, 24),
    edge=st.sampled_from(["drop", "pad", "shift", "partial"]),
)
def test_objects_one_patch_per_instance_centred_on_its_centroid(seed, patch, edge):
    labels = blobs(seed=seed)
    placed = place(Placement(kind="objects"), labels.shape, patch, edge, labels=labels)
    props = {r.label: r for r in regionprops(labels)}
    ids = placed.features["instance_id"]
    assert len(set(ids.tolist())) == len(ids)  # one patch per instance
    starts, stops = placed.boxes[:, 0], placed.boxes[:, 1]
    assert np.all(starts >= 0)
    centred = np.zeros(len(ids), bool)
    for k, (i, area) in enumerate(zip(ids, placed.features["area"])):
        centroid = np.asarray(props[i].centroid)
        assert area == props[i].area
        whole = np.all(stops[k] - starts[k] == patch)
        pixel = np.floor(centroid + 0.5)  # the pixel holding the centroid
        start = pixel - patch // 2
        moved = np.any(start < 0) or np.any(start + patch > np.asarray(labels.shape))
        if not moved:  # away from the border every mode centres the patch exactly
            assert whole
            assert np.all(np.abs(centre_pixels(placed)[k] - centroid) <= 0.5)
            centred[k] = True
        # the instance's centroid pixel is always in its patch
        assert np.all(np.floor(centroid + 0.5) >= starts[k])
        assert np.all(np.floor(centroid + 0.5) < np.maximum(stops[k], starts[k] + 1))
    if edge == "drop":  # only the centred patches, and every one of them
        assert centred.all()
        expected = [
            i
            for i, r in props.items()
            if np.all(np.floor(np.asarray(r.centroid) + 0.5) - patch // 2 >= 0)
            and np.all(np.floor(np.asarray(r.centroid) + 0.5) - patch // 2 + patch <= labels.shape)
        ]
        assert sorted(ids.tolist()) == sorted(expected)
    else:
        assert sorted(ids.tolist()) == sorted(props)
        inside = stops <= np.asarray(labels.shape)
        assert edge == "pad" or inside.all()


def test_objects_bbox_centre_classes_and_semantic_masks():
    labels = np.zeros((40, 60), np.uint16)
    labels[2:5, 2:12] = 4  # an L: centroid and bbox centre differ
    labels[5:12, 2:4] = 4
    labels[20:30, 30:40] = 9
    labels[20:24, 50:54] = 9  # a second blob of value 9, not touching the first
    bbox = place(Placement(kind="objects", centre="bbox"), labels.shape, 5, "pad", labels=labels)
    assert centre_pixels(bbox)[0].tolist() == [7, 7]  # (2 + 11) / 2 = 6.5 -> 7, (2+11)/2
    # an instance mask: ids are instances, classes keep chosen ids
    only = place(Placement(kind="objects", classes=(9, 77)), labels.shape, 5, "pad", labels=labels)
    assert only.features["instance_id"].tolist() == [9]
    assert only.features["area"].tolist() == [116]
    assert any("77" in note for note in only.notes)
    # a semantic mask: each connected region of a value is one object of that class
    semantic = Placement(kind="objects", connected=True, classes=(9,))
    blobs_9 = place(semantic, labels.shape, 5, "pad", labels=labels)
    assert blobs_9.features["class"].tolist() == [9, 9]
    assert sorted(blobs_9.features["area"].tolist()) == [16, 100]
    every = place(Placement(kind="objects", connected=True), labels.shape, 5, "pad", labels=labels)
    assert sorted(every.features["class"].tolist()) == [4, 9, 9]
    with pytest.raises(PlacementError, match="no object of the chosen"):
        place(Placement(kind="objects", classes=(5,)), labels.shape, 5, labels=labels)


def test_objects_scale_to_100000_instances():
    labels = np.zeros((1300, 1300), np.int32)
    ids = np.arange(1, 100_001, dtype=np.int32).reshape(250, 400)
    ys, xs = np.meshgrid(np.arange(250) * 5, np.arange(400) * 3, indexing="ij")
    for dy in range(2):
        labels[ys + dy + 1, xs + 1] = ids
    placed = place(Placement(kind="objects"), labels.shape, 8, "shift", labels=labels)
    assert placed.n_patches == 100_000
    assert np.all(placed.features["area"] == 2)
    np.testing.assert_array_equal(placed.features["instance_id"], np.arange(1, 100_001))
    assert np.all(placed.boxes[:, 1] - placed.boxes[:, 0] == 8)


def test_objects_at_lower_resolution_centre_in_output_pixels():
    labels = np.zeros((64, 64), np.uint8)
    labels[40:44, 20:24] = 1  # centroid (41.5, 21.5) -> output (20.5, 10.5) at factor 2
    placed = place(Placement(kind="objects"), labels.shape, 4, labels=labels, factors=(2, 2))
    assert placed.shape == (32, 32)
    centre = centre_pixels(placed)[0]
    assert np.all(np.abs(centre - (np.array([41.5, 21.5]) + 0.5) / 2 + 0.5) <= 0.5)


# -- points ----------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    points=st.lists(
        st.tuples(st.floats(-0.5, 99.49), st.floats(-0.5, 79.49)), min_size=1, max_size=20
    ),
    patch=st.integers(1, 16),
)
def test_points_patches_are_centred_on_the_points(points, patch):
    placed = place(Placement(kind="points", points=points), (100, 80), patch, "pad")
    assert placed.features["point"].tolist() == list(range(len(points)))
    wanted = np.floor(np.asarray(points) + 0.5)
    away = np.all(wanted - patch // 2 >= 0, axis=1)
    np.testing.assert_array_equal(centre_pixels(placed)[away], wanted[away])
    assert np.all(np.abs(centre_pixels(placed)[away] - np.asarray(points)[away]) <= 0.5)


def test_points_in_world_units_and_from_csv(tmp_path):
    scale, translate = (0.5, 0.25), (10.0, -4.0)
    pixels = np.array([[3.0, 8.0], [20.0, 30.0]])
    world = pixels * scale + translate
    np.testing.assert_allclose(world_to_pixels(world, scale, translate), pixels)
    placed = place(
        Placement(kind="points", points=world_to_pixels(world, scale, translate)), (40, 40), 4
    )
    np.testing.assert_array_equal(centre_pixels(placed), pixels)
    (tmp_path / "p.csv").write_text("y,x\n3,8\n20.2,29.9\n\n")
    np.testing.assert_allclose(read_points_csv(tmp_path / "p.csv", 2), [[3, 8], [20.2, 29.9]])
    (tmp_path / "w.csv").write_text("1.5,4\n")
    np.testing.assert_allclose(read_points_csv(tmp_path / "w.csv", 2, (0.5, 0.25)), [[3, 16]])
    (tmp_path / "bad.csv").write_text("z,y,x\n1,2,3\n")
    with pytest.raises(PlacementError, match="each row must be y,x"):
        read_points_csv(tmp_path / "bad.csv", 2)
    with pytest.raises(PlacementError, match="cannot read the points file"):
        read_points_csv(tmp_path / "missing.csv", 2)


def test_points_outside_the_image_are_refused():
    with pytest.raises(PlacementError, match=r"1 of 2 points lie outside .* world units"):
        place(Placement(kind="points", points=[[1, 1], [50, 2]]), (40, 40), 4)
    with pytest.raises(PlacementError, match="3 coordinates, the image has 2"):
        place(Placement(kind="points", points=[[1, 1, 1]]), (40, 40), 4)


# -- random ----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(1, 40),
    patch=st.integers(2, 30),
    cap=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
)
def test_random_is_seeded_distinct_inside_and_overlap_capped(seed, n, patch, cap):
    shape = (90, 110)
    placement = Placement(kind="random", n=n, seed=seed, max_overlap=cap)
    placed = place(placement, shape, patch, "drop")
    again = place(placement, shape, patch, "drop")
    np.testing.assert_array_equal(placed.boxes, again.boxes)
    starts = placed.boxes[:, 0]
    assert len({tuple(s) for s in starts.tolist()}) == len(starts)
    assert np.all(starts >= 0) and np.all(placed.boxes[:, 1] <= shape)
    lo = np.maximum(starts[:, None], starts[None])
    hi = np.minimum(starts[:, None], starts[None]) + patch
    shared = np.prod(np.clip(hi - lo, 0, None), axis=2) / patch**2
    np.fill_diagonal(shared, 0)
    assert shared.max(initial=0) <= cap + 1e-12
    assert placed.n_patches == n or placed.notes  # fewer only with a report


def test_random_min_foreground_and_what_did_not_fit():
    labels = np.zeros((100, 100), np.uint8)
    labels[60:90, 10:40] = 1
    placement = Placement(kind="random", n=10, seed=3, min_foreground=0.75)
    placed = place(placement, labels.shape, 10, labels=labels)
    assert placed.n_patches == 10
    for (y0, x0), (y1, x1) in placed.boxes:
        assert labels[y0:y1, x0:x1].mean() >= 0.75
    other = place(placement.replace(seed=4), labels.shape, 10, labels=labels)
    assert not np.array_equal(other.boxes, placed.boxes)
    few = place(Placement(kind="random", n=50, max_overlap=0.0), (40, 40), 10)
    # at most 16 disjoint 10 px patches fit in 40 x 40; random positions pack fewer
    assert 4 <= few.n_patches <= 16
    assert f"placed {few.n_patches} of 50 random patches" in few.notes[0]
    with pytest.raises(PlacementError, match="lower min_foreground"):
        place(placement, (100, 100), 10, labels=np.zeros((100, 100), np.uint8))


# -- balanced --------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 12))
def test_balanced_exact_counts_per_class_seeded_and_distinct(seed, n):
    labels = np.zeros((60, 80), np.uint8)
    labels[5:40, 5:40] = 1
    labels[45:55, 50:75] = 2
    labels[2:5, 70:73] = 3  # 9 pixels only
    placement = Placement(kind="balanced", n=n, seed=seed, classes=(1, 2, 3, 4))
    placed = place(placement, labels.shape, 6, "shift", labels=labels)
    np.testing.assert_array_equal(placed.boxes, place(placement, labels.shape, 6, "shift",
                                                      labels=labels).boxes)  # fmt: skip
    classes = placed.features["class"]
    counts = {c: int(np.sum(classes == c)) for c in (1, 2, 3)}
    assert counts[1] == n and counts[2] == n
    assert counts[3] == min(n, 9) or any("class 3" in note for note in placed.notes)
    assert any("without pixels" in note and "4" in note for note in placed.notes)
    keys = {b.tobytes() for b in placed.boxes}
    assert len(keys) == placed.n_patches  # no duplicates
    centres = centre_pixels(placed)
    # away from the border, a patch's centre pixel is a pixel of its class
    for (y, x), c in zip(centres, classes):
        if 3 <= y < 57 and 3 <= x < 77:
            assert labels[y, x] == c


def test_balanced_defaults_to_every_nonzero_class():
    labels = np.zeros((30, 30), np.uint8)
    labels[:10] = 2
    labels[20:] = 5
    placed = place(Placement(kind="balanced", n=3, seed=1), labels.shape, 4, labels=labels)
    assert sorted(placed.features["class"].tolist()) == [2, 2, 2, 5, 5, 5]
    with pytest.raises(PlacementError, match="all 0"):
        place(Placement(kind="balanced", n=3), (30, 30), 4, labels=np.zeros((30, 30), np.uint8))


# -- edges -----------------------------------------------------------------------------


def test_edge_modes_at_the_border():
    point = Placement(kind="points", points=[[1, 38]])  # near the top right of 40 x 40
    boxes = {e: place(point, (40, 40), 8, e).boxes.tolist() for e in ("pad", "shift", "partial")}
    assert boxes["shift"] == [[[0, 32], [8, 40]]]
    assert boxes["partial"] == [[[0, 34], [5, 40]]]
    assert boxes["pad"] == [[[0, 34], [8, 42]]]  # padded past the end, moved in at 0
    drop = place(point, (40, 40), 8, "drop")
    assert drop.n_patches == 0 and "dropped" in drop.notes[0]
    with pytest.raises(PlacementError, match="edge='shift' needs the image"):
        place(point, (40, 40), 50, "shift")
