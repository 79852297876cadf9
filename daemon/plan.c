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

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolve.h"
#include "vec.h"

#define OOM(err) pf_err_set(err, 500, "internal", "", "out of memory")

/* A growable string; on allocation failure it stays flagged and short. */
struct sbuf {
	char *s;
	size_t len, cap;
	bool failed;
};

/* Grows b to hold len more bytes and a NUL; -1 (b failed) out of memory. */
static int sb_room(struct sbuf *b, size_t len)
{
	size_t cap = (b->cap + len + 1) * 2;
	char *s = realloc(b->s, cap);

	if (!s) {
		b->failed = true;
		return -1;
	}
	b->s = s;
	b->cap = cap;
	return 0;
}

static void sb_vadd(struct sbuf *b, const char *fmt, va_list ap)
{
	va_list copy;
	int n;

	if (b->failed)
		return;
	va_copy(copy, ap);
	n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0,
		      fmt, copy);
	va_end(copy);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if (!b->s || b->len + (size_t)n + 1 > b->cap) {
		if (sb_room(b, (size_t)n) < 0)
			return;
		vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
	}
	b->len += (size_t)n;
}

__attribute__((format(printf, 2, 3))) static void sb_add(struct sbuf *b,
							 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sb_vadd(b, fmt, ap);
	va_end(ap);
}

/* Appends len bytes; the fast path for literals and identifiers (SQL
 * texts are built on every request). */
static void sb_put(struct sbuf *b, const char *p, size_t len)
{
	if (b->failed)
		return;
	if (b->len + len + 1 > b->cap && sb_room(b, len) < 0)
		return;
	memcpy(b->s + b->len, p, len);
	b->len += len;
	b->s[b->len] = '\0';
}

#define sb_lit(b, lit) sb_put((b), (lit), sizeof(lit) - 1)

/* A quoted identifier: "na""me". */
static void sb_ident(struct sbuf *b, const char *name)
{
	sb_put(b, "\"", 1);
	for (const char *c = name; *c;) {
		size_t run = strcspn(c, "\"");
		sb_put(b, c, run);
		c += run;
		if (*c == '"') {
			sb_put(b, "\"\"", 2);
			c++;
		}
	}
	sb_put(b, "\"", 1);
}

static void sb_table(struct sbuf *b, const char *schema, const char *table)
{
	sb_ident(b, schema);
	sb_lit(b, ".");
	sb_ident(b, table);
}

/* One entry of a query's select list. */
enum sel_kind {
	SEL_COLUMN,	 /* t<join>."col", or to_json() of it */
	SEL_THROUGH_KEY, /* j0."<through_from>": the M2M match key */
	SEL_LATERAL_KEY, /* k.key: the parent key of a sliced level */
};

struct sel {
	enum sel_kind kind;
	int join;
	const struct schema_column *col;
	bool to_json;
};

struct qbuild {
	const struct rqs *qs;
	const struct schema_relation *rel; /* keyed: the relation fetched */
	bool sliced;
	struct sel *sel;
	size_t nsel;
};

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
	*s = (struct sel){kind, join, col, to_json};
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
	qb[n - 1] = (struct qbuild){.qs = &lv->qs, .rel = lv->rel};
	qb[n - 1].sliced = lv->rel && (lv->qs.has_limit || lv->qs.offset);
	q->path = strdup(lv->path);
	q->keyed = lv->kind == RL_QUERY;
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
	for (size_t i = 0; i < lv->qs.nfields; i++)
		if (add_field(b, child, lv->qs.fields[i]) < 0)
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

/* ---- SQL text -------------------------------------------------------- */

/* A letter and a small number: "t3", "c12" (aliases, on every column). */
static void sb_alias(struct sbuf *s, char letter, size_t n)
{
	char buf[24], *p = buf + sizeof(buf);

	do
		*--p = (char)('0' + n % 10);
	while (n /= 10);
	*--p = letter;
	sb_put(s, p, (size_t)(buf + sizeof(buf) - p));
}

