/*
 * Django's naming, applied to the catalog: which foreign keys and junction
 * tables become relations, what they are called, and who keeps a name that
 * two relations want. Part of schema_build() (see schema_build.h); the
 * rules are proto/README.md's "Models and relations: the naming rules",
 * and the order in which names are claimed (naming_claim) is what makes
 * them deterministic.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_build.h"

/* The first name of an FK's "columns" or "ref_columns". */
static const char *fk_first(const json_t *fk, const char *key)
{
	return json_string_value(json_array_get(json_object_get(fk, key), 0));
}

/* book_isbn -> book.isbn: "book"; author_id -> "author"; else the column. */
static char *forward_name(const char *col, const char *ref)
{
	size_t n = strlen(col), r = strlen(ref);

	if (n > r + 1 && col[n - r - 1] == '_' && !strcmp(col + n - r, ref))
		return strndup(col, n - r - 1);
	if (n > 3 && !strcmp(col + n - 3, "_id"))
		return strndup(col, n - 3);
	return strdup(col);
}

static bool declared(const struct build *b, const struct btable *src,
		     const char *col, const struct btable *through)
{
	for (size_t i = 0; i < b->ndrafts; i++) {
		const struct draft *d = &b->drafts[i];

		if (!d->overlay)
			continue;
		if (through && d->through == through)
			return true;
		if (col && d->kind != REL_MANY_TO_MANY && d->src == src &&
		    !strcmp(d->column, col))
			return true;
	}
	return false;
}

static int catalog_fk(struct build *b, struct btable *bt, json_t *fk)
{
	json_t *cols = json_object_get(fk, "columns");
	const char *cname = build_jstr(fk, "name"), *col, *ref;
	const struct schema_column *from, *to;
	struct btable *dst;
	struct draft *d;
	size_t n;

	if (json_array_size(cols) != 1)
		return build_clash(
			b, bt->name, NULL,
			"foreign key %s over %zu columns skipped: only "
			"single-column foreign keys become relations",
			cname, json_array_size(cols));
	dst = build_find_table(b, build_jstr(fk, "ref_schema"),
			       build_jstr(fk, "ref_table"), &n);
	if (!dst)
		return build_clash(
			b, bt->name, NULL,
			"foreign key %s skipped: %s.%s is not in the "
			"configured schemas",
			cname, build_jstr(fk, "ref_schema"),
			build_jstr(fk, "ref_table"));
	col = fk_first(fk, "columns");
	ref = fk_first(fk, "ref_columns");
	if (dst->hidden || declared(b, bt, col, NULL))
		return 0;
	from = schema_find_column(bt->model, col);
	to = schema_find_column(dst->model, ref);
	if (!from || !to)
		return 0; /* over a hidden column */
	if (!(d = build_draft_new(b)))
		return build_oom(b);
	d->kind = build_unique(bt, col) ? REL_ONE_TO_ONE : REL_FOREIGN_KEY;
	d->src = bt;
	d->dst = dst;
	d->column = col;
	d->model = bt->model;
	d->target = dst->model;
	d->from = from;
	d->to = to;
	d->constraint = strdup(cname);
	d->name = forward_name(col, ref);
	d->query = strdup(d->name ? d->name : "");
	d->rname = d->kind == REL_ONE_TO_ONE ? strdup(bt->name)
					     : build_printf("%s_set", bt->name);
	d->rquery = strdup(bt->name);
	if (!d->constraint || !d->name || !d->query || !d->rname || !d->rquery)
		return build_oom(b);
	return 0;
}

/* In column order (FKs sharing a first column: by constraint name). */
static int catalog_fks(struct build *b, struct btable *bt)
{
	size_t i, j;
	json_t *c, *fk;

	json_array_foreach (bt->columns, i, c) {
		json_array_foreach (bt->fks, j, fk) {
			if (strcmp(fk_first(fk, "columns"),
				   build_jstr(c, "name")))
				continue;
			if (catalog_fk(b, bt, fk) < 0)
				return -1;
		}
	}
	return 0;
}

