/*
 * Binds a parsed queryset to a schema snapshot: model, fields, relation
 * paths, operators and values become references into the schema, and every
 * prefetch_related lookup becomes a level of a tree, processed in Django's
 * order (DESIGN.md §1 "Lookup semantics"). Every client error that can be
 * found without running SQL is found here: 422 (or 400) with the codes and
 * messages of DESIGN.md §1 and the "at" path of the offending part.
 *
 * The result is transparent, const data for plan: joins with their kinds
 * (INNER/LEFT as Django chooses them), a condition tree over column
 * references and parameter slots, orderings, the returned columns, the
 * select_related tree, and the prefetch level tree. Values never appear in
 * it except as parameter texts.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "schema.h"
#include "spec.h"

/* A table in a query's FROM: join 0 is the queryset's model; every other
 * join follows `rel` from join `parent`. A many-to-many join goes through
 * its junction table too. Joins with scope > 0 belong to the EXISTS
 * subquery of that number, not to the outer FROM. */
struct rjoin {
	const struct schema_relation *rel; /* NULL for join 0 */
	const struct schema_model *model;  /* the table this join reads */
	int parent;
	int scope;
	bool left;
	/* A many-to-many prefetch level's own relation, walked back from its
	 * rows (Django 5.2 reuses the prefetch's join): the junction of the
	 * level's query is this join's junction. */
	bool via_level_junction;
};

struct rcol {
	int join;
	const struct schema_column *col;
};

enum rop {
	OP_EXACT,
	OP_IEXACT,
	OP_CONTAINS,
	OP_ICONTAINS,
	OP_IN,
	OP_GT,
	OP_GTE,
	OP_LT,
	OP_LTE,
	OP_STARTSWITH,
	OP_ISTARTSWITH,
	OP_ENDSWITH,
	OP_IENDSWITH,
	OP_RANGE,
	OP_ISNULL,
	OP_REGEX,
	OP_IREGEX,
};

enum rcond_kind {
	RC_TRUE,
	RC_FALSE,
	RC_AND,
	RC_OR,
	RC_NOT,
	RC_TERM,
	RC_EXISTS,
	RC_NONE, /* an empty condition ({}); resolve folds it away */
};

struct rcond {
	enum rcond_kind kind;
	struct rcond *children; /* AND/OR: n; NOT and EXISTS: 1 */
	size_t nchildren;
	/* RC_TERM */
	struct rcol col;
	enum rop op;
	bool is_null;	 /* exact null / isnull true: IS NULL */
	bool not_null;	 /* isnull false: IS NOT NULL */
	bool null_guard; /* negated: (term AND col IS NOT NULL) */
	int param;	 /* first parameter slot, -1 for none */
	/* RC_EXISTS: the scope whose joins form the subquery; its first join
	 * is correlated to its parent join in the outer query. */
	int scope;
};

struct rorder {
	struct rcol col;
	bool desc;
	bool random; /* "?" */
};

/* A select_related entry: a to-one relation joined into the query and
 * written as a nested object (or null). */
struct rsel {
	const struct schema_relation *rel;
	int join;
	struct rsel *children;
	size_t nchildren;
};

struct rqs {
	const struct schema_model *model;
	struct rjoin *joins;
	size_t njoins;
	int nscopes;	     /* EXISTS subqueries: scopes 1..nscopes */
	struct rcond *where; /* NULL: no condition */
	bool empty;	     /* can match nothing: no query is sent */
	struct rorder *order;
	size_t norder;
	bool distinct;
	long long offset;
	long long limit;
	bool has_limit;
	const struct schema_column **fields; /* returned, in model order */
	size_t nfields;
	struct rsel *select; /* select_related roots */
	size_t nselect;
	char **params; /* parameter texts, NULL = SQL NULL */
	size_t nparams;
};

enum rlevel_kind {
	RL_ROOT,    /* the main queryset */
	RL_QUERY,   /* one batched query */
	RL_JOINED,  /* already joined by select_related: free */
	RL_BACKREF, /* the object it was reached from: free */
	/* fetched already for the same objects (under a backref): the rows
	 * of `alias`, free */
	RL_ALIAS,
};

struct rlevel {
	enum rlevel_kind kind;
	char *path; /* prefetch_to: "book_set__readers" */
	char *name; /* JSON key: relation name or to_attr */
	const struct schema_relation *rel; /* NULL for the root */
	const struct schema_model *model;  /* the model of its objects */
	struct rlevel *parent;
	struct rqs qs;		    /* RL_ROOT, RL_QUERY */
	const struct rsel *sel;	    /* RL_JOINED: the select_related entry */
	const struct rlevel *alias; /* RL_ALIAS: the RL_QUERY level */
	struct rlevel **children;
	size_t nchildren;
};

struct resolved {
	struct rlevel root;
};

/* The result refers to s, which must outlive it. */
struct resolved *resolve(const struct schema *s,
			 const struct spec_queryset *spec, struct pf_err *err);
void resolved_free(struct resolved *rq); /* NULL ok */

const char *resolve_op_name(enum rop op);
