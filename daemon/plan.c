/*
 * Turns a resolved request into SQL and the shape of its JSON graph: see
 * plan.h. Pure: never touches the network or the catalog; identifiers come
 * from the schema and are always quoted, values only appear as $n. The SQL
 * text depends on the shape of the request only, so it can be prepared.
 *
 * Each query keeps a select list that grows while nodes are built (a child
 * level may need a parent's column to match on), and is rendered last.
 */
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"
#include "resolve.h"
#include "vec.h"

#define OOM(err) pf_err_set(err, 500, "internal", "", "out of memory")

/* Where a query level went: its query and the node of its rows. */
struct built {
	const struct rlevel *lv;
	int query, node;
};

/* An alias level met before the level it reuses was built. */
struct pending {
	int node;
	const struct rlevel *lv;
	int depth;
};

struct pb {
	struct plan *plan;
	struct qbuild *qb;
	int *node_join; /* per node: the join its columns come from */
	struct built *built;
	size_t nbuilt;
	struct pending *pending;
	size_t npending;
	long row_cap; /* > 0: rows any one statement may return */
	struct pf_err *err;
};

/* The select list position of an entry, added when missing. raw: the
 * column's own text is needed (keys, DISTINCT's ORDER BY), not to_json. */
static int ensure(struct pb *b, int q, enum sel_kind kind, int join,
		  const struct schema_column *col, bool raw)
{
	struct qbuild *qb = &b->qb[q];
	bool to_json =
		kind == SEL_COLUMN && !raw && col->render == RENDER_TO_JSON;
	struct sel *s;

	for (size_t i = 0; i < qb->nsel; i++) {
		s = &qb->sel[i];
		if (s->kind == kind && s->join == join && s->col == col &&
		    s->to_json == to_json)
			return (int)i;
	}
	s = vec_push(&qb->sel, &qb->nsel, sizeof(*s));
	if (!s)
		return OOM(b->err);
	*s = (struct sel){kind, join, col, to_json, NULL};
	return (int)qb->nsel - 1;
}

/* The select list position of an expression, added when missing. */
static int ensure_expr(struct pb *b, int q, const struct rexpr *e, bool raw)
{
	struct qbuild *qb = &b->qb[q];
	struct sel want = {.kind = SEL_EXPR,
			   .expr = e,
			   .to_json = !raw && e->render == RENDER_TO_JSON};
	int i = sel_find(qb, &want);
	struct sel *s;

	if (i >= 0)
		return i;
	s = vec_push(&qb->sel, &qb->nsel, sizeof(*s));
	if (!s)
		return OOM(b->err);
	*s = want;
	return (int)qb->nsel - 1;
}

static int add_node(struct pb *b, enum plan_node_kind kind, int src, int parent,
		    int join)
{
	struct plan_node *n =
		vec_push(&b->plan->nodes, &b->plan->nnodes, sizeof(*n));
	size_t count = b->plan->nnodes;
	int *nj;

	if (!n)
		return OOM(b->err);
	n->kind = kind;
	n->src = src;
	n->parent = parent;
	nj = realloc(b->node_join, count * sizeof(int));
	if (!nj)
		return OOM(b->err);
	b->node_join = nj;
	nj[count - 1] = join;
	return (int)count - 1;
}

static int add_field(struct pb *b, int node, const struct schema_column *col)
{
	struct plan_node *n = &b->plan->nodes[node];
	int c = ensure(b, n->src, SEL_COLUMN, b->node_join[node], col, false);
	struct plan_field *f;

	if (c < 0)
		return -1;
	n = &b->plan->nodes[node];
	f = vec_push(&n->fields, &n->nfields, sizeof(*f));
	if (!f || !(f->name = strdup(col->name)))
		return OOM(b->err);
	f->col = c;
	f->render = col->render;
	return 0;
}

/* A key of each object whose value is an expression: an annotation, a
 * values entry, an aggregate. */
