/*
 * The SQL text of one query of a plan (see plan_int.h): FROM and its joins,
 * the conditions, expressions (DESIGN.md §6), GROUP BY and HAVING, the
 * ordering, and the shapes a level takes (a batched level, a per-parent
 * slice in LATERAL, an aggregate). Pure: identifiers come from the schema
 * and are always quoted, values only appear as $n, function names only
 * from resolve_fns. The text depends on the shape of the request only, so
 * it can be prepared.
 */
#include "plan_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* lit must be a string literal ("" lit says so to the compiler) */
#define sb_lit(b, lit) sb_put((b), "" lit, sizeof(lit) - 1)

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

/* Where an expression is rendered: the query whose tables it names, and,
 * for a subquery, the query around it ($outer). depth picks the aliases,
 * so that a subquery's tables never hide its outer query's. */
struct rctx {
	struct sbuf *s;
	const struct rqs *qs;
	const struct qbuild *qb; /* the statement's own query; NULL inside */
	int pbase;		 /* $n of parameter slot 0 */
	int depth;
	const struct rctx *outer;
	/* aggregate() over its rows' subquery (t0): annotations are its
	 * columns "pf_a<i>" */
	bool wrapped;
};

static const char *const table_alias[] = {"t", "u", "v"};
static const char *const junction_alias[] = {"j", "uj", "vj"};

/* A prefix and a small number: "t3", "c12" (aliases, on every column). */
static void sb_alias(struct sbuf *s, const char *prefix, size_t n)
{
	char buf[24], *p = buf + sizeof(buf);

	do
		*--p = (char)('0' + n % 10);
	while (n /= 10);
	sb_put(s, prefix, strlen(prefix));
	sb_put(s, p, (size_t)(buf + sizeof(buf) - p));
}

/* j<i>."col": a junction's column */
static void sb_jcol(const struct rctx *r, int i, const char *col)
{
	sb_alias(r->s, junction_alias[r->depth], (size_t)i);
	sb_lit(r->s, ".");
	sb_ident(r->s, col);
}

/* t<join>."col"; of a junction-only join, the junction's column that
 * stands for it (resolve.h, rjoin.junction_only) */
static void sb_col(const struct rctx *r, int join,
		   const struct schema_column *col)
{
	const struct rjoin *j = &r->qs->joins[join];

	if (join > 0 && j->junction_only) {
		sb_jcol(r, join, j->rel->through_to);
		return;
	}
	sb_alias(r->s, table_alias[r->depth], (size_t)join);
	sb_lit(r->s, ".");
	sb_ident(r->s, col->name);
}

/* The parent's column a join's ON compares with. */
static void sb_parent_col(const struct rctx *r, const struct rjoin *j)
{
	sb_col(r, j->parent,
	       j->parent_col ? j->parent_col : j->rel->from_column);
}

static void sb_param(const struct rctx *r, int slot, const char *cast)
{
	sb_add(r->s, "$%d", slot + r->pbase);
	if (cast)
		sb_add(r->s, "::%s", cast);
}

/* The target table of many-to-many join i, on its junction j<i>. */
static void sb_target_on_junction(const struct rctx *r, const struct rjoin *j,
				  int i)
{
	sb_table(r->s, j->model->schema_name, j->model->table);
	sb_lit(r->s, " ");
	sb_alias(r->s, table_alias[r->depth], (size_t)i);
	sb_lit(r->s, " ON ");
	sb_col(r, i, j->rel->to_column);
	sb_lit(r->s, " = ");
	sb_jcol(r, i, j->rel->through_to);
}

/* The tables a join adds, and the ON of each. In an EXISTS the first join
 * of the scope is rendered by render_exists instead. */
static void render_join(const struct rctx *r, int i)
{
	struct sbuf *s = r->s;
	const struct rjoin *j = &r->qs->joins[i];
	const struct schema_relation *rel = j->rel;
	const char *kw = j->left ? " LEFT JOIN " : " JOIN ";

	sb_put(s, kw, strlen(kw));
	if (j->via_level_junction) {
		/* The level's junction j0 holds this row's parent already:
		 * join its other side, not a second junction. */
		sb_table(s, j->model->schema_name, j->model->table);
		sb_lit(s, " ");
		sb_alias(s, table_alias[r->depth], (size_t)i);
		sb_lit(s, " ON ");
		sb_col(r, i, rel->to_column);
		sb_lit(s, " = ");
		sb_jcol(r, 0, rel->through_to);
		return;
	}
	if (rel->through_table) {
		sb_table(s, rel->through_schema, rel->through_table);
		sb_lit(s, " ");
		sb_alias(s, junction_alias[r->depth], (size_t)i);
		sb_lit(s, " ON ");
		sb_jcol(r, i, rel->through_from);
		sb_lit(s, " = ");
		sb_parent_col(r, j);
		if (j->junction_only)
			return;
		sb_put(s, kw, strlen(kw));
		sb_target_on_junction(r, j, i);
		return;
	}
	sb_table(s, j->model->schema_name, j->model->table);
	sb_lit(s, " ");
	sb_alias(s, table_alias[r->depth], (size_t)i);
	sb_lit(s, " ON ");
	sb_col(r, i, rel->to_column);
	sb_lit(s, " = ");
	sb_parent_col(r, j);
}

static void render_cond(const struct rctx *r, const struct rcond *c);
static void render_expr(const struct rctx *r, const struct rexpr *e);

