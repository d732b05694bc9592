"""The SQL: statement builders (``statements`` for lists, over the filters'
``conditions``; ``keys`` for rows by key; ``write_statements``), writes in a
request's transaction (``writes``, ``filter_writes``) and the writes a group
commits (``grouped``).

Statements are built once per table, or per query shape, and reused; every
value a client sends is a bound parameter.
"""

# The bound of each cache of statements (and of their compilations) by shape:
# clients pick the shapes.
STATEMENT_CACHE_SIZE = 256
