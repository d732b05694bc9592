"""Column names as a query writes them: plain, or in double quotes, as
PostgREST lets a client quote a name that holds what the grammar splits on
(``"a.b"``, ``"x,y"``, ``"Last Name"``: ``select=id,"a.b"``,
``order="a.b".desc``, ``or=("a.b".eq.1,id.eq.2)``)."""

from __future__ import annotations


def unquoted(name: str) -> str:
    """``name`` without the double quotes around it, if it has them."""
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name


def split_name(text: str, separator: str) -> tuple[str, str, str]:
    """``text.partition(separator)``, but a leading quoted name is one whole,
    whatever it holds."""
    if text.startswith('"'):
        end = text.find('"', 1)
        if end > 0:
            name, rest = text[: end + 1], text[end + 1 :]
            if not rest or rest.startswith(separator):
                return name, rest[: len(separator)], rest[len(separator) :]
    return text.partition(separator)


def split_outside_quotes(text: str, separator: str) -> list[str]:
    """``text.split(separator)``, but not inside double quotes. Linear."""
    if '"' not in text:
        return text.split(separator)
    parts, start, quoted = [], 0, False
    for position, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:position])
            start = position + 1
    parts.append(text[start:])
    return parts