static void sb_col(struct sbuf *s, int join, const struct schema_column *col)
{
	sb_alias(s, 't', (size_t)join);
	sb_lit(s, ".");
	sb_ident(s, col->name);
}

/* The target table of many-to-many join i, on its junction j<i>. */
static void sb_target_on_junction(struct sbuf *s, const struct rjoin *j, int i)
{
	sb_table(s, j->model->schema_name, j->model->table);
	sb_add(s, " t%d ON ", i);
	sb_col(s, i, j->rel->to_column);
	sb_add(s, " = j%d.", i);
	sb_ident(s, j->rel->through_to);
}

/* The tables a join adds, and the ON of each. In an EXISTS the first join
 * of the scope is rendered by render_exists instead. */
static void render_join(struct sbuf *s, const struct rqs *qs, int i)
{
	const struct rjoin *j = &qs->joins[i];
	const struct schema_relation *r = j->rel;
	const char *kw = j->left ? " LEFT JOIN " : " JOIN ";

	if (j->via_level_junction) {
		/* The level's junction j0 holds this row's parent already:
		 * join its other side, not a second junction. */
		sb_add(s, "%s", kw);
		sb_table(s, j->model->schema_name, j->model->table);
		sb_add(s, " t%d ON ", i);
		sb_col(s, i, r->to_column);
		sb_lit(s, " = j0.");
		sb_ident(s, r->through_to);
		return;
	}
	if (r->through_table) {
		sb_add(s, "%s", kw);
		sb_table(s, r->through_schema, r->through_table);
		sb_add(s, " j%d ON j%d.", i, i);
		sb_ident(s, r->through_from);
		sb_lit(s, " = ");
		sb_col(s, j->parent, r->from_column);
		sb_add(s, "%s", kw);
		sb_target_on_junction(s, j, i);
		return;
	}
	sb_add(s, "%s", kw);
	sb_table(s, j->model->schema_name, j->model->table);
	sb_add(s, " t%d ON ", i);
	sb_col(s, i, r->to_column);
	sb_lit(s, " = ");
	sb_col(s, j->parent, r->from_column);
}

static void render_cond(struct sbuf *s, const struct rqs *qs,
			const struct rcond *c, int pbase);

static void render_exists(struct sbuf *s, const struct rqs *qs,
			  const struct rcond *c, int pbase)
{
	int first = -1;

	for (size_t i = 1; i < qs->njoins && first < 0; i++)
		if (qs->joins[i].scope == c->scope)
			first = (int)i;
	const struct rjoin *j = &qs->joins[first];
	const struct schema_relation *r = j->rel;

	sb_lit(s, "EXISTS (SELECT 1 FROM ");
	if (r->through_table) {
		sb_table(s, r->through_schema, r->through_table);
		sb_add(s, " j%d JOIN ", first);
		sb_target_on_junction(s, j, first);
	} else {
		sb_table(s, j->model->schema_name, j->model->table);
		sb_add(s, " t%d", first);
	}
	for (size_t i = (size_t)first + 1; i < qs->njoins; i++)
		if (qs->joins[i].scope == c->scope)
			render_join(s, qs, (int)i);
	sb_lit(s, " WHERE ");
	if (r->through_table) {
		sb_add(s, "j%d.", first);
		sb_ident(s, r->through_from);
	} else {
		sb_col(s, first, r->to_column);
	}
	sb_lit(s, " = ");
	sb_col(s, j->parent, r->from_column);
	sb_lit(s, " AND ");
	render_cond(s, qs, &c->children[0], pbase);
	sb_lit(s, ")");
}