/* Is bt an auto-created junction: exactly two NOT NULL single-column FKs on
 * distinct columns, plus nothing but an optional surrogate primary key (or
 * a primary key over the two)? *first is the FK on the earlier column. */
static bool junction_fks(const struct btable *bt, json_t **first,
			 json_t **second)
{
	json_t *fa = json_array_get(bt->fks, 0);
	json_t *fb = json_array_get(bt->fks, 1);
	size_t ncols = json_array_size(bt->columns);
	size_t npk = json_array_size(bt->pk), ia, ib;
	const char *a, *b;
	json_t *ca, *cb;

	if (json_array_size(bt->fks) != 2 || ncols < 2 || ncols > 3 ||
	    json_array_size(json_object_get(fa, "columns")) != 1 ||
	    json_array_size(json_object_get(fb, "columns")) != 1)
		return false;
	a = fk_first(fa, "columns");
	b = fk_first(fb, "columns");
	if (!(ca = build_column(bt, a, &ia)) ||
	    !(cb = build_column(bt, b, &ib)) || ia == ib ||
	    !json_is_true(json_object_get(ca, "not_null")) ||
	    !json_is_true(json_object_get(cb, "not_null")))
		return false;
	if (ncols == 3) {
		/* Positions 0, 1 and 2 add up to 3. */
		json_t *other = json_array_get(bt->columns, 3 - ia - ib);

		if (npk != 1 ||
		    !build_str_in(bt->pk, build_jstr(other, "name")))
			return false;
	} else if (npk && !(npk == 2 && build_str_in(bt->pk, a) &&
			    build_str_in(bt->pk, b))) {
		return false;
	}
	*first = ia < ib ? fa : fb;
	*second = ia < ib ? fb : fa;
	return true;
}

/* "library_books" after "library": "books"; NULL if it does not follow. */
static const char *after_prefix(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(s, prefix, n) || s[n] != '_' || !s[n + 1])
		return NULL;
	return s + n + 1;
}

/* Django's auto-created tables are <model's table>_<field>; the model
 * names are tried too, for junctions renamed along with their ends. */
static const char *junction_suffix(const struct btable *j,
				   const struct btable *t)
{
	const char *s = after_prefix(j->table, t->table);

	return s ? s : after_prefix(j->name, t->name);
}

/* A junction's many-to-many goes from a to b: a is the table that names
 * the junction (a_<suffix>), else the end of the FK on the first column. */
static int catalog_m2m(struct build *b, struct btable *j)
{
	const struct schema_column *from, *to;
	struct btable *ta, *tb;
	const char *suffix;
	json_t *fa, *fb;
	struct draft *d;
	size_t n;

	if (!junction_fks(j, &fa, &fb) || declared(b, NULL, NULL, j))
		return 0;
	ta = build_find_table(b, build_jstr(fa, "ref_schema"),
			      build_jstr(fa, "ref_table"), &n);
	tb = build_find_table(b, build_jstr(fb, "ref_schema"),
			      build_jstr(fb, "ref_table"), &n);
	if (!ta || !tb || ta->hidden || tb->hidden)
		return 0;
	suffix = junction_suffix(j, ta);
	if (!suffix && (suffix = junction_suffix(j, tb))) {
		struct btable *t = ta;
		json_t *f = fa;

		ta = tb;
		tb = t;
		fa = fb;
		fb = f;
	}
	from = schema_find_column(ta->model, fk_first(fa, "ref_columns"));
	to = schema_find_column(tb->model, fk_first(fb, "ref_columns"));
	if (!from || !to)
		return 0; /* over a hidden column */
	if (!(d = build_draft_new(b)))
		return build_oom(b);
	d->kind = REL_MANY_TO_MANY;
	d->src = ta;
	d->dst = tb;
	d->through = j;
	d->model = ta->model;
	d->target = tb->model;
	d->from = from;
	d->to = to;
	d->through_from = fk_first(fa, "columns");
	d->through_to = fk_first(fb, "columns");
	d->constraint = build_printf("%s, %s", build_jstr(fa, "name"),
				     build_jstr(fb, "name"));
	d->name = suffix ? strdup(suffix) : build_printf("%s_set", tb->name);
	d->query = strdup(d->name ? d->name : "");
	d->rname = build_printf("%s_set", ta->name);
	d->rquery = strdup(ta->name);
	if (!d->constraint || !d->name || !d->query || !d->rname || !d->rquery)
		return build_oom(b);
	return 0;
}

