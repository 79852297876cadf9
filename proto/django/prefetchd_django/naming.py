"""The names prefetchd knows a Django project's models by.

A model is named by its lower-case model name (``Book`` -> ``book``). When two
installed apps have a model of the same name, both are named
``<app_label>_<model_name>``. An auto-created many-to-many table (never a
model of the overlay) keeps its table name, as prefetchd's catalog names it.
A proxy model is its concrete model. prefetchd_overlay and to_spec both use
these names, so they always agree.
"""
from django.apps import apps


def _names():
    models = [m for m in apps.get_models() if not m._meta.proxy]
    seen = {}
    for m in models:
        seen.setdefault(m._meta.model_name, []).append(m)
    names = {}
    for model_name, group in seen.items():
        for m in group:
            names[m] = model_name if len(group) == 1 else "%s_%s" % (
                m._meta.app_label, model_name)
    return names


def model_name(model):
    """The prefetchd model name of a Django model class."""
    model = model._meta.concrete_model
    if model._meta.auto_created:
        return model._meta.db_table
    try:
        return _names()[model]
    except KeyError:
        return model._meta.model_name