static void render_exists(const struct rctx *r, const struct rcond *c)
{
	struct sbuf *s = r->s;
	const struct rqs *qs = r->qs;
	int first = -1;

	for (size_t i = 1; i < qs->njoins && first < 0; i++)
		if (qs->joins[i].scope == c->scope)
			first = (int)i;
	const struct rjoin *j = &qs->joins[first];
	const struct schema_relation *rel = j->rel;

	sb_lit(s, "EXISTS (SELECT 1 FROM ");
	if (rel->through_table) {
		sb_table(s, rel->through_schema, rel->through_table);
		sb_lit(s, " ");
		sb_alias(s, junction_alias[r->depth], (size_t)first);
		sb_lit(s, " JOIN ");
		sb_target_on_junction(r, j, first);
	} else {
		sb_table(s, j->model->schema_name, j->model->table);
		sb_lit(s, " ");
		sb_alias(s, table_alias[r->depth], (size_t)first);
	}
	for (size_t i = (size_t)first + 1; i < qs->njoins; i++)
		if (qs->joins[i].scope == c->scope)
			render_join(r, (int)i);
	sb_lit(s, " WHERE ");
	if (rel->through_table)
		sb_jcol(r, first, rel->through_from);
	else
		sb_col(r, first, rel->to_column);
	sb_lit(s, " = ");
	sb_col(r, j->parent, rel->from_column);
	sb_lit(s, " AND ");
	render_cond(r, &c->children[0]);
	sb_lit(s, ")");
}

/* ---- expressions (DESIGN.md §6.1) ------------------------------------ */

static bool in_utc(const struct rexpr *arg)
{
	return arg->type == RT_TIMESTAMPTZ;
}

/* The operand of a date function, taken in UTC: timestamps with a time
 * zone are read in the session's zone by Django (USE_TZ), UTC here. */
static void render_local(const struct rctx *r, const struct rexpr *arg)
{
	render_expr(r, arg);
	if (in_utc(arg))
		sb_lit(r->s, " AT TIME ZONE 'UTC'");
}

static void render_temporal(const struct rctx *r, const struct rexpr *e)
{
	const struct rfn *f = &resolve_fns[e->fn];
	const struct rexpr *a = &e->args[0];
	struct sbuf *s = r->s;

	switch (f->cls) {
	case FC_TRUNC:
		sb_lit(s, "DATE_TRUNC('");
		sb_put(s, f->part, strlen(f->part));
		sb_lit(s, "', ");
		render_local(r, a);
		sb_lit(s, ")");
		if (in_utc(a))
			sb_lit(s, " AT TIME ZONE 'UTC'");
		else if (a->type == RT_DATE)
			sb_lit(s, "::date");
		else if (a->type == RT_TIME)
			sb_lit(s, "::time");
		break;
	case FC_TO_DATE:
	case FC_TO_TIME:
		sb_lit(s, "(");
		render_local(r, a);
		sb_add(s, ")::%s", f->cls == FC_TO_DATE ? "date" : "time");
		break;
	case FC_EXTRACT: {
		bool dow = strcmp(f->part, "DOW") == 0;
		bool second = strcmp(f->part, "SECOND") == 0;
		/* Django: Sunday is 1 (PostgreSQL's DOW + 1); a second is
		 * a whole one */
		if (dow)
			sb_lit(s, "(");
		sb_add(s, "EXTRACT(%s FROM ", f->part);
		if (second)
			sb_lit(s, "DATE_TRUNC('second', ");
		render_local(r, a);
		sb_add(s, "%s", second ? "))" : ")");
		if (dow)
			sb_lit(s, " + 1)");
		break;
	}
	default:
		break;
	}
}

static void render_args(const struct rctx *r, const struct rexpr *e)
{
	for (size_t i = 0; i < e->nargs; i++) {
		if (i)
			sb_lit(r->s, ", ");
		render_expr(r, &e->args[i]);
	}
}

static void render_func(const struct rctx *r, const struct rexpr *e)
{
	const struct rfn *f = &resolve_fns[e->fn];
	struct sbuf *s = r->s;

	switch (f->cls) {
	case FC_CALL:
		sb_put(s, f->sql, strlen(f->sql));
		sb_lit(s, "(");
		render_args(r, e);
		sb_lit(s, ")");
		return;
	case FC_ARRAY_LEN:
		/* Django's ArrayLenTransform: 0 for an empty array */
		sb_lit(s, "CASE WHEN ");
		render_expr(r, &e->args[0]);
		sb_lit(s, " IS NULL THEN NULL ELSE COALESCE(ARRAY_LENGTH(");
		render_expr(r, &e->args[0]);
		sb_lit(s, ", 1), 0) END");
		return;
	default:
		render_temporal(r, e);
		return;
	}
}

static void render_agg(const struct rctx *r, const struct rexpr *e)
{
	const struct rfn *f = &resolve_fns[e->fn];
	struct sbuf *s = r->s;

	sb_add(s, "%s", e->sample ? f->part : f->sql);
	sb_lit(s, "(");
	if (e->distinct)
		sb_lit(s, "DISTINCT ");
	if (e->star)
		sb_lit(s, "*");
	else
		render_expr(r, &e->args[0]);
	sb_lit(s, ")");
	if (e->filter) {
		sb_lit(s, " FILTER (WHERE ");
		render_cond(r, e->filter);
		sb_lit(s, ")");
	}
}

static void render_subquery(const struct rctx *r, const struct rqs *qs,
			    bool exists);

