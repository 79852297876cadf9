/*
 * Internals of schema_build(), shared by its three files and included by
 * no other module: schema.c (catalog, models, the finished snapshot),
 * naming.c (relations derived from the catalog and the order in which
 * names are claimed) and overlay.c (the overlay file). The scratch state
 * lives only while one snapshot is built; strings and arrays marked
 * "borrowed" point into the catalog or overlay JSON, alive until the end.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "err.h"
#include "schema.h"

/* One catalog table while the snapshot is built. */
struct btable {
	const char *schema; /* strings and arrays borrowed from the catalog */
	const char *table;
	json_t *columns;
	json_t *pk;
	json_t *unique;
	json_t *fks;
	char *name;	/* model name */
	bool by_schema; /* named <schema>_<table>: the table name is ambiguous */
	json_t *ov;	/* its entry in the overlay's "models", or NULL */
	bool hidden;	/* listed in hidden_models */
	struct schema_model *model; /* NULL while hidden */
};

/* One relation, forward side plus its optional reverse. */
struct draft {
	enum schema_rel_kind kind; /* forward kind */
	struct btable *src;
	struct btable *dst;
	struct btable *through; /* many-to-many only */
	const char *column;	/* FK kinds: the source column */
	/* NULL model: a declared relation dropped with a hidden model */
	struct schema_model *model;
	struct schema_model *target;
	const struct schema_column *from;
	const struct schema_column *to;
	const char *through_from;
	const char *through_to;
	char *constraint;
	char *name;
	char *query;
	char *rname; /* NULL: no reverse */
	char *rquery;
	bool overlay;
	size_t entry; /* overlay: its index in "relations" */
	bool fwd_claimed;
	bool rev_claimed;
};

struct build {
	struct schema *s;
	struct pf_err *err;
	json_t *catalog;
	json_t *overlay;
	struct btable *tables;
	size_t ntables;
	struct draft *drafts;
	size_t ndrafts;
	size_t cap;
	size_t clash_cap;
};

/* schema.c: errors. All return -1. Overlay errors are 500 "bad_overlay"
 * naming the entry: the daemon refuses to start on them. */
int build_oom(struct build *b);
int build_bad_overlay(struct build *b, const char *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Records a clash (see struct schema_clash); -1 only when out of memory. */
int build_clash(struct build *b, const char *model, const char *relation,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* schema.c: helpers. build_printf returns a malloc'd string or NULL. */
char *build_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *build_jstr(const json_t *obj, const char *key);
bool build_is_string_array(const json_t *a);
bool build_str_in(const json_t *a, const char *s);
bool build_name_ok(const char *s);

/* schema.c: catalog tables. build_column sees hidden columns too. */
json_t *build_column(const struct btable *bt, const char *name, size_t *index);
bool build_hides(const struct btable *bt, const char *column);
const char *build_pk(const struct btable *bt);
bool build_unique(const struct btable *bt, const char *column);
/* schema.table, or (schema NULL) any table of that name; *count says how
 * many matched and the first is returned. */
struct btable *build_find_table(struct build *b, const char *schema,
				const char *table, size_t *count);
/* By model name, hidden models included. */
struct btable *build_find_named(struct build *b, const char *name);
/* A zeroed draft, or NULL; pointers to earlier drafts do not survive it. */
struct draft *build_draft_new(struct build *b);

/* overlay.c, in this order: checks the file's shape, applies "models"
 * (renames, hidden columns, ordering), marks "hidden_models", and adds a
 * draft per declared relation. */
int overlay_load(struct build *b, const char *text);
int overlay_models(struct build *b);
int overlay_hide_models(struct build *b);
int overlay_relations(struct build *b);

/* naming.c: adds the catalog's relations (FKs, then junctions) that the
 * overlay did not declare, then names every draft (see naming.c). */
int naming_add_catalog(struct build *b);
int naming_claim(struct build *b);
