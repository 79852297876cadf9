"""manage.py prefetchd_overlay: writes prefetchd's schema overlay (the file
for --schema-overlay) from the project's models."""
import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from prefetchd_django.overlay import DEFAULT_HIDDEN_APPS, build_overlay


class Command(BaseCommand):
    help = ("Write prefetchd's schema overlay (--schema-overlay FILE) from "
            "the project's models: tables, orderings, relations with the "
            "project's related names, many-to-many through tables.")

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", default="-",
                            help="file to write (default: standard output)")
        parser.add_argument(
            "--hide-app", action="append", default=None, metavar="LABEL",
            help="app whose models prefetchd must not serve (repeatable); "
                 "default: %s" % " ".join(DEFAULT_HIDDEN_APPS))
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS,
            help="database whose tables are checked (default: default)")
        parser.add_argument(
            "--no-introspect", action="store_true",
            help="do not connect to the database: assume every model's "
                 "table exists (a migrated database)")

    def handle(self, *args, **opts):
        tables = None
        if not opts["no_introspect"]:
            try:
                with connections[opts["database"]].cursor() as cursor:
                    tables = set(connections[opts["database"]].introspection
                                 .table_names(cursor))
            except Exception as e:
                raise CommandError("cannot list the database's tables (%s); "
                                   "use --no-introspect" % e)
        hidden = opts["hide_app"]
        overlay, notes = build_overlay(
            DEFAULT_HIDDEN_APPS if hidden is None else hidden, tables)
        for note in notes:
            self.stderr.write("prefetchd_overlay: " + note)
        text = json.dumps(overlay, indent=2) + "\n"
        if opts["output"] == "-":
            self.stdout.write(text, ending="")
        else:
            with open(opts["output"], "w", encoding="utf-8") as f:
                f.write(text)
            self.stderr.write("prefetchd_overlay: wrote %s (%d models, %d "
                              "relations)" % (opts["output"],
                                              len(overlay["models"]),
                                              len(overlay["relations"])))