static void render_key(const struct rctx *r, const struct rexpr *e)
{
	bool text = e->kind == RX_KEY_TEXT;

	sb_lit(r->s, "(");
	render_expr(r, &e->args[0]);
	if (e->key_path) {
		sb_add(r->s, text ? " #>> " : " #> ");
		sb_param(r, e->param, "pg_catalog.text[]");
	} else {
		sb_add(r->s, text ? " ->> " : " -> ");
		sb_param(r, e->param,
			 e->key_index ? "pg_catalog.int4" : "pg_catalog.text");
	}
	sb_lit(r->s, ")");
}

static void render_expr(const struct rctx *r, const struct rexpr *e)
{
	struct sbuf *s = r->s;
	const struct rctx *o = r;

	switch (e->kind) {
	case RX_COL:
		sb_col(r, e->col.join, e->col.col);
		break;
	case RX_PARAM:
		sb_param(r, e->param, e->cast);
		break;
	case RX_NULL:
		sb_lit(s, "NULL");
		break;
	case RX_ARITH:
		sb_lit(s, "(");
		render_expr(r, &e->args[0]);
		sb_add(s, " %s ", resolve_fns[e->fn].sql);
		render_expr(r, &e->args[1]);
		sb_lit(s, ")");
		break;
	case RX_FUNC:
		render_func(r, e);
		break;
	case RX_AGG:
		render_agg(r, e);
		break;
	case RX_CASE:
		sb_lit(s, "CASE");
		for (size_t i = 0; i < e->nwhens; i++) {
			sb_lit(s, " WHEN ");
			render_cond(r, &e->whens[i]);
			sb_lit(s, " THEN ");
			render_expr(r, &e->args[i]);
		}
		sb_lit(s, " ELSE ");
		render_expr(r, &e->args[e->nwhens]);
		sb_lit(s, " END");
		break;
	case RX_CAST:
		sb_lit(s, "(");
		render_expr(r, &e->args[0]);
		sb_add(s, ")::%s", resolve_cast_sql(e->fn));
		break;
	case RX_ANNOT:
		if (r->wrapped && (size_t)e->annot < r->qs->first_agg) {
			sb_lit(s, "t0.");
			sb_alias(s, "pf_a", (size_t)e->annot);
			break;
		}
		render_expr(r, &r->qs->annots[e->annot].expr);
		break;
	case RX_ENTRY:
		render_expr(r, &r->qs->values[e->annot].expr);
		break;
	case RX_KEY:
	case RX_KEY_TEXT:
		render_key(r, e);
		break;
	case RX_INDEX:
		render_expr(r, &e->args[0]);
		sb_lit(s, "[");
		sb_param(r, e->param, "pg_catalog.int4");
		sb_lit(s, "]");
		break;
	case RX_OUTER:
		for (int i = 0; i < e->outer && o->outer; i++)
			o = o->outer;
		render_expr(o, &e->args[0]);
		break;
	case RX_EXISTS:
	case RX_SUBQUERY:
		render_subquery(r, e->query, e->kind == RX_EXISTS);
		break;
	}
}

/* ---- conditions ------------------------------------------------------ */

static void render_lhs(const struct rctx *r, const struct rcond *c)
{
	if (c->lhs)
		render_expr(r, c->lhs);
	else
		sb_col(r, c->col.join, c->col.col);
}

/* The cast of a term's value: the left side's type. */
static const char *value_cast(const struct rcond *c)
{
	if (c->json_value)
		return "pg_catalog.jsonb";
	return c->lhs ? c->lhs->cast : c->col.col->cast;
}

static void render_value(const struct rctx *r, const struct rcond *c)
{
	if (c->rhs) {
		sb_lit(r->s, "(");
		render_expr(r, c->rhs);
		sb_lit(r->s, ")");
	} else {
		sb_param(r, c->param, value_cast(c));
	}
}

/* jsonb and array operators (@> <@ && ? ?& ?|), or NULL. */
static const char *container_op(const struct rcond *c)
{
	bool container = c->lhs_type == RT_JSON || c->lhs_type == RT_ARRAY;

	switch (c->op) {
	case OP_CONTAINS:
		return container ? "@>" : NULL;
	case OP_CONTAINED_BY:
		return "<@";
	case OP_OVERLAP:
		return "&&";
	case OP_HAS_KEY:
		return "?";
	case OP_HAS_KEYS:
		return "?&";
	case OP_HAS_ANY_KEYS:
		return "?|";
	default:
		return NULL;
	}
}

