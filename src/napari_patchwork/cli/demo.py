"""``napari-patchwork demo``: the whole job on the bundled sample, with an overview figure."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork.cli.common import CLIError, TqdmProgress
from napari_patchwork.cli.tile import write_tile_previews


def demo_tile(args: argparse.Namespace, folder: str, mask: Any, **options: Any):
    """One export of the demo (with its preview.png): the sample and ``mask``, 80/20 split."""
    from napari_patchwork.export import export_patches
    from napari_patchwork.preview import PREVIEW_FILE
    from napari_patchwork.sample import sample_image

    out = Path(args.output) / folder
    progress = TqdmProgress(folder, disable=args.quiet)
    try:
        result = export_patches(
            out,
            sample_image(),
            mask,
            patch_size=args.size,
            edge="pad",
            channel_axis=-1,
            fmt="tiff",
            split=(0.8, 0.2),
            seed=0,
            overwrite=args.overwrite,
            stem="ihc",
            progress=progress,
            **options,
        )
    finally:
        progress.close()
    title = f"{folder}, {args.size} px patches"
    write_tile_previews(out, sample_image(), -1, title, [out / PREVIEW_FILE])
    return result


def demo_overview(out: Path, clusters: Any, size: int) -> Any:
    """The demo in one figure: sample, mask, clusters, posterised image, and the patch grids
    of ``out/patches`` and ``out/patches-cluster1`` with their kept patches marked."""
    from napari_patchwork.preview import Panel, draw_overview, folder_marks
    from napari_patchwork.sample import sample_image, sample_mask

    image, mask = sample_image(), sample_mask()
    k = clusters.model.n_clusters
    tiled, by_cluster = folder_marks(out / "patches"), folder_marks(out / "patches-cluster1")
    panels = [
        Panel(f"sample: IHC photo {image.shape[0]} x {image.shape[1]} RGB", image, channel_axis=-1),
        Panel(f"mask: {int(mask.max())} nuclei (labels)", mask, "labels"),
        Panel(f"clusters: k = {k} (1 = darkest)", clusters.labels, "clusters"),
        Panel(
            "posterised: each pixel its cluster's centre", clusters.posterized(), channel_axis=-1
        ),
        Panel(f"1. patches, {size} px: split train/val", image, channel_axis=-1, marks=tiled),
        Panel(
            f"4. kept where cluster 1 covers >= 20%: {int(by_cluster.kept.sum())} of "
            f"{len(by_cluster.kept)}",
            image,
            channel_axis=-1,
            marks=by_cluster,
        ),
    ]
    return draw_overview(panels, columns=3)


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the bundled sample: tile image + mask, stitch back, cluster, tile by
    clusters, and an overview figure."""
    import time

    from napari_patchwork.cluster import cluster_pixels
    from napari_patchwork.folder import read_patch_folder
    from napari_patchwork.io import write_image
    from napari_patchwork.preview import write_figure
    from napari_patchwork.sample import sample_image, sample_mask

    out = Path(args.output)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise CLIError(
            f"{out} is not empty; choose a new folder or pass --overwrite to redo the demo there."
        )
    image, mask = sample_image(), sample_mask()
    print(
        f"sample: IHC image {image.shape} {image.dtype}, nuclei mask with {int(mask.max())} labels"
    )
    result = demo_tile(args, "patches", mask)
    print(f"1. tiled: {result.message}")
    back = read_patch_folder(out / "patches")
    exact = np.array_equal(back.image(), image) and np.array_equal(back.mask(), mask)
    same = "identical to the input, dtypes included" if exact else "DIFFERENT from the input"
    print(f"2. stitched back: {same}")

    start = time.perf_counter()
    clusters = cluster_pixels(image, args.k, channel_axis=-1, random_state=0)
    seconds = time.perf_counter() - start
    write_image(out / "clusters.tif", clusters.labels, overwrite=True)  # folder checked above
    write_image(out / "posterized.png", clusters.posterized(), overwrite=True)
    clusters.model.save(out / "cluster-model.json")
    sizes = ", ".join(f"{i}: {n:,}" for i, n in enumerate(clusters.pixel_counts, start=1))
    print(
        f"3. clustered into k={args.k} in {seconds:.2f} s (id 1 = darkest; pixels {sizes}): "
        f"{out / 'clusters.tif'}, {out / 'posterized.png'}, {out / 'cluster-model.json'}"
    )

    result = demo_tile(args, "patches-cluster1", clusters.foreground([1]), min_foreground=0.2)
    print(f"4. tiled where the darkest cluster covers >= 20%: {result.message}")
    write_figure(out / "overview.png", demo_overview(out, clusters, args.size), overwrite=True)
    print(f"5. overview figure: {out / 'overview.png'} (and preview.png in each patch folder)")
    return 0 if exact else 1


def add_parser(sub) -> None:
    """The ``demo`` command's options."""
    demo = sub.add_parser(
        "demo",
        help="on the bundled IHC sample: tile image + nuclei mask, stitch back, cluster, "
        "tile by the darkest cluster, draw an overview figure (overview.png)",
    )
    demo.add_argument(
        "output",
        nargs="?",
        default="patchwork-demo",
        help="output folder (default: patchwork-demo)",
    )
    demo.add_argument("--size", type=int, default=128, help="patch size in pixels (default: 128)")
    demo.add_argument(
        "-k", type=int, default=4, help="clusters for the segmentation step (default: 4)"
    )
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo output")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=cmd_demo)
