"""Never losing data: foreign folders, other settings, overwrite, journal and resume."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from patch_folders import check_consistent, read_manifest, sample_pair

from napari_patchwork.export import (
    ExportError,
    export_patches,
    iter_export,
)
from napari_patchwork.export import patch as patch_module
from napari_patchwork.folder import (
    JOURNAL_FILE,
    PatchFolderError,
    read_patch_folder,
    read_patches,
    verify_patch_folder,
)


def test_refuses_a_foreign_folder_unless_overwrite(tmp_path):
    image, mask = sample_pair()
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.txt").write_text("precious")
    with pytest.raises(ExportError, match="not empty"):
        export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    assert os.listdir(out) == ["chapter1.txt"]
    export_patches(out, image, mask, patch_size=20, channel_axis=-1, overwrite=True)
    assert (out / "chapter1.txt").read_text() == "precious"
    check_consistent(out)
    with pytest.raises(ExportError, match="a file"):
        export_patches(out / "chapter1.txt", image, patch_size=20, channel_axis=-1)


def test_other_settings_refused_then_replaced_with_overwrite(tmp_path):
    image, mask = sample_pair()
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    (out / "images" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="patch_size"):
        export_patches(out, image, mask, patch_size=30, channel_axis=-1, fmt="npy")
    assert len(read_manifest(out)) == 12  # the old export is intact
    result = export_patches(
        out, image, mask, patch_size=30, channel_axis=-1, fmt="npy", overwrite=True
    )
    assert result.n_patches == 4
    check_consistent(out, foreign={"images/notes.txt"})
    assert not list(out.glob("*/*.tif"))
    assert (out / "images" / "notes.txt").read_text() == "mine"


def test_overwrite_redoes_an_export_with_the_same_settings(tmp_path):
    """After the source changed, overwrite=True must rewrite every patch, not resume."""
    image, mask = sample_pair()
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    edited_image, edited_mask = image // 2, np.where(mask > 0, 5, 0).astype(mask.dtype)
    result = export_patches(
        out, edited_image, edited_mask, patch_size=20, channel_axis=-1, overwrite=True
    )
    assert result.n_written == result.n_patches == 12 and result.n_resumed == 0
    stitched_image, stitched_mask = read_patches(out)
    np.testing.assert_array_equal(stitched_image, edited_image)
    np.testing.assert_array_equal(stitched_mask, edited_mask)
    check_consistent(out)


def test_a_journal_without_its_dataset_json_is_not_resumed(tmp_path):
    """A journal left by an export whose dataset.json is gone describes no export of this folder."""
    image, mask = sample_pair()
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=20, channel_axis=-1, min_foreground=0.5)
    (out / "dataset.json").unlink()  # e.g. deleted by hand: the folder is no export of ours now
    steps = iter_export(out, image, mask, patch_size=20, channel_axis=-1, overwrite=True)
    next(steps), next(steps)
    steps.close()  # interrupted after one patch
    result = export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    assert result.n_patches == 12 and result.n_rejected_foreground == 0  # nothing from the old run
    check_consistent(out)


class DiskFull(OSError):
    pass


@pytest.mark.parametrize("write_threads", [1, 2])
def test_interrupted_export_resumes_to_a_consistent_folder(tmp_path, monkeypatch, write_threads):
    """Patch 5's write fails mid-file; the re-run writes only the rest, consistently.

    With writer threads, patches after 5 may be on disk already: they are not in the
    journal, so they are written again.
    """
    image, mask = sample_pair()
    out = tmp_path / "out"
    real_write = patch_module.write_patch

    def failing_write(image_patch, mask_patch, image_path, mask_path, **kwargs):
        if "_05_" in Path(image_path).name:
            real_write(image_patch, None, image_path, None, **kwargs)  # image written, mask not
            Path(mask_path).with_name(".half-written.part").write_bytes(b"\0" * 10)
            raise DiskFull("no space left on device")
        real_write(image_patch, mask_patch, image_path, mask_path, **kwargs)

    monkeypatch.setattr(patch_module, "write_patch", failing_write)
    with pytest.raises(DiskFull):
        export_patches(
            out,
            image,
            mask,
            patch_size=20,
            channel_axis=-1,
            split=(0.5, 0.5),
            write_threads=write_threads,
        )
    assert json.loads((out / "dataset.json").read_text())["complete"] is False
    assert not (out / "manifest.csv").exists()
    with pytest.raises(PatchFolderError, match="incomplete"):
        read_patch_folder(out)

    monkeypatch.setattr(patch_module, "write_patch", real_write)
    result = export_patches(out, image, mask, patch_size=20, channel_axis=-1, split=(0.5, 0.5))
    assert result.n_resumed == 5 and result.n_written == 7 and result.n_patches == 12
    rows = check_consistent(out)
    assert not list(out.rglob("*.part"))
    reference = export_patches(
        tmp_path / "ref", image, mask, patch_size=20, channel_axis=-1, split=(0.5, 0.5)
    )
    assert [r["split"] for r in rows] == [r["split"] for r in reference.rows]
    for row in rows:
        for key in ("image", "mask"):
            assert (out / row[key]).read_bytes() == (tmp_path / "ref" / row[key]).read_bytes()


@pytest.mark.parametrize("write_threads", [1, 2])
def test_cancelled_export_resumes_even_with_a_torn_journal(tmp_path, write_threads):
    image, mask = sample_pair()
    out = tmp_path / "out"
    steps = iter_export(
        out,
        image,
        mask,
        patch_size=20,
        channel_axis=-1,
        min_foreground=0.05,
        write_threads=write_threads,
    )
    for step in steps:
        if step.done == 6:
            break
    steps.close()  # what Cancel does
    journal = (out / JOURNAL_FILE).read_text().splitlines()
    assert len(journal) == 6
    # the process died after renaming patch 5's files but before its journal line was complete
    (out / JOURNAL_FILE).write_text("\n".join(journal[:5]) + "\n" + journal[5][:7])
    result = export_patches(out, image, mask, patch_size=20, channel_axis=-1, min_foreground=0.05)
    assert result.n_written + result.n_resumed == result.n_patches
    assert result.n_resumed == sum(json.loads(line)["kept"] for line in journal[:5])
    check_consistent(out)
    np.testing.assert_array_equal(
        read_patches(out)[1] > 0, (mask > 0) & read_patch_folder(out).coverage()
    )


def test_overwrite_into_a_foreign_folder_touches_no_file_of_the_user(tmp_path):
    image, mask = sample_pair()
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    mine = out / "images" / "patch_07_y0_x20.tif"  # looks like a patch file name
    mine.write_text("my notes")
    export_patches(out, image, mask, patch_size=30, channel_axis=-1, overwrite=True)
    assert mine.read_text() == "my notes"
    export_patches(out, image, mask, patch_size=20, channel_axis=-1, overwrite=True)
    assert mine.read_text() == "my notes"  # redone from scratch: only files it wrote went
    assert len(read_manifest(out)) == 12
    assert verify_patch_folder(out) == ["not in the manifest: images/patch_07_y0_x20.tif"]


def test_a_second_export_into_the_same_folder_fails_at_once(tmp_path):
    image, mask = sample_pair()
    out = tmp_path / "out"
    first = iter_export(out, image, mask, patch_size=20, channel_axis=-1)
    next(first)  # running: holds the folder
    with pytest.raises(ExportError, match="another export is writing into"):
        export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    first.close()  # cancelled: the folder is free again, and the export resumes
    result = export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    assert result.n_patches == 12 and not (out / ".patchwork-export.lock").exists()
    check_consistent(out)


def test_resume_removes_every_temporary_file_of_ours(tmp_path):
    image, mask = sample_pair()
    out = tmp_path / "out"
    steps = iter_export(out, image, mask, patch_size=20, channel_axis=-1)
    next(steps), next(steps)
    steps.close()
    leftovers = [".manifest.csv.12-34.part", ".dataset.json.5-6.part", "images/.p.tif.1-2.part"]
    for name in leftovers:
        (out / name).write_bytes(b"cut short")
    (out / "notes.part").write_text("mine")
    export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    assert not any((out / name).exists() for name in leftovers)
    assert (out / "notes.part").read_text() == "mine"


def test_a_path_through_a_file_is_explained(tmp_path):
    image, mask = sample_pair()
    (tmp_path / "report.txt").write_text("x")
    with pytest.raises(ExportError, match="report.txt is a file"):
        export_patches(tmp_path / "report.txt" / "out", image, mask, patch_size=20, channel_axis=-1)


@pytest.mark.parametrize(
    ("image", "fmt", "message"),
    [
        (np.zeros((20, 20), np.float16), "ome-tiff", "cannot hold this image's float16"),
        (np.zeros((20, 20), np.int64), "ome-tif", "cannot hold this image's int64"),
        (np.full((20, 20), "a"), "tiff", "must hold numbers"),
        (np.zeros((20, 20), object), "npy", "must hold numbers"),
    ],
)
def test_unwritable_data_is_refused_before_any_file(tmp_path, image, fmt, message):
    with pytest.raises(ExportError, match=message):
        export_patches(tmp_path / "out", image, patch_size=10, fmt=fmt)
    assert not (tmp_path / "out").exists()
