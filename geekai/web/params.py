"""Request input parsed in one place: a value the app cannot use is a 400 that names it.

Ids, page limits, times and JSON bodies come from anyone who can reach an admin URL; what
SQLite, datetime or the JSON parser would choke on (an id past 64 bits, a date past 9999, a
lone surrogate, an array nested 100 000 deep) is refused here, before it reaches them.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from flask import jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.routing import BaseConverter

# Row ids are 64-bit signed integers in SQLite and PostgreSQL.
MAX_ID = 2**63 - 1
# Deeper JSON than any request of this API needs; the parser's own limit ends in a RecursionError.
MAX_JSON_DEPTH = 32


class BadParameter(BadRequest):
    """400: the parameter `name` is unusable; the message says what it must be."""

    def __init__(self, name: str, expected: str):
        super().__init__(f"{name} must be {expected}")
        self.parameter = name


def whole_number(name: str, value, minimum: int = 0, maximum: int = MAX_ID) -> int:
    """`value` (text from a URL, or a JSON number) as an int in [minimum, maximum]."""
    expected = f"a whole number from {minimum} to {maximum}"
    if isinstance(value, bool):
        raise BadParameter(name, expected)
    if isinstance(value, str):
        text = value.strip()
        # isdigit() also accepts "²" and other digits int() refuses; 20 digits pass every id.
        if not (text.isascii() and text.isdigit()) or len(text) > 20:
            raise BadParameter(name, expected)
        value = int(text)
    if not isinstance(value, int) or not minimum <= value <= maximum:
        raise BadParameter(name, expected)
    return value


def int_arg(name: str, default: int | None = None, minimum: int = 0, maximum: int = MAX_ID) -> int | None:
    """The query parameter `name` as a whole number, or `default` when it is absent or empty."""
    value = request.args.get(name, "")
    if value == "":
        return default
    return whole_number(name, value, minimum, maximum)


def limit_arg(default: int, most: int) -> int:
    """?limit=: a page size, clamped to [1, most]."""
    return min(most, max(1, int_arg("limit", default, maximum=MAX_ID)))


def time_arg(name: str, day_zone: timezone, end_of_day: bool = False) -> datetime | None:
    """A query parameter as naive UTC: ISO time (Z or offset; naive = UTC) or a date (a day in
    `day_zone`). A date is that day's first moment, or with `end_of_day` the next day's."""
    value = request.args.get(name, "").strip()
    if not value:
        return None
    expected = "an ISO 8601 time such as 2024-09-10T08:00:00Z or a date such as 2024-09-10, in the years 1 to 9998"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+", 1) if "T" in value else value)
        if "T" not in value and len(value) <= 10:  # a date: that day in day_zone
            moment = moment.replace(tzinfo=day_zone) + (timedelta(days=1) if end_of_day else timedelta())
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):  # OverflowError: past 9999-12-31 or before 0001-01-01 in UTC
        raise BadParameter(name, expected) from None
    return moment


def text_field(body: dict, name: str, most: int, default: str = "") -> str:
    """A string member of a JSON object or form, at most `most` characters."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > most:
        raise BadParameter(name, f"a string of at most {most} characters")
    return value


def last_event_id() -> int | None:
    """The id an EventSource last saw (its reconnect header, or ?last_id=).

    Not a number at all: None (a fresh snapshot, as for a first visit). Digits past 64 bits:
    a 400, since no event ever had that id.
    """
    for name, value in (("Last-Event-ID", request.headers.get("Last-Event-ID")), ("last_id", request.args.get("last_id"))):
        if value:
            return whole_number(name, value) if value.isascii() and value.isdigit() else None
    return None


class IdConverter(BaseConverter):
    """<id(name="order_id"):order_id>: a row id in the path; past 64 bits a 400 naming it."""

    regex = r"\d+"
    part_isolating = True

    def __init__(self, map, name: str = "id"):
        super().__init__(map)
        self.name = name

    def to_python(self, value: str) -> int:
        return whole_number(self.name, value)

    def to_url(self, value) -> str:
        return str(int(value))


class CheckedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing bodies that would crash the views: too deep, or lone surrogates."""

    def loads(self, s, **kwargs):
        try:
            value = json.loads(s, **kwargs)
        except RecursionError:
            raise BadParameter("the JSON body", f"nested at most {MAX_JSON_DEPTH} levels deep") from None
        check_json(value)
        return value


def check_json(value) -> None:
    """Raise BadParameter for nesting past MAX_JSON_DEPTH or a string that is not valid Unicode."""
    stack = [(value, "the JSON body", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadParameter("the JSON body", f"nested at most {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, str):
            _check_text(where, item)
        elif isinstance(item, dict):
            for key, member in item.items():
                _check_text(f"a key in {where}", key)
                stack.append((member, key if depth == 0 else f"{where}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((member, f"{where}[{n}]", depth + 1) for n, member in enumerate(item))


def _check_text(where: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # "\ud800" in JSON: a lone surrogate, which no database can store
        raise BadParameter(where, "valid Unicode text (it holds a lone surrogate such as \\ud800)") from None


def init_app(app) -> None:
    """The id converter, the checked JSON parser, and JSON errors for the API."""
    app.url_map.converters["id"] = IdConverter
    app.json = CheckedJSONProvider(app)
    app.register_error_handler(BadParameter, _bad_parameter)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _api_error)


def _bad_parameter(error: BadParameter):
    response = jsonify(error=error.description, parameter=error.parameter)
    response.status_code = 400
    return response


def _csrf_error(error: CSRFError):
    if not _is_api():
        return error
    response = jsonify(error=f"CSRF check failed: {error.description} Send the page's csrf_token "
                             "(X-CSRFToken header) or Authorization: Bearer <API_TOKEN>.")
    response.status_code = 400
    return response


def _api_error(error: HTTPException):
    """Under /api/, errors are JSON like every other answer there."""
    if error.response is not None or error.code is None or not _is_api():
        return error
    response = jsonify(error=error.description)
    response.status_code = error.code
    for name, value in error.get_headers():  # Allow for a 405, Retry-After, ...
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _is_api() -> bool:
    return request.path.startswith("/api/")
