"""What the API knows of each table it serves, built and checked once at start-up.

A ``Description`` holds a collection's key (any columns, one or several),
its version column if it has one, whether it can be written (a view cannot),
and its relations: each foreign key gives the parent's items a child
collection. Views, queries and OpenAPI read it; none of them assumes one
table's shape. Tables come from two places: declared in code
(``config.add_collection``) and reflected from the database
(``api.tables``), once, before any worker forks.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from pyramid.config import Configurator
from pyramid.registry import Registry
from sqlalchemy.sql.util import ClauseAdapter

from api.charsets import cannot_hold, charset_of
from api.columns import (
    GEOJSON,
    mapping,
    parse_text,
    single_value_parser,
    to_text,
)
from api.settings import Settings

# A collection is named as its table is, in its own case (Customers) and
# with what a path segment carries encoded ("Order Details", "café"); but
# not the characters that PostgREST's grammar splits a select or a
# parameter on, and not a first "_": such names belong to the API itself
# (/__heartbeat__), so a table can never shadow them.
COLLECTION_NAME = re.compile(r"[^\W_][^/\\.,()\":!*+\x00-\x1f\x7f]{0,63}\Z")
COLLECTION_NAME_RULE = (
    "a collection name starts with a letter or a digit, holds none of "
    '/ \\ . , ( ) " : ! * + and no control character, and is at most 64 characters'
)
# The API's own paths: stored routines (PostgREST's /rpc/), its
# documentation and its metrics; no collection takes them.
RESERVED = frozenset({"rpc", "docs", "metrics"})
# What a path segment may hold as it is (RFC 3986 pchar), as Pyramid quotes one.
SEGMENT_SAFE = "~!$&'()*+,;=:@"


class StartupError(ValueError):
    """A table the API cannot serve as configured; the message says why."""


@dataclasses.dataclass(frozen=True, eq=False)
class Relation:
    """A foreign key seen from its parent: the parent's items have the child
    rows whose ``columns`` hold the parent's ``referred`` values."""

    name: str  # the child collection's name under a parent item
    child: Description
    columns: tuple[sa.Column[Any], ...]  # of the child, in the key's order
    referred: tuple[sa.Column[Any], ...]  # of the parent


@dataclasses.dataclass(frozen=True, eq=False)
class Link:
    """How rows of another collection embed in a row of this one (``select=*,name(*)``).

    ``one``: this row's foreign key (``near``) holds the key (``far``) of one
    target row. ``many``: the target rows' foreign key (``far``) holds this
    row's key (``near``). ``many_to_many``: rows of a junction table join the
    two: its columns ``far`` hold this row's ``near``, and each of its
    ``through`` pairs (junction column, target column) joins a target row.
    """

    kind: str  # "one", "many" or "many_to_many"
    target: Description
    near: tuple[sa.Column[Any], ...]
    far: tuple[sa.Column[Any], ...]
    hints: tuple[str, ...]  # what a select names to pick this link: key columns first
    junction: sa.Table | None = None
    through: tuple[tuple[sa.Column[Any], sa.Column[Any]], ...] = ()


def of_own_alias(link: Link) -> Callable[[Any], Any]:
    """For a subquery of ``link``'s target rows inside a statement of the
    parent's: where the two are one table (a row's parent row, in a table
    that refers to itself), an expression made over an alias of the target,
    else as it is, so that the subquery's rows are not the parent's."""
    target = link.target.table
    if all(column.table is not target for column in link.near):
        return lambda expression: expression
    return ClauseAdapter(target.alias()).traverse


def is_spatial(column: Any) -> bool:
    """Whether ``column`` is a table's spatial column, served as a GeoJSON
    geometry (not a select's expression over one: a cast, a JSON path)."""
    try:
        return isinstance(column, sa.Column) and mapping(column) is GEOJSON
    except KeyError:  # a type without a mapping, on a table that is not served
        return False