/* Is name used on m by a column or an already claimed relation name (query
 * names when query is true, accessor names otherwise)? */
static bool name_taken(const struct build *b, const struct schema_model *m,
		       const char *name, bool query)
{
	if (schema_find_column(m, name))
		return true;
	for (size_t i = 0; i < b->ndrafts; i++) {
		const struct draft *d = &b->drafts[i];

		if (d->fwd_claimed && d->model == m &&
		    !strcmp(query ? d->query : d->name, name))
			return true;
		if (d->rev_claimed && d->target == m &&
		    !strcmp(query ? d->rquery : d->rname, name))
			return true;
	}
	return false;
}

/* base, else base_rel, base_rel2, base_rel3, ...: the first free one. */
static char *free_name(const struct build *b, const struct schema_model *m,
		       const char *base, bool accessor, bool query)
{
	for (int i = 0;; i++) {
		char *name = i == 0   ? strdup(base)
			     : i == 1 ? build_printf("%s_rel", base)
				      : build_printf("%s_rel%d", base, i);

		if (!name || !((accessor && name_taken(b, m, name, false)) ||
			       (query && name_taken(b, m, name, true))))
			return name;
		free(name);
	}
}

/* Declared names are exact: a clash is the overlay's error. */
static int claim_overlay(struct build *b, struct draft *d)
{
	char at[64];

	snprintf(at, sizeof(at), "relations[%zu]", d->entry);
	if (name_taken(b, d->model, d->name, false) ||
	    name_taken(b, d->model, d->name, true))
		return build_bad_overlay(
			b, at, "'%s' clashes with a column or relation of %s",
			d->name, d->model->name);
	d->fwd_claimed = true;
	if (!d->rname)
		return 0;
	if (name_taken(b, d->target, d->rname, false))
		return build_bad_overlay(
			b, at,
			"related_name '%s' clashes with a column or "
			"relation of %s",
			d->rname, d->target->name);
	if (name_taken(b, d->target, d->rquery, true))
		return build_bad_overlay(
			b, at,
			"related_query_name '%s' clashes with a "
			"column or relation of %s",
			d->rquery, d->target->name);
	d->rev_claimed = true;
	return 0;
}

/* Forward names serve filters too (query name = name), so both kinds of
 * names must be free. */
static int claim_forward(struct build *b, struct draft *d)
{
	char *name = free_name(b, d->model, d->name, true, true);

	if (!name)
		return build_oom(b);
	if (strcmp(name, d->name) &&
	    build_clash(b, d->model->name, name,
			"'%s' clashes with a column or relation of %s: "
			"renamed to '%s'",
			d->name, d->model->name, name) < 0) {
		free(name);
		return -1;
	}
	free(d->name);
	free(d->query);
	d->name = name;
	d->query = strdup(name);
	if (!d->query)
		return build_oom(b);
	d->fwd_claimed = true;
	return 0;
}

static int claim_reverse(struct build *b, struct draft *d)
{
	const char *target = d->target->name;
	char *name = free_name(b, d->target, d->rname, true, false);
	char *query = free_name(b, d->target, d->rquery, false, true);
	int rc = -1;

	if (!name || !query) {
		build_oom(b);
		goto out;
	}
	if (strcmp(name, d->rname) &&
	    build_clash(b, target, name,
			"reverse of %s.%s: '%s' clashes with a column or "
			"relation of %s: renamed to '%s'",
			d->model->name, d->name, d->rname, target, name) < 0)
		goto out;
	if (strcmp(query, d->rquery) &&
	    build_clash(b, target, name,
			"reverse of %s.%s: query name '%s' clashes with a "
			"column or relation of %s: renamed to '%s'",
			d->model->name, d->name, d->rquery, target, query) < 0)
		goto out;
	free(d->rname);
	free(d->rquery);
	d->rname = name;
	d->rquery = query;
	name = query = NULL;
	d->rev_claimed = true;
	rc = 0;
out:
	free(name);
	free(query);
	return rc;
}

