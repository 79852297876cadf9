/*
 * The overlay file (DESIGN.md section 2): renames models, hides columns and
 * models, sets default orderings and declares relations exactly. Part of
 * schema_build() (see schema_build.h): every entry is checked against the
 * catalog, hidden models included, so a bad file is refused whole, with
 * the entry named, even where the entry would end up dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_build.h"

static const char *const overlay_keys[] = {"models", "relations",
					   "hidden_models", NULL};

static const char *const model_keys[] = {"table", "schema", "ordering",
					 "hidden", NULL};

static const char *const fk_keys[] = {
	"model",  "name",	  "kind",
	"to",	  "related_name", "related_query_name",
	"column", "to_field",	  NULL};

static const char *const m2m_keys[] = {
	"model",      "name",	      "kind",
	"to",	      "related_name", "related_query_name",
	"through",    "from_column",  "to_column",
	"from_field", "to_field",     NULL};

static bool in_list(const char *const *list, const char *s)
{
	for (; *list; list++) {
		if (!strcmp(*list, s))
			return true;
	}
	return false;
}

static int check_keys(struct build *b, json_t *obj, const char *at,
		      const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach (obj, key, v) {
		if (!in_list(allowed, key))
			return build_bad_overlay(b, at, "unknown key '%s'",
						 key);
	}
	return 0;
}

int overlay_load(struct build *b, const char *text)
{
	json_error_t jerr;
	json_t *v;

	b->overlay = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (!b->overlay)
		return build_bad_overlay(b, "", "not JSON: %s at line %d",
					 jerr.text, jerr.line);
	if (!json_is_object(b->overlay))
		return build_bad_overlay(b, "", "not a JSON object");
	if (check_keys(b, b->overlay, "", overlay_keys) < 0)
		return -1;
	v = json_object_get(b->overlay, "models");
	if (v && !json_is_object(v))
		return build_bad_overlay(b, "models", "not an object");
	v = json_object_get(b->overlay, "relations");
	if (v && !json_is_array(v))
		return build_bad_overlay(b, "relations", "not an array");
	v = json_object_get(b->overlay, "hidden_models");
	if (v && !build_is_string_array(v))
		return build_bad_overlay(b, "hidden_models",
					 "not an array of names");
	return 0;
}

/* "models": {"author": {"table": ..., "schema": ..., "ordering": [...],
 * "hidden": [...]}}: the table becomes model "author". */
static int overlay_model(struct build *b, const char *key, json_t *ov)
{
	json_t *tbl, *sch, *hidden, *ordering, *v;
	const char *table;
	struct btable *bt;
	char at[300];
	size_t n, i;

	snprintf(at, sizeof(at), "models.%s", key);
	if (!json_is_object(ov))
		return build_bad_overlay(b, at, "not an object");
	if (check_keys(b, ov, at, model_keys) < 0)
		return -1;
	if (!build_name_ok(key))
		return build_bad_overlay(b, at,
					 "'%s' is not a valid model name", key);
	tbl = json_object_get(ov, "table");
	sch = json_object_get(ov, "schema");
	hidden = json_object_get(ov, "hidden");
	ordering = json_object_get(ov, "ordering");
	if ((tbl && !json_is_string(tbl)) || (sch && !json_is_string(sch)))
		return build_bad_overlay(b, at,
					 "\"table\" and \"schema\" are names");
	if ((hidden && !build_is_string_array(hidden)) ||
	    (ordering && !build_is_string_array(ordering)))
		return build_bad_overlay(
			b, at, "\"hidden\" and \"ordering\" list columns");
	table = tbl ? json_string_value(tbl) : key;
	bt = build_find_table(b, json_string_value(sch), table, &n);
	if (!n)
		return build_bad_overlay(b, at, "no table '%s' in the catalog",
					 table);
	if (n > 1)
		return build_bad_overlay(b, at,
					 "table '%s' is in %zu schemas: add "
					 "\"schema\"",
					 table, n);
	if (bt->ov)
		return build_bad_overlay(b, at,
					 "table '%s' is already model '%s'",
					 table, bt->name);
	bt->ov = ov;
	if (!(bt->name = strdup(key)))
		return build_oom(b);
	json_array_foreach (hidden, i, v) {
		const char *col = json_string_value(v);

		if (!build_column(bt, col, NULL))
			return build_bad_overlay(b, at,
						 "hidden: no column '%s' on %s",
						 col, table);
		/* Results and prefetch matching both need the pk. */
		if (build_str_in(bt->pk, col))
			return build_bad_overlay(
				b, at, "hidden: '%s' is (part of) the pk", col);
	}
	json_array_foreach (ordering, i, v) {
		const char *term = json_string_value(v);
		const char *col = term + (term[0] == '-');

		if (!strcmp(col, "pk") && build_pk(bt))
			continue;
		if (!build_column(bt, col, NULL) || build_hides(bt, col))
			return build_bad_overlay(
				b, at, "ordering: '%s' is not a visible column",
				term);
	}
	return 0;
}

