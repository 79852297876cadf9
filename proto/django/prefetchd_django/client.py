"""fetch(queryset, url): run a QuerySet on a prefetchd server (POST /query)
with urllib from the standard library; fetch_aggregate(queryset, ...) runs
queryset.aggregate(...) there."""
import decimal
import json
import urllib.error
import urllib.request

from .spec import aggregate_spec, to_spec


class PrefetchdError(Exception):
    """prefetchd answered with an error: status, code, message, at (the
    place in the request), as in its JSON error body."""

    def __init__(self, status, code, message, at=None):
        super().__init__("%s %s: %s%s" % (status, code, message,
                                          " (at %s)" % at if at else ""))
        self.status, self.code, self.message, self.at = \
            status, code, message, at


def _url(url):
    if url is None:
        from django.conf import settings
        url = getattr(settings, "PREFETCHD_URL", None)
        if not url:
            raise ValueError("fetch(): pass url= or set settings.PREFETCHD_URL")
    url = url.rstrip("/")
    return url if url.endswith("/query") else url + "/query"


def fetch_response(queryset, url=None, *, token=None, timeout=30,
                   debug=False):
    """The whole answer: {"results": [...], "stats": {...}} (and "queries"
    with debug=True). Numbers with a fraction come back as Decimal, exact as
    PostgreSQL sent them. Raises PrefetchdError on an error answer and
    UnsupportedQuerySet (before any request) for what to_spec refuses."""
    spec = queryset if isinstance(queryset, dict) else to_spec(queryset)
    body = json.dumps(spec).encode("utf-8")
    target = _url(url) + ("?debug=1" if debug else "")
    headers = {"Content-Type": "application/json"}
    if token is None:
        from django.conf import settings
        token = getattr(settings, "PREFETCHD_AUTH_TOKEN", None)
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(target, data=body, headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            err = json.loads(raw)["error"]
        except (ValueError, KeyError, TypeError):
            raise PrefetchdError(e.code, "http_error",
                                 raw.decode("utf-8", "replace")[:200])
        raise PrefetchdError(err.get("status", e.code), err.get("code"),
                             err.get("message"), err.get("at"))
    return json.loads(raw, parse_float=decimal.Decimal)


def fetch(queryset, url=None, **kwargs):
    """The object graph of queryset as prefetchd serves it: a list of dicts
    (columns by column name, relations by name or to_attr)."""
    return fetch_response(queryset, url, **kwargs)["results"]


def fetch_aggregate(queryset, *args, url=None, token=None, timeout=30,
                    **aggregates):
    """queryset.aggregate(*args, **aggregates) served by prefetchd
    (DESIGN §6.5): the dict {name: value}. url, token and timeout are this
    function's own keywords; for an aggregate of one of those names, post
    aggregate_spec(queryset, ...) with fetch_response()."""
    spec = aggregate_spec(queryset, *args, **aggregates)
    return fetch_response(spec, url, token=token,
                          timeout=timeout)["aggregate"]