static int add_expr_field(struct pb *b, int node, const struct rannot *a)
{
	struct plan_node *n = &b->plan->nodes[node];
	const struct rexpr *e = &a->expr;
	/* a plain column is the column's entry (one select item for a
	 * values entry and its ordering) */
	int c = e->kind == RX_COL ? ensure(b, n->src, SEL_COLUMN, e->col.join,
					   e->col.col, false)
				  : ensure_expr(b, n->src, e, false);
	struct plan_field *f;

	if (c < 0)
		return -1;
	n = &b->plan->nodes[node];
	f = vec_push(&n->fields, &n->nfields, sizeof(*f));
	if (!f || !(f->name = strdup(a->name)))
		return OOM(b->err);
	f->col = c;
	f->render = a->expr.render;
	return 0;
}

/* The values of an aggregate's entries over no rows, per field. */
static int add_empty_values(struct pb *b, int node, const struct rqs *qs)
{
	struct plan_node *n = &b->plan->nodes[node];

	if (!(n->empty = calloc(qs->naggs + 1, sizeof(char *))))
		return OOM(b->err);
	for (size_t i = 0; i < qs->naggs; i++)
		if (qs->annots[qs->first_agg + i].empty &&
		    !(n->empty[i] =
			      strdup(qs->annots[qs->first_agg + i].empty)))
			return OOM(b->err);
	return 0;
}

/* The keys of a queryset's objects: its columns, then its annotations
 * (DESIGN.md §6.3); or exactly its values entries (§6.4), or its
 * aggregate entries (§6.5). */
static int add_fields(struct pb *b, int node, const struct rqs *qs)
{
	b->plan->nodes[node].shape = (enum plan_shape)qs->shape;
	if (qs->shape == SHAPE_AGGREGATE) {
		for (size_t i = 0; i < qs->naggs; i++)
			if (add_expr_field(b, node,
					   &qs->annots[qs->first_agg + i]) < 0)
				return -1;
		return add_empty_values(b, node, qs);
	}
	if (qs->has_values) {
		for (size_t i = 0; i < qs->nvalues; i++)
			if (add_expr_field(b, node, &qs->values[i]) < 0)
				return -1;
		return 0;
	}
	for (size_t i = 0; i < qs->nfields; i++)
		if (add_field(b, node, qs->fields[i]) < 0)
			return -1;
	for (size_t i = 0; i < qs->nannots; i++)
		if (qs->annots[i].selected &&
		    add_expr_field(b, node, &qs->annots[i]) < 0)
			return -1;
	return 0;
}

static struct plan_edge *add_edge(struct pb *b, int node,
				  enum plan_edge_kind kind, const char *name,
				  bool to_many)
{
	struct plan_node *n = &b->plan->nodes[node];
	struct plan_edge *e = vec_push(&n->edges, &n->nedges, sizeof(*e));

	if (!e || !(e->name = strdup(name))) {
		OOM(b->err);
		return NULL;
	}
	e->kind = kind;
	e->to_many = to_many;
	e->null_col = e->query = e->match_col = e->node = -1;
	return e;
}

static int add_query(struct pb *b, const struct rlevel *lv, int depth)
{
	struct plan_query *q =
		vec_push(&b->plan->queries, &b->plan->nqueries, sizeof(*q));
	struct qbuild *qb;
	size_t n = b->plan->nqueries;

	if (!q || !(qb = realloc(b->qb, n * sizeof(*qb))))
		return OOM(b->err);
	b->qb = qb;
	qb[n - 1] = (struct qbuild){
		.qs = &lv->qs, .rel = lv->rel, .keyed = lv->kind == RL_QUERY};
	qb[n - 1].sliced = lv->rel && (lv->qs.has_limit || lv->qs.offset);
	q->path = strdup(lv->path);
	q->keyed = lv->kind == RL_QUERY;
	/* $1's element type is the cast plan_sql gives it */
	if (q->keyed && lv->rel)
		q->key_elem = keys_elem_of(lv->rel->from_column->cast);
	q->empty = lv->qs.empty;
	q->depth = depth;
	q->parent_node = q->parent_col = q->key_col = -1;
	if (!q->path)
		return OOM(b->err);
	return (int)n - 1;
}

static int build_node_children(struct pb *b, int node, const struct rlevel *lv,
			       int depth);

