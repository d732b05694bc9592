"""The SQL: statement builders (``statements`` for lists, ``keys`` for rows by
key, ``write_statements``) and writes in a request's transaction (``writes``).

Statements are built once per table, or per query shape, and reused; every
value a client sends is a bound parameter.
"""

# The bound of each cache of statements (and of their compilations) by shape:
# clients pick the shapes.
STATEMENT_CACHE_SIZE = 256
