"""The figN.json format (a figure's result): validation, and reading a saved one back.

A result is trusted only after `validate_result`: --replot and CLAIMS.md read files from disk that
may be truncated, hand-edited, copied from another figure or written by an older version, and
each such file must give one line naming the file and the problem, never a traceback."""
from __future__ import annotations

import json
import math
from pathlib import Path

MODES = ("full", "quick", "smoke", "paper")
VERDICTS = ("holds", "fails", "inconclusive")
_REQUIRED = ("figure", "title", "paper", "mode", "seed", "params", "series", "claims", "runtime_s", "versions")
_CLAIM_KEYS = {"name", "statement", "value", "threshold", "holds"}
_CLAIM_OPTIONAL = {"ci", "verdict"}
_SERIES_ARRAYS = ("x", "y", "y_lo", "y_hi")


class ResultError(ValueError):
    """A saved figN.json that cannot be used; the message is one line and says how to recover."""


def _is_number(v) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))


def _number_or_none(v) -> bool:
    return v is None or _is_number(v)


def _check_claim(c, i: int) -> None:
    if not isinstance(c, dict):
        raise ValueError(f"claim {i} is a {type(c).__name__}, not an object")
    keys = set(c)
    if not _CLAIM_KEYS <= keys or not keys <= _CLAIM_KEYS | _CLAIM_OPTIONAL:
        raise ValueError(f"claim {i} has keys {sorted(keys)}; expected {sorted(_CLAIM_KEYS)} plus optional "
                         f"{sorted(_CLAIM_OPTIONAL)}")
    if not isinstance(c["name"], str) or not isinstance(c["statement"], str):
        raise ValueError(f"claim {i}: name and statement must be strings")
    name = c["name"]
    if not isinstance(c["holds"], bool):
        raise ValueError(f"claim {name!r}: holds must be true or false")
    for key in ("value", "threshold"):
        if not _number_or_none(c[key]):
            raise ValueError(f"claim {name!r}: {key} must be a finite number or null")
    if "ci" in c:
        ci = c["ci"]
        if not (isinstance(ci, list) and len(ci) == 2 and all(_is_number(v) for v in ci) and ci[0] <= ci[1]):
            raise ValueError(f"claim {name!r}: ci must be [lo, hi] with finite lo <= hi")
    if "verdict" in c:
        if c["verdict"] not in VERDICTS:
            raise ValueError(f"claim {name!r}: verdict must be one of {VERDICTS}")
        if c["holds"] != (c["verdict"] == "holds"):
            raise ValueError(f"claim {name!r}: holds is {c['holds']} but verdict is {c['verdict']!r}")


def validate_result(result, number: int | None = None) -> None:
    """Raise ValueError (naming the first problem, one line) unless `result` follows the result
    JSON format (see the README); with `number`, its "figure" must be that number."""
    if not isinstance(result, dict):
        raise ValueError(f"a result is a JSON object, got a {type(result).__name__}")
    for key in _REQUIRED:
        if key not in result:
            raise ValueError(f"missing key {key!r}")
    fig = result["figure"]
    if not isinstance(fig, int) or isinstance(fig, bool) or fig < 1:
        raise ValueError(f"figure must be a positive integer, got {fig!r}")
    if number is not None and fig != number:
        raise ValueError(f"it holds figure {fig}, not figure {number}")
    for key in ("title", "paper"):
        if not isinstance(result[key], str):
            raise ValueError(f"{key} must be a string")
    if result["mode"] not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {result['mode']!r}")
    seed = result["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not _is_number(result["runtime_s"]):
        raise ValueError("runtime_s must be a finite number")
    for key in ("params", "versions"):
        if not isinstance(result[key], dict):
            raise ValueError(f"{key} must be an object")
    series = result["series"]
    if not isinstance(series, dict) or not series:
        raise ValueError("series must be a non-empty object")
    for label, s in series.items():
        if not isinstance(s, dict) or "x" not in s or "y" not in s:
            raise ValueError(f"series {label!r} needs x and y")
        for key in _SERIES_ARRAYS:
            if key in s and not (isinstance(s[key], list) and all(_number_or_none(v) for v in s[key])):
                raise ValueError(f"series {label!r}: {key} must be a list of finite numbers or nulls")
        lengths = {key: len(s[key]) for key in _SERIES_ARRAYS if key in s}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"series {label!r}: lengths differ {lengths}")
    if not isinstance(result["claims"], list):
        raise ValueError("claims must be a list")
    for i, c in enumerate(result["claims"]):
        _check_claim(c, i)


def parse_result(data: bytes, number: int) -> dict:
    """Decode and validate the bytes of figN.json; ResultError names the problem and the fix."""
    try:
        result = json.loads(data.decode("utf-8"))
        validate_result(result, number)
    except UnicodeDecodeError:
        raise invalid_result(number, "not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise invalid_result(number, f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise invalid_result(number, "nested too deeply") from None
    except ValueError as e:
        raise invalid_result(number, str(e)) from None
    return result


def read_result(path: Path, number: int) -> tuple[dict, bytes]:
    """The validated result in `path` (figN.json) and its raw bytes; FileNotFoundError if absent."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run --figure {number} first")
    data = path.read_bytes()
    return parse_result(data, number), data


def invalid_result(number: int, why: str) -> ResultError:
    why = " ".join(why.split())  # one line whatever the reason's text
    return ResultError(f"fig{number}.json is not a valid result ({why}); rerun --figure {number}")
