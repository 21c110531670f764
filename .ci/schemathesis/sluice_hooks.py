"""Schemathesis hooks for constraints of the Sluice API that JSON Schema cannot express.

Loaded with SCHEMATHESIS_HOOKS=sluice_hooks (this file's folder on PYTHONPATH). Each hook
applies to positive (schema-valid) cases only; negative cases are left alone.
"""
import re

import schemathesis

_GROUP = re.compile(r"([0-9]{1,12})(ms|s|m|h|d)")
_DURATION = re.compile(r"^(?:[0-9]{1,12}(?:ms|s|m|h|d))+$")
_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_MAX_MS = 30 * 86_400_000
_RANGE = re.compile(r"^0*([0-9]{1,5})-0*([0-9]{1,5})$")


def _positive(case):
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


def _too_long(s):
    """A duration the server refuses: longer than 30 days (DurationSpec::MAX)."""
    return bool(_DURATION.match(s)) and sum(int(n) * _MS[u] for n, u in _GROUP.findall(s)) > _MAX_MS


def _inverted_range(s):
    """A port range `start-end` with start > end (PortRange::new refuses it)."""
    m = _RANGE.match(s)
    return bool(m) and int(m.group(1)) > int(m.group(2))


_WAITS = ("wait", "lock_wait")  # a held lock makes the request (or the deployment) wait this long


def _fix(value, key=None):
    """Rewrites what the server refuses by design into the nearest value it takes."""
    if isinstance(value, float) and value.is_integer():
        return int(value)  # serde refuses 566.0 for an integer field; JSON Schema calls it an integer
    if isinstance(value, str):
        if key in _WAITS and _DURATION.match(value):
            return "1s"  # keep within --request-timeout when the lock is held
        if _too_long(value):
            return "30d"  # DurationSpec::MAX
        if _inverted_range(value):
            a, b = _RANGE.match(value).groups()
            return f"{b}-{a}"  # PortRange: start <= end
        return value
    if isinstance(value, dict):
        return {k: _fix(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix(v) for v in value]
    return value


def _health_for_strategy(body):
    """blue_green (the default strategy) and canary refuse health `none` (400
    health_check_required): such a request becomes the nearest one the server takes,
    strategy recreate. A `canary` object is taken only with strategy canary (400 otherwise):
    without it, it is dropped."""
    if isinstance(body, dict) and isinstance(body.get("health"), dict):
        if body["health"].get("kind") == "none" and body.get("strategy", "blue_green") != "recreate":
            body = dict(body, strategy="recreate")
    if isinstance(body, dict) and "canary" in body and body.get("strategy") != "canary":
        body = {k: v for k, v in body.items() if k != "canary"}
    return body


@schemathesis.hook
def map_case(ctx, case):
    if _positive(case):
        if case.body is not None:
            case.body = _health_for_strategy(_fix(case.body))
        if case.query:
            case.query = _fix(case.query)
    return case


def _problem(response):
    """The problem+json body, or {} (a list answer, or no JSON)."""
    try:
        body = response.json()
    except Exception:
        return {}
    return body if isinstance(body, dict) else {}


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    """Keep every failure except four that are not the API's:

    - a selector that matches no server: that depends on the cluster's state (which labels
      its servers carry), not on the request's shape;
    - a `canary` object with another strategy (400, field `canary`): JSON Schema cannot say
      "only with strategy canary", and the cases map_case does not reach (the examples
      phase) combine the document's examples that way;
    - a container spec refused by its cross-field rules (400, every field under `spec.`);
    - ST201 on a "negative" case that schemathesis itself describes as a positive test case
      (seen on POST /v1/ports/{server}/{service}, whose body is optional: the case is the
      schema-valid request without a body, and the server rightly accepts it).
    """
    if (
        getattr(failure, "code", None) == "ST201"
        and case.meta is not None
        and case.meta.phase.data.description == "Positive test case"
    ):
        return False
    p = _problem(response)
    errors = p.get("errors") or []
    # The container spec's cross-field rules (`ContainerSpec::problems`: memory at least 6m,
    # reservation at most the limit, no path mounted twice, no network beside the host
    # network, no control characters in label and log option values) are beyond JSON
    # Schema; such a body is refused as a whole with every broken field under `spec.`.
    if (
        response.status_code == 400
        and p.get("detail") == "the container spec has invalid fields"
        and errors
        and all(str(e.get("field", "")).startswith("spec.") for e in errors)
    ):
        return False
    if response.status_code == 400 and any(
        (e.get("field") == "selector" and e.get("message") == "matches no server")
        or (e.get("field") == "canary" and e.get("message") == "given without strategy canary")
        for e in errors
    ):
        return False
    return True