static void render_term(struct sbuf *s, const struct rcond *c, int pbase)
{
	const struct schema_column *col = c->col.col;
	int p = c->param + pbase;

	if (c->null_guard)
		sb_lit(s, "(");
	if (c->is_null || c->not_null) {
		sb_col(s, c->col.join, col);
		sb_add(s, c->is_null ? " IS NULL" : " IS NOT NULL");
	} else {
		switch (c->op) {
		case OP_IEXACT:
		case OP_ICONTAINS:
		case OP_ISTARTSWITH:
		case OP_IENDSWITH:
			sb_lit(s, "UPPER(");
			sb_col(s, c->col.join, col);
			sb_add(s, "::text) %s UPPER($%d::text)",
			       c->op == OP_IEXACT ? "=" : "LIKE", p);
			break;
		case OP_CONTAINS:
		case OP_STARTSWITH:
		case OP_ENDSWITH:
		case OP_REGEX:
		case OP_IREGEX:
			sb_col(s, c->col.join, col);
			sb_add(s, "::text %s $%d::text",
			       c->op == OP_REGEX    ? "~"
			       : c->op == OP_IREGEX ? "~*"
						    : "LIKE",
			       p);
			break;
		case OP_IN:
			sb_col(s, c->col.join, col);
			sb_add(s, " = ANY($%d::%s[])", p, col->cast);
			break;
		case OP_RANGE:
			sb_col(s, c->col.join, col);
			sb_add(s, " BETWEEN $%d::%s AND $%d::%s", p, col->cast,
			       p + 1, col->cast);
			break;
		default: {
			static const char *const cmp[] = {
				[OP_EXACT] = "=", [OP_GT] = ">",
				[OP_GTE] = ">=",  [OP_LT] = "<",
				[OP_LTE] = "<=",
			};
			sb_col(s, c->col.join, col);
			sb_add(s, " %s $%d::%s", cmp[c->op], p, col->cast);
		}
		}
	}
	if (c->null_guard) {
		sb_lit(s, " AND ");
		sb_col(s, c->col.join, col);
		sb_lit(s, " IS NOT NULL)");
	}
}

static void render_cond(struct sbuf *s, const struct rqs *qs,
			const struct rcond *c, int pbase)
{
	switch (c->kind) {
	case RC_TRUE:
		sb_lit(s, "TRUE");
		break;
	case RC_FALSE:
		sb_lit(s, "FALSE");
		break;
	case RC_NOT:
		sb_lit(s, "NOT (");
		render_cond(s, qs, &c->children[0], pbase);
		sb_lit(s, ")");
		break;
	case RC_AND:
	case RC_OR:
		sb_lit(s, "(");
		for (size_t i = 0; i < c->nchildren; i++) {
			if (i)
				sb_add(s, c->kind == RC_AND ? " AND " : " OR ");
			render_cond(s, qs, &c->children[i], pbase);
		}
		sb_lit(s, ")");
		break;
	case RC_TERM:
		render_term(s, c, pbase);
		break;
	case RC_NONE: /* folded away by resolve; harmless if not */
		sb_lit(s, "TRUE");
		break;
	case RC_EXISTS:
		render_exists(s, qs, c, pbase);
		break;
	}
}

static void render_sel(struct sbuf *s, const struct qbuild *qb, size_t i)
{
	const struct sel *e = &qb->sel[i];

	switch (e->kind) {
	case SEL_LATERAL_KEY:
		sb_lit(s, "k.key");
		break;
	case SEL_THROUGH_KEY:
		sb_lit(s, "j0.");
		sb_ident(s, qb->rel->through_from);
		break;
	case SEL_COLUMN:
		if (e->to_json)
			sb_lit(s, "to_json(");
		sb_col(s, e->join, e->col);
		/* json has no equality operator for DISTINCT; its text is the
		 * same JSON and compares. */
		if (e->to_json)
			sb_add(s, qb->qs->distinct ? ")::text" : ")");
		break;
	}
}

/* FROM ... WHERE ... ORDER BY ... of a query (the part inside LATERAL for
 * a sliced level). key_expr: what the relation's key is compared with. */
