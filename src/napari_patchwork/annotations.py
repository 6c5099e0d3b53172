"""Masks from shape annotations: polygons, rectangles and ellipses to a label image.

Pure numpy + scikit-image (no napari, no Qt). Shapes come as napari stores them
(a list of ``(V, ndim)`` vertex arrays in the Shapes layer's data coordinates and
a list of shape types) plus both layers' ``scale``/``translate``, so the mask
lands in the *image's* pixel grid even when the two layers differ.

A pixel belongs to a shape when its centre lies inside it (napari puts pixel
``i`` at data coordinate ``i``).

Overlap rule: shapes are painted in order, so where shapes overlap the **later
shape wins** (as napari draws later shapes on top). With ``priority`` (a list of
class names) shapes are painted by class, lowest priority first, so the class
listed **first** wins wherever it overlaps another; within one class the later
shape still wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

AREA_SHAPES = ("polygon", "rectangle", "ellipse")
"""Shape types that enclose an area; lines and paths are skipped (and counted)."""

ELLIPSE_VERTICES = 720
"""Vertices of the polygon that stands in for an ellipse (area error well under 0.1%)."""


class AnnotationError(ValueError):
    """Bad annotation input; the message says what to change."""


@dataclass(frozen=True)
class RasterizedAnnotations:
    """The result of :func:`rasterize_shapes`.

    labels : label image of the image's spatial shape.
    class_ids : class name -> label id used (empty in instance mode).
    n_painted : shapes painted; n_skipped : lines/paths and shapes wholly outside.
    """

    labels: np.ndarray
    class_ids: dict[str, int] = field(default_factory=dict)
    n_painted: int = 0
    n_skipped: int = 0


def ellipse_polygon(corners: np.ndarray, n_vertices: int = ELLIPSE_VERTICES) -> np.ndarray:
    """A polygon approximating the ellipse inscribed in napari's 4 bounding-box corners.

    ``corners`` is ``(4, 2)`` (y, x), in napari's order around the box (the box
    may be rotated). Returns ``(n_vertices, 2)``.
    """
    corners = np.asarray(corners, dtype=np.float64)
    centre = corners.mean(axis=0)
    half_a = (corners[1] - corners[0]) / 2
    half_b = (corners[3] - corners[0]) / 2
    t = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
    return centre + np.outer(np.cos(t), half_a) + np.outer(np.sin(t), half_b)


def to_pixel_coordinates(
    vertices: np.ndarray,
    shapes_scale: Sequence[float] | None = None,
    shapes_translate: Sequence[float] | None = None,
    image_scale: Sequence[float] | None = None,
    image_translate: Sequence[float] | None = None,
) -> np.ndarray:
    """Map ``(V, ndim)`` vertices from the Shapes layer's data coordinates to image pixels.

    world = data * shapes_scale + shapes_translate; pixel = (world - image_translate) / image_scale.
    Missing transforms are the identity.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    ndim = vertices.shape[1]

    def vec(values, default):
        return (
            np.full(ndim, default, float) if values is None else np.asarray(values, float)[-ndim:]
        )

    world = vertices * vec(shapes_scale, 1.0) + vec(shapes_translate, 0.0)
    return (world - vec(image_translate, 0.0)) / vec(image_scale, 1.0)


