/*
 * Catalog JSON + overlay JSON -> an immutable, refcounted snapshot of models
 * and relations (schema.h). This file holds the catalog query, reads the
 * catalog, creates the models, writes the named relations into them, and
 * serves the finished snapshot (find, JSON, refs); naming.c derives and
 * names the catalog's relations, overlay.c reads the overlay. Building works
 * on scratch data (schema_build.h), so a failed build leaves nothing behind.
 * Knows nothing of libpq: the catalog arrives as text.
 */
#include "schema.h"
#include "schema_build.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * The catalog query, in parts because ISO C only promises string literals
 * of 4095 bytes. Every name is pg_catalog-qualified so that a search_path
 * cannot change what it calls. Partitions are left out (their parent is the
 * model) and so are the FK constraints PostgreSQL clones onto partitions
 * (conparentid <> 0). Domains are followed down to their base type for the
 * render kind, but keep their own name for casts. The arrays rendered in C
 * ('array') are bool[], int2[], int4[], text[], bpchar[], varchar[] and
 * int8[], by type OID (graph.c's array_kind has the same list).
 */
static const char *const catalog_sql_parts[] = {
	"WITH RECURSIVE tabs AS (\n"
	" SELECT c.oid, n.nspname, c.relname\n"
	" FROM pg_catalog.pg_class c\n"
	" JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
	" WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition\n"
	"  AND n.nspname = ANY ($1::pg_catalog.text[])\n"
	"), cols AS (\n"
	" SELECT a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod,\n"
	"  a.attnotnull\n"
	" FROM pg_catalog.pg_attribute a JOIN tabs t ON t.oid = a.attrelid\n"
	" WHERE a.attnum > 0 AND NOT a.attisdropped\n"
	"), domains (typ, cur, typtype, typbasetype) AS (\n"
	" SELECT t.oid, t.oid, t.typtype, t.typbasetype\n"
	" FROM pg_catalog.pg_type t\n"
	" WHERE t.oid IN (SELECT atttypid FROM cols)\n"
	" UNION ALL\n"
	" SELECT d.typ, t.oid, t.typtype, t.typbasetype\n"
	" FROM domains d JOIN pg_catalog.pg_type t ON t.oid = d.typbasetype\n"
	" WHERE d.typtype = 'd'\n"
	"), types AS (\n"
	" SELECT d.typ,\n"
	"  CASE WHEN ct.typtype <> 'd' AND et.typarray = ct.oid\n"
	"   THEN '\"' || pg_catalog.replace(en.nspname, '\"', '\"\"')\n"
	"    || '\".\"' || pg_catalog.replace(et.typname, '\"', '\"\"')\n"
	"    || '\"[]'\n"
	"   ELSE '\"' || pg_catalog.replace(cn.nspname, '\"', '\"\"')\n"
	"    || '\".\"' || pg_catalog.replace(ct.typname, '\"', '\"\"')\n"
	"    || '\"'\n"
	"  END AS cast,\n"
	"  CASE WHEN bt.oid IN (1000, 1005, 1007, 1009, 1014, 1015, 1016)\n"
	"   THEN 'array'\n"
	"   WHEN bt.typcategory = 'A' OR bt.typtype = 'c' THEN 'to_json'\n"
	"   WHEN bt.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace\n"
	"    THEN 'string'\n"
	"   WHEN bt.typname IN ('int2', 'int4', 'int8', 'float4', 'float8',\n"
	"    'numeric') THEN 'number'\n"
	"   WHEN bt.typname = 'bool' THEN 'bool'\n"
	"   WHEN bt.typname IN ('json', 'jsonb') THEN 'raw'\n"
	"   WHEN bt.typname IN ('date', 'timestamp', 'timestamptz')\n"
	"    THEN 'datetime'\n"
	"   ELSE 'string'\n"
	"  END AS render\n"
	" FROM domains d\n"
	" JOIN pg_catalog.pg_type bt ON bt.oid = d.cur\n"
	" JOIN pg_catalog.pg_type ct ON ct.oid = d.typ\n"
	" JOIN pg_catalog.pg_namespace cn ON cn.oid = ct.typnamespace\n"
	" LEFT JOIN pg_catalog.pg_type et ON et.oid = ct.typelem\n"
	" LEFT JOIN pg_catalog.pg_namespace en ON en.oid = et.typnamespace\n"
	" WHERE d.typtype <> 'd'\n"
	")\n",
	"SELECT pg_catalog.json_build_object('tables', COALESCE(\n"
	" pg_catalog.json_agg(pg_catalog.json_build_object(\n"
	"  'schema', t.nspname,\n"
	"  'name', t.relname,\n"
	"  'columns', COALESCE((\n"
	"   SELECT pg_catalog.json_agg(pg_catalog.json_build_object(\n"
	"    'name', c.attname,\n"
	"    'type', pg_catalog.format_type(c.atttypid, c.atttypmod),\n"
	"    'cast', ty.cast,\n"
	"    'not_null', c.attnotnull,\n"
	"    'render', ty.render) ORDER BY c.attnum)\n"
	"   FROM cols c JOIN types ty ON ty.typ = c.atttypid\n"
	"   WHERE c.attrelid = t.oid), '[]'),\n"
	"  'primary_key', COALESCE((\n"
	"   SELECT pg_catalog.json_agg(a.attname ORDER BY k.ord)\n"
	"   FROM pg_catalog.pg_constraint p,\n"
	"    pg_catalog.unnest(p.conkey) WITH ORDINALITY k(attnum, ord)\n"
	"   JOIN pg_catalog.pg_attribute a\n"
	"    ON a.attrelid = t.oid AND a.attnum = k.attnum\n"
	"   WHERE p.conrelid = t.oid AND p.contype = 'p'), '[]'),\n"
	"  'unique', COALESCE((\n"
	"   SELECT pg_catalog.json_agg((\n"
	"    SELECT pg_catalog.json_agg(a.attname ORDER BY k.n)\n"
	"    FROM pg_catalog.generate_series(0, i.indnkeyatts - 1) k(n)\n"
	"    JOIN pg_catalog.pg_attribute a\n"
	"     ON a.attrelid = t.oid AND a.attnum = i.indkey[k.n])\n"
	"    ORDER BY ic.relname)\n"
	"   FROM pg_catalog.pg_index i\n"
	"   JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid\n"
	"   WHERE i.indrelid = t.oid AND i.indisunique AND i.indisvalid\n"
	"    AND NOT i.indisprimary\n"
	"    AND i.indpred IS NULL AND i.indexprs IS NULL), '[]'),\n",
	"  'foreign_keys', COALESCE((\n"
	"   SELECT pg_catalog.json_agg(pg_catalog.json_build_object(\n"
	"    'name', f.conname,\n"
	"    'columns', (\n"
	"     SELECT pg_catalog.json_agg(a.attname ORDER BY k.ord)\n"
	"     FROM pg_catalog.unnest(f.conkey) WITH ORDINALITY k(attnum, ord)\n"
	"     JOIN pg_catalog.pg_attribute a\n"
	"      ON a.attrelid = f.conrelid AND a.attnum = k.attnum),\n"
	"    'ref_schema', rn.nspname,\n"
	"    'ref_table', rc.relname,\n"
	"    'ref_columns', (\n"
	"     SELECT pg_catalog.json_agg(a.attname ORDER BY k.ord)\n"
	"     FROM pg_catalog.unnest(f.confkey) WITH ORDINALITY k(attnum, "
	"ord)\n"
	"     JOIN pg_catalog.pg_attribute a\n"
	"      ON a.attrelid = f.confrelid AND a.attnum = k.attnum))\n"
	"    ORDER BY f.conname)\n"
	"   FROM pg_catalog.pg_constraint f\n"
	"   JOIN pg_catalog.pg_class rc ON rc.oid = f.confrelid\n"
	"   JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace\n"
	"   WHERE f.conrelid = t.oid AND f.contype = 'f'\n"
	"    AND f.conparentid = 0), '[]'))\n"
	" ORDER BY t.nspname, t.relname), '[]'))\n"
	"FROM tabs t\n",
};

const char *schema_catalog_sql(void)
{
	static char sql[8192];
	size_t off = 0;

	if (sql[0])
		return sql;
	for (size_t i = 0; i < sizeof(catalog_sql_parts) / sizeof(char *);
	     i++) {
		size_t n = strlen(catalog_sql_parts[i]);

		/* Cannot fail at run time if it did not fail in the tests. */
		if (off + n >= sizeof(sql))
			abort();
		memcpy(sql + off, catalog_sql_parts[i], n);
		off += n;
	}
	sql[off] = '\0';
	return sql;
}

static const char *const render_names[] = {
	[RENDER_NUMBER] = "number",	[RENDER_BOOL] = "bool",
	[RENDER_STRING] = "string",	[RENDER_RAW] = "raw",
	[RENDER_DATETIME] = "datetime", [RENDER_ARRAY] = "array",
	[RENDER_TO_JSON] = "to_json",
};

static int bad_catalog(struct build *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

int build_oom(struct build *b)
{
	return pf_err_set(b->err, 500, "internal", "", "out of memory");
}

static int bad_catalog(struct build *b, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return pf_err_set(b->err, 500, "internal", "", "bad catalog: %s", msg);
}

/* The daemon refuses to start on these, so the message names the entry. */
int build_bad_overlay(struct build *b, const char *at, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return pf_err_set(b->err, 500, "bad_overlay", at, "overlay%s%s: %s",
			  at[0] ? " " : "", at, msg);
}

char *build_printf(const char *fmt, ...)
{
	va_list ap;
	char *out;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !(out = malloc((size_t)n + 1)))
		return NULL;
	va_start(ap, fmt);
	vsnprintf(out, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return out;
}

int build_clash(struct build *b, const char *model, const char *relation,
		const char *fmt, ...)
{
	struct schema *s = b->s;
	struct schema_clash *c;
	char msg[512];
	va_list ap;

	if (s->nclashes == b->clash_cap) {
		size_t cap = b->clash_cap ? b->clash_cap * 2 : 8;
		struct schema_clash *grown =
			realloc(s->clashes, cap * sizeof(*grown));

		if (!grown)
			return build_oom(b);
		s->clashes = grown;
		b->clash_cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c = &s->clashes[s->nclashes++];
	c->model = strdup(model);
	c->relation = relation ? strdup(relation) : NULL;
	c->message = strdup(msg);
	if (!c->model || (relation && !c->relation) || !c->message)
		return build_oom(b);
	return 0;
}

const char *build_jstr(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

bool build_is_string_array(const json_t *a)
{
	size_t i;
	json_t *v;

	if (!json_is_array(a))
		return false;
	json_array_foreach (a, i, v) {
		if (!json_is_string(v))
			return false;
	}
	return true;
}

bool build_str_in(const json_t *a, const char *s)
{
	size_t i;
	json_t *v;

	json_array_foreach (a, i, v) {
		if (json_is_string(v) && !strcmp(json_string_value(v), s))
			return true;
	}
	return false;
}

static int render_parse(const char *s)
{
	for (size_t i = 0; s && i < sizeof(render_names) / sizeof(char *);
	     i++) {
		if (!strcmp(render_names[i], s))
			return (int)i;
	}
	return -1;
}

/* Lookups use "__" as a separator, so no name may contain it. */
bool build_name_ok(const char *s)
{
	return s[0] && !strstr(s, "__");
}

/* The catalog column called name (all columns, hidden ones too). */
json_t *build_column(const struct btable *bt, const char *name, size_t *index)
{
	size_t i;
	json_t *c;

	json_array_foreach (bt->columns, i, c) {
		if (!strcmp(build_jstr(c, "name"), name)) {
			if (index)
				*index = i;
			return c;
		}
	}
	return NULL;
}

bool build_hides(const struct btable *bt, const char *column)
{
	return bt->ov &&
	       build_str_in(json_object_get(bt->ov, "hidden"), column);
}

/* The primary key's column, or NULL for none or a composite key. */
const char *build_pk(const struct btable *bt)
{
	if (json_array_size(bt->pk) != 1)
		return NULL;
	return json_string_value(json_array_get(bt->pk, 0));
}

/* Is column alone the primary key or a unique key: a one-to-one FK. */
bool build_unique(const struct btable *bt, const char *column)
{
	const char *pk = build_pk(bt);
	size_t i;
	json_t *u;

	if (pk && !strcmp(pk, column))
		return true;
	json_array_foreach (bt->unique, i, u) {
		if (json_array_size(u) == 1 && build_str_in(u, column))
			return true;
	}
	return false;
}

/* schema.table, or (schema NULL) any table called table; *count is the
 * number of matches. */
struct btable *build_find_table(struct build *b, const char *schema,
				const char *table, size_t *count)
{
	struct btable *found = NULL;

	*count = 0;
	for (size_t i = 0; i < b->ntables; i++) {
		struct btable *bt = &b->tables[i];

		if (strcmp(bt->table, table) ||
		    (schema && strcmp(bt->schema, schema)))
			continue;
		if (!found)
			found = bt;
		(*count)++;
	}
	return found;
}

/* By model name, hidden models included. */
struct btable *build_find_named(struct build *b, const char *name)
{
	for (size_t i = 0; i < b->ntables; i++) {
		if (!strcmp(b->tables[i].name, name))
			return &b->tables[i];
	}
	return NULL;
}

static bool table_ok(const json_t *t)
{
	json_t *cols = json_object_get(t, "columns");
	json_t *unique = json_object_get(t, "unique");
	json_t *fks = json_object_get(t, "foreign_keys");
	size_t i;
	json_t *v;

	if (!build_jstr(t, "schema") || !build_jstr(t, "name") ||
	    !json_is_array(cols) ||
	    !build_is_string_array(json_object_get(t, "primary_key")) ||
	    !json_is_array(unique) || !json_is_array(fks))
		return false;
	json_array_foreach (cols, i, v) {
		if (!build_jstr(v, "name") || !build_jstr(v, "type") ||
		    !build_jstr(v, "cast") ||
		    !json_is_boolean(json_object_get(v, "not_null")) ||
		    render_parse(build_jstr(v, "render")) < 0)
			return false;
	}
	json_array_foreach (unique, i, v) {
		if (!build_is_string_array(v))
			return false;
	}
	json_array_foreach (fks, i, v) {
		json_t *c = json_object_get(v, "columns");
		json_t *r = json_object_get(v, "ref_columns");

		if (!build_jstr(v, "name") || !build_jstr(v, "ref_schema") ||
		    !build_jstr(v, "ref_table") || !build_is_string_array(c) ||
		    !build_is_string_array(r) || !json_array_size(c) ||
		    json_array_size(c) != json_array_size(r))
			return false;
	}
	return true;
}

static int catalog_load(struct build *b, const char *text)
{
	json_error_t jerr;
	json_t *tables, *t;
	size_t i;

	if (!text)
		return bad_catalog(b, "none given");
	b->catalog = json_loads(text, 0, &jerr);
	if (!b->catalog)
		return bad_catalog(b, "%s at line %d", jerr.text, jerr.line);
	tables = json_object_get(b->catalog, "tables");
	if (!json_is_array(tables))
		return bad_catalog(b, "no \"tables\" array");
	b->tables = calloc(json_array_size(tables) + 1, sizeof(*b->tables));
	if (!b->tables)
		return build_oom(b);
	json_array_foreach (tables, i, t) {
		struct btable *bt = &b->tables[i];

		if (!table_ok(t))
			return bad_catalog(b, "tables[%zu] is malformed", i);
		bt->schema = build_jstr(t, "schema");
		bt->table = build_jstr(t, "name");
		bt->columns = json_object_get(t, "columns");
		bt->pk = json_object_get(t, "primary_key");
		bt->unique = json_object_get(t, "unique");
		bt->fks = json_object_get(t, "foreign_keys");
		b->ntables++;
	}
	return 0;
}

/* Tables the overlay did not name are models of their own name, or
 * <schema>_<table> when several configured schemas have that table. */
static int name_models(struct build *b)
{
	for (size_t i = 0; i < b->ntables; i++) {
		struct btable *bt = &b->tables[i];
		size_t n;

		if (bt->name)
			continue;
		build_find_table(b, NULL, bt->table, &n);
		bt->by_schema = n > 1;
		bt->name = n > 1 ? build_printf("%s_%s", bt->schema, bt->table)
				 : strdup(bt->table);
		if (!bt->name)
			return build_oom(b);
	}
	for (size_t i = 0; i < b->ntables; i++) {
		for (size_t j = i + 1; j < b->ntables; j++) {
			struct btable *x = &b->tables[i], *y = &b->tables[j];
			char at[300];

			if (strcmp(x->name, y->name))
				continue;
			if (!x->ov && !y->ov)
				return bad_catalog(b,
						   "tables %s.%s and %s.%s "
						   "are both model %s",
						   x->schema, x->table,
						   y->schema, y->table,
						   x->name);
			snprintf(at, sizeof(at), "models.%s", x->name);
			return build_bad_overlay(
				b, at,
				"tables %s.%s and %s.%s would both "
				"be model '%s'",
				x->schema, x->table, y->schema, y->table,
				x->name);
		}
	}
	return 0;
}

static int model_init(struct build *b, struct btable *bt,
		      struct schema_model *m)
{
	json_t *ordering = json_object_get(bt->ov, "ordering"), *c, *v;
	const char *pk = build_pk(bt);
	size_t i;

	m->name = strdup(bt->name);
	m->schema_name = strdup(bt->schema);
	m->table = strdup(bt->table);
	m->columns =
		calloc(json_array_size(bt->columns) + 1, sizeof(*m->columns));
	m->ordering = calloc(json_array_size(ordering) + 1, sizeof(char *));
	if (!m->name || !m->schema_name || !m->table || !m->columns ||
	    !m->ordering)
		return build_oom(b);
	json_array_foreach (bt->columns, i, c) {
		struct schema_column *col = &m->columns[m->ncolumns];
		const char *name = build_jstr(c, "name");

		if (build_hides(bt, name))
			continue;
		col->name = strdup(name);
		col->type = strdup(build_jstr(c, "type"));
		col->cast = strdup(build_jstr(c, "cast"));
		col->nullable = !json_is_true(json_object_get(c, "not_null"));
		col->render = (enum schema_render)render_parse(
			build_jstr(c, "render"));
		col->index = (int)m->ncolumns++;
		if (!col->name || !col->type || !col->cast)
			return build_oom(b);
		if (pk && !strcmp(pk, name)) {
			col->pk = true;
			m->pk = col;
		}
	}
	json_array_foreach (ordering, i, v) {
		const char *term = json_string_value(v);
		bool desc = term[0] == '-';

		/* Stored with the pk's real name: the planner reads columns. */
		if (!strcmp(term + desc, "pk") && pk)
			m->ordering[m->nordering] =
				build_printf("%s%s", desc ? "-" : "", pk);
		else
			m->ordering[m->nordering] = strdup(term);
		if (!m->ordering[m->nordering++])
			return build_oom(b);
	}
	return 0;
}

static int cmp_btable_name(const void *pa, const void *pb)
{
	const struct btable *const *a = pa, *const *b = pb;

	return strcmp((*a)->name, (*b)->name);
}

static int create_models(struct build *b)
{
	struct btable **order = calloc(b->ntables + 1, sizeof(*order));
	size_t n = 0;
	int rc = -1;

	if (!order)
		return build_oom(b);
	for (size_t i = 0; i < b->ntables; i++) {
		if (!b->tables[i].hidden)
			order[n++] = &b->tables[i];
	}
	qsort(order, n, sizeof(*order), cmp_btable_name);
	b->s->models = calloc(n + 1, sizeof(*b->s->models));
	if (!b->s->models) {
		build_oom(b);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct btable *bt = order[i];

		b->s->nmodels++;
		bt->model = &b->s->models[i];
		if (model_init(b, bt, bt->model) < 0)
			goto out;
		if (bt->by_schema &&
		    build_clash(b, bt->name, NULL,
				"table %s.%s shares its name with a table of "
				"another schema: model named %s",
				bt->schema, bt->table, bt->name) < 0)
			goto out;
	}
	rc = 0;
out:
	free(order);
	return rc;
}

/* Adds a zeroed draft; pointers to earlier drafts do not survive it. */
struct draft *build_draft_new(struct build *b)
{
	struct draft *d;

	if (b->ndrafts == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 32;
		struct draft *grown = realloc(b->drafts, cap * sizeof(*grown));

		if (!grown)
			return NULL;
		b->drafts = grown;
		b->cap = cap;
	}
	d = &b->drafts[b->ndrafts++];
	memset(d, 0, sizeof(*d));
	return d;
}

static enum schema_rel_kind reverse_kind(enum schema_rel_kind kind)
{
	switch (kind) {
	case REL_FOREIGN_KEY:
		return REL_REVERSE_FK;
	case REL_ONE_TO_ONE:
		return REL_REVERSE_ONE_TO_ONE;
	default:
		return REL_REVERSE_MANY_TO_MANY;
	}
}

static int relation_fill(struct schema_relation *r, const struct draft *d,
			 bool forward)
{
	r->name = strdup(forward ? d->name : d->rname);
	r->query_name = strdup(forward ? d->query : d->rquery);
	r->kind = forward ? d->kind : reverse_kind(d->kind);
	r->to_many = r->kind == REL_MANY_TO_MANY || r->kind == REL_REVERSE_FK ||
		     r->kind == REL_REVERSE_MANY_TO_MANY;
	r->forward = forward;
	r->model = forward ? d->model : d->target;
	r->target = forward ? d->target : d->model;
	r->from_column = forward ? d->from : d->to;
	r->to_column = forward ? d->to : d->from;
	r->nullable =
		forward && d->kind != REL_MANY_TO_MANY && d->from->nullable;
	r->origin = strdup(d->overlay ? "overlay" : "catalog");
	r->constraint = d->constraint ? strdup(d->constraint) : NULL;
	if (!r->name || !r->query_name || !r->origin ||
	    (d->constraint && !r->constraint))
		return -1;
	if (!d->through)
		return 0;
	r->through_schema = strdup(d->through->schema);
	r->through_table = strdup(d->through->table);
	r->through_from = strdup(forward ? d->through_from : d->through_to);
	r->through_to = strdup(forward ? d->through_to : d->through_from);
	if (!r->through_schema || !r->through_table || !r->through_from ||
	    !r->through_to)
		return -1;
	return 0;
}

/* Forward foreign keys and one-to-ones by their column's position, then
 * forward many-to-manys by name, then the reverse ones by name. */
static int cmp_relation(const void *pa, const void *pb)
{
	const struct schema_relation *a = pa, *b = pb;
	bool a_m2m = a->kind == REL_MANY_TO_MANY;
	bool b_m2m = b->kind == REL_MANY_TO_MANY;

	if (a->forward != b->forward)
		return a->forward ? -1 : 1;
	if (a->forward && a_m2m != b_m2m)
		return a_m2m ? 1 : -1;
	if (a->forward && !a_m2m &&
	    a->from_column->index != b->from_column->index)
		return a->from_column->index < b->from_column->index ? -1 : 1;
	return strcmp(a->name, b->name);
}

static struct schema_relation *relation_get(struct schema_model *m,
					    const char *name)
{
	for (size_t i = 0; i < m->nrelations; i++) {
		if (!strcmp(m->relations[i].name, name))
			return &m->relations[i];
	}
	return NULL;
}

/* Writes the drafts into the models' relation arrays. */
static int materialize(struct build *b)
{
	struct schema *s = b->s;
	size_t *count = calloc(s->nmodels + 1, sizeof(*count));

	if (!count)
		return build_oom(b);
	for (size_t i = 0; i < b->ndrafts; i++) {
		const struct draft *d = &b->drafts[i];

		if (!d->model)
			continue;
		count[d->model - s->models]++;
		if (d->rname)
			count[d->target - s->models]++;
	}
	for (size_t i = 0; i < s->nmodels; i++) {
		s->models[i].relations =
			calloc(count[i] + 1, sizeof(struct schema_relation));
		if (!s->models[i].relations) {
			free(count);
			return build_oom(b);
		}
	}
	free(count);
	for (size_t i = 0; i < b->ndrafts; i++) {
		const struct draft *d = &b->drafts[i];
		struct schema_model *m = d->model, *t = d->target;

		if (!m)
			continue;
		if (relation_fill(&m->relations[m->nrelations++], d, true) < 0)
			return build_oom(b);
		if (d->rname &&
		    relation_fill(&t->relations[t->nrelations++], d, false) < 0)
			return build_oom(b);
	}
	for (size_t i = 0; i < s->nmodels; i++)
		qsort(s->models[i].relations, s->models[i].nrelations,
		      sizeof(struct schema_relation), cmp_relation);
	for (size_t i = 0; i < b->ndrafts; i++) {
		const struct draft *d = &b->drafts[i];
		struct schema_relation *f, *r;

		if (!d->model || !d->rname)
			continue;
		f = relation_get(d->model, d->name);
		r = relation_get(d->target, d->rname);
		f->reverse = r;
		r->reverse = f;
	}
	return 0;
}

static void model_cleanup(struct schema_model *m)
{
	for (size_t i = 0; i < m->ncolumns; i++) {
		free(m->columns[i].name);
		free(m->columns[i].type);
		free(m->columns[i].cast);
	}
	for (size_t i = 0; i < m->nrelations; i++) {
		struct schema_relation *r = &m->relations[i];

		free(r->name);
		free(r->query_name);
		free(r->through_schema);
		free(r->through_table);
		free(r->through_from);
		free(r->through_to);
		free(r->origin);
		free(r->constraint);
	}
	for (size_t i = 0; i < m->nordering; i++)
		free(m->ordering[i]);
	free(m->columns);
	free(m->relations);
	free(m->ordering);
	free(m->name);
	free(m->schema_name);
	free(m->table);
}

static void schema_free(struct schema *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nmodels; i++)
		model_cleanup(&s->models[i]);
	for (size_t i = 0; i < s->nclashes; i++) {
		free(s->clashes[i].model);
		free(s->clashes[i].relation);
		free(s->clashes[i].message);
	}
	free(s->models);
	free(s->clashes);
	free(s->loaded_at);
	free(s);
}

static void build_cleanup(struct build *b)
{
	for (size_t i = 0; i < b->ntables; i++)
		free(b->tables[i].name);
	for (size_t i = 0; i < b->ndrafts; i++) {
		free(b->drafts[i].name);
		free(b->drafts[i].query);
		free(b->drafts[i].rname);
		free(b->drafts[i].rquery);
		free(b->drafts[i].constraint);
	}
	free(b->tables);
	free(b->drafts);
	json_decref(b->catalog);
	json_decref(b->overlay);
	schema_free(b->s);
}

static int stamp(struct build *b)
{
	time_t now = time(NULL);
	char buf[32];
	struct tm tm;

	if (!gmtime_r(&now, &tm) ||
	    !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
		buf[0] = '\0';
	if (!(b->s->loaded_at = strdup(buf)))
		return build_oom(b);
	return 0;
}

struct schema *schema_build(const char *catalog_json, const char *overlay_json,
			    struct pf_err *err)
{
	struct build b = {.err = err};
	struct schema *s = NULL;

	if (!(b.s = calloc(1, sizeof(*b.s)))) {
		build_oom(&b);
		goto out;
	}
	b.s->refs = 1;
	/* Models are named before any relation, as reverse names are built
	 * from model names. */
	if (catalog_load(&b, catalog_json) < 0 ||
	    (overlay_json && overlay_load(&b, overlay_json) < 0) ||
	    overlay_models(&b) < 0 || name_models(&b) < 0 ||
	    overlay_hide_models(&b) < 0 || create_models(&b) < 0 ||
	    overlay_relations(&b) < 0 || naming_add_catalog(&b) < 0 ||
	    naming_claim(&b) < 0 || materialize(&b) < 0 || stamp(&b) < 0)
		goto out;
	s = b.s;
	b.s = NULL;
out:
	build_cleanup(&b);
	return s;
}

/* Atomic: the event loops share a snapshot. */
struct schema *schema_ref(struct schema *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void schema_unref(struct schema *s)
{
	if (s &&
	    atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		schema_free(s);
}

static int cmp_model_key(const void *key, const void *elem)
{
	return strcmp(key, ((const struct schema_model *)elem)->name);
}

const struct schema_model *schema_find_model(const struct schema *s,
					     const char *name)
{
	if (!s->nmodels)
		return NULL;
	return bsearch(name, s->models, s->nmodels, sizeof(*s->models),
		       cmp_model_key);
}

const struct schema_column *schema_find_column(const struct schema_model *m,
					       const char *name)
{
	for (size_t i = 0; i < m->ncolumns; i++) {
		if (!strcmp(m->columns[i].name, name))
			return &m->columns[i];
	}
	return NULL;
}

const struct schema_relation *schema_find_relation(const struct schema_model *m,
						   const char *name)
{
	for (size_t i = 0; i < m->nrelations; i++) {
		if (!strcmp(m->relations[i].name, name))
			return &m->relations[i];
	}
	return NULL;
}

const struct schema_relation *
schema_find_query_relation(const struct schema_model *m, const char *name)
{
	for (size_t i = 0; i < m->nrelations; i++) {
		if (!strcmp(m->relations[i].query_name, name))
			return &m->relations[i];
	}
	return NULL;
}

const char *schema_rel_kind_name(enum schema_rel_kind kind)
{
	switch (kind) {
	case REL_FOREIGN_KEY:
		return "foreign_key";
	case REL_ONE_TO_ONE:
		return "one_to_one";
	case REL_MANY_TO_MANY:
		return "many_to_many";
	case REL_REVERSE_FK:
		return "reverse_foreign_key";
	case REL_REVERSE_ONE_TO_ONE:
		return "reverse_one_to_one";
	case REL_REVERSE_MANY_TO_MANY:
		return "reverse_many_to_many";
	}
	return "unknown";
}

/* json_pack's "o*" leaves a key out for NULL; "o" steals references even
 * when packing fails, so nothing leaks on the error paths below. */
static json_t *relation_to_json(const struct schema_relation *r)
{
	bool fk = r->kind == REL_FOREIGN_KEY || r->kind == REL_ONE_TO_ONE;
	json_t *through = NULL;

	if (r->through_table &&
	    !(through = json_pack("{s:s, s:s, s:s, s:s}", "schema",
				  r->through_schema, "table", r->through_table,
				  "from_column", r->through_from, "to_column",
				  r->through_to)))
		return NULL;
	return json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:o*, s:o*, "
			 "s:s?, s:s}",
			 "name", r->name, "kind", schema_rel_kind_name(r->kind),
			 "target", r->target->name, "to_many", r->to_many,
			 "query_name", r->query_name, "from_column",
			 r->from_column->name, "to_column", r->to_column->name,
			 "nullable", fk ? json_boolean(r->nullable) : NULL,
			 "through", through, "reverse",
			 r->reverse ? r->reverse->name : NULL, "origin",
			 r->origin);
}

static json_t *model_to_json(const struct schema_model *m)
{
	json_t *ordering = json_array(), *columns = json_array();
	json_t *relations = json_array();

	if (!ordering || !columns || !relations)
		goto fail;
	for (size_t i = 0; i < m->nordering; i++) {
		if (json_array_append_new(ordering,
					  json_string(m->ordering[i])))
			goto fail;
	}
	for (size_t i = 0; i < m->ncolumns; i++) {
		const struct schema_column *c = &m->columns[i];

		if (json_array_append_new(columns,
					  json_pack("{s:s, s:s, s:b, s:b}",
						    "name", c->name, "type",
						    c->type, "nullable",
						    c->nullable, "pk", c->pk)))
			goto fail;
	}
	for (size_t i = 0; i < m->nrelations; i++) {
		if (json_array_append_new(relations,
					  relation_to_json(&m->relations[i])))
			goto fail;
	}
	return json_pack("{s:s, s:s, s:s, s:s?, s:o, s:o, s:o}", "name",
			 m->name, "schema", m->schema_name, "table", m->table,
			 "pk", m->pk ? m->pk->name : NULL, "ordering", ordering,
			 "columns", columns, "relations", relations);
fail:
	json_decref(ordering);
	json_decref(columns);
	json_decref(relations);
	return NULL;
}

json_t *schema_to_json(const struct schema *s)
{
	json_t *models = json_array(), *clashes = json_array();

	if (!models || !clashes)
		goto fail;
	for (size_t i = 0; i < s->nmodels; i++) {
		if (json_array_append_new(models, model_to_json(&s->models[i])))
			goto fail;
	}
	for (size_t i = 0; i < s->nclashes; i++) {
		const struct schema_clash *c = &s->clashes[i];

		if (json_array_append_new(clashes,
					  json_pack("{s:s, s:s?, s:s}", "model",
						    c->model, "relation",
						    c->relation, "message",
						    c->message)))
			goto fail;
	}
	return json_pack("{s:o, s:o}", "models", models, "clashes", clashes);
fail:
	json_decref(models);
	json_decref(clashes);
	return NULL;
}
