/*
 * Models and relations: PostgreSQL's catalog (tables, columns, keys) turned
 * into Django-named models and relations (DESIGN.md §2), then corrected by
 * the optional overlay file. A schema is an immutable, refcounted snapshot:
 * a request refs the one it started with; a reload builds a new one.
 *
 * Pure: the catalog arrives as one JSON document (the result of
 * schema_catalog_sql(), run by whoever owns a connection), so this module
 * needs neither libpq nor the network and is unit-tested from fixtures.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "err.h"

/* How a column's text value becomes JSON, so that the result equals
 * PostgreSQL's to_json() (DESIGN.md §1). */
enum schema_render {
	RENDER_NUMBER,	 /* int2/4/8, float4/8, numeric: bare, but NaN and
			    Infinity quoted, as to_json does */
	RENDER_BOOL,	 /* 't'/'f' -> true/false */
	RENDER_STRING,	 /* text output, JSON-escaped (text, uuid, time, ...) */
	RENDER_RAW,	 /* json/jsonb: the text is JSON already */
	RENDER_DATETIME, /* date/timestamp[tz]: the ISO text, made to_json's
			    (graph.c) */
	RENDER_ARRAY,	 /* text/varchar/bpchar/int2/int4/int8/bool arrays:
			    array_out's text, made to_json's (graph.c) */
	RENDER_TO_JSON,	 /* other arrays, composites: the planner selects
			    to_json(col) and the text is embedded raw */
};

struct schema_column {
	char *name;
	char *type; /* format_type(): "character varying(200)" */
	/* For casts of bind parameters: a quoted, schema-qualified type name
	 * without modifiers, e.g. "pg_catalog"."int4"; a domain's own name; for
	 * an array column, its element's name + "[]". Usable as $1::<cast> and
	 * $1::<cast>[]. */
	char *cast;
	bool nullable;
	bool pk; /* is the model's pk (never set in a composite pk) */
	enum schema_render render;
	int index; /* position in model->columns */
};

enum schema_rel_kind {
	REL_FOREIGN_KEY,	/* book.author: to-one */
	REL_ONE_TO_ONE,		/* bio.author: to-one */
	REL_MANY_TO_MANY,	/* library.books: to-many through a junction */
	REL_REVERSE_FK,		/* author.book_set: to-many */
	REL_REVERSE_ONE_TO_ONE, /* author.bio: to-one (object or null) */
	REL_REVERSE_MANY_TO_MANY, /* book.library_set: to-many */
};

struct schema_model;

/*
 * Every relation reads the same way, whatever its kind:
 *   model.from_column = target.to_column                       (FK kinds)
 *   model.from_column = through.through_from
 *     AND through.through_to = target.to_column                (M2M kinds)
 * so a forward FK book.author has from = book.author_id, to = author.id, and
 * its reverse author.book_set has from = author.id, to = book.author_id.
 */
struct schema_relation {
	char *name;	  /* accessor: "author", "book_set", "books" */
	char *query_name; /* name in filters/order_by: "author", "book" */
	enum schema_rel_kind kind;
	bool to_many;
	bool forward; /* the side that holds the FK / declares M2M */
	const struct schema_model *model;
	const struct schema_model *target;
	const struct schema_column *from_column; /* on model */
	const struct schema_column *to_column;	 /* on target */
	/* many-to-many only: the junction table and its two columns */
	char *through_schema;
	char *through_table;
	char *through_from; /* junction column matching from_column */
	char *through_to;   /* junction column matching to_column */
	bool nullable;	    /* forward FK/O2O: the FK column is nullable */
	const struct schema_relation *reverse; /* other direction, or NULL */
	char *origin;			       /* "catalog" or "overlay" */
	char *constraint; /* FK constraint name(s) it came from, or NULL */
};

struct schema_model {
	char *name;	   /* "author" (the table name unless renamed) */
	char *schema_name; /* PostgreSQL schema: "public" */
	char *table;	   /* "author" */
	struct schema_column *columns; /* visible columns, in attnum order */
	size_t ncolumns;
	const struct schema_column *pk;	   /* NULL: no pk, or a composite one */
	struct schema_relation *relations; /* forward and reverse */
	size_t nrelations;
	char **ordering; /* default ordering: "name", "-created_at" */
	size_t nordering;
};

/* A naming clash and how it was resolved, or a catalog fact that became no
 * relation (a multi-column FK, an FK to a table outside the schemas).
 * GET /schema lists them under "clashes". */
struct schema_clash {
	char *model;	/* the model it concerns */
	char *relation; /* the relation's final name, or NULL */
	char *message;
};

struct schema {
	atomic_int refs;	     /* requests on any event loop hold it */
	struct schema_model *models; /* sorted by name */
	size_t nmodels;
	struct schema_clash *clashes; /* in the order they were found */
	size_t nclashes;
	char *loaded_at; /* ISO 8601 time of the load, for /schema */
};

/* The one catalog query: returns a single row with a single json column
 * describing the tables of the given schemas ($1, a text[] of schema names):
 * tables, columns with types and render kinds, primary keys, unique
 * constraints and foreign keys. */
const char *schema_catalog_sql(void);

/* Builds a snapshot (refs = 1) from the catalog JSON text and an optional
 * overlay JSON text (NULL for none). Returns NULL with err set on a bad
 * catalog (500 internal) or a bad overlay (an error naming the entry). */
struct schema *schema_build(const char *catalog_json, const char *overlay_json,
			    struct pf_err *err);

struct schema *schema_ref(struct schema *s);
void schema_unref(struct schema *s); /* accepts NULL */

const struct schema_model *schema_find_model(const struct schema *s,
					     const char *name);
const struct schema_column *schema_find_column(const struct schema_model *m,
					       const char *name);
/* By accessor name ("book_set"): used by prefetch_related and
 * select_related. */
const struct schema_relation *schema_find_relation(const struct schema_model *m,
						   const char *name);
/* By filter name ("book"): used by filter/exclude/order_by paths. */
const struct schema_relation *
schema_find_query_relation(const struct schema_model *m, const char *name);

/* The snapshot as GET /schema shows it (a new reference for the caller). */
json_t *schema_to_json(const struct schema *s);

const char *schema_rel_kind_name(enum schema_rel_kind kind);