/* The nested objects of select_related: every column of the target. */
static int build_joined(struct pb *b, int node, const struct rsel *sel,
			size_t nsel)
{
	for (size_t i = 0; i < nsel; i++) {
		const struct schema_model *t = sel[i].rel->target;
		int src = b->plan->nodes[node].src;
		int child = add_node(b, NODE_JOINED, src, node, sel[i].join);
		const struct schema_column *nc =
			t->pk ? t->pk : sel[i].rel->to_column;
		int null_col =
			ensure(b, src, SEL_COLUMN, sel[i].join, nc, true);
		struct plan_edge *e;

		if (child < 0 || null_col < 0)
			return -1;
		for (size_t c = 0; c < t->ncolumns; c++)
			if (add_field(b, child, &t->columns[c]) < 0)
				return -1;
		if (!(e = add_edge(b, node, EDGE_JOINED, sel[i].rel->name,
				   false)))
			return -1;
		e->node = child;
		e->null_col = null_col;
		if (build_joined(b, child, sel[i].children, sel[i].nchildren) <
		    0)
			return -1;
	}
	return 0;
}

/* The node of an already joined level: the EDGE_JOINED child of `node`
 * that select_related made for the same relation. */
static int joined_node(const struct pb *b, int node, const struct rlevel *lv)
{
	const struct plan_node *n = &b->plan->nodes[node];

	for (size_t i = 0; i < n->nedges; i++)
		if (n->edges[i].kind == EDGE_JOINED &&
		    strcmp(n->edges[i].name, lv->rel->name) == 0)
			return n->edges[i].node;
	return -1;
}

static int build_query_level(struct pb *b, int node, const struct rlevel *lv,
			     int depth)
{
	const struct schema_relation *rel = lv->rel;
	int q = add_query(b, lv, depth);
	int parent_src = b->plan->nodes[node].src;
	int match, child;
	struct plan_query *pq;
	struct plan_edge *e;
	struct built *bt;

	if (q < 0)
		return -1;
	match = ensure(b, parent_src, SEL_COLUMN, b->node_join[node],
		       rel->from_column, true);
	child = add_node(b, NODE_QUERY, q, node, 0);
	if (match < 0 || child < 0)
		return -1;
	pq = &b->plan->queries[q];
	pq->parent_node = node;
	pq->parent_col = match;
	/* The key goes first in a sliced query: it comes from unnest(). */
	if (b->qb[q].sliced)
		pq->key_col = ensure(b, q, SEL_LATERAL_KEY, 0, NULL, true);
	else if (rel->kind == REL_MANY_TO_MANY ||
		 rel->kind == REL_REVERSE_MANY_TO_MANY)
		pq->key_col = ensure(b, q, SEL_THROUGH_KEY, 0, NULL, true);
	else
		pq->key_col = ensure(b, q, SEL_COLUMN, 0, rel->to_column, true);
	if (b->plan->queries[q].key_col < 0)
		return -1;
	if (add_fields(b, child, &lv->qs) < 0)
		return -1;
	if (!(e = add_edge(b, node, EDGE_QUERY, lv->name, rel->to_many)))
		return -1;
	e->node = child;
	e->query = q;
	e->match_col = match;
	if (build_joined(b, child, lv->qs.select, lv->qs.nselect) < 0)
		return -1;
	bt = vec_push(&b->built, &b->nbuilt, sizeof(*bt));
	if (!bt)
		return OOM(b->err);
	*bt = (struct built){lv, q, child};
	return build_node_children(b, child, lv, depth);
}

/* A level fetched already for the same objects: an edge into the rows of
 * that level's query, matched by this node's own key column. Returns 1 when
 * that query is not built yet (the caller retries later). */