static void render_term(const struct rctx *r, const struct rcond *c)
{
	struct sbuf *s = r->s;
	const char *cast = value_cast(c);
	const char *cop = container_op(c);

	if (c->null_guard)
		sb_lit(s, "(");
	if (c->is_null || c->not_null) {
		render_lhs(r, c);
		sb_add(s, c->is_null ? " IS NULL" : " IS NOT NULL");
	} else if (cop) {
		render_lhs(r, c);
		sb_add(s, " %s ", cop);
		sb_param(r, c->param,
			 c->op == OP_HAS_KEY ? "pg_catalog.text"
			 : c->op == OP_HAS_KEYS || c->op == OP_HAS_ANY_KEYS
				 ? "pg_catalog.text[]"
				 : cast);
	} else {
		switch (c->op) {
		case OP_IEXACT:
		case OP_ICONTAINS:
		case OP_ISTARTSWITH:
		case OP_IENDSWITH:
			sb_lit(s, "UPPER(");
			render_lhs(r, c);
			sb_add(s, "::text) %s UPPER(",
			       c->op == OP_IEXACT ? "=" : "LIKE");
			sb_param(r, c->param, "text");
			sb_lit(s, ")");
			break;
		case OP_CONTAINS:
		case OP_STARTSWITH:
		case OP_ENDSWITH:
		case OP_REGEX:
		case OP_IREGEX:
			render_lhs(r, c);
			sb_add(s, "::text %s ",
			       c->op == OP_REGEX    ? "~"
			       : c->op == OP_IREGEX ? "~*"
						    : "LIKE");
			sb_param(r, c->param, "text");
			break;
		case OP_IN:
			render_lhs(r, c);
			if (c->rhs) { /* IN (SELECT ...) */
				sb_lit(s, " IN ");
				render_expr(r, c->rhs);
				break;
			}
			sb_lit(s, " = ANY(");
			sb_add(s, "$%d", c->param + r->pbase);
			if (cast)
				sb_add(s, "::%s[]", cast);
			sb_lit(s, ")");
			break;
		case OP_RANGE:
			render_lhs(r, c);
			sb_lit(s, " BETWEEN ");
			sb_param(r, c->param, cast);
			sb_lit(s, " AND ");
			sb_param(r, c->param + 1, cast);
			break;
		default: {
			static const char *const cmp[] = {
				[OP_EXACT] = "=", [OP_GT] = ">",
				[OP_GTE] = ">=",  [OP_LT] = "<",
				[OP_LTE] = "<=",
			};
			render_lhs(r, c);
			sb_add(s, " %s ", cmp[c->op]);
			render_value(r, c);
		}
		}
	}
	if (c->null_guard) {
		/* Django guards the field itself, not its transform or key */
		sb_lit(s, " AND ");
		sb_col(r, c->col.join, c->col.col);
		sb_lit(s, " IS NOT NULL");
	}
	if (c->rhs_guard) {
		sb_lit(s, " AND ");
		render_expr(r, c->rhs);
		sb_lit(s, " IS NOT NULL");
	}
	if (c->null_guard)
		sb_lit(s, ")");
}

static void render_cond(const struct rctx *r, const struct rcond *c)
{
	struct sbuf *s = r->s;

	switch (c->kind) {
	case RC_TRUE:
		sb_lit(s, "TRUE");
		break;
	case RC_FALSE:
		sb_lit(s, "FALSE");
		break;
	case RC_NOT:
		sb_lit(s, "NOT (");
		render_cond(r, &c->children[0]);
		sb_lit(s, ")");
		break;
	case RC_AND:
	case RC_OR:
		sb_lit(s, "(");
		for (size_t i = 0; i < c->nchildren; i++) {
			if (i)
				sb_add(s, c->kind == RC_AND ? " AND " : " OR ");
			render_cond(r, &c->children[i]);
		}
		sb_lit(s, ")");
		break;
	case RC_TERM:
		render_term(r, c);
		break;
	case RC_NONE: /* folded away by resolve; harmless if not */
		sb_lit(s, "TRUE");
		break;
	case RC_EXISTS:
		render_exists(r, c);
		break;
	case RC_EXPR:
		render_expr(r, c->lhs);
		break;
	}
}

/* ---- queries ---------------------------------------------------------- */

int sel_find(const struct qbuild *qb, const struct sel *want)
{
	for (size_t i = 0; i < qb->nsel; i++) {
		const struct sel *e = &qb->sel[i];
		if (e->kind == want->kind && e->join == want->join &&
		    e->col == want->col && e->to_json == want->to_json &&
		    e->expr == want->expr)
			return (int)i;
	}
	return -1;
}

static void render_sel(const struct rctx *r, size_t i)
{
	const struct qbuild *qb = r->qb;
	const struct sel *e = &qb->sel[i];
	struct sbuf *s = r->s;

	switch (e->kind) {
	case SEL_LATERAL_KEY:
		sb_lit(s, "k.key");
		break;
	case SEL_THROUGH_KEY:
		sb_jcol(r, 0, qb->rel->through_from);
		break;
	case SEL_COLUMN:
	case SEL_EXPR:
		if (e->to_json)
			sb_lit(s, "to_json(");
		if (e->kind == SEL_EXPR && e->expr->pg_numeric) {
			/* Django's float: the numeric PostgreSQL computed,
			 * converted once, as Django converts it */
			sb_lit(s, "(");
			render_expr(r, e->expr);
			sb_lit(s, ")::double precision");
		} else if (e->kind == SEL_EXPR) {
			render_expr(r, e->expr);
		} else {
			sb_col(r, e->join, e->col);
		}
		/* json has no equality operator for DISTINCT; its text is the
		 * same JSON and compares. */
		if (e->to_json)
			sb_add(s, qb->qs->distinct ? ")::text" : ")");
		break;
	}
}

/* Whether join i's rows are one per row of t0: every relation on its
 * path is to-one. GROUP BY names such joins' keys (PostgreSQL then lets
 * their columns be selected). */
static bool one_per_row(const struct rqs *qs, int i)
{
	for (; i > 0; i = qs->joins[i].parent)
		if (qs->joins[i].rel->to_many || qs->joins[i].scope)
			return false;
	return true;
}

/* An ordering by a column that is a values entry: grouped already. */
static bool is_values_col(const struct rqs *qs, const struct rorder *o)
{
	for (size_t i = 0; i < qs->nvalues && !o->expr; i++)
		if (qs->values[i].expr.kind == RX_COL &&
		    qs->values[i].expr.col.join == o->col.join &&
		    qs->values[i].expr.col.col == o->col.col)
			return true;
	return false;
}

static void group_item(struct sbuf *s, bool *first)
{
	sb_add(s, *first ? " GROUP BY " : ", ");
	*first = false;
}

