"""prefetchd's Django bridge: to_spec() turns a QuerySet into a prefetchd
request (aggregate_spec() that of an aggregate()), fetch() runs it on a
prefetchd server (fetch_aggregate() an aggregate()), and the management command
prefetchd_overlay writes the schema overlay from the project's models."""
from .client import PrefetchdError, fetch, fetch_aggregate, fetch_response
from .spec import UnsupportedQuerySet, aggregate_spec, to_spec

__all__ = ["to_spec", "aggregate_spec", "fetch", "fetch_response",
           "fetch_aggregate", "PrefetchdError", "UnsupportedQuerySet"]
