"""The ASGI front door: bodies over the limit are refused before they are read."""

from tests.support import assert_problem


def test_a_body_over_the_limit_is_413_before_it_is_read(http):
    response = http.post("/mytable/", content=b"x" * (64 * 1024 + 1))
    assert_problem(response, 413)
