/*
 * What plan.c (the graph's shape, each query's select list) and plan_sql.c
 * (the SQL text of one query) share. Not for the other stages.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "resolve.h"

/* One entry of a query's select list. */
enum sel_kind {
	SEL_COLUMN,	 /* t<join>."col", or to_json() of it */
	SEL_THROUGH_KEY, /* j0."<through_from>": the M2M match key */
	SEL_LATERAL_KEY, /* k.key: the parent key of a sliced level */
	SEL_EXPR,	 /* an annotation, values entry or aggregate */
};

struct sel {
	enum sel_kind kind;
	int join;
	const struct schema_column *col;
	bool to_json;
	const struct rexpr *expr; /* SEL_EXPR */
};

/* A query while it is built: its queryset, the relation a keyed level
 * fetches, and the select list, which grows while nodes are built. */
struct qbuild {
	const struct rqs *qs;
	const struct schema_relation *rel; /* keyed: the relation fetched */
	bool keyed;
	bool sliced;
	struct sel *sel;
	size_t nsel;
};

/* The select list position of an entry, or -1. */
int sel_find(const struct qbuild *qb, const struct sel *want);

/* The SQL of one query. row_cap > 0: a LIMIT on the statement (see
 * plan_build). *nlimit: the LIMIT/OFFSET parameters it appends after the
 * queryset's own. Returns malloc'd text, or NULL when out of memory. */
char *plan_sql(const struct qbuild *qb, long row_cap, int *nlimit);