static void render_body(struct sbuf *s, const struct qbuild *qb,
			const char *key_expr, int pbase)
{
	const struct rqs *qs = qb->qs;
	const struct schema_relation *r = qb->rel;
	bool where = false;

	sb_lit(s, " FROM ");
	sb_table(s, qs->model->schema_name, qs->model->table);
	sb_lit(s, " t0");
	if (r && r->through_table) {
		sb_lit(s, " JOIN ");
		sb_table(s, r->through_schema, r->through_table);
		sb_lit(s, " j0 ON j0.");
		sb_ident(s, r->through_to);
		sb_lit(s, " = ");
		sb_col(s, 0, r->to_column);
	}
	for (size_t i = 1; i < qs->njoins; i++)
		if (qs->joins[i].scope == 0)
			render_join(s, qs, (int)i);
	if (r) {
		sb_lit(s, " WHERE ");
		if (r->through_table) {
			sb_lit(s, "j0.");
			sb_ident(s, r->through_from);
		} else {
			sb_col(s, 0, r->to_column);
		}
		sb_add(s, "%s", key_expr);
		where = true;
	}
	if (qs->where) {
		sb_add(s, where ? " AND " : " WHERE ");
		render_cond(s, qs, qs->where, pbase);
	}
}

/* ORDER BY of a query; with prefix, by the select list's own columns
 * (c<N> of the subquery named prefix) instead of the tables'. */
static void render_order(struct sbuf *s, struct pb *b, int q,
			 const char *prefix)
{
	const struct rqs *qs = b->qb[q].qs;

	for (size_t i = 0; i < qs->norder; i++) {
		const struct rorder *o = &qs->order[i];
		sb_add(s, i ? ", " : " ORDER BY ");
		if (o->random)
			sb_lit(s, "RANDOM()");
		else if (prefix)
			sb_add(s, "%sc%d", prefix,
			       ensure(b, q, SEL_COLUMN, o->col.join, o->col.col,
				      true));
		else
			sb_col(s, o->col.join, o->col.col);
		if (!o->random && o->desc)
			sb_lit(s, " DESC");
	}
}

static void render_select_list(struct sbuf *s, const struct qbuild *qb,
			       size_t from, const char *prefix);

/* The slice of one parent with DISTINCT, as Django computes it: rows are
 * numbered before DISTINCT (ROW_NUMBER() in the same SELECT), so duplicate
 * rows use up slots. Reads every row of the parent, unlike LIMIT: only
 * this combination pays for it. */
static void render_distinct_slice(struct sbuf *s, struct pb *b, int q,
				  int pbase, int *next)
{
	const struct qbuild *qb = &b->qb[q];
	const struct rqs *qs = qb->qs;
	int off = 0, lim = 0;

	sb_lit(s, "SELECT DISTINCT ");
	render_select_list(s, qb, 1, "w.");
	sb_lit(s, " FROM (SELECT ");
	render_select_list(s, qb, 1, NULL);
	sb_lit(s, ", row_number() OVER (");
	render_order(s, b, q, NULL);
	sb_lit(s, ") AS rn");
	render_body(s, qb, " = k.key", pbase);
	if (qs->has_limit)
		lim = (*next)++;
	if (qs->offset)
		off = (*next)++;
	sb_add(s, ") w WHERE w.rn > %s%d", off ? "$" : "", off);
	if (lim && off)
		sb_add(s, " AND w.rn <= $%d::bigint + $%d::bigint", lim, off);
	else if (lim)
		sb_add(s, " AND w.rn <= $%d", lim);
	render_order(s, b, q, "w.");
}

static void render_select_list(struct sbuf *s, const struct qbuild *qb,
			       size_t from, const char *prefix)
{
	for (size_t i = from; i < qb->nsel; i++) {
		if (i > from)
			sb_lit(s, ", ");
		if (prefix) {
			sb_put(s, prefix, strlen(prefix));
			sb_alias(s, 'c', i);
		} else {
			render_sel(s, qb, i);
		}
		sb_lit(s, " AS ");
		sb_alias(s, 'c', i);
	}
}

