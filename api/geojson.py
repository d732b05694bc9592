"""MySQL/MariaDB's spatial columns, served as GeoJSON geometries (RFC 7946):
read with ``ST_AsGeoJSON``, written with ``ST_GeomFromGeoJSON``.

A geometry is checked here before it is written: MariaDB's
``ST_GeomFromGeoJSON`` answers NULL, not an error, for an object it cannot
read, which a nullable column would store without a word.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

# information_schema's DATA_TYPE of each spatial type, which reflection does not know.
SPATIAL_TYPES = frozenset(
    {
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
    }
)

# How deep each geometry's coordinates nest above its positions.
NESTING = {
    "Point": 0,
    "LineString": 1,
    "MultiPoint": 1,
    "Polygon": 2,
    "MultiLineString": 2,
    "MultiPolygon": 3,
}
MAX_COLLECTION_DEPTH = 4  # collections of collections


class Geometry(sa.TypeDecorator[Any]):
    """A spatial column, as the GeoJSON object of its geometry."""

    impl = sa.JSON
    cache_ok = True

    def column_expression(self, column: Any) -> Any:
        return sa.func.ST_AsGeoJSON(column, type_=self)

    def bind_expression(self, bindvalue: Any) -> Any:
        return sa.func.ST_GeomFromGeoJSON(bindvalue, type_=self)


def checked(value: Any, depth: int = 0) -> dict[str, Any]:
    """``value`` if it is a GeoJSON geometry; ValueError else."""
    if not isinstance(value, dict):
        raise ValueError("a GeoJSON geometry")
    kind = value.get("type")
    if kind == "GeometryCollection" and depth < MAX_COLLECTION_DEPTH:
        members = value.get("geometries")
        if not isinstance(members, list):
            raise ValueError("a GeoJSON GeometryCollection, with its geometries")
        for member in members:
            checked(member, depth + 1)
        return value
    if kind not in NESTING or not _nested(value.get("coordinates"), NESTING[kind]):
        raise ValueError(f"a GeoJSON geometry ({', '.join(NESTING)}) with its coordinates")
    return value


def _nested(coordinates: Any, depth: int) -> bool:
    """Whether ``coordinates`` are lists ``depth`` deep of positions ([x, y] or [x, y, z])."""
    if depth == 0:
        return (
            isinstance(coordinates, list)
            and len(coordinates) in (2, 3)
            and all(type(n) in (int, float) for n in coordinates)
        )
    return isinstance(coordinates, list) and all(_nested(c, depth - 1) for c in coordinates)