/* Whether a column of join j is one PostgreSQL would call ungrouped:
 * any column when the values entries are the groups, else a column of a
 * join with many rows per object (the object's key does not decide it). */
static bool ungrouped_col(const struct rqs *qs, int join)
{
	return qs->group_values || !one_per_row(qs, join);
}

static bool refs_ungrouped(const struct rqs *qs, const struct rexpr *e);

static bool cond_refs_ungrouped(const struct rqs *qs, const struct rcond *c)
{
	if (c->kind == RC_TERM && !c->lhs && ungrouped_col(qs, c->col.join))
		return true;
	if ((c->lhs && refs_ungrouped(qs, c->lhs)) ||
	    (c->rhs && refs_ungrouped(qs, c->rhs)))
		return true;
	for (size_t i = 0; i < c->nchildren; i++)
		if (cond_refs_ungrouped(qs, &c->children[i]))
			return true;
	return false;
}

static bool sub_refs_ungrouped(const struct rqs *qs, const struct rqs *in);

/* Whether e, which has no aggregate, reads an ungrouped column (a
 * subquery does through its $outer references). */
static bool refs_ungrouped(const struct rqs *qs, const struct rexpr *e)
{
	switch (e->kind) {
	case RX_COL:
		return ungrouped_col(qs, e->col.join);
	case RX_ANNOT:
		return refs_ungrouped(qs, &qs->annots[e->annot].expr);
	case RX_SUBQUERY:
	case RX_EXISTS:
		return sub_refs_ungrouped(qs, e->query);
	default:
		break;
	}
	for (size_t i = 0; i < e->nargs; i++)
		if (refs_ungrouped(qs, &e->args[i]))
			return true;
	for (size_t i = 0; i < e->nwhens; i++)
		if (cond_refs_ungrouped(qs, &e->whens[i]))
			return true;
	return false;
}

/* The $outer references of subquery in (one level down) that read an
 * ungrouped column of qs. */
static bool outer_refs_ungrouped(const struct rqs *qs, const struct rexpr *e);

static bool outer_cond_refs_ungrouped(const struct rqs *qs,
				      const struct rcond *c)
{
	if ((c->lhs && outer_refs_ungrouped(qs, c->lhs)) ||
	    (c->rhs && outer_refs_ungrouped(qs, c->rhs)))
		return true;
	for (size_t i = 0; i < c->nchildren; i++)
		if (outer_cond_refs_ungrouped(qs, &c->children[i]))
			return true;
	return false;
}

static bool outer_refs_ungrouped(const struct rqs *qs, const struct rexpr *e)
{
	if (e->kind == RX_OUTER)
		return e->outer == 1 && refs_ungrouped(qs, &e->args[0]);
	for (size_t i = 0; i < e->nargs; i++)
		if (outer_refs_ungrouped(qs, &e->args[i]))
			return true;
	for (size_t i = 0; i < e->nwhens; i++)
		if (outer_cond_refs_ungrouped(qs, &e->whens[i]))
			return true;
	if (e->filter && outer_cond_refs_ungrouped(qs, e->filter))
		return true;
	return false;
}

static bool sub_refs_ungrouped(const struct rqs *qs, const struct rqs *in)
{
	if ((in->where && outer_cond_refs_ungrouped(qs, in->where)) ||
	    (in->having && outer_cond_refs_ungrouped(qs, in->having)))
		return true;
	for (size_t i = 0; i < in->nannots; i++)
		if (outer_refs_ungrouped(qs, &in->annots[i].expr))
			return true;
	for (size_t i = 0; i < in->nvalues; i++)
		if (outer_refs_ungrouped(qs, &in->values[i].expr))
			return true;
	return false;
}

static void group_item(struct sbuf *s, bool *first);
static void group_cond_parts(const struct rctx *r, const struct rcond *c,
			     bool *first);

/* Groups by the parts of e outside its aggregates that read ungrouped
 * columns, as Django adds them to GROUP BY: Sum("age") + F("age") per
 * values("name") group, Max("book__pages") next to a When on a to-many
 * relation. */
static void group_free_parts(const struct rctx *r, const struct rexpr *e,
			     bool *first)
{
	if (!e->has_agg) {
		if (e->kind != RX_PARAM && e->kind != RX_NULL &&
		    refs_ungrouped(r->qs, e)) {
			group_item(r->s, first);
			render_expr(r, e);
		}
		return;
	}
	if (e->kind == RX_AGG)
		return;
	if (e->kind == RX_ANNOT) {
		group_free_parts(r, &r->qs->annots[e->annot].expr, first);
		return;
	}
	for (size_t i = 0; i < e->nargs; i++)
		group_free_parts(r, &e->args[i], first);
	for (size_t i = 0; i < e->nwhens; i++)
		group_cond_parts(r, &e->whens[i], first);
}

static void group_cond_parts(const struct rctx *r, const struct rcond *c,
			     bool *first)
{
	if (c->kind == RC_TERM && !c->lhs &&
	    ungrouped_col(r->qs, c->col.join)) {
		group_item(r->s, first);
		sb_col(r, c->col.join, c->col.col);
	}
	if (c->lhs)
		group_free_parts(r, c->lhs, first);
	if (c->rhs)
		group_free_parts(r, c->rhs, first);
	for (size_t i = 0; i < c->nchildren; i++)
		group_cond_parts(r, &c->children[i], first);
}

/* What the objects' keys or the values entries do not decide: the free
 * parts of what is selected, ordered by and tested after grouping. */
