"""to_spec(queryset): a Django QuerySet as a prefetchd request (DESIGN.md §1).

It reads what Django has already built, so anything that made the queryset
(filter() and exclude() calls, Q objects, a custom manager, a related
manager's own filter) is taken into account:

- conditions: the query's WhereNode tree. Each lookup's left side is a column
  of some table alias; the alias's chain of joins gives the relation path
  (``books__readers__name``). Django's to-many exclude() is an EXISTS
  subquery of the same model; its inner joins are read the same way and put
  back under the negation, where prefetchd renders NOT EXISTS again.
- order_by, slicing, distinct, only/defer, select_related, and
  prefetch_related with its Prefetch objects (recursively).

Whatever prefetchd cannot express the same way raises UnsupportedQuerySet
with the reason: annotations, aggregates, F() expressions and other
expressions, transforms (``pub_date__year``), subqueries, extra(), values(),
union(), distinct(*fields), FilteredRelation, filter() calls chained across
one to-many relation (Django joins it twice), related paths in only/defer.
"""
import datetime
import decimal
import math
import uuid

from django.db.models import F, Prefetch, QuerySet
from django.db.models.expressions import Col, Exists, OrderBy
from django.db.models.fields.related import ForeignObjectRel
from django.db.models.lookups import Lookup
from django.db.models.query import ModelIterable
from django.db.models.sql.datastructures import BaseTable, Join
from django.db.models.sql.where import AND, NothingNode, WhereNode

from .naming import model_name

OPERATORS = frozenset(
    "exact iexact contains icontains in gt gte lt lte startswith istartswith "
    "endswith iendswith range isnull regex iregex".split())


class UnsupportedQuerySet(ValueError):
    """The queryset uses something that prefetchd cannot serve as Django
    would; the message says what."""


def to_spec(queryset):
    """The prefetchd request (a dict, ready for json.dumps) for queryset."""
    return _queryset(queryset, "queryset")


# --- querysets ------------------------------------------------------------


def _queryset(qs, at):
    if not isinstance(qs, QuerySet):
        raise UnsupportedQuerySet("%s: not a QuerySet: %r" % (at, qs))
    if qs._iterable_class is not ModelIterable:
        raise UnsupportedQuerySet(
            "%s: values()/values_list()/dates() querysets are not supported"
            % at)
    q = qs.query
    _check_query(q, at)
    model = q.model._meta.concrete_model
    spec = {"model": model_name(model)}
    cond = _Conditions(q, at).translate()
    if cond is not None:
        spec["filter"] = cond
    order = _order_by(q, model, at)
    if order is not None:
        spec["order_by"] = order
    if q.distinct:
        spec["distinct"] = True
    if q.low_mark:
        spec["offset"] = q.low_mark
    if q.high_mark is not None:
        spec["limit"] = q.high_mark - q.low_mark
    names, defer = q.deferred_loading
    if names or not defer:
        cols = [_field_column(model, n, at + (".defer" if defer else ".only"))
                for n in sorted(names)]
        if defer:
            pk = model._meta.pk.column
            spec["defer"] = [c for c in cols if c != pk]
        else:
            spec["only"] = cols
    sr = _select_related(q, model)
    if sr:
        spec["select_related"] = sr
    pf = [_lookup(lk, "%s.prefetch_related[%d]" % (at, i))
          for i, lk in enumerate(qs._prefetch_related_lookups)]
    if pf:
        spec["prefetch_related"] = pf
    return spec


def _check_query(q, at):
    bad = []
    if q.combinator:
        bad.append(q.combinator + "()")
    if q.annotations:
        bad.append("annotate()/alias()/aggregates (%s)"
                   % ", ".join(sorted(q.annotations)))
    if q.extra or q.extra_tables or q.extra_order_by:
        bad.append("extra()")
    if q.values_select:
        bad.append("values()")
    if q.group_by is not None:
        bad.append("GROUP BY")
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


def _order_terms(model, term, at, depth=0):
    """One order_by term (Django names) -> prefetchd's terms (columns)."""
    if isinstance(term, OrderBy) and isinstance(term.expression, F) and \
            not term.nulls_first and not term.nulls_last:
        term = ("-" if term.descending else "") + term.expression.name
    elif isinstance(term, F):
        term = term.name
    if not isinstance(term, str):
        raise UnsupportedQuerySet(
            "%s: order_by(%r): only field names, '-name' and F('name')"
            ".asc()/.desc() are supported" % (at, term))
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
            if not last:
                raise UnsupportedQuerySet(
                    "%s: '%s': a transform or key lookup in order_by is not "
                    "supported" % (at, term))
            out.append(field.column)
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


def _order_by(q, model, at):
    """The effective ordering, explicit (None: prefetchd's pk order is
    Django's too, or Django has no order at all)."""
    if q.extra_order_by:
        raise UnsupportedQuerySet("%s: extra(order_by=...)" % at)
    if q.order_by:
        terms = list(q.order_by)
    elif q.default_ordering and model._meta.ordering:
        terms = list(model._meta.ordering)
    elif model._meta.ordering:
        return []  # order_by() cleared the default ordering
    else:
        terms = []
    out = [t for term in terms
           for t in _order_terms(model, term, "%s.order_by" % at)]
    if not q.standard_ordering:  # reverse()
        out = [t if t == "?" else t[1:] if t.startswith("-") else "-" + t
               for t in out]
    return out or None


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


# --- conditions -----------------------------------------------------------

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