static bool is_catalog_fk(const struct draft *d)
{
	return !d->overlay && d->model && d->kind != REL_MANY_TO_MANY;
}

/* Two catalog FKs from one model to the same target would both be the
 * reverse <model>_set (query <model>): each becomes
 * <model>_set_by_<forward name> (one-to-one: <model>_by_<forward name>),
 * query <model>_by_<forward name>. */
static int rename_shared_reverses(struct build *b)
{
	for (size_t i = 0; i < b->ndrafts; i++) {
		struct draft *d = &b->drafts[i];
		const char *src;
		size_t n = 0;

		if (!is_catalog_fk(d))
			continue;
		src = d->model->name;
		for (size_t j = 0; j < b->ndrafts; j++) {
			const struct draft *o = &b->drafts[j];

			n += is_catalog_fk(o) && o->model == d->model &&
			     o->target == d->target;
		}
		if (n < 2)
			continue;
		free(d->rname);
		free(d->rquery);
		d->rname = build_printf(
			d->kind == REL_ONE_TO_ONE ? "%s_by_%s" : "%s_set_by_%s",
			src, d->name);
		d->rquery = build_printf("%s_by_%s", src, d->name);
		if (!d->rname || !d->rquery)
			return build_oom(b);
		if (build_clash(b, d->target->name, d->rname,
				"%s has %zu foreign keys to %s: the reverse of "
				"%s.%s is named %s",
				src, n, d->target->name, src, d->name,
				d->rname) < 0)
			return -1;
	}
	return 0;
}

static int cmp_reverse(const void *pa, const void *pb)
{
	const struct draft *a = *(const struct draft *const *)pa;
	const struct draft *b = *(const struct draft *const *)pb;
	int c;

	if ((c = strcmp(a->target->name, b->target->name)))
		return c;
	if ((c = strcmp(a->rname, b->rname)))
		return c;
	if ((c = strcmp(a->model->name, b->model->name)))
		return c;
	return strcmp(a->name, b->name);
}

/* The order in which names are claimed decides who keeps a contested name:
 * overlay entries (in file order), then catalog forward relations (tables
 * by schema and name, FKs by column, then junctions), then catalog
 * reverses sorted by target, name, source model and forward name. */
int naming_claim(struct build *b)
{
	struct draft **rev = NULL;
	size_t n = 0;
	int rc = -1;

	for (size_t i = 0; i < b->ndrafts; i++) {
		if (b->drafts[i].overlay && b->drafts[i].model &&
		    claim_overlay(b, &b->drafts[i]) < 0)
			return -1;
	}
	for (size_t i = 0; i < b->ndrafts; i++) {
		if (!b->drafts[i].overlay && b->drafts[i].model &&
		    claim_forward(b, &b->drafts[i]) < 0)
			return -1;
	}
	if (rename_shared_reverses(b) < 0)
		return -1;
	if (!(rev = calloc(b->ndrafts + 1, sizeof(*rev))))
		return build_oom(b);
	for (size_t i = 0; i < b->ndrafts; i++) {
		if (!b->drafts[i].overlay && b->drafts[i].model &&
		    b->drafts[i].rname)
			rev[n++] = &b->drafts[i];
	}
	qsort(rev, n, sizeof(*rev), cmp_reverse);
	for (size_t i = 0; i < n; i++) {
		if (claim_reverse(b, rev[i]) < 0)
			goto out;
	}
	rc = 0;
out:
	free(rev);
	return rc;
}

int naming_add_catalog(struct build *b)
{
	for (size_t i = 0; i < b->ntables; i++) {
		if (!b->tables[i].hidden && catalog_fks(b, &b->tables[i]) < 0)
			return -1;
	}
	/* Hidden junctions too: hiding the table keeps its many-to-many. */
	for (size_t i = 0; i < b->ntables; i++) {
		if (catalog_m2m(b, &b->tables[i]) < 0)
			return -1;
	}
	return 0;
}