def class_ids_from_names(
    names: Sequence, mapping: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Class name -> label id: ``mapping`` where given, else 1, 2, ... in order of first use.

    Names missing from a given mapping get the next free ids, so no shape is lost.
    """
    ids: dict[str, int] = {str(k): int(v) for k, v in (mapping or {}).items()}
    for value in ids.values():
        if value < 0:
            raise AnnotationError(f"label ids must be >= 0, got {value} in the class mapping.")
    next_id = max(ids.values(), default=0) + 1
    for name in names:
        key = str(name)
        if key not in ids:
            ids[key] = next_id
            next_id += 1
    return ids


@dataclass(frozen=True)
class _Polygon:
    """One area shape ready to paint: its id, plane (leading axes) and ``(V, 2)`` yx polygon."""

    value: int
    plane: tuple[int, ...]
    yx: np.ndarray

    @property
    def yx_bounds(self) -> tuple[float, float, float, float]:
        (y0, x0), (y1, x1) = self.yx.min(axis=0), self.yx.max(axis=0)
        return y0, x0, y1, x1


def _paint(labels: np.ndarray, polygons: Sequence[_Polygon], origin: Sequence[int]) -> int:
    """Paint ``polygons`` in order into ``labels``, whose first pixel is at ``origin`` of the image.

    Returns how many polygons covered at least one pixel of ``labels``.
    """
    from skimage.draw import polygon as draw_polygon

    origin = tuple(int(o) for o in origin)
    lead, (oy, ox) = origin[:-2], origin[-2:]
    height, width = labels.shape[-2:]
    painted = 0
    for shape in polygons:
        plane = tuple(p - o for p, o in zip(shape.plane, lead))
        if any(not 0 <= p < n for p, n in zip(plane, labels.shape[:-2])):
            continue
        y0, x0, y1, x1 = shape.yx_bounds
        if y1 < oy - 0.5 or x1 < ox - 0.5 or y0 > oy + height - 0.5 or x0 > ox + width - 0.5:
            continue  # wholly outside this region
        rr, cc = draw_polygon(shape.yx[:, 0] - oy, shape.yx[:, 1] - ox, shape=(height, width))
        if rr.size:
            labels[plane][rr, cc] = shape.value
            painted += 1
    return painted


def _paint_block(polygons, background, dtype, block_info=None):
    """A dask block of the label image (see :func:`rasterize_shapes` with ``chunks``)."""
    info = block_info[None]
    shape = tuple(b - a for a, b in info["array-location"])
    labels = np.full(shape, background, dtype=dtype)
    _paint(labels, polygons, [a for a, _ in info["array-location"]])
    return labels


@dataclass(frozen=True, kw_only=True)
class RasterOptions:
    """How :func:`rasterize_shapes` turns shapes into labels.

    classes : one class name per shape (e.g. the ``class`` feature column); ids from
        ``class_ids`` (name -> id) or 1, 2, ... in order of first appearance.
        Without ``classes`` every shape gets id 1.
    instance : each painted shape gets its own id 1..N (layer order); ``classes`` ignored.
    background : the id of unannotated pixels.
    priority : class names, most important first (see the module's overlap rule).
    shapes_scale, shapes_translate, image_scale, image_translate : the layers'
        transforms (see :func:`to_pixel_coordinates`).
    dtype : default uint8 when ids fit, else uint16/uint32.
    chunks : return a lazy dask array with these chunks (e.g. 4096) instead of numpy:
        each block paints only the shapes that reach it, so a whole-slide mask is
        never in memory. ``n_painted`` then counts the area shapes that reach the
        image (without painting them).
    """

    classes: Sequence | None = None
    class_ids: Mapping[str, int] | None = None
    instance: bool = False
    background: int = 0
    priority: Sequence[str] | None = None
    shapes_scale: Sequence[float] | None = None
    shapes_translate: Sequence[float] | None = None
    image_scale: Sequence[float] | None = None
    image_translate: Sequence[float] | None = None
    dtype: Any = None
    chunks: int | Sequence[int] | None = None


def rasterize_shapes(
    shapes: Sequence[np.ndarray],
    shape_types: Sequence[str],
    image_shape: Sequence[int],
    options: RasterOptions | None = None,
    **overrides: Any,
) -> RasterizedAnnotations:
    """Paint shapes (napari's ``Shapes.data`` and ``Shapes.shape_type``) into a label image
    of ``image_shape`` (spatial axes, ``yx`` or ``zyx``).

    ``options`` (:class:`RasterOptions`), or its fields as keyword arguments, say how.
    3D shapes are painted into the z-plane of their vertices (napari draws a shape on
    one plane).
    """
    unknown = sorted(set(overrides) - {f.name for f in fields(RasterOptions)})
    if unknown:
        raise AnnotationError(f"unknown options {unknown}; see RasterOptions for the names.")
    options = replace(options or RasterOptions(), **overrides)
    image_shape = tuple(int(s) for s in image_shape)
    _check_counts(shapes, shape_types, image_shape, options)
    values, ids_by_class, order = _label_values(len(shapes), options)
    top = int(max(int(values.max(initial=0)), options.background))
    dtype = options.dtype
    if dtype is None:
        dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.uint32
    if top > np.iinfo(dtype).max:
        raise AnnotationError(f"label id {top} does not fit in {np.dtype(dtype).name}.")
    polygons = _polygons(shapes, shape_types, image_shape, values, order, options)
    if options.chunks is None:
        labels = np.full(image_shape, options.background, dtype=dtype)
        painted = _paint(labels, polygons, (0,) * len(image_shape))
        return RasterizedAnnotations(labels, ids_by_class, painted, len(shapes) - painted)
    import dask.array as da

    chunks = options.chunks
    if np.ndim(chunks) == 0:  # y and x blocks of this size, one plane deep
        chunks = (1,) * (len(image_shape) - 2) + (int(chunks),) * 2
    labels = da.map_blocks(
        _paint_block,
        polygons,
        options.background,
        np.dtype(dtype),
        chunks=da.core.normalize_chunks(chunks, image_shape),
        dtype=dtype,
        meta=np.empty((0,) * len(image_shape), dtype=dtype),
    )
    reach = sum(_reaches(shape, image_shape) for shape in polygons)
    return RasterizedAnnotations(labels, ids_by_class, reach, len(shapes) - reach)


def _check_counts(
    shapes: Sequence, shape_types: Sequence[str], image_shape: tuple, options: RasterOptions
) -> None:
    if len(shapes) != len(shape_types):
        raise AnnotationError(f"{len(shapes)} shapes but {len(shape_types)} shape types.")
    classes = options.classes
    if classes is not None and len(classes) != len(shapes) and not options.instance:
        raise AnnotationError(
            f"{len(classes)} class values for {len(shapes)} shapes; give one class per shape."
        )
    if len(image_shape) < 2:
        raise AnnotationError(
            "the image needs at least two spatial axes (y, x) to paint shapes into."
        )


def _label_values(
    n_shapes: int, options: RasterOptions
) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    """The label id of each shape, the class -> id table, and the painting order."""
    classes = options.classes
    ids_by_class: dict[str, int] = {}
    if options.instance:
        values = np.arange(1, n_shapes + 1)
    elif classes is not None:
        ids_by_class = class_ids_from_names(classes, options.class_ids)
        values = np.array([ids_by_class[str(c)] for c in classes], dtype=np.int64)
    else:
        values = np.ones(n_shapes, dtype=np.int64)
    order = np.arange(n_shapes)
    if options.priority is not None and classes is not None and not options.instance:
        rank = {str(name): i for i, name in enumerate(options.priority)}
        missing = sorted({str(c) for c in classes} - set(rank))
        if missing:
            raise AnnotationError(
                f"classes {missing} are not in the priority list {list(options.priority)}."
            )
        # paint low priority first; stable sort keeps layer order within a class
        order = np.argsort([-rank[str(c)] for c in classes], kind="stable")
    return values, ids_by_class, order


def _polygons(
    shapes: Sequence[np.ndarray],
    shape_types: Sequence[str],
    image_shape: tuple[int, ...],
    values: np.ndarray,
    order: np.ndarray,
    options: RasterOptions,
) -> list[_Polygon]:
    """The area shapes in painting order, in the image's pixel coordinates."""
    polygons: list[_Polygon] = []
    for i in order:
        kind = shape_types[i]
        if kind not in AREA_SHAPES:
            continue
        vertices = to_pixel_coordinates(
            shapes[i],
            options.shapes_scale,
            options.shapes_translate,
            options.image_scale,
            options.image_translate,
        )
        if vertices.shape[1] != len(image_shape):
            raise AnnotationError(
                f"shape {i} has {vertices.shape[1]} dimensions but the image has "
                f"{len(image_shape)} spatial axes; draw the annotations on a Shapes layer with "
                "the image's dimensions."
            )
        yx = ellipse_polygon(vertices[:, -2:]) if kind == "ellipse" else vertices[:, -2:]
        polygons.append(
            _Polygon(int(values[i]), tuple(int(round(v)) for v in vertices[0, :-2]), yx)
        )
    return polygons


def _reaches(shape: _Polygon, image_shape: Sequence[int]) -> bool:
    """Whether the shape's plane and bounding box meet the image (it may still cover no pixel centre)."""
    if any(not 0 <= p < n for p, n in zip(shape.plane, image_shape[:-2])):
        return False
    y0, x0, y1, x1 = shape.yx_bounds
    height, width = image_shape[-2:]
    return not (y1 < -0.5 or x1 < -0.5 or y0 > height - 0.5 or x0 > width - 0.5)
