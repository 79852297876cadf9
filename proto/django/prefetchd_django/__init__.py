"""prefetchd's Django bridge: to_spec() turns a QuerySet into a prefetchd
request, fetch() runs it on a prefetchd server, and the management command
prefetchd_overlay writes the schema overlay from the project's models."""
from .client import PrefetchdError, fetch, fetch_response
from .spec import UnsupportedQuerySet, to_spec

__all__ = ["to_spec", "fetch", "fetch_response", "PrefetchdError",
           "UnsupportedQuerySet"]