static int build_alias_level(struct pb *b, int node, const struct rlevel *lv,
			     int depth)
{
	const struct built *target = NULL;
	struct plan_edge *e;
	int match, child, q, tnode;

	for (size_t i = 0; i < b->nbuilt && !target; i++)
		if (b->built[i].lv == lv->alias)
			target = &b->built[i];
	if (!target)
		return 1;
	q = target->query;
	tnode = target->node;
	match = ensure(b, b->plan->nodes[node].src, SEL_COLUMN,
		       b->node_join[node], lv->rel->from_column, true);
	child = add_node(b, NODE_QUERY, q, node, 0);
	if (match < 0 || child < 0)
		return -1;
	for (size_t i = 0; i < b->plan->nodes[tnode].nfields; i++) {
		struct plan_node *cn = &b->plan->nodes[child];
		struct plan_field *f =
			vec_push(&cn->fields, &cn->nfields, sizeof(*f));
		const struct plan_field *tf = &b->plan->nodes[tnode].fields[i];
		if (!f || !(f->name = strdup(tf->name)))
			return OOM(b->err);
		f->col = tf->col;
		f->render = tf->render;
	}
	if (!(e = add_edge(b, node, EDGE_QUERY, lv->name, lv->rel->to_many)))
		return -1;
	e->node = child;
	e->query = q;
	e->match_col = match;
	return build_node_children(b, child, lv, depth);
}

static int defer_alias(struct pb *b, int node, const struct rlevel *lv,
		       int depth)
{
	struct pending *pd = vec_push(&b->pending, &b->npending, sizeof(*pd));

	if (!pd)
		return OOM(b->err);
	*pd = (struct pending){node, lv, depth};
	return 0;
}

/* Aliases met before their level was built. Each round builds at least one
 * (resolve made the level first, so it exists), which may defer others. */
static int build_pending(struct pb *b)
{
	while (b->npending) {
		struct pending *round = b->pending;
		size_t n = b->npending;
		bool progress = false;
		int rc = 0;

		b->pending = NULL;
		b->npending = 0;
		for (size_t i = 0; i < n && rc >= 0; i++) {
			rc = build_alias_level(b, round[i].node, round[i].lv,
					       round[i].depth);
			if (rc == 1)
				rc = defer_alias(b, round[i].node, round[i].lv,
						 round[i].depth);
			else
				progress |= rc == 0;
		}
		free(round);
		if (rc < 0)
			return -1;
		if (!progress)
			return pf_err_set(b->err, 500, "internal", "",
					  "alias level without its query");
	}
	return 0;
}

/* book_set__author: the author is the object the book was reached from. */
static int build_backref_level(struct pb *b, int node, const struct rlevel *lv,
			       int depth)
{
	int grand = b->plan->nodes[node].parent;
	int child = add_node(b, NODE_BACKREF, b->plan->nodes[grand].src, node,
			     b->node_join[grand]);
	struct plan_edge *e;
	const struct plan_node *g;

	if (child < 0)
		return -1;
	g = &b->plan->nodes[grand];
	for (size_t i = 0; i < g->nfields; i++) {
		struct plan_node *cn = &b->plan->nodes[child];
		struct plan_field *f =
			vec_push(&cn->fields, &cn->nfields, sizeof(*f));
		g = &b->plan->nodes[grand];
		if (!f || !(f->name = strdup(g->fields[i].name)))
			return OOM(b->err);
		f->col = g->fields[i].col;
		f->render = g->fields[i].render;
	}
	if (!(e = add_edge(b, node, EDGE_BACKREF, lv->name, false)))
		return -1;
	e->node = child;
	return build_node_children(b, child, lv, depth);
}

