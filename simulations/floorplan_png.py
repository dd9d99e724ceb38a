"""Draws a venue's floors to a PNG with matplotlib: walkable area, walls, zones, anchors, connectors.

Used by ``instore venue show --png`` and, with a scalar overlay, by the deployment planner.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from positioning.venue import Venue, walkable_shape

if TYPE_CHECKING:
    from matplotlib.axes import Axes

ZONE_COLOURS: Final[Mapping[str, str]] = {
    "store": "#8ecae6",
    "counter": "#ffb703",
    "corridor": "#e9ecef",
    "entrance": "#90be6d",
    "checkout": "#f94144",
    "area": "#cdb4db",
}
FIGURE_WIDTH_IN: Final = 9.0  # inches per floor panel
DPI: Final = 110

FloorOverlay = Callable[["Axes", str], None]


def _poly_patches(geom: Any) -> list[Any]:
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    polys = list(getattr(geom, "geoms", [geom]))
    patches = []
    for poly in polys:
        if poly.is_empty or poly.geom_type != "Polygon":
            continue
        verts: list[tuple[float, float]] = []
        codes: list[int] = []
        for ring in [poly.exterior, *poly.interiors]:
            coords = list(ring.coords)
            verts.extend(coords)
            codes.extend([int(MplPath.MOVETO)] + [int(MplPath.LINETO)] * (len(coords) - 2) + [int(MplPath.CLOSEPOLY)])
        patches.append(PathPatch(MplPath(verts, codes)))
    return patches


def draw_floor(ax: Axes, venue: Venue, floor_id: str, labels: bool = True) -> None:
    """Draw one floor onto ``ax`` in venue metres (x east, y north)."""
    from matplotlib.patches import Polygon as MplPolygon

    floor = venue.floor(floor_id)
    ax.add_patch(MplPolygon(floor.outline, closed=True, facecolor="#495057", edgecolor="black", lw=1.2))
    for patch in _poly_patches(walkable_shape(venue, floor_id)):
        patch.set_facecolor("#ffffff")
        patch.set_edgecolor("none")
        ax.add_patch(patch)
    zones = sorted(venue.zones_on(floor_id), key=lambda z: ("corridor", "area", "store", "entrance",
                                                            "checkout", "counter").index(z.kind))
    for z in zones:
        colour = ZONE_COLOURS.get(z.kind, "#adb5bd")
        ax.add_patch(MplPolygon(z.polygon, closed=True, facecolor=colour, edgecolor="#343a40", lw=0.6,
                                alpha=0.45))
        if labels and z.kind in ("store", "counter", "entrance", "checkout", "area"):
            xs = [p[0] for p in z.polygon]
            ys = [p[1] for p in z.polygon]
            cx, cy = sum(xs) / len(xs), sum(ys) / len(ys)
            size = 5 if z.kind == "counter" else 6
            if z.kind == "store" and (max(xs) - min(xs)) > 30:  # a hall: label its top edge, not over counters
                cy = max(ys) - 1.5
            ax.text(cx, cy, z.name, ha="center", va="center", fontsize=size, rotation=0, clip_on=True)
    for a in venue.anchors_on(floor_id):
        ax.plot(a.x, a.y, marker="^", color="#1d3557", markersize=4, linestyle="none")
    for b in venue.beacons_on(floor_id):
        ax.plot(b.x, b.y, marker="o", color="#e63946", markersize=3, linestyle="none")
    for c in venue.connectors:
        for end in (c.a, c.b):
            if end.floor == floor_id:
                marker = {"escalator": "s", "lift": "D", "stairs": "P"}.get(c.kind, "s")
                ax.plot(end.x, end.y, marker=marker, color="#6a4c93", markersize=6, linestyle="none")
                if labels:
                    ax.text(end.x, end.y + 1.2, c.id, fontsize=5, ha="center", color="#6a4c93")
    for p in venue.pois:
        if p.floor == floor_id:
            ax.plot(p.x, p.y, marker="*", color="#2a9d8f", markersize=6, linestyle="none")
    xs = [p[0] for p in floor.outline]
    ys = [p[1] for p in floor.outline]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(min(ys) - 1, max(ys) + 1)
    ax.set_aspect("equal")
    ax.set_title(f"{venue.info.name} — floor {floor.id}" + (f": {floor.name}" if floor.name else ""), fontsize=9)
    ax.set_xlabel("x (m, east)", fontsize=7)
    ax.set_ylabel("y (m, north)", fontsize=7)
    ax.tick_params(labelsize=6)


def _height_over_width(venue: Venue, floor_id: str) -> float:
    outline = venue.floor(floor_id).outline
    xs = [p[0] for p in outline]
    ys = [p[1] for p in outline]
    return max((max(ys) - min(ys)) / max(1e-6, max(xs) - min(xs)), 0.3)


def render_floors(venue: Venue, out: Path, floors: list[str] | None = None,
                  overlay: FloorOverlay | None = None) -> Path:
    """Write a PNG with one panel per floor (stacked vertically), optionally with an overlay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    floor_ids = floors or list(venue.floor_ids)
    aspect = max(_height_over_width(venue, fid) for fid in floor_ids)
    fig, axes = plt.subplots(len(floor_ids), 1, figsize=(FIGURE_WIDTH_IN, FIGURE_WIDTH_IN * aspect * len(floor_ids)
                                                             + 0.6), squeeze=False)
    for ax, fid in zip(axes[:, 0], floor_ids, strict=True):
        draw_floor(ax, venue, fid)
        if overlay is not None:
            overlay(ax, fid)
    legend = [Line2D([], [], marker="^", color="#1d3557", linestyle="none", label="gateway"),
              Line2D([], [], marker="o", color="#e63946", linestyle="none", label="beacon"),
              Line2D([], [], marker="s", color="#6a4c93", linestyle="none", label="connector"),
              Line2D([], [], marker="*", color="#2a9d8f", linestyle="none", label="point of interest")]
    fig.legend(handles=legend, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out
