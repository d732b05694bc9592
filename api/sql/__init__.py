"""The SQL: statement builders (``statements``) and writes in a request's transaction (``writes``).

Statements are built once per table, or per query shape, and reused; every
value a client sends is a bound parameter.
"""
