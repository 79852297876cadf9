"""Django's own evaluation of a queryset, in prefetchd's JSON shape.

django_graph(qs) evaluates qs with Django (counting its statements), then
serialises the objects the way prefetchd answers: columns under their
column names (attname / db_column) unless deferred, relations (select_related
and prefetch_related, to_attr included) under their names, annotations
(DESIGN §6.3) after the columns, values as PostgreSQL's to_json renders
them with TimeZone=UTC once parsed by json.loads(parse_float=Decimal).
A values() queryset gives its dicts, values_list() its rows as lists (flat:
the bare values). Serialising must not query: a relation that was not
loaded would make it query, which fails the comparison.

Levels whose queryset has no ordering are marked unordered: Django's order
there is PostgreSQL's whim, so such lists compare as multisets.
"""
import datetime
import decimal
import json
import uuid

from django.core.exceptions import ObjectDoesNotExist
from django.db import connection
from django.db.models import Prefetch
from django.db.models.fields.related import ForeignObjectRel
from django.test.utils import CaptureQueriesContext

from prefetchd_django.spec import _auto_select_related


def pg_json(v):
    """A Python value from Django as json.loads(to_json(v),
    parse_float=Decimal) would give it."""
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        return decimal.Decimal(repr(v))
    if isinstance(v, decimal.Decimal):
        return v
    if isinstance(v, datetime.datetime):
        v = v.astimezone(datetime.timezone.utc)
        s = v.strftime("%Y-%m-%dT%H:%M:%S")
        if v.microsecond:
            s += "." + ("%06d" % v.microsecond).rstrip("0")
        return s + "+00:00"
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, datetime.time):
        s = v.strftime("%H:%M:%S")
        if v.microsecond:
            s += "." + ("%06d" % v.microsecond).rstrip("0")
        return s
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [pg_json(x) for x in v]
    if isinstance(v, dict):
        return {k: pg_json(x) for k, x in v.items()}
    raise TypeError("no rendering for %r" % (v,))


class Node:
    def __init__(self, model, ordered=True):
        self.model = model
        self.select_related = {}
        self.prefetch = {}
        self.ordered = ordered
        self.annotations = []  # names, in the order of annotation_select
        self.values = None     # "values", "values_list", "flat" or None


def _sr_dict(query, model):
    sr = query.select_related
    if sr is True:
        sr = {}
        for path in _auto_select_related(model, query.max_depth):
            d = sr
            for part in path.split("__"):
                d = d.setdefault(part, {})
    return sr or {}


def _rel_model(model, name):
    """The model at the end of the relation whose accessor is name."""
    for f in model._meta.get_fields():
        if f.is_relation:
            acc = f.get_accessor_name() if isinstance(f, ForeignObjectRel) \
                else f.name
            if acc == name:
                return f.related_model
    raise LookupError("no relation %s on %s" % (name, model.__name__))


def _add_lookups(node, lookups):
    for lk in lookups:
        if isinstance(lk, str):
            lk = Prefetch(lk)
        through = lk.prefetch_through.split("__")
        to = lk.prefetch_to.split("__")
        cur = node
        for i, (name, key) in enumerate(zip(through, to)):
            last = i == len(to) - 1
            child = cur.prefetch.get(key)
            if child is None:
                model = _rel_model(cur.model, name)
                qs = lk.queryset if last else None
                child = Node(model, qs.ordered if qs is not None
                             else bool(model._meta.ordering))
                cur.prefetch[key] = child
            if last and lk.queryset is not None:
                child.select_related = _sr_dict(lk.queryset.query,
                                                lk.queryset.model)
                child.annotations = list(lk.queryset.query.annotation_select)
                _add_lookups(child, lk.queryset._prefetch_related_lookups)
            cur = child


def _values_kind(qs):
    return {"ValuesIterable": "values", "ValuesListIterable": "values_list",
            "NamedValuesListIterable": "values_list",
            "FlatValuesListIterable": "flat"}.get(
                qs._iterable_class.__name__)


def tree(qs):
    node = Node(qs.model, qs.ordered)
    node.values = _values_kind(qs)
    if node.values:
        return node
    node.select_related = _sr_dict(qs.query, qs.model)
    node.annotations = list(qs.query.annotation_select)
    _add_lookups(node, qs._prefetch_related_lookups)
    return node


def _get(obj, name):
    try:
        v = getattr(obj, name)
    except ObjectDoesNotExist:  # a reverse one-to-one with no object
        return None
    if hasattr(v, "all") and not isinstance(v, list):
        return list(v.all())
    return v


def serialize(obj, node):
    if node.values == "values":
        return {k: pg_json(v) for k, v in obj.items()}
    if node.values == "values_list":
        return [pg_json(v) for v in obj]
    if node.values == "flat":
        return pg_json(obj)
    d = {}
    deferred = obj.get_deferred_fields()
    for f in obj._meta.concrete_fields:
        if f.attname not in deferred:
            d[f.column] = pg_json(getattr(obj, f.attname))
    for name, sub in node.select_related.items():
        child = Node(None)
        child.select_related = sub
        rel = _get(obj, name)
        d[name] = None if rel is None else serialize(rel, child)
    for name, sub in node.prefetch.items():
        rel = _get(obj, name)
        if isinstance(rel, list):
            d[name] = [serialize(o, sub) for o in rel]
        else:
            d[name] = None if rel is None else serialize(rel, sub)
    for name in node.annotations:
        d[name] = pg_json(getattr(obj, name))
    return d


def django_graph(qs):
    """(graph, statements Django sent to evaluate qs)."""
    connection.ensure_connection()
    with CaptureQueriesContext(connection) as ctx:
        objs = list(qs)
    queries = len(ctx.captured_queries)
    with CaptureQueriesContext(connection) as ctx:
        graph = [serialize(o, tree(qs)) for o in objs]
    if ctx.captured_queries:
        raise AssertionError("serialising queried: %s"
                             % ctx.captured_queries[0]["sql"])
    return graph, queries


def canonical(graph, node):
    """graph with every unordered list sorted (see the module docstring)."""
    def key(x):
        return json.dumps(x, sort_keys=True, default=str)

    def obj(d, n):
        if not isinstance(d, dict) or n.values:
            return d
        d = dict(d)
        for name, sub in n.prefetch.items():
            if isinstance(d.get(name), list):
                d[name] = lst(d[name], sub)
            elif isinstance(d.get(name), dict):
                d[name] = obj(d[name], sub)
        return d

    def lst(items, n):
        items = [obj(x, n) for x in items]
        return items if n.ordered else sorted(items, key=key)
    return lst(graph, node)


def django_aggregate(qs, *args, **kwargs):
    """(qs.aggregate(...) in prefetchd's JSON shape, statements sent)."""
    connection.ensure_connection()
    with CaptureQueriesContext(connection) as ctx:
        out = qs.aggregate(*args, **kwargs)
    return {k: pg_json(v) for k, v in out.items()}, len(ctx.captured_queries)
