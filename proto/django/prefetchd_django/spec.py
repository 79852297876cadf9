"""to_spec(queryset): a Django QuerySet as a prefetchd request (DESIGN.md §1
and §6); aggregate_spec(queryset, ...): the request of queryset.aggregate().

It reads what Django has already built, so anything that made the queryset
(filter() and exclude() calls, Q objects, a custom manager, a related
manager's own filter) is taken into account:

- conditions: the query's WhereNode tree. Each lookup's left side is a column
  of some table alias, possibly under transforms (``published__year``, a
  JSONField key, an ArrayField index), or an annotation; the alias's chain of
  joins gives the relation path (``books__readers__name``). Django's to-many
  exclude() is an EXISTS subquery of the same model; its inner joins are read
  the same way and put back under the negation, where prefetchd renders NOT
  EXISTS again. A right side may be an expression (F(), arithmetic,
  functions, Subquery, OuterRef inside a subquery).
- annotations (query.annotations, in annotate() order) and the expressions in
  them (DESIGN §6.1): F() across relations, Value, arithmetic, the aggregates,
  the functions of §6.1's table, Case/When, Exists and Subquery with OuterRef.
- values()/values_list(): the entries, and which grouping Django chose
  (query.group_by): per object (annotate(...).values(..., "n")) or per
  values() entries (values("publisher").annotate(n=...)), DESIGN §6.4.
- order_by, slicing, distinct, only/defer, select_related, and
  prefetch_related with its Prefetch objects (recursively).

Whatever prefetchd cannot express the same way raises UnsupportedQuerySet
with the reason (see README "Limits").
"""
import datetime
import decimal
import json
import math
import uuid

from django.db.models import (Aggregate, Avg, Count, F, Max, Min, Prefetch,
                              QuerySet, StdDev, Sum, Variance)
from django.db.models import functions as fn
from django.db.models.expressions import (Case, Col, CombinedExpression,
                                          Exists, ExpressionWrapper, OrderBy,
                                          Ref, Star, Subquery, Value, When)
from django.db.models.fields.related import ForeignObjectRel
from django.db.models.lookups import Lookup, Transform
from django.db.models.query import ModelIterable
from django.db.models.sql.datastructures import BaseTable, Join
from django.db.models.sql.where import AND, NothingNode, WhereNode

from django.db.models.functions.datetime import TruncBase

from .naming import model_name

try:  # Django 3.1+
    from django.db.models.fields.json import KeyTextTransform, KeyTransform
except ImportError:  # pragma: no cover
    KeyTransform = KeyTextTransform = ()
try:  # Django 4.2+: ~Exists(...) and other negated conditions
    from django.db.models.expressions import NegatedExpression
except ImportError:
    NegatedExpression = ()
try:
    from django.db.models.expressions import ResolvedOuterRef
except ImportError:  # pragma: no cover
    ResolvedOuterRef = ()
try:  # needs psycopg2 (django.contrib.postgres)
    from django.contrib.postgres.fields.array import (ArrayLenTransform,
                                                      IndexTransform)
except Exception:  # pragma: no cover
    ArrayLenTransform = IndexTransform = ()
try:
    from django.db.models.expressions import DurationExpression
    from django.db.models.expressions import TemporalSubtraction
except ImportError:  # pragma: no cover
    DurationExpression = TemporalSubtraction = ()

OPERATORS = frozenset(
    "exact iexact contains icontains in gt gte lt lte startswith istartswith "
    "endswith iendswith range isnull regex iregex "
    # jsonb and arrays (DESIGN §6.2)
    "contained_by has_key has_keys has_any_keys overlap".split())

DATE_TRANSFORMS = frozenset(
    "year iso_year quarter month week day week_day iso_week_day hour minute "
    "second date time".split())

# An aggregate of DESIGN §6.1 by Django class.
AGGREGATES = [(Count, "count"), (Sum, "sum"), (Avg, "avg"), (Min, "min"),
              (Max, "max"), (StdDev, "stddev"), (Variance, "variance")]

# The one-argument functions of DESIGN §6.1's table.
ONE_ARG = [(fn.Lower, "lower"), (fn.Upper, "upper"), (fn.Length, "length"),
           (fn.Trim, "trim"), (fn.LTrim, "ltrim"), (fn.RTrim, "rtrim"),
           (fn.Reverse, "reverse"), (fn.MD5, "md5"), (fn.Abs, "abs"),
           (fn.Round, "round"), (fn.Ceil, "ceil"), (fn.Floor, "floor"),
           (fn.Sign, "sign"), (fn.Sqrt, "sqrt")]
MANY_ARGS = [(fn.Coalesce, "coalesce"), (fn.Greatest, "greatest"),
             (fn.Least, "least")]
TRUNC_KINDS = frozenset(
    "year quarter month week day date time hour minute second".split())
EXTRACT_KINDS = frozenset(
    "year iso_year quarter month week day week_day iso_week_day hour minute "
    "second".split())
ARITHMETIC = {"+": "$add", "-": "$sub", "*": "$mul", "/": "$div",
              "%%": "$mod", "%": "$mod"}
# Cast(output_field=...) -> the target of $cast, by the field's internal type.
CAST_TARGETS = {
    "IntegerField": "integer", "AutoField": "integer",
    "PositiveIntegerField": "integer",
    "BigIntegerField": "bigint", "BigAutoField": "bigint",
    "PositiveBigIntegerField": "bigint",
    "FloatField": "float", "TextField": "text", "DateField": "date",
    "DateTimeField": "timestamp", "BooleanField": "boolean",
}
UTC_NAMES = frozenset(["UTC", "Etc/UTC", "GMT", "Etc/GMT", "UCT", "Etc/UCT",
                       "Zulu", "Etc/Zulu", "Universal", "Etc/Universal",
                       "+00:00", "+0000", "UTC+00:00"])


class UnsupportedQuerySet(ValueError):
    """The queryset uses something that prefetchd cannot serve as Django
    would; the message says what."""


def to_spec(queryset):
    """The prefetchd request (a dict, ready for json.dumps) for queryset."""
    return _queryset(queryset, "queryset")


def aggregate_spec(queryset, *args, **kwargs):
    """The prefetchd request (DESIGN §6.5) for queryset.aggregate(*args,
    **kwargs): the queryset's spec plus {"aggregate": {name: EXPR}}. As
    Django 5.2, an entry may use an earlier entry by name."""
    if not isinstance(queryset, QuerySet):
        raise UnsupportedQuerySet("aggregate: not a QuerySet: %r"
                                  % (queryset,))
    aggregates = {}
    for arg in args:
        try:
            aggregates[arg.default_alias] = arg
        except (AttributeError, TypeError):
            raise TypeError("Complex aggregates require an alias")
    aggregates.update(kwargs)
    if not aggregates:
        raise UnsupportedQuerySet("aggregate: no aggregate given")
    q = queryset.query.chain()
    if q.distinct_fields:
        raise NotImplementedError("aggregate() + distinct(fields) not "
                                  "implemented.")
    names = []
    for alias, expr in aggregates.items():
        if not hasattr(expr, "resolve_expression"):
            raise TypeError("aggregate() received non-expression(s): %r"
                            % (expr,))
        if alias in q.annotations:
            raise UnsupportedQuerySet(
                "aggregate.%s: the name is an annotation of the queryset"
                % alias)
        resolved = expr.resolve_expression(q, allow_joins=True, reuse=None,
                                           summarize=True)
        if not getattr(resolved, "contains_aggregate", False):
            raise TypeError("%s is not an aggregate expression" % alias)
        # Later entries may refer to this one (Django 5.2).
        q.annotations[alias] = resolved
        q.append_annotation_mask([alias])
        names.append(alias)
    return _Spec(q, "queryset", qs=queryset, aggregate=names).build()