static void group_free(const struct rctx *r, bool *first)
{
	const struct rqs *qs = r->qs;

	if (qs->has_values) {
		/* the entries that are the groups are grouped already */
		for (size_t i = 0; i < qs->nvalues; i++)
			if (!qs->group_values || qs->values[i].expr.has_agg)
				group_free_parts(r, &qs->values[i].expr, first);
	} else {
		for (size_t i = 0; i < qs->nannots; i++)
			if (qs->annots[i].selected)
				group_free_parts(r, &qs->annots[i].expr, first);
	}
	for (size_t i = 0; i < qs->norder; i++)
		if (qs->order[i].expr && qs->order[i].expr->has_agg)
			group_free_parts(r, qs->order[i].expr, first);
	if (qs->having)
		group_cond_parts(r, qs->having, first);
}

static bool reads_join(const struct rqs *qs, const struct rexpr *e, int join);

static bool cond_reads_join(const struct rqs *qs, const struct rcond *c,
			    int join)
{
	if (c->kind == RC_TERM && !c->lhs && c->col.join == join)
		return true;
	if ((c->lhs && reads_join(qs, c->lhs, join)) ||
	    (c->rhs && reads_join(qs, c->rhs, join)))
		return true;
	for (size_t i = 0; i < c->nchildren; i++)
		if (cond_reads_join(qs, &c->children[i], join))
			return true;
	return false;
}

/* Whether e reads a column of join outside its aggregates (a subquery
 * may, through $outer). */
static bool reads_join(const struct rqs *qs, const struct rexpr *e, int join)
{
	switch (e->kind) {
	case RX_AGG:
		return false;
	case RX_COL:
		return e->col.join == join;
	case RX_ANNOT:
		return reads_join(qs, &qs->annots[e->annot].expr, join);
	case RX_ENTRY:
		return reads_join(qs, &qs->values[e->annot].expr, join);
	case RX_SUBQUERY:
	case RX_EXISTS:
		return true;
	default:
		break;
	}
	for (size_t i = 0; i < e->nargs; i++)
		if (reads_join(qs, &e->args[i], join))
			return true;
	for (size_t i = 0; i < e->nwhens; i++)
		if (cond_reads_join(qs, &e->whens[i], join))
			return true;
	return false;
}

/* Whether a to-one join's columns are read where GROUP BY must decide
 * them: selected (select_related, annotations), ordered by, tested after
 * grouping. A join read only by aggregates or by WHERE needs no key in
 * GROUP BY, which would only slow it (comment -> article for
 * Count("article__tags")). */
static bool join_read_outside_aggs(const struct rctx *r, int join)
{
	const struct rqs *qs = r->qs;

	for (size_t i = 0; r->qb && i < r->qb->nsel; i++) {
		const struct sel *e = &r->qb->sel[i];
		if ((e->kind == SEL_COLUMN && e->join == join) ||
		    (e->kind == SEL_EXPR && reads_join(qs, e->expr, join)))
			return true;
	}
	for (size_t i = 0; !r->qb && i < qs->nvalues; i++)
		if (reads_join(qs, &qs->values[i].expr, join))
			return true;
	for (size_t i = 0; i < qs->norder; i++) {
		const struct rorder *o = &qs->order[i];
		if (!o->random && (o->expr ? reads_join(qs, o->expr, join)
					   : o->col.join == join))
			return true;
	}
	return qs->having && cond_reads_join(qs, qs->having, join);
}

/* GROUP BY the objects' keys (an aggregate per object, DESIGN.md §6.3), or
 * the values entries (values().annotate(), §6.4). */
static void render_group(const struct rctx *r)
{
	const struct rqs *qs = r->qs;
	const struct qbuild *qb = r->qb;
	struct sbuf *s = r->s;
	bool first = true;

	if (qs->grouped) {
		for (size_t i = 0; i < qs->njoins; i++) {
			const struct schema_model *m = qs->joins[i].model;
			if (!one_per_row(qs, (int)i) ||
			    (i > 0 && !join_read_outside_aggs(r, (int)i)))
				continue;
			if (m->pk) {
				group_item(s, &first);
				sb_col(r, (int)i, m->pk);
				continue;
			}
			for (size_t c = 0; c < m->ncolumns; c++) {
				group_item(s, &first);
				sb_col(r, (int)i, &m->columns[c]);
			}
		}
		if (qb && qb->rel && qb->rel->through_table) {
			group_item(s, &first);
			sb_jcol(r, 0, qb->rel->through_from);
		}
	}
	if (qs->group_values) {
		for (size_t i = 0; i < qs->nvalues; i++) {
			if (qs->values[i].expr.has_agg)
				continue;
			group_item(s, &first);
			render_expr(r, &qs->values[i].expr);
		}
		/* Django adds the ordering's columns to the grouping */
		for (size_t i = 0; i < qs->norder; i++) {
			const struct rorder *o = &qs->order[i];
			if (o->random || is_values_col(qs, o) ||
			    (o->expr &&
			     (o->expr->has_agg || o->expr->kind == RX_ENTRY)))
				continue;
			group_item(s, &first);
			if (o->expr)
				render_expr(r, o->expr);
			else
				sb_col(r, o->col.join, o->col.col);
		}
	}
	if (qs->grouped || qs->group_values)
		group_free(r, &first);
	if (qs->having) {
		sb_lit(s, " HAVING ");
		render_cond(r, qs->having);
	}
}

/* FROM ... WHERE ... GROUP BY ... HAVING of a query (the part inside
 * LATERAL for a sliced level). key_expr: what the relation's key is
 * compared with. */
