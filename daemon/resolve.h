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
	/* A many-to-many join that only counts (Count("readers")): its
	 * junction alone, whose through_to column stands for the target's
	 * to_column, as Django counts the junction's column. Cleared when a
	 * path needs the target itself. */
	bool junction_only;
	/* The parent's column the ON compares with, when not rel's
	 * from_column: article__tags from comment joins the junction on
	 * comment.article_id, the FK that holds article.id (walk_path). */
	const struct schema_column *parent_col;
};

struct rcol {
	int join;
	const struct schema_column *col;
};

/* The class of a value's type: what arithmetic, functions and lookups
 * accept, and how a value is rendered (DESIGN.md §6.1: Django's output
 * types, as PostgreSQL computes them). */
enum rtype {
	RT_OTHER, /* anything else: compared and rendered as its column */
	RT_BOOL,
	RT_INT, /* int2, int4 */
	RT_BIGINT,
	RT_NUMERIC,
	RT_FLOAT, /* float4, float8 */
	RT_TEXT,  /* text, varchar, bpchar, citext */
	RT_DATE,
	RT_TIMESTAMP,
	RT_TIMESTAMPTZ,
	RT_TIME,
	RT_INTERVAL,
	RT_UUID,
	RT_JSON, /* jsonb (json has no operators of its own here) */
	RT_ARRAY,
};

/* The functions, aggregates and operators an expression may name
 * (DESIGN.md §6.1), and the transforms of lookups (§6.2). resolve_fns[]
 * holds each one's spec name, class and SQL. */
enum rfn_class {
	FC_ARITH,   /* (a <sql> b) */
	FC_AGG,	    /* <sql>([DISTINCT] a) [FILTER (WHERE ...)] */
	FC_CALL,    /* <sql>(a, ...) */
	FC_TRUNC,   /* DATE_TRUNC('<part>', a), in UTC */
	FC_EXTRACT, /* EXTRACT(<part> FROM a), in UTC */
	FC_TO_DATE, /* a::date, in UTC */
	FC_TO_TIME, /* a::time, in UTC */
	FC_ARRAY_LEN,
};

struct rfn {
	const char *name; /* without '$': "count", "trunc_month" */
	enum rfn_class cls;
	const char *sql;	/* "COUNT", "+", "LOWER" */
	const char *part;	/* FC_TRUNC, FC_EXTRACT: "month", "DOW"; FC_AGG:
			     the function of a sample (StdDev, Variance) */
	int min_args, max_args; /* max 0: any number */
};

extern const struct rfn resolve_fns[];

enum rexpr_kind {
	RX_COL,	     /* col */
	RX_PARAM,    /* $param::cast, a literal */
	RX_NULL,     /* NULL */
	RX_ARITH,    /* args[0] <op> args[1] */
	RX_FUNC,     /* fn: an entry of the function table (resolve_expr.c) */
	RX_AGG,	     /* fn: an aggregate; args[0] (none for Count("*")) */
	RX_CASE,     /* whens[i] -> args[i]; args[nwhens]: the default */
	RX_CAST,     /* args[0]::cast */
	RX_ANNOT,    /* annotation `annot` of the same queryset */
	RX_KEY,	     /* args[0] -> $param (jsonb key; #> for a path) */
	RX_KEY_TEXT, /* args[0] ->> $param: the key's text (text lookups) */
	RX_INDEX,    /* args[0][$param] (array index, 1-based) */
	RX_SUBQUERY, /* (SELECT ...): query, correlated to this queryset */
	RX_EXISTS,   /* EXISTS (SELECT ...) */
	RX_OUTER,    /* args[0] of the queryset `outer` levels out */
	RX_ENTRY,    /* values entry `annot` of the same queryset */
};

struct rcond;
struct rqs;