# --- querysets ------------------------------------------------------------


def _queryset(qs, at):
    if not isinstance(qs, QuerySet):
        raise UnsupportedQuerySet("%s: not a QuerySet: %r" % (at, qs))
    return _Spec(qs.query, at, qs=qs).build()


def _check_query(q, at):
    bad = []
    if q.combinator:
        bad.append(q.combinator + "()")
    if q.extra or q.extra_tables or q.extra_order_by:
        bad.append("extra()")
    if q.distinct_fields:
        bad.append("distinct(*fields)")
    if q._filtered_relations:
        bad.append("FilteredRelation")
    if q.select_for_update:
        bad.append("select_for_update()")
    if bad:
        raise UnsupportedQuerySet("%s: not supported by prefetchd: %s"
                                  % (at, ", ".join(bad)))


def _lookup(lk, at):
    if isinstance(lk, str):
        return lk
    if not isinstance(lk, Prefetch):
        raise UnsupportedQuerySet("%s: not a lookup: %r" % (at, lk))
    if lk.queryset is None and lk.to_attr is None:
        return lk.prefetch_through
    out = {"lookup": lk.prefetch_through}
    if lk.queryset is not None:
        out["queryset"] = _queryset(lk.queryset, at + ".queryset")
    if lk.to_attr is not None:
        out["to_attr"] = lk.to_attr
    return out


def _contains_aggregate(e):
    return bool(getattr(e, "contains_aggregate", False))


def _base_alias(q):
    for alias in q.alias_map:
        return alias
    return None


