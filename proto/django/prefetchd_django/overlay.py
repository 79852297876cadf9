"""The schema overlay (DESIGN.md §2) of a Django project's models, so that
prefetchd serves them under the project's own names.

- models: every concrete, non-proxy model of the installed apps but the
  hidden ones, under its prefetchd name (naming.py) with its db_table and
  its Meta.ordering (when every term is a plain field or "-field");
- relations: every ForeignKey / OneToOneField and ManyToManyField declared
  on those models (custom through models and to_fields included), with
  Django's reverse accessor as related_name and Django's related query name;
- hidden_models: the tables of the hidden apps (Django's own, by default),
  the auto-created many-to-many tables (they are junctions, not models,
  in Django) and django_migrations.

prefetchd refuses an overlay that names a table it cannot see, so when the
database's tables are known (existing_tables) the models and hidden tables
without a table are left out, with a note; without that list, every table
is assumed to exist (a migrated database).
"""
from django.apps import apps

from .naming import model_name

DEFAULT_HIDDEN_APPS = ("admin", "auth", "contenttypes", "sessions",
                       "messages", "staticfiles", "sites")


def _ordering(model, notes):
    """Meta.ordering as columns, or None when a term is not a plain field:
    prefetchd's ordering names columns of the model itself."""
    out = []
    opts = model._meta
    for term in opts.ordering:
        if not isinstance(term, str) or term == "?":
            break
        name = term.lstrip("-")
        if name == "pk":
            out.append(term)
            continue
        try:
            field = opts.get_field(name)
        except Exception:
            break
        if not getattr(field, "concrete", False) or field.many_to_many:
            break
        # An FK orders by its target's ordering, unless named by attname.
        if field.is_relation and name != field.attname and \
                field.related_model._meta.ordering:
            break
        out.append(term[:len(term) - len(name)] + field.column)
    else:
        return out
    notes.append("%s: Meta.ordering %r left out: only plain fields and "
                 "'-field' can be served" % (opts.label, opts.ordering))
    return None


def build_overlay(hidden_apps=DEFAULT_HIDDEN_APPS, existing_tables=None):
    """(overlay dict, notes): notes are warnings for the user."""
    notes = []
    hidden_apps = set(hidden_apps)
    exists = (lambda t: True) if existing_tables is None else \
        (lambda t: t in existing_tables)
    served = {}
    hidden = []
    for m in apps.get_models():
        opts = m._meta
        if opts.proxy or opts.swapped:
            continue
        if opts.app_label in hidden_apps:
            hidden.append(opts.db_table)
            hidden.extend(f.remote_field.through._meta.db_table
                          for f in opts.local_many_to_many
                          if f.remote_field.through._meta.auto_created)
            continue
        if not exists(opts.db_table):
            notes.append("%s: no table %s in the database: left out"
                         % (opts.label, opts.db_table))
            continue
        served[m] = model_name(m)
    out_models = {}
    relations = []
    for m, name in served.items():
        opts = m._meta
        entry = {"table": opts.db_table}
        ordering = _ordering(m, notes) if opts.ordering else None
        if ordering:
            entry["ordering"] = ordering
        out_models[name] = entry
        for f in opts.local_fields:
            if not f.is_relation or f.remote_field is None:
                continue
            rel = _fk(f, name, served, notes)
            if rel:
                relations.append(rel)
        for f in opts.local_many_to_many:
            rel = _m2m(f, name, served, notes, exists)
            if rel:
                relations.append(rel)
    hidden.append("django_migrations")
    hidden = {t for t in hidden if exists(t)}
    # Django's auto-created junctions are no models of their own.
    for m in served:
        for f in m._meta.local_many_to_many:
            t = f.remote_field.through._meta
            if t.auto_created and exists(t.db_table):
                hidden.add(t.db_table)
    hidden = sorted(hidden)
    overlay = {"models": out_models, "relations": relations}
    if hidden:
        overlay["hidden_models"] = hidden
    return overlay, notes


def _reverse_names(f, rel):
    if rel.is_hidden():
        return {"related_name": "+"}
    return {"related_name": rel.get_accessor_name(),
            "related_query_name": f.related_query_name()}


def _fk(f, name, served, notes):
    label = "%s.%s" % (f.model._meta.label, f.name)
    if len(f.local_related_fields) != 1 or not (f.many_to_one or
                                                f.one_to_one):
        notes.append("%s: a multi-column relation: left out" % label)
        return None
    target = f.related_model._meta.concrete_model
    if target not in served:
        return None  # to a hidden model: prefetchd shows the column only
    rel = {"model": name, "name": f.name,
           "kind": "one_to_one" if f.one_to_one else "foreign_key",
           "column": f.column, "to": served[target]}
    to_field = f.target_field
    if to_field != target._meta.pk:
        rel["to_field"] = to_field.column
    rel.update(_reverse_names(f, f.remote_field))
    return rel


def _m2m(f, name, served, notes, exists):
    target = f.related_model._meta.concrete_model
    through = f.remote_field.through
    if target not in served:
        return None
    if not exists(through._meta.db_table):
        notes.append("%s.%s: no table %s in the database: left out"
                     % (f.model._meta.label, f.name, through._meta.db_table))
        return None
    rel = {"model": name, "name": f.name, "kind": "many_to_many",
           "to": served[target], "through": through._meta.db_table,
           "from_column": f.m2m_column_name(),
           "to_column": f.m2m_reverse_name()}
    src = f.model._meta.get_field(f.m2m_target_field_name())
    dst = target._meta.get_field(f.m2m_reverse_target_field_name())
    if src != f.model._meta.pk:
        rel["from_field"] = src.column
    if dst != target._meta.pk:
        rel["to_field"] = dst.column
    rel.update(_reverse_names(f, f.remote_field))
    return rel