def _cols(expr, out, skip=None):
    """Every Col in an expression or where tree (not inside subqueries),
    but those of the lookup skip."""
    if expr is skip:
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


class _Conditions:
    """Translates one Query's where tree (see the module's docstring)."""

    def __init__(self, query, at, prefix=(), start_hop=None, skip=None):
        self.q = query
        self.at = at if at.endswith(".filter") else at + ".filter"
        self.prefix = tuple(prefix)
        self.start_hop = start_hop  # ("rev", fk) into the base alias
        self.skip = skip            # a lookup not to translate
        self.used = {c.alias for c in _cols(query.where, [], skip)
                     if c.alias in query.alias_map}
        self.children = {}
        for alias, j in query.alias_map.items():
            if isinstance(j, Join) and query.alias_refcount[alias] > 0:
                self.children.setdefault(j.parent_alias, []).append(alias)
        self.paths = {}

    def unsupported(self, why):
        raise UnsupportedQuerySet("%s: %s" % (self.at, why))

    # Relation path of a table alias, as prefetchd (and Django) name it.
    def path(self, alias):
        if alias in self.paths:
            return self.paths[alias]
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
        names = []
        i = 0
        while i < len(hops):
            a, kind, fk = hops[i]
            m2m = None
            if kind == "rev" and i + 1 < len(hops) and \
                    hops[i + 1][1] == "fwd" and a not in self.used and \
                    len(self.children.get(a, ())) == 1:
                m2m = _through_m2m(fk, hops[i + 1][2])
            if m2m:
                field, forward = m2m
                names.append(field.name if forward
                              else field.related_query_name())
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
            i += 1
        path = self.prefix + tuple(names)
        self.paths[alias] = path
        return path

    def translate(self):
        c = self.node(self.q.where, False)
        self.check_paths()
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
            if isinstance(n.lhs, Exists):
                return self.exists(n, negated)
            return self.lookup(n)
        self.unsupported("%s in the WHERE clause (extra() or a raw "
                         "expression)" % type(n).__name__)

    def lookup(self, lk):
        op = lk.lookup_name
        if op not in OPERATORS:
            self.unsupported("the '%s' lookup" % op)
        if not isinstance(lk.lhs, Col):
            self.unsupported("%s on the left of '%s' (a transform, key "
                             "lookup or expression)"
                             % (type(lk.lhs).__name__, op))
        rhs = lk.rhs
        if hasattr(rhs, "resolve_expression") or hasattr(rhs, "query"):
            self.unsupported("%s as a value of '%s' (F(), expressions and "
                             "subqueries)" % (type(rhs).__name__, op))
        if op == "in":
            rhs = list(rhs)
            for v in rhs:
                if hasattr(v, "resolve_expression"):
                    self.unsupported("an expression inside an 'in' list")
            rhs = [v for v in rhs if v is not None]  # as Django does
        if op == "range":
            rhs = list(rhs)
        if op == "isnull":
            rhs = bool(rhs)
        path = self.path(lk.lhs.alias) + (lk.lhs.target.column,)
        key = "__".join(path)
        if op != "exact" or path[-1] in OPERATORS:
            key += "__" + op
        return {key: _value(rhs, self.at + "." + key)}

    def exists(self, lk, negated):
        """Django's exclude() across a to-many relation (split_exclude):
        NOT EXISTS(SELECT 1 FROM <inner> WHERE <cond> AND inner.fk =
        outer.col). Given back as <cond> with the inner path, under the
        negation that prefetchd renders as NOT EXISTS."""
        ex = lk.lhs
        positive = bool(lk.rhs) ^ bool(ex.negated)  # EXISTS, not NOT EXISTS
        inner = ex.query
        why = "an Exists() or subquery condition"
        if negated != positive or inner.model._meta.concrete_model is not \
                self.q.model._meta.concrete_model or len(inner.select) != 1:
            self.unsupported(why)
        sel = inner.select[0]
        corr = None
        for c in inner.where.children:
            if isinstance(c, Lookup) and c.lookup_name == "exact" and \
                    c.lhs == sel and isinstance(c.rhs, Col) and \
                    c.rhs.alias not in inner.alias_map:
                corr = c
        for c in _cols(inner.where, []):
            if c.alias not in inner.alias_map and \
                    (corr is None or c is not corr.rhs):
                self.unsupported(
                    "exclude() of a to-many condition inside a filter() "
                    "that joins the same relation (Django correlates the "
                    "two; prefetchd cannot)")
        if corr is None:
            self.unsupported(why)
        outer = corr.rhs
        prefix = self.path(outer.alias)
        if outer.target.is_relation and \
                outer.target.related_model._meta.concrete_model is \
                sel.target.related_model._meta.concrete_model:
            prefix += (outer.target.name,)  # a trimmed forward join
        start = ("rev", sel.target) if sel.target.is_relation else None
        sub = _Conditions(inner, self.at, prefix, start, skip=corr)
        c = sub.node(inner.where, False)
        sub.check_paths()
        if not positive:  # ~Exists(...): the negation is here, not above
            c = NOTHING if c is ALL else ALL if c is NOTHING else {"$not": c}
        return c

    def check_paths(self):
        seen = {}
        for alias, path in self.paths.items():
            if seen.setdefault(path, alias) != alias:
                self.unsupported(
                    "the query joins '%s' twice (filter() calls chained "
                    "across a to-many relation); prefetchd joins a path "
                    "once: put the conditions in one filter() call"
                    % "__".join(path))


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