/* "hidden_models": a model name, else a table name (every schema's). */
int overlay_hide_models(struct build *b)
{
	json_t *list = json_object_get(b->overlay, "hidden_models"), *v;
	size_t i;

	json_array_foreach (list, i, v) {
		const char *name = json_string_value(v);
		struct btable *bt = build_find_named(b, name);
		bool found = false;
		char at[64];

		if (bt) {
			bt->hidden = true;
			continue;
		}
		for (size_t j = 0; j < b->ntables; j++) {
			if (!strcmp(b->tables[j].table, name)) {
				b->tables[j].hidden = true;
				found = true;
			}
		}
		snprintf(at, sizeof(at), "hidden_models[%zu]", i);
		if (!found)
			return build_bad_overlay(
				b, at, "no model or table '%s'", name);
	}
	return 0;
}

/* col must be a visible column of bt; *out is it on bt's model, or NULL
 * while bt is hidden (the entry is still checked, then dropped). */
static int overlay_column(struct build *b, const char *at, struct btable *bt,
			  const char *col, const struct schema_column **out)
{
	if (!col && !(col = build_pk(bt)))
		return build_bad_overlay(b, at, "%s has no single-column pk",
					 bt->name);
	if (!build_column(bt, col, NULL))
		return build_bad_overlay(b, at, "no column '%s' on %s", col,
					 bt->name);
	if (build_hides(bt, col))
		return build_bad_overlay(b, at, "column '%s' of %s is hidden",
					 col, bt->name);
	*out = bt->model ? schema_find_column(bt->model, col) : NULL;
	return 0;
}

static int overlay_fk(struct build *b, const char *at, json_t *r,
		      struct draft *d)
{
	const char *col = build_jstr(r, "column");

	if (!col)
		return build_bad_overlay(b, at, "\"column\" is required");
	for (size_t i = 0; i + 1 < b->ndrafts; i++) {
		const struct draft *o = &b->drafts[i];

		if (o->kind != REL_MANY_TO_MANY && o->src == d->src &&
		    !strcmp(o->column, col))
			return build_bad_overlay(
				b, at, "relations[%zu] already declares %s.%s",
				o->entry, d->src->name, col);
	}
	d->column = col;
	if (overlay_column(b, at, d->src, col, &d->from) < 0 ||
	    overlay_column(b, at, d->dst, build_jstr(r, "to_field"), &d->to) <
		    0)
		return -1;
	return 0;
}

static int overlay_m2m(struct build *b, const char *at, json_t *r,
		       struct draft *d)
{
	const char *through = build_jstr(r, "through");
	const char *fc = build_jstr(r, "from_column"),
		   *tc = build_jstr(r, "to_column");
	size_t n;

	if (!through || !fc || !tc)
		return build_bad_overlay(b, at,
					 "\"through\", \"from_column\" and "
					 "\"to_column\" are required");
	/* Django's db_table first, then a model name. */
	d->through = build_find_table(b, NULL, through, &n);
	if (n > 1)
		return build_bad_overlay(b, at, "table '%s' is in %zu schemas",
					 through, n);
	if (!d->through && !(d->through = build_find_named(b, through)))
		return build_bad_overlay(b, at, "no table '%s' in the catalog",
					 through);
	if (!build_column(d->through, fc, NULL))
		return build_bad_overlay(b, at, "no column '%s' on %s", fc,
					 through);
	if (!build_column(d->through, tc, NULL))
		return build_bad_overlay(b, at, "no column '%s' on %s", tc,
					 through);
	d->through_from = fc;
	d->through_to = tc;
	if (overlay_column(b, at, d->src, build_jstr(r, "from_field"),
			   &d->from) < 0 ||
	    overlay_column(b, at, d->dst, build_jstr(r, "to_field"), &d->to) <
		    0)
		return -1;
	return 0;
}