static void render_body(const struct rctx *r, const char *key_expr)
{
	const struct rqs *qs = r->qs;
	const struct schema_relation *rel = r->qb ? r->qb->rel : NULL;
	struct sbuf *s = r->s;
	bool where = false;

	sb_lit(s, " FROM ");
	sb_table(s, qs->model->schema_name, qs->model->table);
	sb_lit(s, " ");
	sb_alias(s, table_alias[r->depth], 0);
	if (rel && rel->through_table) {
		sb_lit(s, " JOIN ");
		sb_table(s, rel->through_schema, rel->through_table);
		sb_lit(s, " ");
		sb_alias(s, junction_alias[r->depth], 0);
		sb_lit(s, " ON ");
		sb_jcol(r, 0, rel->through_to);
		sb_lit(s, " = ");
		sb_col(r, 0, rel->to_column);
	}
	for (size_t i = 1; i < qs->njoins; i++)
		if (qs->joins[i].scope == 0)
			render_join(r, (int)i);
	if (rel) {
		sb_lit(s, " WHERE ");
		if (rel->through_table)
			sb_jcol(r, 0, rel->through_from);
		else
			sb_col(r, 0, rel->to_column);
		sb_add(s, "%s", key_expr);
		where = true;
	}
	if (qs->where) {
		sb_add(s, where ? " AND " : " WHERE ");
		render_cond(r, qs->where);
	}
	render_group(r);
}

/* ORDER BY of a query; with prefix, by the select list's own columns
 * (c<N> of the subquery named prefix) instead of the tables'. */
static void render_order(const struct rctx *r, const char *prefix)
{
	const struct rqs *qs = r->qs;
	struct sbuf *s = r->s;

	for (size_t i = 0; i < qs->norder; i++) {
		const struct rorder *o = &qs->order[i];
		sb_add(s, i ? ", " : " ORDER BY ");
		if (o->random) {
			sb_lit(s, "RANDOM()");
		} else if (prefix) {
			struct sel want = {.kind = o->expr ? SEL_EXPR
							   : SEL_COLUMN,
					   .join = o->expr ? 0 : o->col.join,
					   .col = o->expr ? NULL : o->col.col,
					   .expr = o->expr};
			sb_put(s, prefix, strlen(prefix));
			sb_alias(s, "c", (size_t)sel_find(r->qb, &want));
		} else if (o->expr) {
			render_expr(r, o->expr);
		} else {
			sb_col(r, o->col.join, o->col.col);
		}
		if (!o->random && o->desc)
			sb_lit(s, " DESC");
	}
}

/* (SELECT <the one values entry> ...) or EXISTS (SELECT 1 ...): a
 * subquery's tables are aliased a level deeper, and its parameters are
 * the statement's. */
static void render_subquery(const struct rctx *r, const struct rqs *qs,
			    bool exists)
{
	struct rctx in = {.s = r->s,
			  .qs = qs,
			  .pbase = r->pbase,
			  .depth = r->depth + 1,
			  .outer = r};
	struct sbuf *s = r->s;

	if (exists) {
		sb_lit(s, "EXISTS (SELECT 1");
	} else {
		sb_lit(s, "(SELECT ");
		if (qs->distinct)
			sb_lit(s, "DISTINCT ");
		render_expr(&in, &qs->values[0].expr);
	}
	render_body(&in, NULL);
	if (!exists) {
		render_order(&in, NULL);
		if (qs->has_limit) {
			sb_lit(s, " LIMIT ");
			sb_param(&in, qs->limit_param, "pg_catalog.int8");
		}
		if (qs->offset) {
			sb_lit(s, " OFFSET ");
			sb_param(&in, qs->offset_param, "pg_catalog.int8");
		}
	}
	sb_lit(s, ")");
}

static void render_select_list(const struct rctx *r, size_t from,
			       const char *prefix)
{
	struct sbuf *s = r->s;

	for (size_t i = from; i < r->qb->nsel; i++) {
		if (i > from)
			sb_lit(s, ", ");
		if (prefix) {
			sb_put(s, prefix, strlen(prefix));
			sb_alias(s, "c", i);
		} else {
			render_sel(r, i);
		}
		sb_lit(s, " AS ");
		sb_alias(s, "c", i);
	}
}

/* The slice of one parent with DISTINCT, as Django computes it: rows are
 * numbered before DISTINCT (ROW_NUMBER() in the same SELECT), so duplicate
 * rows use up slots. Reads every row of the parent, unlike LIMIT: only
 * this combination pays for it. */
static void render_distinct_slice(const struct rctx *r, int *next)
{
	const struct rqs *qs = r->qs;
	struct sbuf *s = r->s;
	int off = 0, lim = 0;

	sb_lit(s, "SELECT DISTINCT ");
	render_select_list(r, 1, "w.");
	sb_lit(s, " FROM (SELECT ");
	render_select_list(r, 1, NULL);
	sb_lit(s, ", row_number() OVER (");
	render_order(r, NULL);
	sb_lit(s, ") AS rn");
	render_body(r, " = k.key");
	if (qs->has_limit)
		lim = (*next)++;
	if (qs->offset)
		off = (*next)++;
	sb_add(s, ") w WHERE w.rn > %s%d", off ? "$" : "", off);
	if (lim && off)
		sb_add(s, " AND w.rn <= $%d::bigint + $%d::bigint", lim, off);
	else if (lim)
		sb_add(s, " AND w.rn <= $%d", lim);
	render_order(r, "w.");
}