/* The row cap (plan_build) as a literal: it is the same for every request,
 * so the text of a statement still depends only on the request's shape and
 * stays one prepared statement. */
static void render_cap(struct sbuf *s, const struct pb *b)
{
	if (b->row_cap > 0)
		sb_add(s, " LIMIT %ld", b->row_cap);
}

static char *render_query(struct pb *b, int q, int *nlimit_params)
{
	const struct qbuild *qb = &b->qb[q];
	const struct plan_query *pq = &b->plan->queries[q];
	const struct rqs *qs = qb->qs;
	struct sbuf s = {0};
	int pbase = pq->keyed ? 2 : 1;
	int next = pbase + (int)qs->nparams;
	const char *cast = qb->rel ? qb->rel->from_column->cast : "";
	char key_expr[300];

	*nlimit_params = 0;
	if (qb->sliced && qs->distinct) {
		sb_add(&s, "SELECT k.key AS c0, ");
		render_select_list(&s, qb, 1, "s.");
		sb_add(&s,
		       " FROM unnest($1::%s[]) AS k(key) CROSS JOIN "
		       "LATERAL (",
		       cast);
		render_distinct_slice(&s, b, q, pbase, &next);
		*nlimit_params = (qs->has_limit ? 1 : 0) + (qs->offset ? 1 : 0);
		sb_add(&s, ") s");
		render_cap(&s, b);
		goto out;
	}
	if (qb->sliced) {
		/* Per-parent slice: one index-bounded subquery per key. */
		sb_add(&s, "SELECT k.key AS c0, ");
		render_select_list(&s, qb, 1, "s.");
		sb_add(&s,
		       " FROM unnest($1::%s[]) AS k(key) CROSS JOIN "
		       "LATERAL (SELECT %s",
		       cast, qs->distinct ? "DISTINCT " : "");
		render_select_list(&s, qb, 1, NULL);
		render_body(&s, qb, " = k.key", pbase);
	} else {
		sb_add(&s, "SELECT %s", qs->distinct ? "DISTINCT " : "");
		render_select_list(&s, qb, 0, NULL);
		snprintf(key_expr, sizeof(key_expr), " = ANY($1::%s[])", cast);
		render_body(&s, qb, key_expr, pbase);
	}
	render_order(&s, b, q, NULL);
	if (qs->has_limit) {
		/* finish_query lowers its value to the cap */
		sb_add(&s, " LIMIT $%d", next++);
		(*nlimit_params)++;
	} else if (!qb->sliced) {
		render_cap(&s, b);
	}
	if (qs->offset) {
		sb_add(&s, " OFFSET $%d", next++);
		(*nlimit_params)++;
	}
	if (qb->sliced) {
		sb_add(&s, ") s");
		render_cap(&s, b);
	}
out:
	if (s.failed) {
		free(s.s);
		return NULL;
	}
	return s.s;
}

static int finish_query(struct pb *b, int q)
{
	const struct rqs *qs = b->qb[q].qs;
	struct plan_query *pq = &b->plan->queries[q];
	int nlimit, k = 0;
	char num[32];

	/* SELECT DISTINCT needs the ORDER BY columns in its select list. */
	if (qs->distinct)
		for (size_t i = 0; i < qs->norder; i++)
			if (!qs->order[i].random &&
			    ensure(b, q, SEL_COLUMN, qs->order[i].col.join,
				   qs->order[i].col.col, true) < 0)
				return -1;
	pq->sql = render_query(b, q, &nlimit);
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
	for (size_t i = 0; i < root->qs.nfields; i++)
		if (add_field(&b, root_node, root->qs.fields[i]) < 0)
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
		for (size_t f = 0; f < n->nfields; f++)
			free(n->fields[f].name);
		for (size_t e = 0; e < n->nedges; e++)
			free(n->edges[e].name);
		free(n->fields);
		free(n->edges);
	}
	free(plan->queries);
	free(plan->nodes);
	free(plan);
}
