/*
 * A plan: the SQL statements of one request and the shape of the JSON graph
 * built from their rows. Built by plan_build from a resolved queryset; pure
 * data, const after construction, read by exec (which runs the queries) and
 * graph (which joins the rows and writes JSON). Includes no library.
 *
 * Queries: queries[0] is the main query. Every other query is one batched
 * prefetch level whose $1 is the array of its parents' keys: its parents are
 * the objects of node parent_node, the key of each is the text of column
 * parent_col of that object's row. A query marked empty can match nothing
 * and is never sent (zero rows).
 *
 * Nodes: a node says how to write one object from one row of the result of
 * query src: its fields (columns, in order), then its edges (relations):
 *   EDGE_JOINED  same row, other columns (select_related); null when the
 *                row's null_col is NULL;
 *   EDGE_QUERY   rows of query `query` whose key_col equals this row's
 *                match_col (an array when to_many, else the first or null);
 *   EDGE_BACKREF the object this one was reached from (book_set__author is
 *                the author whose book_set holds the book): no query.
 * Which rows are a node's objects (whose keys feed the next level):
 *   NODE_QUERY   every row of src;
 *   NODE_JOINED  the parent node's objects whose null_col is not NULL;
 *   NODE_BACKREF the grandparent node's objects that have at least one
 *                object in the parent node.
 * nodes[0] is the root: the objects of the main query.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "keys.h"
#include "schema.h"

struct plan_query {
	char *path; /* "" for the main query, else the lookup path
				   ("book_set__readers", with to_attr names) */
	char *sql;
	char **params; /* nparams texts (NULL = SQL NULL); for a keyed
				   query params[0] is NULL here: exec fills
				   $1 with the keys at run time */
	int nparams;
	int limit_param;	 /* the index of its LIMIT (a slice's), or -1 */
	bool keyed;		 /* $1 is the parent keys array */
	bool empty;		 /* matches nothing: never sent */
	int parent_node;	 /* keyed: node whose objects are the parents */
	int parent_col;		 /* keyed: column of parent_node's src result */
	int key_col;		 /* keyed: column of this result to match on */
	enum keys_elem key_elem; /* keyed: the element type of $1 */
	int ncols;		 /* columns of this query's result */
	int depth;		 /* 0 main; parents' query depth + 1 */
};

struct plan_field {
	char *name; /* JSON key, as given (not escaped) */
	int col;    /* column of the src result */
	enum schema_render render;
};

enum plan_edge_kind { EDGE_JOINED, EDGE_QUERY, EDGE_BACKREF };

struct plan_edge {
	enum plan_edge_kind kind;
	char *name; /* JSON key: relation name or to_attr */
	bool to_many;
	int node;      /* the child node */
	int null_col;  /* EDGE_JOINED */
	int query;     /* EDGE_QUERY */
	int match_col; /* EDGE_QUERY: column of this node's src row */
};

enum plan_node_kind { NODE_QUERY, NODE_JOINED, NODE_BACKREF };

/* How a node's objects are written (DESIGN.md §6.4-6.5): objects, arrays
 * of the fields' values (values_list), the bare value of its one field
 * (flat), or the one object of an aggregate (the main node only, whose
 * answer is "aggregate" instead of "results"). The order is resolve's
 * SHAPE_*. */
enum plan_shape {
	PLAN_OBJECTS,
	PLAN_LISTS,
	PLAN_FLAT,
	PLAN_AGGREGATE,
};

struct plan_node {
	enum plan_node_kind kind;
	int src;    /* query whose result holds the rows */
	int parent; /* node, -1 for the root */
	struct plan_field *fields;
	size_t nfields;
	struct plan_edge *edges;
	size_t nedges;
	enum plan_shape shape;
	/* PLAN_AGGREGATE: each field's value when the query is not sent (it
	 * can match nothing), as JSON text; NULL for null (DESIGN.md §6.5) */
	char **empty;
};

struct plan {
	struct plan_query *queries;
	size_t nqueries;
	struct plan_node *nodes;
	size_t nnodes;
};

struct resolved;

/* Builds the plan of a resolved request. row_cap > 0: no statement returns
 * more than row_cap rows (a LIMIT on every statement, or its slice's own
 * LIMIT lowered to it), so that a result past --max-rows is bounded before
 * it is read; <= 0: no cap. Returns NULL with err set (500 on an internal
 * inconsistency only: every client error was found by resolve). The plan
 * owns all of its strings; free it with plan_free. */
struct plan *plan_build(const struct resolved *rq, long row_cap,
			struct pf_err *err);
void plan_free(struct plan *plan); /* NULL ok */