struct rexpr {
	enum rexpr_kind kind;
	enum rtype type;
	/* $n::cast for a value compared with this expression (a column's own
	 * cast, or the type's name); NULL: let PostgreSQL infer it */
	const char *cast;
	enum schema_render render;
	bool has_agg;	 /* an aggregate is in it (HAVING, grouping) */
	struct rcol col; /* RX_COL, RX_OUTER */
	int outer;	 /* RX_OUTER: 1 or 2 */
	int param;	 /* RX_PARAM, RX_KEY, RX_KEY_TEXT, RX_INDEX */
	bool key_path;	 /* RX_KEY: the param is a text[] path (#>) */
	bool key_index;	 /* RX_KEY: the key is an array index (-> int) */
	int fn;		 /* RX_FUNC, RX_AGG, RX_ARITH: which */
	bool distinct;	 /* RX_AGG */
	bool sample;	 /* RX_AGG: StdDev/Variance of a sample */
	bool pg_numeric; /* Django's type is a float where PostgreSQL computes a
			   numeric (Avg of integers, a float literal, which
			   Django sends as a numeric): written ::double
			   precision where the value is selected, as Django
			   converts it to a float then */
	bool star;	 /* RX_AGG: Count("*") */
	struct rcond *filter; /* RX_AGG: FILTER (WHERE ...) or NULL */
	struct rexpr *args;
	size_t nargs;
	struct rcond *whens; /* RX_CASE */
	size_t nwhens;
	int annot;	   /* RX_ANNOT */
	struct rqs *query; /* RX_SUBQUERY, RX_EXISTS */
};

/* An annotation (or an aggregate entry, or a values entry): a key of each
 * object and its expression. */
struct rannot {
	char *name;
	struct rexpr expr;
	bool selected; /* written in each object (values may leave it out) */
	char *empty;   /* an aggregate entry's value over no rows, as JSON
			  (Count: 0, a literal default), NULL for null */
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
	/* jsonb and arrays (DESIGN.md §6.2) */
	OP_CONTAINED_BY,
	OP_OVERLAP,
	OP_HAS_KEY,
	OP_HAS_KEYS,
	OP_HAS_ANY_KEYS,
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
	RC_EXPR, /* a boolean expression (lhs): {"$exists": QUERYSET} */
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
	/* The left side when it is not a plain column (a transform, an
	 * annotation), and the right side when it is an expression (F(), an
	 * arithmetic); NULL otherwise. */
	struct rexpr *lhs;
	struct rexpr *rhs;
	bool json_value; /* the parameter is JSON text: $n::jsonb */
	bool rhs_guard;	 /* negated, nullable rhs column: AND rhs IS NOT NULL */
	enum rtype lhs_type; /* the type of the left side */
	/* RC_EXISTS: the scope whose joins form the subquery; its first join
	 * is correlated to its parent join in the outer query. */
	int scope;
};

struct rorder {
	struct rcol col;
	struct rexpr *expr; /* an annotation or a transform (owned), or NULL */
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
	/* DESIGN.md §6 */
	struct rannot *annots; /* annotate, in order */
	size_t nannots;
	struct rcond *having;  /* terms on aggregates, after GROUP BY */
	bool grouped;	       /* GROUP BY the objects' keys (group_pk) */
	struct rannot *values; /* values/values_list entries, or NULL */
	size_t nvalues;
	bool has_values;
	bool group_values; /* GROUP BY the values entries */
	enum { SHAPE_OBJECTS, SHAPE_LISTS, SHAPE_FLAT, SHAPE_AGGREGATE } shape;
	/* SHAPE_AGGREGATE: the aggregate entries are annots[first_agg..],
	 * bound as annotations (an entry may use an earlier one) */
	size_t first_agg;
	size_t naggs;
	bool agg_wrapped; /* aggregate() over a subquery of the rows */
	int outer_depth;  /* a subquery's: 1 or 2 levels inside */
	/* a subquery's slice, as parameters of the statement */
	int limit_param, offset_param;
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
/* The SQL type of $cast target fn (RX_CAST). */
const char *resolve_cast_sql(int target);