/* The row cap (plan_build) as a literal: it is the same for every request,
 * so the text of a statement still depends only on the request's shape and
 * stays one prepared statement. */
static void render_cap(struct sbuf *s, long row_cap)
{
	if (row_cap > 0)
		sb_add(s, " LIMIT %ld", row_cap);
}

/* The wrapped rows of an aggregate: t0's columns and the annotations. */
static void render_row_columns(const struct rctx *r)
{
	const struct rqs *qs = r->qs;

	sb_lit(r->s, "t0.*");
	for (size_t i = 0; i < qs->first_agg; i++) {
		sb_lit(r->s, ", ");
		render_expr(r, &qs->annots[i].expr);
		sb_lit(r->s, " AS ");
		sb_alias(r->s, "pf_a", i);
	}
}

/* The wrapped groups of values().annotate().aggregate(): each entry, a
 * column under its own name (the entries' paths read t0."rating"), an
 * annotation as "pf_a<i>". */
static void render_group_columns(const struct rctx *r)
{
	const struct rqs *qs = r->qs;

	for (size_t i = 0; i < qs->nvalues; i++) {
		const struct rexpr *v = &qs->values[i].expr;
		if (i)
			sb_lit(r->s, ", ");
		if (v->kind == RX_ANNOT) {
			render_expr(r, &qs->annots[v->annot].expr);
			sb_lit(r->s, " AS ");
			sb_alias(r->s, "pf_a", (size_t)v->annot);
			continue;
		}
		render_expr(r, v);
		sb_lit(r->s, " AS ");
		if (v->kind == RX_COL && v->col.join == 0)
			sb_ident(r->s, v->col.col->name);
		else
			sb_alias(r->s, "pf_v", i);
	}
}

/* aggregate() (DESIGN.md §6.5): one row over the whole queryset; over a
 * sliced, distinct or annotated one (agg_wrapped), over a subquery of its
 * rows named as the table, t0: its columns and its annotations "pf_a<i>",
 * which the entries read (Django wraps it the same way). */
static void render_aggregate(const struct rctx *r, int *next, int *nlimit)
{
	const struct rqs *qs = r->qs;
	struct sbuf *s = r->s;

	struct rctx outer = *r;

	sb_lit(s, "SELECT ");
	if (!qs->agg_wrapped) {
		render_select_list(r, 0, NULL);
		render_body(r, NULL);
		return;
	}
	outer.wrapped = true;
	render_select_list(&outer, 0, NULL);
	sb_add(s, " FROM (SELECT %s", qs->distinct ? "DISTINCT " : "");
	if (qs->group_values)
		render_group_columns(r);
	else
		render_row_columns(r);
	render_body(r, NULL);
	render_order(r, NULL);
	if (qs->has_limit) {
		sb_add(s, " LIMIT $%d", (*next)++);
		(*nlimit)++;
	}
	if (qs->offset) {
		sb_add(s, " OFFSET $%d", (*next)++);
		(*nlimit)++;
	}
	sb_lit(s, ") t0");
}

char *plan_sql(const struct qbuild *qb, long row_cap, int *nlimit_params)
{
	const struct rqs *qs = qb->qs;
	struct sbuf s = {0};
	struct rctx r = {
		.s = &s, .qs = qs, .qb = qb, .pbase = qb->keyed ? 2 : 1};
	int next = r.pbase + (int)qs->nparams;
	const char *cast = qb->rel ? qb->rel->from_column->cast : "";
	char key_expr[300];

	*nlimit_params = 0;
	if (qs->shape == SHAPE_AGGREGATE) {
		render_aggregate(&r, &next, nlimit_params);
		goto out;
	}
	if (qb->sliced && qs->distinct) {
		sb_add(&s, "SELECT k.key AS c0, ");
		render_select_list(&r, 1, "s.");
		sb_add(&s,
		       " FROM unnest($1::%s[]) AS k(key) CROSS JOIN "
		       "LATERAL (",
		       cast);
		render_distinct_slice(&r, &next);
		*nlimit_params = (qs->has_limit ? 1 : 0) + (qs->offset ? 1 : 0);
		sb_add(&s, ") s");
		render_cap(&s, row_cap);
		goto out;
	}
	if (qb->sliced) {
		/* Per-parent slice: one index-bounded subquery per key. */
		sb_add(&s, "SELECT k.key AS c0, ");
		render_select_list(&r, 1, "s.");
		sb_add(&s,
		       " FROM unnest($1::%s[]) AS k(key) CROSS JOIN "
		       "LATERAL (SELECT %s",
		       cast, qs->distinct ? "DISTINCT " : "");
		render_select_list(&r, 1, NULL);
		render_body(&r, " = k.key");
	} else {
		sb_add(&s, "SELECT %s", qs->distinct ? "DISTINCT " : "");
		render_select_list(&r, 0, NULL);
		snprintf(key_expr, sizeof(key_expr), " = ANY($1::%s[])", cast);
		render_body(&r, key_expr);
	}
	render_order(&r, NULL);
	if (qs->has_limit) {
		/* finish_query lowers its value to the cap */
		sb_add(&s, " LIMIT $%d", next++);
		(*nlimit_params)++;
	} else if (!qb->sliced) {
		render_cap(&s, row_cap);
	}
	if (qs->offset) {
		sb_add(&s, " OFFSET $%d", next++);
		(*nlimit_params)++;
	}
	if (qb->sliced) {
		sb_add(&s, ") s");
		render_cap(&s, row_cap);
	}
out:
	if (s.failed) {
		free(s.s);
		return NULL;
	}
	return s.s;
}