static int overlay_relation(struct build *b, size_t entry, json_t *r)
{
	const char *kind, *model, *name, *to, *rn, *rqn, *key;
	struct draft *d;
	char at[64];
	json_t *v;
	int rc;

	snprintf(at, sizeof(at), "relations[%zu]", entry);
	if (!json_is_object(r))
		return build_bad_overlay(b, at, "not an object");
	kind = build_jstr(r, "kind");
	if (!kind)
		return build_bad_overlay(b, at, "\"kind\" is required");
	if (strcmp(kind, "foreign_key") && strcmp(kind, "one_to_one") &&
	    strcmp(kind, "many_to_many"))
		return build_bad_overlay(b, at, "unknown kind '%s'", kind);
	if (check_keys(b, r, at,
		       strcmp(kind, "many_to_many") ? fk_keys : m2m_keys) < 0)
		return -1;
	json_object_foreach (r, key, v) {
		if (!json_is_string(v))
			return build_bad_overlay(b, at,
						 "\"%s\" is not a string", key);
	}
	model = build_jstr(r, "model");
	name = build_jstr(r, "name");
	to = build_jstr(r, "to");
	rn = build_jstr(r, "related_name");
	rqn = build_jstr(r, "related_query_name");
	if (!model || !name || !to)
		return build_bad_overlay(b, at,
					 "\"model\", \"name\" and \"to\" are "
					 "required");
	if (!build_name_ok(name) || (rn && !build_name_ok(rn)) ||
	    (rqn && !build_name_ok(rqn)))
		return build_bad_overlay(b, at,
					 "names may not be empty or hold '__'");
	if (!(d = build_draft_new(b)))
		return build_oom(b);
	d->overlay = true;
	d->entry = entry;
	d->kind = !strcmp(kind, "foreign_key")	? REL_FOREIGN_KEY
		  : !strcmp(kind, "one_to_one") ? REL_ONE_TO_ONE
						: REL_MANY_TO_MANY;
	if (!(d->src = build_find_named(b, model)))
		return build_bad_overlay(b, at, "unknown model '%s'", model);
	if (!(d->dst = build_find_named(b, to)))
		return build_bad_overlay(b, at, "unknown model '%s'", to);
	rc = d->kind == REL_MANY_TO_MANY ? overlay_m2m(b, at, r, d)
					 : overlay_fk(b, at, r, d);
	if (rc < 0)
		return -1;
	d->name = strdup(name);
	d->query = strdup(name);
	if (!d->name || !d->query)
		return build_oom(b);
	/* Django: "+" at the end of related_name declares no reverse. */
	if (!rn || rn[strlen(rn) - 1] != '+') {
		if (rn)
			d->rname = strdup(rn);
		else if (d->kind == REL_ONE_TO_ONE)
			d->rname = strdup(d->src->name);
		else
			d->rname = build_printf("%s_set", d->src->name);
		d->rquery = strdup(rqn ? rqn : rn ? rn : d->src->name);
		if (!d->rname || !d->rquery)
			return build_oom(b);
	}
	/* Checked in full, then dropped: relations to hidden models. */
	if (!d->src->hidden && !d->dst->hidden) {
		d->model = d->src->model;
		d->target = d->dst->model;
	}
	return 0;
}

int overlay_models(struct build *b)
{
	json_t *models = json_object_get(b->overlay, "models"), *v;
	const char *key;

	json_object_foreach (models, key, v) {
		if (overlay_model(b, key, v) < 0)
			return -1;
	}
	return 0;
}

int overlay_relations(struct build *b)
{
	json_t *rels = json_object_get(b->overlay, "relations"), *v;
	size_t i;

	json_array_foreach (rels, i, v) {
		if (overlay_relation(b, i, v) < 0)
			return -1;
	}
	return 0;
}