static int build_node_children(struct pb *b, int node, const struct rlevel *lv,
			       int depth)
{
	for (size_t i = 0; i < lv->nchildren; i++) {
		const struct rlevel *ch = lv->children[i];
		int rc;
		switch (ch->kind) {
		case RL_JOINED: {
			int jn = joined_node(b, node, ch);
			rc = jn < 0 ? pf_err_set(b->err, 500, "internal", "",
						 "joined level not found")
				    : build_node_children(b, jn, ch, depth);
			break;
		}
		case RL_BACKREF:
			rc = build_backref_level(b, node, ch, depth);
			break;
		case RL_ALIAS:
			rc = build_alias_level(b, node, ch, depth);
			if (rc == 1)
				rc = defer_alias(b, node, ch, depth);
			break;
		default:
			rc = build_query_level(b, node, ch, depth + 1);
			break;
		}
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int finish_query(struct pb *b, int q)
{
	const struct rqs *qs = b->qb[q].qs;
	struct plan_query *pq = &b->plan->queries[q];
	int nlimit, k = 0;
	char num[32];

	/* SELECT DISTINCT needs the ORDER BY columns in its select list. */
	if (qs->distinct)
		for (size_t i = 0; i < qs->norder; i++) {
			const struct rorder *o = &qs->order[i];
			if (o->random)
				continue;
			if ((o->expr ? ensure_expr(b, q, o->expr, true)
				     : ensure(b, q, SEL_COLUMN, o->col.join,
					      o->col.col, true)) < 0)
				return -1;
		}
	pq->sql = plan_sql(&b->qb[q], b->row_cap, &nlimit);
	if (!pq->sql)
		return OOM(b->err);
	pq->ncols = (int)b->qb[q].nsel;
	pq->nparams = (pq->keyed ? 1 : 0) + (int)qs->nparams + nlimit;
	pq->params = calloc((size_t)pq->nparams + 1, sizeof(char *));
	if (!pq->params)
		return OOM(b->err);
	pq->limit_param = -1;
	if (pq->keyed)
		k++;
	for (size_t i = 0; i < qs->nparams; i++, k++)
		if (qs->params[i] && !(pq->params[k] = strdup(qs->params[i])))
			return OOM(b->err);
	if (qs->has_limit) {
		/* a main query's slice is lowered to the cap; a per-parent
		 * one is not: the cap is on the whole statement */
		snprintf(num, sizeof(num), "%lld",
			 !b->qb[q].sliced && b->row_cap > 0 &&
					 qs->limit > b->row_cap
				 ? (long long)b->row_cap
				 : qs->limit);
		pq->limit_param = k;
		if (!(pq->params[k++] = strdup(num)))
			return OOM(b->err);
	}
	if (qs->offset) {
		snprintf(num, sizeof(num), "%lld", qs->offset);
		if (!(pq->params[k++] = strdup(num)))
			return OOM(b->err);
	}
	return 0;
}

struct plan *plan_build(const struct resolved *rq, long row_cap,
			struct pf_err *err)
{
	struct pb b = {.row_cap = row_cap, .err = err};
	const struct rlevel *root = &rq->root;
	int root_node;

	b.plan = calloc(1, sizeof(*b.plan));
	if (!b.plan) {
		OOM(err);
		return NULL;
	}
	if (add_query(&b, root, 0) < 0 ||
	    (root_node = add_node(&b, NODE_QUERY, 0, -1, 0)) < 0)
		goto fail;
	if (add_fields(&b, root_node, &root->qs) < 0)
		goto fail;
	if (build_joined(&b, root_node, root->qs.select, root->qs.nselect) <
		    0 ||
	    build_node_children(&b, root_node, root, 0) < 0 ||
	    build_pending(&b) < 0)
		goto fail;
	for (size_t q = 0; q < b.plan->nqueries; q++)
		if (finish_query(&b, (int)q) < 0)
			goto fail;
	for (size_t q = 0; q < b.plan->nqueries; q++)
		free(b.qb[q].sel);
	free(b.qb);
	free(b.node_join);
	free(b.built);
	free(b.pending);
	return b.plan;
fail:
	for (size_t q = 0; q < b.plan->nqueries; q++)
		free(b.qb[q].sel);
	free(b.qb);
	free(b.node_join);
	free(b.built);
	free(b.pending);
	plan_free(b.plan);
	return NULL;
}

void plan_free(struct plan *plan)
{
	if (!plan)
		return;
	for (size_t i = 0; i < plan->nqueries; i++) {
		struct plan_query *q = &plan->queries[i];
		free(q->path);
		free(q->sql);
		for (int p = 0; p < q->nparams; p++)
			free(q->params[p]);
		free(q->params);
	}
	for (size_t i = 0; i < plan->nnodes; i++) {
		struct plan_node *n = &plan->nodes[i];
		for (size_t f = 0; f < n->nfields; f++) {
			free(n->fields[f].name);
			if (n->empty)
				free(n->empty[f]);
		}
		free(n->empty);
		for (size_t e = 0; e < n->nedges; e++)
			free(n->edges[e].name);
		free(n->fields);
		free(n->edges);
	}
	free(plan->queries);
	free(plan->nodes);
	free(plan);
}