class _Spec:
    """Builds the spec of one Query: the top level and a Prefetch's
    queryset (qs given), or the inner query of Exists()/Subquery() (kind
    "exists", "subquery"; parent is the enclosing query's _Conditions)."""

    def __init__(self, q, at, qs=None, parent=None, kind="top",
                 aggregate=()):
        self.q, self.at, self.qs, self.kind = q, at, qs, kind
        self.aggregate = list(aggregate)
        self.model = q.model._meta.concrete_model
        self.emitted = {}       # name -> expression, of "annotate"
        self.grouped = False
        self.cond = _Conditions(q, at, outer=parent, spec=self)

    def unsupported(self, why, at=None):
        raise UnsupportedQuerySet("%s: %s" % (at or self.at, why))

    # -- what is selected, and how it is grouped --

    def values_entries(self):
        """Django's result keys of a values()/values_list() queryset (or of
        a Subquery's inner query), in its order; None for model
        instances."""
        q, qs = self.q, self.qs
        if qs is not None:
            if qs._iterable_class is ModelIterable:
                return None
            fields = list(qs._fields or ())
        elif self.kind == "subquery":
            selected = getattr(q, "selected", None)  # Django 5.2+
            if selected:
                return list(selected)
            fields = []
        else:
            return None
        if not fields:
            fields = list(q.values_select)
        return fields + [a for a in q.annotation_select if a not in fields]

    def grouping(self):
        """"none", "object" (GROUP BY the pk: an aggregate per object) or
        "values" (GROUP BY the values() entries), from query.group_by."""
        gb = self.q.group_by
        if gb is None:
            return "none"
        if gb is True:
            return "object"
        base = _base_alias(self.q)
        pk = self.model._meta.pk
        for e in gb:
            if isinstance(e, Col) and e.alias == base and \
                    e.target.column == pk.column:
                return "object"
        return "values"

    # -- the spec --

    def build(self):
        q, at, cond = self.q, self.at, self.cond
        _check_query(q, at)
        spec = {"model": model_name(self.model)}
        entries = None if self.kind == "exists" else self.values_entries()
        grouping = self.grouping()
        if self.aggregate and entries is not None:
            if q.distinct or grouping == "values":
                self.unsupported(
                    "aggregate() over a values() queryset that is distinct "
                    "or grouped: prefetchd's aggregate takes no values")
            entries = None
        if entries is not None and self.qs is not None and \
                self.qs._prefetch_related_lookups:
            self.unsupported("prefetch_related() on a values() queryset "
                             "(Prefetch querysets cannot use raw(), values(),"
                             " and values_list())")
        # EXISTS ignores what its query selects (Django 4.2+'s exists()
        # masks every annotation): all of them count there
        names = q.annotations if self.kind == "exists" else \
            q.annotation_select
        for name in names:
            if name in self.aggregate:
                continue
            e = q.annotations[name]
            if self.kind == "exists" and name == "a" and \
                    isinstance(e, Value):
                continue  # Django 4.2+'s Query.exists(): SELECT 1 AS a
            self.emitted[name] = e
        aggs = [a for a, e in self.emitted.items() if _contains_aggregate(e)]
        hidden_aggs = [a for a, e in q.annotations.items()
                       if a not in self.emitted and a not in self.aggregate
                       and _contains_aggregate(e)]
        self.grouped = grouping == "values" and entries is not None
        if grouping == "values" and entries is None and not self.aggregate \
                and self.kind != "exists":
            self.unsupported("a GROUP BY without values()")
        # annotate, in annotate() order; each may use the earlier ones
        ann = {}
        for name, e in self.emitted.items():
            cond.at = "%s.annotate.%s" % (at, name)
            ann[name] = cond.top_expr(e, name)
            cond.scope.append(name)
        # filter: every annotation by name
        cond.at = at + ".filter"
        c = cond.translate()
        if c is not None:
            spec["filter"] = c
        if ann:
            spec["annotate"] = ann
        # values / values_list
        if entries is not None:
            if self.grouped and hidden_aggs and not aggs:
                # values("x").annotate(n=...).values("x"): the groups are
                # the distinct entries
                spec["distinct"] = True
            self.values(spec, entries, aggs)
        # order_by
        order = self.order_by(entries)
        if self.aggregate and not (q.low_mark or q.high_mark is not None):
            order = None  # one row: Django drops the ordering
        if order is not None:
            spec["order_by"] = order
        if q.distinct:
            spec["distinct"] = True
        if self.kind == "exists":
            # EXISTS needs one row: Django 4.2+ adds LIMIT 1
            if q.low_mark:
                spec["offset"] = q.low_mark
                if q.high_mark is not None:
                    spec["limit"] = q.high_mark - q.low_mark
            elif q.high_mark is not None and q.high_mark < 1:
                spec["limit"] = 0
        else:
            if q.low_mark:
                spec["offset"] = q.low_mark
            if q.high_mark is not None:
                spec["limit"] = q.high_mark - q.low_mark
        if entries is None and self.kind == "top" and not self.aggregate:
            names, defer = q.deferred_loading
            if names or not defer:
                cols = [_field_column(self.model, n,
                                      at + (".defer" if defer else ".only"))
                        for n in sorted(names)]
                if defer:
                    pk = self.model._meta.pk.column
                    spec["defer"] = [c for c in cols if c != pk]
                else:
                    spec["only"] = cols
            sr = _select_related(q, self.model)
            if sr:
                spec["select_related"] = sr
            if self.qs is not None:
                pf = [_lookup(lk, "%s.prefetch_related[%d]" % (at, i))
                      for i, lk in enumerate(
                          self.qs._prefetch_related_lookups)]
                if pf:
                    spec["prefetch_related"] = pf
        if self.aggregate:
            out = {}
            for name in self.aggregate:
                cond.at = "%s.aggregate.%s" % (at, name)
                out[name] = cond.top_expr(q.annotations[name], name)
                cond.scope.append(name)
            spec["aggregate"] = out
        cond.at = at + ".filter"
        return spec

    def values(self, spec, entries, aggs):
        if self.grouped:
            out = [e for e in entries if e not in aggs]
            if not out:
                self.unsupported(
                    "values() whose GROUP BY fields are not selected (e.g. "
                    "values('author').annotate(n=Count(...)).values('n')): "
                    "DESIGN §6.4 groups by the values() entries, which it "
                    "returns, so this subquery idiom cannot be written; "
                    "annotate the outer queryset with the aggregate instead")
            self.check_group_by(out)
            if [a for a in entries if a in aggs] != aggs:
                self.unsupported("values_list() entries of aggregates in an "
                                 "order other than annotate()'s")
            if self.qs is not None and \
                    self.qs._iterable_class.__name__ != "ValuesIterable" and \
                    entries != out + aggs:
                self.unsupported(
                    "values_list() of a grouped query with an aggregate "
                    "before a grouping entry: prefetchd puts the aggregates "
                    "after the values_list() entries")
        else:
            out = list(entries)
        if self.kind == "subquery":
            if len(out) != 1:
                self.unsupported("Subquery() of a queryset with %d values() "
                                 "entries (exactly one is needed)" % len(out))
            spec["values"] = out
            return
        cls = self.qs._iterable_class.__name__
        if cls == "ValuesIterable":
            spec["values"] = out
        elif cls in ("ValuesListIterable", "NamedValuesListIterable"):
            spec["values_list"] = {"fields": out, "flat": False}
        elif cls == "FlatValuesListIterable":
            spec["values_list"] = {"fields": out, "flat": True}
        else:
            self.unsupported("%s querysets are not supported" % cls)

    def check_group_by(self, out):
        """Django groups by query.group_by (plus the selected columns):
        each of its terms must be one of the entries prefetchd groups by."""
        q = self.q
        sel = set()
        for c in q.select:
            if isinstance(c, Col):
                sel.add((c.alias, c.target.column))
        for e in q.group_by:
            if isinstance(e, Col):
                if (e.alias, e.target.column) in sel:
                    continue
                self.unsupported(
                    "values() grouping by '%s', which is not one of the "
                    "values() entries (DESIGN §6.4 groups by the entries)"
                    % "__".join(self.cond.col_parts(e)))
            elif isinstance(e, Ref):
                if e.refs in out:
                    continue
                self.unsupported("values() grouping by the annotation '%s',"
                                 " which is not selected" % e.refs)
            else:
                name = self.cond.ann_name(e, equal=True)
                if name in out:
                    continue
                if any(e is c or _same(e, c) for c in q.select):
                    continue
                self.unsupported("values() grouping by an expression that "
                                 "is not one of the values() entries")

    def order_by(self, entries):
        q, at = self.q, self.at + ".order_by"
        if q.extra_order_by:
            self.unsupported("extra(order_by=...)", at)
        if self.kind == "exists":
            return None
        if q.order_by:
            terms = list(q.order_by)
        elif q.default_ordering and self.model._meta.ordering:
            if q.group_by is not None:
                # Django 3.1+: Meta.ordering does not enter a GROUP BY query
                return None
            terms = list(self.model._meta.ordering)
        elif self.model._meta.ordering:
            return []  # order_by() cleared the default ordering
        else:
            terms = []
        out = []
        for term in terms:
            out.extend(self.order_term(term, at, entries))
        if not q.standard_ordering:  # reverse()
            out = [t if t == "?" else t[1:] if t.startswith("-") else "-" + t
                   for t in out]
        return out or None

    def order_term(self, term, at, entries):
        q = self.q
        if isinstance(term, OrderBy):
            if term.nulls_first or term.nulls_last:
                self.unsupported("order_by(%r): nulls_first/nulls_last are "
                                 "not supported" % (term,), at)
            inner = term.expression
            sign = "-" if term.descending else ""
            if isinstance(inner, F):
                term = sign + inner.name
            elif isinstance(inner, Ref):
                term = sign + inner.refs
            else:
                self.unsupported(
                    "order_by on an expression (%s): annotate() it and order "
                    "by its name" % type(inner).__name__, at)
        elif isinstance(term, F):
            term = term.name
        elif isinstance(term, Ref):
            term = term.refs
        if not isinstance(term, str):
            self.unsupported(
                "order_by on an expression (%s): annotate() it and order by "
                "its name" % type(term).__name__, at)
        if term == "?":
            return [term]
        sign = "-" if term.startswith("-") else ""
        name = term.lstrip("-")
        if name in self.emitted:
            return [sign + name]
        if name in q.annotations and name not in self.aggregate:
            p = self.cond.path_parts(q.annotations[name])
            if p is not None and p[0] == 0:
                return [sign + "__".join(p[1])]
            self.unsupported(
                "order_by('%s'): '%s' is an alias() or an annotation that "
                "values() does not select; prefetchd orders by the "
                "annotations it returns" % (term, name), at)
        terms = _order_terms(self.model, term, at)
        if entries is not None and (self.grouped or q.distinct):
            plain = len(terms) == 1 and \
                terms[0].lstrip("-").count("__") == name.count("__")
            if name not in entries or not plain:
                self.unsupported(
                    "order_by('%s') in a %s query: Django adds it to the %s; "
                    "order by a values() entry or an annotation"
                    % (term, "values().annotate()" if self.grouped else
                       "distinct values()", "GROUP BY" if self.grouped else
                       "SELECT DISTINCT"), at)
        return terms


def _same(a, b):
    try:
        return a == b
    except Exception:
        return False


# --- fields, ordering, select_related -------------------------------------


def _field_column(model, name, at):
    """only/defer name -> column: a concrete field, its attname, or a
    forward relation (its column); no related paths."""
    if "__" in name:
        raise UnsupportedQuerySet(
            "%s: '%s': only()/defer() across relations is not supported "
            "(prefetchd's only/defer apply to one level)" % (at, name))
    if name == "pk":
        return model._meta.pk.column
    field = model._meta.get_field(name)
    if not getattr(field, "concrete", False) or field.many_to_many:
        raise UnsupportedQuerySet("%s: '%s' is not a column" % (at, name))
    return field.column


def _transform_names_ok(field, rest, at, term):
    """The transforms after a column in order_by: DESIGN §6.2's."""
    internal = field.get_internal_type()
    if internal == "JSONField":
        return
    if internal == "ArrayField":
        if len(rest) == 1 and (rest[0] == "len" or rest[0].isdigit()):
            return
    elif internal in ("DateField", "DateTimeField") and \
            all(r in DATE_TRANSFORMS for r in rest):
        if internal == "DateTimeField":
            _check_utc(None, at, term)
        return
    raise UnsupportedQuerySet("%s: '%s': the transform '%s' is not one of "
                              "DESIGN §6.2's" % (at, term, "__".join(rest)))