@dataclasses.dataclass(eq=False)
class Description:
    """A served table and what the API knows of it (``describe(table)``)."""

    name: str
    table: sa.Table
    key: tuple[sa.Column[Any], ...]  # empty: a collection without item URLs
    version: sa.Column[Any] | None
    read_only: bool
    # Whether an UPDATE's result can be known without reading the row again:
    # a table declared in code (no triggers of its own), of no column the
    # database computes or rounds (generated, ON UPDATE, FLOAT, CHAR).
    writes_known: bool = False
    # The engine of a table that cannot undo a write (MyISAM), else None:
    # it takes no write that a failure part way, or a rollback, would leave
    # half done.
    engine_without_transactions: str | None = None
    children: dict[str, Relation] = dataclasses.field(default_factory=dict)
    links: dict[str, list[Link]] = dataclasses.field(default_factory=dict)  # by target name

    @property
    def allowed_methods(self) -> tuple[str, ...]:
        if self.read_only:
            return ("GET", "HEAD")
        return ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

    def parse_key(self, parts: list[str]) -> Any:
        """The key that an item URL's values (decoded) name: a value, or a
        tuple of values for a composite key; None when they name no row."""
        if len(parts) != len(self.key):
            return None
        values = []
        for column, part in zip(self.key, parts, strict=True):
            if cannot_hold(column, part):  # no row holds it
                return None
            try:
                values.append(parse_text(column, part))
            except ValueError:
                return None
        return values[0] if len(values) == 1 else tuple(values)

    # ``parse_key`` for a key of one column, made once (it is on the path of
    # every point read): its value, or None for text that names no row.
    parse_single_key: Callable[[str], Any] = dataclasses.field(init=False, repr=False)

    # Whether a column is spatial: its rows may be had as GeoJSON features.
    spatial: bool = dataclasses.field(init=False, repr=False)

    # The columns ``select=*``, or no select, shows: all but MySQL's
    # INVISIBLE ones, which its own ``SELECT *`` leaves out too.
    star: tuple[sa.Column[Any], ...] = dataclasses.field(init=False, repr=False)
    invisible: frozenset[str] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.key) == 1:
            self.parse_single_key = _single_key_parser(self.key[0])
        self.spatial = any(is_spatial(column) for column in self.table.columns)
        self.star = tuple(c for c in self.table.columns if not c.info.get("invisible"))
        self.invisible = frozenset(str(c.name) for c in self.table.columns if c not in self.star)

    def visible(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` as read or written whole, as ``select=*`` shows it."""
        if not self.invisible:
            return row
        return {name: value for name, value in row.items() if name not in self.invisible}

    def key_of(self, row: dict[str, Any]) -> Any:
        if len(self.key) == 1:
            return row[self.key[0].name]
        return tuple(row[column.name] for column in self.key)

    def key_segment(self, row: dict[str, Any]) -> str:
        """The URL segment of ``row``'s item: its key values as text, each
        percent-encoded (in a composite key, a comma in a value too), joined
        by commas."""
        if len(self.key) == 1 and type(value := row[self.key[0].name]) is int:
            return str(value)  # most keys: nothing to encode, and quote() is slow
        safe = SEGMENT_SAFE if len(self.key) == 1 else SEGMENT_SAFE.replace(",", "")
        return ",".join(
            quote(str(to_text(column, row[column.name])), safe=safe) for column in self.key
        )


def _single_key_parser(column: sa.Column[Any]) -> Callable[[str], Any]:
    """``single_value_parser`` of a key's column, and None for text its
    character set cannot hold (no row holds it); that check is added only
    where it can say so, as this is every point read's path."""
    parse = single_value_parser(column)
    if charset_of(column) is None:
        return parse
    return lambda text: None if cannot_hold(column, text) else parse(text)


def unique_keys(table: sa.Table) -> list[tuple[str | None, tuple[sa.Column[Any], ...]]]:
    """The table's unique keys, each with its name: the primary key (which
    MySQL names ``PRIMARY``), unique constraints and unique indexes."""
    keys: list[tuple[str | None, tuple[sa.Column[Any], ...]]] = [
        ("PRIMARY", tuple(table.primary_key.columns))
    ]
    uniques: list[sa.UniqueConstraint | sa.Index] = [
        *(c for c in table.constraints if isinstance(c, sa.UniqueConstraint)),
        *(index for index in table.indexes if index.unique),
    ]
    for unique in uniques:
        name = unique.name if isinstance(unique.name, str) else None  # unnamed: SQLite's
        keys.append((name, tuple(unique.columns)))
    return keys


def describe(table: sa.Table) -> Description:
    """What the API knows of ``table``, a served table."""
    description: Description = table.info["api"]
    return description


def _describe(table: sa.Table, name: str, version_name: str, read_only: bool) -> Description:
    if not COLLECTION_NAME.match(name):
        raise StartupError(f"table {table.name!r}: {COLLECTION_NAME_RULE}")
    if name in RESERVED:
        raise StartupError(f"table {table.name!r}: /{name} is the API's own path")
    for column in table.columns:
        try:
            mapping(column)
        except KeyError as exc:
            raise StartupError(f"{exc.args[0]}, which the API has no JSON mapping for") from None
    key = tuple(table.primary_key.columns)
    for column in key:
        if not mapping(column).orderable:
            raise StartupError(f"{table.name}.{column.name}: a key of this type is not supported")
    version = table.columns.get(version_name)
    if version is not None and mapping(version).kind != "integer":
        version = None
    known = "reflected" not in table.info and not any(
        column.computed is not None
        or column.server_onupdate is not None
        or column.onupdate is not None
        or isinstance(column.type, sa.Float | sa.CHAR)
        for column in table.columns
    )
    engine = table.info.get("engine_without_transactions")
    return Description(name, table, key, version, read_only, known, engine)


def add_collection(
    config: Configurator,
    table: sa.Table,
    name: str | None = None,
    read_only: bool = False,
    schema: str | None = None,
) -> None:
    """Directive: serve ``table`` as the collection ``/{name}/`` of the
    default schema, or of another (``api.schemas``). Its version column is
    the one ``table.info["version_column"]`` names, else the setting
    ``api.version_column``'s, if the table has one."""
    name = name or table.name
    settings: Settings = config.registry.api_settings
    version_name = table.info.get("version_column", settings.version_column)
    description = _describe(table, name, version_name, read_only)
    registry = config.registry
    collections = (
        registry.api_collections
        if schema is None
        else registry.api_other_schemas.setdefault(schema, {})
    )
    if name in collections:
        raise StartupError(f"two tables are served as {name!r}")
    table.info["api"] = description
    collections[name] = table


def _relations(parent: Description, served: list[Description]) -> Iterable[Relation]:
    """The child collections of ``parent``'s items.

    A child table with one foreign key to the parent is named as its own
    collection (``/country/1/city/``); one with several is named after each
    key's columns (``/language/1/film_by_language_id/`` and
    ``/language/1/film_by_original_language_id/``).
    """
    for child in served:
        keys = [
            fk for fk in child.table.foreign_key_constraints if fk.referred_table is parent.table
        ]
        for constraint in keys:
            columns = tuple(constraint.columns)
            referred = tuple(element.column for element in constraint.elements)
            name = child.name
            if len(keys) > 1:
                name = f"{child.name}_by_{'_'.join(str(c.name) for c in columns)}"
            yield Relation(name, child, columns, referred)


def _hints(constraint: sa.ForeignKeyConstraint) -> tuple[str, ...]:
    """A foreign key's names in a select (``language!original_language_id``):
    its columns, joined by "_", and its constraint's name."""
    columns = "_".join(str(c.name) for c in constraint.columns)
    return (columns, constraint.name) if isinstance(constraint.name, str) else (columns,)


def _links(parent: Description, served: list[Description]) -> Iterable[Link]:
    """Every way rows of a served collection embed in ``parent``'s rows."""
    by_table = {description.table: description for description in served}
    for constraint in parent.table.foreign_key_constraints:
        target = by_table.get(constraint.referred_table)
        if target is not None:
            referred = tuple(element.column for element in constraint.elements)
            # InnoDB lets a foreign key refer to columns that are no unique
            # key: several rows may be the one it names, so they come as many.
            unique = any(set(referred) == set(key) for _, key in unique_keys(target.table))
            kind = "one" if unique else "many"
            yield Link(kind, target, tuple(constraint.columns), referred, _hints(constraint))
    for child in served:
        keys = child.table.foreign_key_constraints
        to_parent = [fk for fk in keys if fk.referred_table is parent.table]
        for constraint in to_parent:
            referred = tuple(element.column for element in constraint.elements)
            columns = tuple(constraint.columns)
            yield Link("many", child, referred, columns, _hints(constraint))
            # A junction: both keys within its primary key (PostgREST's rule).
            key = set(child.table.primary_key.columns)
            if not set(columns) <= key:
                continue
            for other in keys:
                target = by_table.get(other.referred_table)
                if other is constraint or target is None or not set(other.columns) <= key:
                    continue
                through = tuple((element.parent, element.column) for element in other.elements)
                hints = (*_hints(other), str(child.table.name))
                yield Link("many_to_many", target, referred, columns, hints, child.table, through)


def _target_names(link: Link) -> tuple[str, ...]:
    """What a select names to embed by ``link``: the target's name; for the
    row a one-column foreign key points at, that column's name too, as
    PostgREST takes it (``supervisor:supervisor_id(name)``). In a table that
    refers to itself, its own name embeds the rows below a row (PostgREST's
    default) and only the column the row above."""
    names: tuple[str, ...] = (link.target.name,)
    if link.kind == "one" and link.target.table is link.near[0].table:
        names = ()
    if link.kind == "one" and len(link.near) == 1:
        names += (str(link.near[0].name),)
    return names


def link_relations(registry: Registry) -> None:
    """Give each collection its child collections and its embeddable links,
    to those of its own schema; two child collections of one name stop
    start-up."""
    for collections in (registry.api_collections, *registry.api_other_schemas.values()):
        _link_within([describe(table) for table in collections.values()])


def _link_within(served: list[Description]) -> None:
    for parent in served:
        parent.links = {}
        for link in _links(parent, served):
            for name in _target_names(link):
                named = parent.links.setdefault(name, [])
                if not any(other is link for other in named):
                    named.append(link)
        parent.children = {}
        for relation in _relations(parent, served):
            if relation.name in parent.children:
                raise StartupError(
                    f"{parent.name}: two foreign keys give child collections "
                    f"named {relation.name!r}"
                )
            parent.children[relation.name] = relation


def includeme(config: Configurator) -> None:
    config.registry.api_collections = {}
    config.registry.api_other_schemas = {}  # by name: each one's collections
    config.add_directive("add_collection", add_collection)
    # After every include has added its tables: relations join any two of them.
    config.action(("api.collections", "relations"), link_relations, args=(config.registry,))
