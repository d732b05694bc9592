"""Calls of stored routines, as PostgREST's ``/rpc/{name}``: ``POST`` with the
arguments as a JSON object, or ``GET`` with them in the query string for a
routine that does not declare MODIFIES SQL DATA."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pyramid.httpexceptions import HTTPMethodNotAllowed
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from api import formats
from api.columns import mapping
from api.errors import BadRequest, RoutineNotFound
from api.resources import RoutineCall
from api.routines import Routine
from api.sql.routines import Called, call_routine
from api.validation import Unprocessable, form_fields, json_body
from api.views.bodies import ROW_TYPES
from api.views.responses import json_response, preferences, query_params, rows_response, shaped

# Parameters that shape a result in SQL, which a CALL's rows cannot be put through.
RESULT_PARAMETERS = frozenset({"select", "order", "limit", "offset", "columns"})


@view_config(context=RoutineCall, request_method=("GET", "HEAD"))
async def call_to_read(context: RoutineCall, request: Request) -> Response:
    routine = context.routine
    media_type = formats.negotiate_among(request, formats.WRITTEN_OFFERS)
    if routine.modifies_data:
        raise HTTPMethodNotAllowed(
            "This routine declares MODIFIES SQL DATA: call it with POST.",
            headers={"Allow": ", ".join(routine.allowed_methods)},
        )
    arguments = _query_arguments(routine, request)
    called = await call_routine(request.dbsession, routine, arguments, _max_rows(request))
    return _answer(request, routine, called, media_type)


@view_config(context=RoutineCall, request_method="POST", permission="write")
async def call_to_write(context: RoutineCall, request: Request) -> Response:
    routine = context.routine
    # Before the routine can write: a 406 leaves nothing written.
    media_type = formats.negotiate_among(request, formats.WRITTEN_OFFERS)
    _refuse_result_parameters(query_params(request))  # a POST's arguments are in its body
    if request.content_type == formats.FORM:  # text, as a GET's query string
        arguments = _text_arguments(routine, form_fields(request))
    else:
        body = json_body(request, ROW_TYPES)
        if "params=single-object" in preferences(request) and len(routine.parameters) == 1:
            body = {str(routine.parameters[0].name): formats.dump_json(body).decode()}
        arguments = _body_arguments(routine, body)
    called = await call_routine(request.dbsession, routine, arguments, _max_rows(request))
    if "tx=rollback" in preferences(request):
        request.tm.doom()  # PostgREST's dry run: answered, then rolled back
    return _answer(request, routine, called, media_type)


def _max_rows(request: Request) -> int:
    """The most rows a call answers: PostgREST's db-max-rows bounds a function's too."""
    return request.registry.api_settings.page_limit_max


def _check_names(routine: Routine, given: list[str]) -> None:
    """The arguments name the routine's parameters, each once (else PGRST202)."""
    expected = [str(column.name) for column in routine.parameters]
    if sorted(given) != sorted(expected):
        raise RoutineNotFound(
            f"No routine {routine.name}({', '.join(given)}) is served",
            hint=f"Its parameters: {routine.signature}",
        )


def _refuse_result_parameters(names: Iterable[str]) -> None:
    """Query parameters that would select, filter, order or page a CALL's
    rows: a 400, never dropped unseen (a filter dropped answers wrong rows)."""
    refused = sorted(names)
    if refused:
        raise BadRequest(
            "A routine's result cannot be selected, filtered, ordered or paged "
            f"({', '.join(refused)}): MySQL cannot query the rows of a CALL",
            parameter=refused[0],
        )


def _query_arguments(routine: Routine, request: Request) -> list[Any]:
    """The arguments of a GET, from the query string. Beside all of the
    routine's parameters, another is a filter (as PostgREST reads it); beside
    some, it is taken for a misspelt argument (_check_names' 404)."""
    params = query_params(request)
    named = {str(column.name) for column in routine.parameters}
    others = set(params) - named
    if others & RESULT_PARAMETERS or (others and named <= set(params)):
        _refuse_result_parameters(others)
    return _text_arguments(routine, params)


def _text_arguments(routine: Routine, params: Mapping[str, str]) -> list[Any]:
    """The arguments given as text, each parsed by its parameter's type."""
    _check_names(routine, list(params))
    arguments = []
    for column in routine.parameters:
        try:
            arguments.append(mapping(column).from_text(column, params[str(column.name)]))
        except (ValueError, OverflowError) as exc:
            raise BadRequest(f"{column.name} must be {exc}", parameter=str(column.name)) from None
    return arguments


def _body_arguments(routine: Routine, body: Any) -> list[Any]:
    """The arguments of a POST, from a JSON object, each checked by its parameter's type."""
    if not isinstance(body, dict):
        raise Unprocessable([{"field": "", "message": "the body must be a JSON object"}])
    _check_names(routine, list(body))
    arguments, errors = [], []
    for column in routine.parameters:
        value = body[str(column.name)]
        try:
            arguments.append(None if value is None else mapping(column).from_json(column, value))
        except (ValueError, OverflowError) as exc:
            errors.append({"field": str(column.name), "message": f"must be {exc}"})
    if errors:
        raise Unprocessable(errors)
    return arguments


def _answer(request: Request, routine: Routine, called: Called, media_type: str) -> Response:
    """A function's value; a procedure's rows (one as an object, under the
    singular media type), else its OUT parameters as an object, else 204.
    As CSV, each is a table: a value is one cell under the function's name."""
    if called.rows is not None:
        rows = called.rows
        shown = f"0-{len(rows) - 1}" if rows else "*"
        total = "*" if called.more_rows else len(rows)
        headers = [("Content-Range", f"{shown}/{total}")]
        if media_type == formats.CSV:
            return formats.csv_response(rows, headers)
        return rows_response(request, rows, headers)
    if routine.kind == "FUNCTION":
        answer = called.value
        table = [{routine.name: answer}]
    elif called.outputs is not None:
        answer = called.outputs
        table = [answer]
    else:
        response = Response(status=204)
        response.content_type = None
        return response
    if media_type == formats.CSV:
        return formats.csv_response(table, [])
    return json_response(*shaped(request, answer))