def _order_terms(model, term, at, depth=0):
    """One order_by term (Django names) -> prefetchd's terms (columns)."""
    if term == "?":
        return [term]
    sign = "-" if term.startswith("-") else ""
    parts = term.lstrip("-").split("__")
    out = []
    opts = model._meta
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "pk" and last:
            out.append("pk")
            break
        try:
            field = opts.get_field(part)
        except Exception:
            raise UnsupportedQuerySet("%s: cannot resolve '%s' in '%s'"
                                      % (at, part, term))
        if not field.is_relation:
            out.append(field.column)
            if not last:
                rest = parts[i + 1:]
                _transform_names_ok(field, rest, at, term)
                out.extend(rest)
            break
        target = field.related_model._meta
        if not last:
            out.append(part)
            opts = target
            continue
        # Django orders by a relation with the target's Meta.ordering, or
        # by its pk; a forward FK's attname orders by the column itself.
        if target.ordering and part != getattr(field, "attname", None):
            if depth > 10:
                raise UnsupportedQuerySet("%s: '%s': ordering loop"
                                          % (at, term))
            prefix = "__".join(out + [part]) + "__"
            terms = []
            for t in target.ordering:
                if not isinstance(t, str):
                    raise UnsupportedQuerySet(
                        "%s: '%s': the Meta.ordering of %s has an expression"
                        % (at, term, target.object_name))
                for sub in _order_terms(target.model, t, at, depth + 1):
                    if sub == "?":
                        raise UnsupportedQuerySet(
                            "%s: '%s': random ordering" % (at, term))
                    flip = sub.startswith("-") != (sign == "-")
                    terms.append(("-" if flip else "") + prefix +
                                 sub.lstrip("-"))
            return terms
        if field.concrete and not field.many_to_many:
            out.append(field.column)
        else:
            out.extend([part, target.pk.column])
    return [sign + "__".join(out)]


def _select_related(q, model):
    sr = q.select_related
    if not sr:
        return []
    if sr is True:
        return _auto_select_related(model, q.max_depth)
    paths = []

    def walk(d, prefix):
        for name, sub in d.items():
            if sub:
                walk(sub, prefix + name + "__")
            else:
                paths.append(prefix + name)
    walk(sr, "")
    return paths


def _auto_select_related(model, depth, prefix=""):
    """select_related() with no arguments: Django follows every non-null
    forward FK / one-to-one, max_depth levels deep."""
    paths = []
    if depth <= 0:
        return paths
    for f in model._meta.concrete_fields:
        if f.is_relation and not f.null and not f.remote_field.parent_link:
            sub = _auto_select_related(f.related_model, depth - 1,
                                       prefix + f.name + "__")
            paths.extend(sub or [prefix + f.name])
    return paths


def _check_utc(e, at, what):
    """Django computes date parts and truncations of a DateTimeField in the
    current time zone (or tzinfo=); prefetchd in UTC (DESIGN §6.2)."""
    from django.conf import settings
    from django.utils import timezone
    if e is not None and hasattr(e, "get_tzname"):
        name = e.get_tzname()
    elif settings.USE_TZ:
        name = timezone.get_current_timezone_name()
    else:
        name = None
    if name is None:
        name = settings.TIME_ZONE if not settings.USE_TZ else None
    if name is not None and str(name) not in UTC_NAMES:
        raise UnsupportedQuerySet(
            "%s: %s: Django computes it in the time zone '%s'; prefetchd "
            "takes timestamps in UTC" % (at, what, name))


# --- conditions and expressions -------------------------------------------

ALL = object()      # matches every row
NOTHING = object()  # matches no row


def _value(v, at):
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, decimal.Decimal):
        return str(v)  # exact; prefetchd casts it to the column's type
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, datetime.timedelta):
        return "%r seconds" % v.total_seconds()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_value(x, at) for x in v]
    if isinstance(v, dict):
        return {str(k): _value(x, at) for k, x in v.items()}
    if hasattr(v, "_meta") and hasattr(v, "pk"):
        return _value(v.pk, at)
    raise UnsupportedQuerySet("%s: cannot send a %s value"
                              % (at, type(v).__name__))


def _json_prepped(lk):
    """Django < 4.2 JSON-encodes the value of a JSONField lookup when it
    builds it (JSONField.get_prep_value); later versions when they send
    it. True when lk's value is such a JSON text."""
    if not getattr(lk, "prepare_rhs", False):
        return False
    f = getattr(lk.lhs, "_output_field_or_none", None)
    if f is None or f.get_internal_type() != "JSONField":
        return False
    try:
        return isinstance(f.get_prep_value(1), str)
    except Exception:
        return False


def _json_unprep(rhs, op):
    def one(v):
        if isinstance(v, str):
            try:
                return json.loads(v)
            except ValueError:
                return v
        return v
    if op == "in" and isinstance(rhs, (list, tuple)):
        return [one(v) for v in rhs]
    if op == "isnull":
        return rhs
    return one(rhs)


def _is_expr_obj(d):
    return isinstance(d, dict) and len(d) == 1 and \
        next(iter(d)).startswith("$")


def _cols(expr, out, skip=None):
    """Every Col in an expression or where tree (not inside subqueries),
    but those of the lookup skip."""
    if expr is skip or expr is None:
        pass
    elif isinstance(expr, Col):
        out.append(expr)
    elif isinstance(expr, WhereNode):
        for c in expr.children:
            _cols(c, out, skip)
    elif isinstance(expr, Lookup):
        _cols(expr.lhs, out, skip)
        _cols(expr.rhs, out, skip)
    elif isinstance(expr, (list, tuple)):
        for c in expr:
            _cols(c, out, skip)
    elif isinstance(expr, Subquery) or hasattr(expr, "alias_map"):
        pass  # a subquery's own tables
    elif isinstance(expr, When):
        _cols(expr.condition, out, skip)
        _cols(expr.result, out, skip)
    elif hasattr(expr, "get_source_expressions"):
        for c in expr.get_source_expressions():
            _cols(c, out, skip)
        if isinstance(expr, Aggregate):
            _cols(getattr(expr, "filter", None), out, skip)
    return out


def _through_m2m(fk, other):
    """(m2m field, True when fk is its source link) when fk and other are
    the two links of a many-to-many's through model, else None."""
    through = fk.model._meta.concrete_model
    for m in fk.remote_field.model._meta.get_fields():
        if not m.many_to_many:
            continue
        field = m.field if isinstance(m, ForeignObjectRel) else m
        if field.remote_field.through._meta.concrete_model is not through:
            continue
        links = (field.m2m_field_name(), field.m2m_reverse_field_name())
        if (fk.name, other.name) == links:
            return field, True
        if (other.name, fk.name) == links:
            return field, False
    return None


def _tz_sensitive(e):
    lhs = e.get_source_expressions()[0] if e.get_source_expressions() \
        else None
    f = getattr(lhs, "_output_field_or_none", None)
    return f is not None and f.get_internal_type() == "DateTimeField"


class _Conditions:
    """Translates one Query's where tree and expressions (see the module's
    docstring). outer: the _Conditions of the enclosing query of a
    subquery ($outer); base: for Django's to-many exclude(), the query whose
    paths this one continues (prefix, start_hop)."""

    def __init__(self, query, at, prefix=(), start_hop=None, skip=None,
                 outer=None, base=None, spec=None):
        self.q = query
        self.at = at if at.endswith(".filter") else at + ".filter"
        self.prefix = tuple(prefix)
        self.start_hop = start_hop  # ("rev", fk) into the base alias
        self.skip = skip            # a lookup not to translate
        self.outer = outer
        self.base = base
        self.spec = spec
        # the annotation names an expression may use now: the earlier
        # ones while annotations are read, all of them in filters
        self.scope = [] if base is None else base.scope
        self.used = {}
        for c in _cols(query.where, [], skip) + _cols(
                list(query.annotations.values()), []):
            if c.alias in query.alias_map:
                self.used.setdefault(c.alias, set()).add(c.target.column)
        self.children = {}
        for alias, j in query.alias_map.items():
            if isinstance(j, Join) and query.alias_refcount[alias] > 0:
                self.children.setdefault(j.parent_alias, []).append(alias)
        self.paths = {}
        self.joins = {}  # path -> (identity alias, where it was read)

    def unsupported(self, why):
        raise UnsupportedQuerySet("%s: %s" % (self.at, why))

    # -- relation paths --

    def register(self, path, ident):
        ctx = self.at
        seen = self.joins.get(path)
        if seen is None:
            self.joins[path] = (ident, ctx)
            return
        if seen[0] == ident:
            return
        ctxs = (seen[1], ctx)
        if any(".annotate." in c for c in ctxs) and \
                any(".annotate." not in c for c in ctxs):
            raise UnsupportedQuerySet(
                "%s: a filter on the to-many path '%s' after an annotation "
                "over it (annotate(...Count('%s')...).filter(%s__...)): "
                "Django joins '%s' a second time for the filter; prefetchd "
                "applies filter terms before the aggregation (DESIGN §6.3): "
                "put the filter() before annotate()"
                % (self.at, "__".join(path), "__".join(path),
                   "__".join(path), "__".join(path)))
        raise UnsupportedQuerySet(
            "%s: the query joins '%s' twice (filter() calls chained "
            "across a to-many relation); prefetchd joins a path once: put "
            "the conditions in one filter() call"
            % (self.at, "__".join(path)))

    def hops(self, alias):
        hops = []  # (alias reached, "fwd"|"rev", fk field)
        a = alias
        while True:
            j = self.q.alias_map.get(a)
            if j is None:
                self.unsupported("a condition on a table of the outer query "
                                 "(a subquery or a reused join)")
            if isinstance(j, BaseTable):
                break
            jf = j.join_field
            if isinstance(jf, ForeignObjectRel):
                hops.append((a, "rev", jf.field))
            else:
                hops.append((a, "fwd", jf))
            a = j.parent_alias
        if self.start_hop:
            hops.append((a, ) + self.start_hop)
        hops.reverse()
        return hops

    # Relation path of a table alias, as prefetchd (and Django) name it.
    def path(self, alias):
        if alias not in self.paths:
            self.paths[alias] = self.names(self.hops(alias))
        return self.paths[alias]

    def names(self, hops):
        names = []
        i = 0
        while i < len(hops):
            a, kind, fk = hops[i]
            m2m = None
            # a through table whose own columns nothing reads (but its
            # link to the target, which is the target's key)
            if kind == "rev" and i + 1 < len(hops) and \
                    hops[i + 1][1] == "fwd" and not (
                        self.used.get(a, set()) - {hops[i + 1][2].column}) \
                    and len(self.children.get(a, ())) == 1:
                m2m = _through_m2m(fk, hops[i + 1][2])
            if m2m:
                field, forward = m2m
                names.append(field.name if forward
                             else field.related_query_name())
                self.register(self.prefix + tuple(names), a)
                i += 2
                continue
            if kind == "fwd":
                names.append(fk.name)
            else:
                rqn = fk.related_query_name()
                if rqn.endswith("+"):
                    self.unsupported("the reverse of %s.%s has no name "
                                     "(related_name ends with '+')"
                                     % (fk.model._meta.object_name, fk.name))
                names.append(rqn)
            self.register(self.prefix + tuple(names), a)
            i += 1
        return self.prefix + tuple(names)

    def trimmed_m2m(self, col):
        """Django trims the last join of a many-to-many (filter(readers=1),
        Count("readers")): the column is the through table's link to the
        target. (m2m path, target column, whether it is the target's pk)
        or None."""
        target = col.target
        if not target.is_relation or \
                self.used.get(col.alias, set()) - {target.column}:
            return None
        j = self.q.alias_map.get(col.alias)
        if not isinstance(j, Join) and not (self.start_hop and
                                            isinstance(j, BaseTable)):
            return None
        hops = self.hops(col.alias)
        if not hops or hops[-1][0] != col.alias or hops[-1][1] != "rev":
            return None
        m2m = _through_m2m(hops[-1][2], target)
        if not m2m:
            return None
        field, forward = m2m
        path = self.names(hops[:-1]) + (
            field.name if forward else field.related_query_name(),)
        self.register(path, col.alias)
        return path, target.target_field.column, \
            target.target_field.primary_key

    def col_parts(self, col):
        """A column of this query as a path, a tuple of names."""
        t = self.trimmed_m2m(col)
        if t:
            return t[0] + (t[1],)
        return self.path(col.alias) + (col.target.column,)

    def col_ref(self, col, agg_arg=False):
        """(depth, path parts) of a Col: depth 0 in this query, 1 in the
        query around a subquery ($outer), ..."""
        r, depth = self, 0
        while r is not None:
            if col.alias in r.q.alias_map:
                if agg_arg and depth == 0:
                    t = r.trimmed_m2m(col)
                    if t:
                        return depth, t[0] + (() if t[2] else (t[1],))
                    j = r.q.alias_map[col.alias]
                    if isinstance(j, Join) and col.target.primary_key:
                        return depth, r.path(col.alias)
                return depth, r.col_parts(col)
            if r.base is not None:
                r = r.base
            else:
                r, depth = r.outer, depth + 1
        self.unsupported("a column of a table that is not in this query "
                         "(an OuterRef() outside a subquery?)")

    # -- annotations --

    def ann_name(self, e, equal=False):
        """The name of the annotation (or aggregate entry) in scope that e
        is: the same object, or with equal=True an equal expression."""
        spec = self.spec if self.base is None else self.base.spec
        if spec is None:
            return None
        for n in self.scope:
            if spec.q.annotations.get(n) is e:
                return n
        if equal:
            for n in self.scope:
                if _same(spec.q.annotations.get(n), e):
                    return n
        return None

    def hidden_name(self, e):
        """The hidden annotation (alias(), or masked by values()) that e
        is, or None."""
        spec = self.spec if self.base is None else self.base.spec
        if spec is None:
            return None
        for n, a in spec.q.annotations.items():
            if n not in spec.emitted and (a is e or _same(a, e)):
                return n
        return None

    # -- paths with transforms --

    def transform_name(self, e):
        """The name of a transform of DESIGN §6.2 in a path, or None."""
        if KeyTextTransform and isinstance(e, KeyTextTransform):
            return None  # ->> (text), not a key of the jsonb
        if KeyTransform and isinstance(e, KeyTransform):
            key = str(e.key_name)
            if "__" in key or not key:
                self.unsupported("the JSON key %r cannot be written as a "
                                 "path" % key)
            return key
        if IndexTransform and isinstance(e, IndexTransform):
            return str(int(e.index) - 1)  # Django keeps it 1-based
        if ArrayLenTransform and isinstance(e, ArrayLenTransform):
            return "len"
        if isinstance(e, (fn.TruncDate, fn.TruncTime)):
            name = "date" if isinstance(e, fn.TruncDate) else "time"
        elif isinstance(e, fn.Extract):
            name = getattr(e, "lookup_name", None)
            if name not in DATE_TRANSFORMS:
                return None
        else:
            return None
        if getattr(e, "tzinfo", None) is not None:
            return None
        if _tz_sensitive(e):
            _check_utc(e, self.at, "'__%s'" % name)
        return name

    def path_parts(self, e, agg_arg=False):
        """(depth, parts) when e is a column, or transforms of a column or
        of an annotation in scope (published__year, metadata__a__b,
        keywords__0, d__year), else None; depth > 0 for a column of an
        enclosing query."""
        names = []
        while isinstance(e, Transform):
            if names:
                n = self.ann_name(e)
                if n is not None:
                    return 0, (n,) + tuple(reversed(names))
            nm = self.transform_name(e)
            if nm is None:
                break
            names.append(nm)
            e = e.lhs
        if isinstance(e, Col):
            depth, parts = self.col_ref(e, agg_arg=agg_arg and not names)
            return depth, tuple(parts) + tuple(reversed(names))
        if names:
            n = self.ann_name(e, equal=True)
            if n is not None:
                return 0, (n,) + tuple(reversed(names))
        return None

    # -- expressions --

    def top_expr(self, e, name):
        """An annotation or aggregate entry (DESIGN §6.3, §6.5)."""
        if isinstance(e, Col):
            return self.ref(self.col_ref(e), "op")
        if isinstance(e, Value):
            return {"$value": self.literal(e.value, "json")}
        return self.expr(e, "arg", top=name)

    def ref(self, depth_parts, pos):
        depth, parts = depth_parts
        path = "__".join(parts)
        if depth == 0:
            return path if pos == "arg" else {"$f": path}
        out = path
        for _ in range(depth):
            out = {"$outer": out}
        return out

    def literal(self, v, pos):
        """A Value()'s value. pos "arg": a string would be a field path, so
        it is {"$value": ...}; "op" (arithmetic) and "value" (a filter's
        value): strings are literals; "json": inside {"$value": ...}."""
        if isinstance(v, bool) or v is None or isinstance(v, int):
            return v
        if isinstance(v, float):
            if not math.isfinite(v):
                self.unsupported("a %r literal" % v)
            return v
        if isinstance(v, str):
            return {"$value": v} if pos == "arg" else v
        if pos == "value":
            return _value(v, self.at)
        if isinstance(v, decimal.Decimal):
            if pos == "json":
                self.unsupported("a Decimal as a whole Value()")
            return {"$cast": {"$value": str(v)}, "to": "numeric"}
        if isinstance(v, datetime.datetime):
            if pos == "json":
                self.unsupported("a datetime as a whole Value()")
            return {"$cast": {"$value": v.isoformat()}, "to": "timestamp"}
        if isinstance(v, datetime.date):
            if pos == "json":
                self.unsupported("a date as a whole Value()")
            return {"$cast": {"$value": v.isoformat()}, "to": "date"}
        if isinstance(v, (dict, list, tuple)):
            j = _value(v, self.at)
            return j if pos == "json" else {"$value": j}
        self.unsupported("a %s literal in an expression (DESIGN §6.1's "
                         "$cast has no such type)" % type(v).__name__)

    def expr(self, e, pos, top=None, agg_arg=False):
        """An expression as DESIGN §6.1's EXPR. pos: "arg" (strings are
        field paths), "op" (an operand of arithmetic: strings are literals)
        or "value" (a filter's value)."""
        if top is None:
            n = self.ann_name(e)
            if n is not None:
                return n if pos == "arg" else {"$f": n}
        if isinstance(e, Ref):
            if e.refs in self.scope:
                return e.refs if pos == "arg" else {"$f": e.refs}
            self.unsupported("a reference to '%s', which is not an "
                             "annotation returned" % e.refs)
        if isinstance(e, Value):
            return self.literal(e.value, pos)
        if isinstance(e, Star):
            return "*"
        if ResolvedOuterRef and isinstance(e, ResolvedOuterRef) or \
                type(e).__name__ == "OuterRef":
            self.unsupported("OuterRef() outside a subquery")
        if not isinstance(e, (fn.Extract, fn.TruncDate, fn.TruncTime)):
            # (date parts are written as functions: $extract_year)
            p = self.path_parts(e, agg_arg=agg_arg)
            if p is not None:
                return self.ref(p, pos)
        if isinstance(e, (DurationExpression, TemporalSubtraction)) if \
                DurationExpression else False:
            self.unsupported("date/time arithmetic (durations) is not in "
                             "DESIGN §6.1")
        if isinstance(e, CombinedExpression):
            op = ARITHMETIC.get(e.connector)
            if op is None:
                self.unsupported("the operator '%s' is not in DESIGN §6.1 "
                                 "(only + - * / %%)" % e.connector)
            return {op: [self.expr(e.lhs, "op"), self.expr(e.rhs, "op")]}
        if isinstance(e, Aggregate):
            return self.aggregate(e)
        if NegatedExpression and isinstance(e, NegatedExpression):
            inner = e.expression
            if isinstance(inner, Exists):
                return {"$case": [{"when": self.exists_expr(inner),
                                   "then": False}], "default": True}
            self.unsupported("a negated %s expression" % type(inner).__name__)
        if isinstance(e, Exists):
            ex = self.exists_expr(e)
            if getattr(e, "negated", False):  # Django < 4.2: ~Exists()
                return {"$case": [{"when": ex, "then": False}],
                        "default": True}
            return ex
        if isinstance(e, Subquery):
            return {"$subquery": _Spec(e.query, self.at + ".$subquery",
                                       parent=self, kind="subquery").build()}
        if isinstance(e, Case):
            return self.case(e)
        if isinstance(e, ExpressionWrapper):
            inner = e.expression
            if isinstance(inner, (WhereNode, Lookup)) or \
                    type(inner).__name__ == "Q":
                self.unsupported("ExpressionWrapper(Q(...)) (a boolean "
                                 "condition as a value): use Case(When(...))")
            t_in = getattr(inner, "_output_field_or_none", None)
            t_out = getattr(e, "_output_field_or_none", None)
            if t_in is not None and t_out is not None and \
                    t_in.get_internal_type() != t_out.get_internal_type():
                self.unsupported(
                    "ExpressionWrapper(output_field=%s) of a %s expression: "
                    "prefetchd's output types are Django's rules (DESIGN "
                    "§6.1); use Cast()" % (t_out.get_internal_type(),
                                           t_in.get_internal_type()))
            return self.expr(inner, pos)
        if isinstance(e, Lookup):
            self.unsupported("a lookup (%s) as a value: use Case(When(...))"
                             % type(e).__name__)
        return self.function(e)

    def args(self, e):
        return list(getattr(e, "source_expressions", None) or
                    e.get_source_expressions())

    def aggregate(self, e, default=None):
        for cls, name in AGGREGATES:
            if isinstance(e, cls):
                break
        else:
            self.unsupported("the aggregate %s is not in DESIGN §6.1"
                             % type(e).__name__)
        args = self.args(e)
        if isinstance(e, Aggregate) and len(args) > 1 and \
                getattr(e, "filter", None) is args[-1]:
            args = args[:-1]
        if len(args) != 1:
            self.unsupported("%s with %d arguments" % (type(e).__name__,
                                                      len(args)))
        if getattr(e, "order_by", None) is not None:
            self.unsupported("%s(order_by=...)" % type(e).__name__)
        out = {"$" + name: self.expr(args[0], "arg", agg_arg=True)}
        if e.distinct:
            out["distinct"] = True
        f = getattr(e, "filter", None)
        if f is not None:
            if not isinstance(f, WhereNode):
                if isinstance(f, Lookup):
                    f = WhereNode([f])
                else:
                    self.unsupported("%s(filter=%s)"
                                     % (type(e).__name__, type(f).__name__))
            c = self.node(f, False)
            if c is NOTHING:
                c = {"pk__in": []}
            if c is not ALL:
                out["filter"] = c
        if name in ("stddev", "variance") and \
                str(getattr(e, "function", "")).endswith("_SAMP"):
            out["sample"] = True
        if getattr(e, "default", None) is not None:  # unresolved
            self.unsupported("%s(default=...) that Django did not resolve"
                             % type(e).__name__)
        if default is not None:
            out["default"] = default
        return out

    def function(self, e):
        cls = type(e).__name__
        args = self.args(e)
        for klass, name in ONE_ARG:
            if isinstance(e, klass):
                if klass is fn.Round and len(args) == 2:
                    prec = args[1]
                    if isinstance(prec, Value) and prec.value == 0:
                        args = args[:1]
                    else:
                        self.unsupported("Round(precision=...): DESIGN "
                                         "§6.1's $round has no precision")
                if len(args) != 1:
                    self.unsupported("%s with %d arguments" % (cls,
                                                              len(args)))
                return {"$" + name: self.expr(args[0], "arg")}
        if isinstance(e, fn.Extract):
            kind = getattr(e, "lookup_name", None)
            if kind not in EXTRACT_KINDS:
                self.unsupported("Extract('%s'): not in DESIGN §6.1" % kind)
            if _tz_sensitive(e):
                _check_utc(e, self.at, "Extract%s" % kind.title())
            return {"$extract_" + kind: self.expr(args[0], "arg")}
        if isinstance(e, TruncBase):
            kind = getattr(e, "kind", None)
            if kind not in TRUNC_KINDS:
                self.unsupported("Trunc('%s'): not in DESIGN §6.1" % kind)
            if _tz_sensitive(e):
                _check_utc(e, self.at, "Trunc%s" % kind.title())
            src = getattr(args[0], "_output_field_or_none", None)
            out_f = getattr(e, "_output_field_or_none", None)
            if kind not in ("date", "time") and src is not None and \
                    out_f is not None and \
                    src.get_internal_type() != out_f.get_internal_type():
                self.unsupported(
                    "Trunc(..., output_field=%s) of a %s: the output type "
                    "of $trunc_%s is its argument's"
                    % (out_f.get_internal_type(), src.get_internal_type(),
                       kind))
            return {"$trunc_" + kind: self.expr(args[0], "arg")}
        if isinstance(e, fn.Coalesce) and len(args) == 2 and \
                isinstance(args[0], Aggregate) and \
                not isinstance(args[0], Count):
            # Sum("x", default=0) is Coalesce(Sum("x"), 0) once resolved
            return self.aggregate(args[0], default=self.expr(args[1], "arg"))
        for klass, name in MANY_ARGS:
            if isinstance(e, klass):
                return {"$" + name: [self.expr(a, "arg") for a in args]}
        if isinstance(e, fn.NullIf):
            return {"$nullif": [self.expr(a, "arg") for a in args]}
        if isinstance(e, (fn.Concat, fn.ConcatPair)):
            flat = []

            def walk(x):
                if isinstance(x, fn.ConcatPair):
                    for a in self.args(x):
                        walk(a)
                elif isinstance(x, fn.Concat) and len(self.args(x)) == 1:
                    walk(self.args(x)[0])
                else:
                    flat.append(self.expr(x, "arg"))
            walk(e)
            return {"$concat": flat}
        if isinstance(e, fn.Cast):
            f = e.output_field
            internal = f.get_internal_type()
            target = CAST_TARGETS.get(internal)
            if internal == "CharField" and getattr(f, "max_length",
                                                   None) is None:
                target = "text"
            if internal == "DecimalField" and f.max_digits is None and \
                    f.decimal_places is None:
                target = "numeric"
            if target is None:
                self.unsupported("Cast(output_field=%s): not one of DESIGN "
                                 "§6.1's targets (%s)"
                                 % (_field_desc(f), ", ".join(sorted(set(
                                     CAST_TARGETS.values()) | {"numeric"}))))
            return {"$cast": self.expr(args[0], "arg"), "to": target}
        if cls == "Window" or getattr(e, "contains_over_clause", False):
            self.unsupported("window expressions are not in DESIGN §6.1")
        self.unsupported("%s is not an expression of DESIGN §6.1" % cls)

    def case(self, e):
        whens = []
        for w in e.cases:
            cond = w.condition
            if isinstance(cond, WhereNode):
                c = self.node(cond, False)
            elif isinstance(cond, Lookup):
                c = self.lookup(cond, False)
            else:
                c = self.bool_cond(cond)
            if c is ALL:
                c = {"pk__isnull": False}
            elif c is NOTHING:
                c = {"pk__in": []}
            whens.append({"when": c, "then": self.expr(w.result, "arg")})
        out = {"$case": whens}
        d = e.default
        if not (isinstance(d, Value) and d.value is None):
            out["default"] = self.expr(d, "arg")
        return out

    def bool_cond(self, e):
        """A boolean expression as a condition (When(Exists(...)))."""
        if NegatedExpression and isinstance(e, NegatedExpression) and \
                isinstance(e.expression, Exists):
            return {"$not": self.exists_expr(e.expression)}
        if isinstance(e, Exists):
            c = self.exists_expr(e)
            return {"$not": c} if getattr(e, "negated", False) else c
        n = self.ann_name(e, equal=True)
        if n is None:
            p = self.path_parts(e)
            if p is not None and p[0] == 0:
                n = "__".join(p[1])
        if n is not None:
            return {n: True}
        self.unsupported("%s as a condition" % type(e).__name__)

    def exists_expr(self, ex):
        return {"$exists": _Spec(ex.query, self.at + ".$exists", parent=self,
                                 kind="exists").build()}

    # -- conditions --

    def translate(self):
        c = self.node(self.q.where, False)
        if c is ALL:
            return None
        if c is NOTHING:
            return {"pk__in": []}
        return c

    def node(self, n, negated):
        if isinstance(n, NothingNode):
            return NOTHING
        if isinstance(n, WhereNode):
            neg = negated ^ bool(n.negated)
            parts = [self.node(c, neg) for c in n.children
                     if c is not self.skip]
            if n.connector == AND:
                if NOTHING in parts:
                    out = NOTHING
                else:
                    out = _combine("$and", [p for p in parts if p is not ALL])
            else:
                if ALL in parts:
                    out = ALL
                else:
                    out = _combine("$or", [p for p in parts
                                           if p is not NOTHING], NOTHING)
            if n.negated:
                out = (NOTHING if out is ALL else ALL if out is NOTHING
                       else {"$not": out})
            return out
        if isinstance(n, Lookup):
            return self.lookup(n, negated)
        if isinstance(n, (Exists,)) or (
                NegatedExpression and isinstance(n, NegatedExpression)):
            return self.bool_cond(n)
        self.unsupported("%s in the WHERE clause (extra() or a raw "
                         "expression)" % type(n).__name__)

    def lhs_key(self, lhs, op):
        """The LOOKUP_EXPR of a lookup's left side, without the operator."""
        n = self.ann_name(lhs)
        if n is not None:
            return n
        p = self.path_parts(lhs)
        if p is not None:
            if p[0] != 0:
                self.unsupported("a condition on a column of the outer query")
            return "__".join(p[1])
        n = self.ann_name(lhs, equal=True)
        if n is not None:
            return n
        h = self.hidden_name(lhs)
        if h is not None:
            self.unsupported(
                "a filter on '%s', an alias() or an annotation that values() "
                "does not select: prefetchd filters by annotations it "
                "returns; use annotate() and list it" % h)
        self.unsupported("%s on the left of '%s' (an expression that is not "
                         "a field, a transform of DESIGN §6.2 or an "
                         "annotation)" % (type(lhs).__name__, op))

    def lookup(self, lk, negated):
        op = lk.lookup_name
        lhs = lk.lhs
        if isinstance(lhs, Exists) or (
                NegatedExpression and isinstance(lhs, NegatedExpression) and
                isinstance(lhs.expression, Exists)):
            if self.ann_name(lhs) is None:
                return self.exists(lk, negated)
        if op not in OPERATORS:
            self.unsupported("the '%s' lookup" % op)
        key = self.lhs_key(lhs, op)
        rhs = lk.rhs
        if hasattr(rhs, "alias_map") or hasattr(rhs, "query") and \
                not isinstance(rhs, Subquery):
            self.unsupported(
                "a queryset as the value of '%s' (a subquery): DESIGN §6 "
                "has $subquery for one value only; use Exists() with "
                "OuterRef()" % op)
        if type(rhs).__name__ == "Func" and \
                getattr(rhs, "extra", {}).get("function") == "ARRAY" and \
                all(isinstance(a, Value) for a in self.args(rhs)):
            # ArrayField lookups wrap a list in ARRAY[...]
            rhs = [a.value for a in self.args(rhs)]
        elif _json_prepped(lk):
            rhs = _json_unprep(rhs, op)
        if hasattr(rhs, "resolve_expression"):
            if op in ("in", "range"):
                self.unsupported("an expression in the value of '%s'" % op)
            value = self.expr(rhs, "value")
        else:
            if op == "in":
                rhs = list(rhs)
                for v in rhs:
                    if hasattr(v, "resolve_expression"):
                        self.unsupported("an expression in the value of 'in'")
                rhs = [v for v in rhs if v is not None]  # as Django does
            if op == "range":
                rhs = list(rhs)
                for v in rhs:
                    if hasattr(v, "resolve_expression"):
                        self.unsupported(
                            "an expression in the value of 'range'")
            if op == "isnull":
                rhs = bool(rhs)
            value = _value(rhs, self.at + "." + key)
            if _is_expr_obj(value):
                value = {"$value": value}
        last = key.rsplit("__", 1)[-1]
        if op != "exact" or last in OPERATORS:
            key += "__" + op
        return {key: value}

    def exists(self, lk, negated):
        """filter(Exists(...)) is {"$exists": QUERYSET}. Django's exclude()
        across a to-many relation (split_exclude) is NOT EXISTS(SELECT 1
        FROM <inner> WHERE <cond> AND inner.fk = outer.col) over the same
        model with its leading joins trimmed: given back as <cond> with the
        inner path, under the negation that prefetchd renders as NOT EXISTS
        (as a ~Exists() of the same model correlated on the pk is)."""
        ex = lk.lhs
        neg_expr = False
        if NegatedExpression and isinstance(ex, NegatedExpression):
            ex, neg_expr = ex.expression, True
        # EXISTS, not NOT EXISTS (Django < 4.2 keeps ~ in Exists.negated)
        positive = bool(lk.rhs) ^ bool(getattr(ex, "negated", False)) ^ \
            neg_expr
        inner = ex.query
        same = inner.model._meta.concrete_model is \
            self.q.model._meta.concrete_model
        # Query.trim_start() makes a join the base table, and leaves the
        # first one unreferenced
        first = _base_alias(inner)
        trimmed = same and (
            inner.alias_refcount.get(first, 0) == 0 or
            sum(isinstance(t, BaseTable)
                for t in inner.alias_map.values()) > 1)
        corrs = self.correlations(inner) if same else []
        not_exists = negated == positive
        if not trimmed:
            corr = corrs[0] if len(corrs) == 1 else None
            if not (same and not_exists and corr is not None and
                    corr.lhs.target.primary_key and
                    corr.rhs.target == corr.lhs.target and
                    corr.rhs.alias == _base_alias(self.q) and
                    corr.lhs.alias == _base_alias(inner)):
                c = self.exists_expr(ex)
                return c if positive else {"$not": c}
        if not not_exists or not corrs:
            self.unsupported("an Exists() or subquery condition")
        for c in corrs:
            if c.lhs.target.primary_key and c.rhs.target == c.lhs.target \
                    and isinstance(self.q.alias_map.get(c.rhs.alias), Join):
                self.unsupported(
                    "exclude() of a to-many condition inside a filter() "
                    "that joins the same relation (Django correlates the "
                    "two; prefetchd cannot)")
        if len(corrs) != 1:
            self.unsupported("an Exists() or subquery condition")
        corr = corrs[0]
        sel = corr.lhs
        outer = corr.rhs
        prefix = self.path(outer.alias)
        if outer.target.is_relation and sel.target.is_relation and \
                outer.target.related_model._meta.concrete_model is \
                sel.target.related_model._meta.concrete_model:
            prefix += (outer.target.name,)  # a trimmed forward join
        start = ("rev", sel.target) if sel.target.is_relation and \
            trimmed else None
        sub = _Conditions(inner, self.at, prefix, start, skip=corr,
                          base=self, outer=self.outer, spec=None)
        # (its joins are those of a NOT EXISTS: a namespace of their own)
        c = sub.node(inner.where, False)
        if not positive:  # ~Exists(...): the negation is here, not above
            c = NOTHING if c is ALL else ALL if c is NOTHING else {"$not": c}
        return c

    def correlations(self, inner):
        """The lookups inner.col = outer.col at the top of inner's where
        (split_exclude's correlation; OuterRef() of the same query)."""
        sel = inner.select[0] if len(inner.select) == 1 else None
        out = []
        for c in inner.where.children:
            if isinstance(c, Lookup) and c.lookup_name == "exact" and \
                    isinstance(c.lhs, Col) and isinstance(c.rhs, Col) and \
                    c.lhs.alias in inner.alias_map and \
                    c.rhs.alias not in inner.alias_map and \
                    c.rhs.alias in self.q.alias_map:
                out.append(c)
        if sel is not None and len(out) > 1:
            # Django 3.2: the correlation on the selected column is last
            pk = [c for c in out if c.lhs == sel]
            rest = [c for c in out if c.lhs != sel]
            out = pk[-1:] + rest if pk else out
        return out


def _field_desc(f):
    name = type(f).__name__
    if getattr(f, "max_length", None):
        return "%s(max_length=%s)" % (name, f.max_length)
    if getattr(f, "max_digits", None) is not None:
        return "%s(max_digits=%s, decimal_places=%s)" % (
            name, f.max_digits, f.decimal_places)
    return name + "()"


def _combine(op, parts, empty=ALL):
    """parts joined by op; in an AND, the plain {lookup: value} parts are
    merged into one dict (one Django filter() call) where no key repeats."""
    if not parts:
        return empty
    if op == "$and":
        merged, rest, at = {}, [], None
        for p in parts:
            plain = not any(k.startswith("$") for k in p)
            if plain and not set(p) & set(merged):
                if at is None:
                    at = len(rest)
                    rest.append(merged)
                merged.update(p)
            else:
                rest.append(p)
        parts = rest
    if len(parts) == 1:
        return parts[0]
    return {op: parts}
