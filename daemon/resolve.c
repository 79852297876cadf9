/*
 * Binds a spec to the schema: see resolve.h. Two halves: the queryset
 * (fields, conditions, ordering, select_related) and the prefetch lookups,
 * which follow Django 5.2's prefetch_related_objects: a stack of lookups,
 * each walked level by level, every level remembered under its path.
 */
#include "resolve_int.h"
#include "vec.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = {
	[OP_EXACT] = "exact",
	[OP_IEXACT] = "iexact",
	[OP_CONTAINS] = "contains",
	[OP_ICONTAINS] = "icontains",
	[OP_IN] = "in",
	[OP_GT] = "gt",
	[OP_GTE] = "gte",
	[OP_LT] = "lt",
	[OP_LTE] = "lte",
	[OP_STARTSWITH] = "startswith",
	[OP_ISTARTSWITH] = "istartswith",
	[OP_ENDSWITH] = "endswith",
	[OP_IENDSWITH] = "iendswith",
	[OP_RANGE] = "range",
	[OP_ISNULL] = "isnull",
	[OP_REGEX] = "regex",
	[OP_IREGEX] = "iregex",
	[OP_CONTAINED_BY] = "contained_by",
	[OP_OVERLAP] = "overlap",
	[OP_HAS_KEY] = "has_key",
	[OP_HAS_KEYS] = "has_keys",
	[OP_HAS_ANY_KEYS] = "has_any_keys",
};

#define NOPS ((int)(sizeof(op_names) / sizeof(op_names[0])))

const char *resolve_op_name(enum rop op)
{
	return op_names[op];
}

int find_op(const char *name)
{
	for (int i = 0; i < NOPS; i++)
		if (strcmp(op_names[i], name) == 0)
			return i;
	return -1;
}

/* "library_books" -> "LibraryBooks", "extract_year" -> "ExtractYear": a
 * Django class name, for messages. */
void camel_case(const char *snake, char *out, size_t len)
{
	size_t o = 0;
	bool up = true;

	for (const char *c = snake; *c && o + 1 < len; c++) {
		if (*c == '_') {
			up = true;
			continue;
		}
		out[o++] = up ? (char)toupper((unsigned char)*c) : *c;
		up = false;
	}
	out[o] = '\0';
}

/* The Django class name of a model. */
void class_name(const struct schema_model *m, char *out, size_t len)
{
	camel_case(m->name, out, len);
}

/* Splits "a__b__c" into parts (in buf, which is modified). Returns the
 * count, or -1 when a part is empty ("a____b", "__a"). */
int split_path(char *buf, char **parts, int max)
{
	int n = 0;
	char *p = buf;

	for (;;) {
		char *sep = strstr(p, "__");
		if (n == max)
			return -1;
		parts[n++] = p;
		if (!sep)
			break;
		*sep = '\0';
		p = sep + 2;
	}
	for (int i = 0; i < n; i++)
		if (!parts[i][0])
			return -1;
	return n;
}

/* The names a model accepts in filters, for "Choices are: ...". */
void choices(const struct schema_model *m, char *out, size_t len)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < m->nrelations && o < len; i++)
		o += (size_t)snprintf(out + o, len - o, "%s%s", o ? ", " : "",
				      m->relations[i].query_name);
	for (size_t i = 0; i < m->ncolumns && o < len; i++)
		o += (size_t)snprintf(out + o, len - o, "%s%s", o ? ", " : "",
				      m->columns[i].name);
}

const struct schema_column *find_field(const struct schema_model *m,
				       const char *name)
{
	if (strcmp(name, "pk") == 0)
		return m->pk;
	return schema_find_column(m, name);
}

/* ---- the queryset ---------------------------------------------------- */

int add_param(struct qctx *c, const char *text)
{
	struct rqs *to = c->params ? c->params : c->qs;
	char **slot = vec_push(&to->params, &to->nparams, sizeof(char *));

	if (!slot)
		return OOM(c->err);
	if (text && !(*slot = strdup(text)))
		return OOM(c->err);
	return (int)to->nparams - 1;
}

/* The join of rel from parent in scope, shared when it exists already: one
 * filter() shares its joins, as in Django. A LEFT use makes it LEFT. */
static int add_join_on(struct qctx *c, int parent,
		       const struct schema_relation *rel, int scope, bool left,
		       const struct schema_column *parent_col,
		       bool junction_only)
{
	struct rjoin *j;

	for (size_t i = 1; i < c->qs->njoins; i++) {
		j = &c->qs->joins[i];
		if (j->parent == parent && j->rel == rel && j->scope == scope &&
		    j->parent_col == parent_col) {
			j->left |= left;
			j->junction_only &= junction_only;
			return (int)i;
		}
	}
	j = vec_push(&c->qs->joins, &c->qs->njoins, sizeof(*j));
	if (!j)
		return OOM(c->err);
	*j = (struct rjoin){.rel = rel,
			    .model = rel->target,
			    .parent = parent,
			    .scope = scope,
			    .left = left,
			    .junction_only = junction_only,
			    .parent_col = parent_col};
	j->via_level_junction = parent == 0 && scope == 0 && c->via &&
				c->via->through_table && c->via->reverse == rel;
	return (int)c->qs->njoins - 1;
}

static int add_join(struct qctx *c, int parent,
		    const struct schema_relation *rel, int scope, bool left)
{
	return add_join_on(c, parent, rel, scope, left, NULL, false);
}

/* A join after a LEFT join must be LEFT too, or it would drop the rows the
 * LEFT join kept. Parents come before children, so one pass does it. */
static void propagate_left(struct rqs *qs)
{
	for (size_t i = 1; i < qs->njoins; i++) {
		struct rjoin *j = &qs->joins[i];
		if (j->parent > 0 && qs->joins[j->parent].left &&
		    qs->joins[j->parent].scope == j->scope)
			j->left = true;
	}
}

/* Catches the common wrong values with a precise "at"; PostgreSQL decides
 * the rest (its class-22 errors are 422 bad_value too). */
static int check_value(struct qctx *c, const char *name, enum rtype type,
		       enum schema_render render, const struct spec_value *v,
		       const char *at)
{
	if (v->kind == SPEC_OBJECT || v->kind == SPEC_ARRAY) {
		if (render == RENDER_RAW || type == RT_JSON)
			return 0;
		return pf_err_set(c->err, 422, "bad_value", at,
				  "Field '%s' expected a scalar value", name);
	}
	if (type == RT_INT || type == RT_BIGINT) {
		const char *s = v->text;
		char *end;
		errno = 0;
		(void)strtoll(s, &end, 10);
		if (v->kind == SPEC_BOOL || !*s || *end || errno)
			return pf_err_set(c->err, 422, "bad_value", at,
					  "Field '%s' expected a number but "
					  "got '%s'.",
					  name, s);
	}
	return 0;
}

/* A value as JSON text, as Django's JSONField encodes a lookup's value:
 * a string is quoted, other scalars are their own text, objects and
 * arrays their compact JSON, None the JSON null. */
char *json_text(const struct spec_value *v)
{
	const char *t = v->text;
	char *out, *o;

	if (v->kind == SPEC_NULL)
		return strdup("null");
	if (v->kind != SPEC_STRING)
		return strdup(t);
	out = o = malloc(strlen(t) * 6 + 3);
	if (!out)
		return NULL;
	*o++ = '"';
	for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
		if (*p == '"' || *p == '\\') {
			*o++ = '\\';
			*o++ = (char)*p;
		} else if (*p < 0x20) {
			o += sprintf(o, "\\u%04x", *p);
		} else {
			*o++ = (char)*p;
		}
	}
	*o++ = '"';
	*o = '\0';
	return out;
}

/* LIKE pattern for the contains family, with Django's escaping. */
static char *like_pattern(const char *v, bool lead, bool trail)
{
	char *out = malloc(strlen(v) * 2 + 3), *o = out;

	if (!out)
		return NULL;
	if (lead)
		*o++ = '%';
	for (; *v; v++) {
		if (*v == '\\' || *v == '%' || *v == '_')
			*o++ = '\\';
		*o++ = *v;
	}
	if (trail)
		*o++ = '%';
	*o = '\0';
	return out;
}

/* A PostgreSQL array literal of the distinct non-null items. Returns the
 * count of items in *n. */
static char *array_literal(const struct spec_value *v, bool json, size_t *n)
{
	size_t len = 3;
	char *out, *o;

	for (size_t i = 0; i < v->nitems; i++)
		if (v->items[i].text)
			len += strlen(v->items[i].text) * 12 + 8;
	out = o = malloc(len);
	if (!out)
		return NULL;
	*n = 0;
	*o++ = '{';
	for (size_t i = 0; i < v->nitems; i++) {
		const char *t = v->items[i].text;
		char *enc = NULL;
		bool seen = false;
		if (v->items[i].kind == SPEC_NULL || !t)
			continue;
		for (size_t k = 0; k < i && !seen; k++)
			seen = v->items[k].text &&
			       v->items[k].kind != SPEC_NULL &&
			       v->items[k].kind == v->items[i].kind &&
			       strcmp(v->items[k].text, t) == 0;
		if (seen)
			continue;
		if (json && !(t = enc = json_text(&v->items[i]))) {
			free(out);
			return NULL;
		}
		if (*n)
			*o++ = ',';
		*o++ = '"';
		for (; *t; t++) {
			if (*t == '"' || *t == '\\')
				*o++ = '\\';
			*o++ = *t;
		}
		*o++ = '"';
		free(enc);
		(*n)++;
	}
	*o++ = '}';
	*o = '\0';
	return out;
}

static int bind_scalar(struct qctx *c, struct rcond *t, const char *text,
		       const char *at)
{
	t->param = add_param(c, text);
	return t->param < 0 ? -1 : 0;
}

/* Binds text, made for the purpose (NULL: out of memory), and frees it. */
static int bind_made(struct qctx *c, struct rcond *t, char *text,
		     const char *at)
{
	int rc;

	if (!text)
		return OOM(c->err);
	rc = bind_scalar(c, t, text, at);
	free(text);
	return rc;
}

/* Binds the value of a term to parameter slots, per operator. Sets the
 * term to RC_FALSE when it can match nothing ("in": []). */
static int bind_value(struct qctx *c, struct rcond *t,
		      const struct spec_value *v, const char *at)
{
	const char *name = t->lhs ? at : t->col.col->name;
	enum schema_render render =
		t->lhs ? t->lhs->render : t->col.col->render;
	enum rtype type = t->lhs_type;
	bool json = type == RT_JSON;
	char *text;
	size_t n;
	int rc;

	t->param = -1;
	if (t->op == OP_ISNULL) {
		bool yes = v->kind == SPEC_BOOL && strcmp(v->text, "true") == 0;
		t->is_null = yes;
		t->not_null = !yes;
		return 0;
	}
	if (v->kind == SPEC_NULL) {
		/* on a jsonb key, None is the JSON null (Django's
		 * KeyTransformExact), not a missing key */
		if (t->op == OP_EXACT && t->lhs && t->lhs->kind == RX_KEY) {
			t->json_value = true;
			return bind_scalar(c, t, "null", at);
		}
		if (t->op == OP_EXACT || t->op == OP_IEXACT) {
			t->is_null = true;
			return 0;
		}
		return pf_err_set(c->err, 422, "bad_value", at,
				  "Cannot use None as a query value");
	}
	switch (t->op) {
	case OP_IN:
		for (size_t i = 0; i < v->nitems; i++)
			if (v->items[i].kind != SPEC_NULL &&
			    check_value(c, name, type,
					json ? RENDER_STRING : render,
					&v->items[i], at) < 0)
				return -1;
		if (!(text = array_literal(v, json, &n)))
			return OOM(c->err);
		if (n == 0)
			t->kind = RC_FALSE;
		t->json_value = json;
		rc = n ? bind_scalar(c, t, text, at) : 0;
		free(text);
		return rc;
	case OP_RANGE:
		if (v->items[0].kind == SPEC_NULL ||
		    v->items[1].kind == SPEC_NULL)
			return pf_err_set(c->err, 422, "bad_value", at,
					  "Cannot use None as a query value");
		if (check_value(c, name, type, render, &v->items[0], at) < 0 ||
		    check_value(c, name, type, render, &v->items[1], at) < 0)
			return -1;
		if (json) {
			char *lo = json_text(&v->items[0]);
			char *hi = json_text(&v->items[1]);
			t->json_value = true;
			rc = lo && hi ? bind_scalar(c, t, lo, at) : OOM(c->err);
			if (rc == 0 && add_param(c, hi) < 0)
				rc = -1;
			free(lo);
			free(hi);
			return rc;
		}
		if (bind_scalar(c, t, v->items[0].text, at) < 0 ||
		    add_param(c, v->items[1].text) < 0)
			return -1;
		return 0;
	case OP_HAS_KEY:
		if (v->kind != SPEC_STRING)
			return pf_err_set(c->err, 422, "bad_value", at,
					  "'has_key' needs a key (a string)");
		return bind_scalar(c, t, v->text, at);
	case OP_HAS_KEYS:
	case OP_HAS_ANY_KEYS:
	case OP_OVERLAP:
	case OP_CONTAINED_BY:
	case OP_CONTAINS:
		if (t->op == OP_CONTAINS && !json && type != RT_ARRAY)
			break;
		if (json &&
		    (t->op == OP_CONTAINS || t->op == OP_CONTAINED_BY)) {
			/* jsonb @> / <@: the value as JSON */
			t->json_value = true;
			return bind_made(c, t, json_text(v), at);
		}
		if (v->kind != SPEC_ARRAY)
			return pf_err_set(c->err, 422, "bad_value", at,
					  "'%s' needs an array of values",
					  op_names[t->op]);
		return bind_made(c, t, array_literal(v, false, &n), at);
	default:
		break;
	}
	switch (t->op) {
	case OP_CONTAINS:
	case OP_ICONTAINS:
	case OP_STARTSWITH:
	case OP_ISTARTSWITH:
	case OP_ENDSWITH:
	case OP_IENDSWITH:
		if (v->kind == SPEC_OBJECT || v->kind == SPEC_ARRAY)
			return pf_err_set(c->err, 422, "bad_value", at,
					  "'%s' needs a string",
					  op_names[t->op]);
		return bind_made(c, t,
				 like_pattern(v->text,
					      t->op != OP_STARTSWITH &&
						      t->op != OP_ISTARTSWITH,
					      t->op != OP_ENDSWITH &&
						      t->op != OP_IENDSWITH),
				 at);
	case OP_IEXACT:
	case OP_REGEX:
	case OP_IREGEX:
		if (v->kind == SPEC_OBJECT || v->kind == SPEC_ARRAY)
			return pf_err_set(c->err, 422, "bad_value", at,
					  "'%s' needs a string",
					  op_names[t->op]);
		return bind_scalar(c, t, v->text, at);
	default: /* exact and the comparisons */
		if (json) {
			t->json_value = true;
			return bind_made(c, t, json_text(v), at);
		}
		if (type == RT_ARRAY && v->kind == SPEC_ARRAY) {
			return bind_made(c, t, array_literal(v, false, &n), at);
		}
		if (check_value(c, name, type, render, v, at) < 0)
			return -1;
		return bind_scalar(c, t, v->text, at);
	}
}

/* Whether the join of rel from w->join is LEFT: as asked, or, on an
 * expression's path (w->promote), where Django promotes it: a relation
 * that may find no row (nullable, reverse, to-many) or follows a LEFT
 * join, so that an annotation or a values entry never drops an object. */
static bool hop_left(const struct qctx *c, const struct walk *w,
		     const struct schema_relation *rel, bool left)
{
	return left ||
	       (w->promote && (rel->to_many || rel->nullable || !rel->forward ||
			       c->qs->joins[w->join].left));
}

/* Whether an expression's path may skip the join of rel, a forward FK
 * that a constraint backs: when the next relation starts from the key rel
 * points to (comment -> article -> tags: the junction's article_id equals
 * comment.article_id), joining the next one on rel's own column finds the
 * same rows, LEFT as the next join is (reverse and to-many). */
static bool skips_to_next(const struct walk *w,
			  const struct schema_relation *rel, const char *next)
{
	const struct schema_relation *nx;

	if (!w->promote || w->parent_col || rel->to_many || !rel->forward ||
	    !rel->constraint)
		return false;
	nx = schema_find_query_relation(rel->target, next);
	return nx && (nx->to_many || !nx->forward) &&
	       nx->from_column == rel->to_column;
}

/* The column a relation stands for when compared as a value: its own FK
 * column for a forward relation (no join), else the target's pk. */
static int relation_as_value(struct qctx *c, struct walk *w,
			     const struct schema_relation *rel, bool left)
{
	/* an expression's many-to-many ends at the junction's column */
	bool junction_only = w->promote && rel->through_table;

	if (!rel->to_many && rel->forward) {
		w->col = rel->from_column;
		return 0;
	}
	w->join = add_join_on(c, w->join, rel, w->scope,
			      hop_left(c, w, rel, left), w->parent_col,
			      junction_only);
	if (w->join < 0)
		return -1;
	w->parent_col = NULL;
	w->joins[w->njoins++] = w->join;
	w->via_join = true;
	w->col = junction_only	   ? rel->to_column
		 : rel->target->pk ? rel->target->pk
				   : rel->to_column;
	return 0;
}

/*
 * Walks "author__publisher__name__icontains" from the queryset's model to
 * a column, adding joins. A to-many hop under negation opens an EXISTS
 * scope (Django's split_exclude) instead of a join. Leaves w->next at the
 * first part that is not a field (the operator, if any).
 */
int walk_path(struct qctx *c, char **parts, int n, bool negated, bool left,
	      const char *at, struct walk *w, int *new_scope)
{
	w->join = 0;
	w->model = c->qs->model;
	for (int i = 0; i < n; i++) {
		const struct schema_relation *rel;
		bool last = i == n - 1 || (!w->no_op && i == n - 2 &&
					   find_op(parts[n - 1]) >= 0);
		char names[1024];

		if ((w->col = find_field(w->model, parts[i])) &&
		    !schema_find_query_relation(w->model, parts[i])) {
			w->next = i + 1;
			return 0;
		}
		rel = schema_find_query_relation(w->model, parts[i]);
		if (!rel) {
			choices(w->model, names, sizeof(names));
			return pf_err_set(c->err, 422, "unknown_field", at,
					  "Cannot resolve keyword '%s' into "
					  "field. Choices are: %s",
					  parts[i], names);
		}
		if (rel->to_many && negated && w->scope == 0 && !c->no_split) {
			w->scope = ++c->qs->nscopes;
			*new_scope = w->scope;
			left = false; /* inside EXISTS the term is positive */
		}
		if (last) {
			w->next = i + 1;
			return relation_as_value(c, w, rel, left);
		}
		/* author__id: the FK column already holds the value. */
		if (!rel->to_many && rel->forward &&
		    strcmp(parts[i + 1], rel->to_column->name) == 0 &&
		    (i + 2 == n ||
		     (!w->no_op && i + 3 == n && find_op(parts[n - 1]) >= 0))) {
			w->col = rel->from_column;
			w->next = i + 2;
			return 0;
		}
		if (skips_to_next(w, rel, parts[i + 1])) {
			w->parent_col = rel->from_column;
			w->model = rel->target;
			continue;
		}
		w->join = add_join_on(c, w->join, rel, w->scope,
				      hop_left(c, w, rel, left), w->parent_col,
				      false);
		if (w->join < 0)
			return -1;
		w->parent_col = NULL;
		w->joins[w->njoins++] = w->join;
		w->via_join = true;
		w->model = rel->target;
	}
	return pf_err_set(c->err, 422, "unknown_field", at,
			  "'%s' does not name a field", parts[n - 1]);
}

/* The operators each kind of value takes beyond the common ones. */
static bool op_fits(enum rop op, enum rtype type)
{
	switch (op) {
	case OP_HAS_KEY:
	case OP_HAS_KEYS:
	case OP_HAS_ANY_KEYS:
		return type == RT_JSON;
	case OP_CONTAINED_BY:
		return type == RT_JSON || type == RT_ARRAY;
	case OP_OVERLAP:
		return type == RT_ARRAY;
	default:
		return true;
	}
}

/* A lookup's text operators read a jsonb key's text (->>), as Django's
 * KeyTransformTextLookupMixin. */
static bool text_op(enum rop op)
{
	return op == OP_IEXACT || op == OP_ICONTAINS || op == OP_STARTSWITH ||
	       op == OP_ISTARTSWITH || op == OP_ENDSWITH ||
	       op == OP_IENDSWITH || op == OP_REGEX || op == OP_IREGEX;
}

static struct rexpr *heap_expr(struct qctx *c, struct rexpr *e)
{
	struct rexpr *h = malloc(sizeof(*h));

	if (!h) {
		expr_cleanup(e);
		OOM(c->err);
		return NULL;
	}
	*h = *e;
	return h;
}

/* The left side of a term after its column: transforms, an annotation.
 * Sets t->lhs (NULL for a plain column) and returns the part index of the
 * operator (n when there is none). */
static int term_lhs(struct qctx *c, struct rcond *t, char **parts, int n,
		    int from, const struct walk *w, int annot, const char *at)
{
	struct rexpr e;
	int next;

	if (annot >= 0) {
		e = (struct rexpr){
			.kind = RX_ANNOT, .annot = annot, .param = -1};
		e.type = c->qs->annots[annot].expr.type;
		e.cast = c->qs->annots[annot].expr.cast;
		e.render = c->qs->annots[annot].expr.render;
		e.has_agg = c->qs->annots[annot].expr.has_agg;
	} else {
		expr_column(&e, w->join, w->col);
	}
	if (expr_transforms(c, &e, parts, n, from, at, &next) < 0) {
		expr_cleanup(&e);
		return -1;
	}
	t->lhs_type = e.type;
	if (e.kind == RX_COL) {
		t->col = e.col;
		return next;
	}
	if (!(t->lhs = heap_expr(c, &e)))
		return -1;
	return next;
}

static int resolve_term(struct qctx *c, const struct spec_cond *sc,
			bool negated, bool in_or, struct rcond *out)
{
	char buf[1024], *parts[MAX_PARTS];
	struct walk w = {0};
	struct rcond *t = out;
	int n, new_scope = 0, op = OP_EXACT, annot, next, from = 0;

	snprintf(buf, sizeof(buf), "%s", sc->lookup);
	n = split_path(buf, parts, MAX_PARTS);
	if (n < 0)
		return pf_err_set(c->err, 422, "unknown_field", sc->at,
				  "'%s' is not a valid lookup", sc->lookup);
	/* an annotation comes first, as in Django (its name may have "__");
	 * an aggregate() entry may be named as a field, which then wins */
	annot = expr_find_annot_prefix(c, parts, n, &from);
	if (annot >= 0 && from == 1 && find_field(c->qs->model, parts[0]))
		annot = -1;
	if (annot < 0) {
		if (walk_path(c, parts, n, negated, negated || in_or, sc->at,
			      &w, &new_scope) < 0)
			return -1;
		from = w.next;
	}
	if (new_scope) {
		/* The EXISTS node wraps the positive term. */
		out->kind = RC_EXISTS;
		out->scope = new_scope;
		out->children = calloc(1, sizeof(*out->children));
		out->nchildren = 1;
		if (!out->children)
			return OOM(c->err);
		t = &out->children[0];
	}
	*t = (struct rcond){.kind = RC_TERM, .col = {w.join, w.col}};
	next = term_lhs(c, t, parts, n, from, &w, annot, sc->at);
	if (next < 0)
		return -1;
	if (next < n) {
		op = find_op(parts[next]);
		if (op < 0 || !op_fits((enum rop)op, t->lhs_type))
			return pf_err_set(
				c->err, 422, "unknown_operator", sc->at,
				"Unsupported lookup '%s' for field '%s'",
				parts[next], sc->lookup);
	}
	t->op = (enum rop)op;
	if (t->lhs && t->lhs->kind == RX_KEY && text_op(t->op)) {
		t->lhs->kind = RX_KEY_TEXT;
		t->lhs->type = t->lhs_type = RT_TEXT;
	}
	if (sc->rhs) {
		static const bool takes_expr[] = {
			[OP_EXACT] = true, [OP_GT] = true,  [OP_GTE] = true,
			[OP_LT] = true,	   [OP_LTE] = true,
		};
		bool in_subquery =
			t->op == OP_IN && sc->rhs->kind == SPEC_EX_SUBQUERY;
		if (!in_subquery &&
		    ((size_t)t->op >= sizeof(takes_expr) || !takes_expr[t->op]))
			return pf_err_set(c->err, 422, "bad_expression", sc->at,
					  "'%s' does not take an expression",
					  op_names[t->op]);
		t->param = -1;
		if (!(t->rhs = malloc(sizeof(*t->rhs))))
			return OOM(c->err);
		*t->rhs = (struct rexpr){.param = -1};
		if (expr_resolve(c, sc->rhs, negated || in_or, t->rhs) < 0)
			return -1;
	} else if (bind_value(c, t, &sc->value, sc->at) < 0) {
		return -1;
	}
	/* "IS NULL" across a join must see the rows the join did not find. */
	if (t->is_null)
		for (int i = 0; i < w.njoins; i++)
			c->qs->joins[w.joins[i]].left = true;
	/* Django's exclude keeps NULLs: NOT (c = v AND c IS NOT NULL), and
	 * the same for a nullable column on the right. */
	t->null_guard = negated && !new_scope && !t->is_null && !t->not_null &&
			annot < 0 && (w.col->nullable || w.via_join);
	t->rhs_guard = negated && t->rhs && t->rhs->kind == RX_COL &&
		       t->rhs->col.col->nullable;
	if (new_scope && t->kind == RC_FALSE) {
		cond_cleanup(out);
		*out = (struct rcond){.kind = RC_FALSE};
	}
	return 0;
}

static void cond_free_children(struct rcond *cnd)
{
	for (size_t i = 0; i < cnd->nchildren; i++)
		cond_cleanup(&cnd->children[i]);
	free(cnd->children);
	cnd->children = NULL;
	cnd->nchildren = 0;
}

/* Frees what a condition node owns (not the node itself). */
void cond_cleanup(struct rcond *cnd)
{
	cond_free_children(cnd);
	if (cnd->lhs) {
		expr_cleanup(cnd->lhs);
		free(cnd->lhs);
		cnd->lhs = NULL;
	}
	if (cnd->rhs) {
		expr_cleanup(cnd->rhs);
		free(cnd->rhs);
		cnd->rhs = NULL;
	}
}

void cond_free(struct rcond *cnd)
{
	if (!cnd)
		return;
	cond_cleanup(cnd);
	free(cnd);
}

/* Folds constant children. AND with FALSE is FALSE and OR with TRUE is
 * TRUE; TRUE in an AND and FALSE in an OR drop out; NOT flips. An empty
 * condition ({}, Django's Q()) is no condition at all: it drops out of
 * AND and OR alike and NOT leaves it empty. An AND/OR left with one child
 * is that child. Constants have no children, so nothing is freed twice. */
static void fold(struct rcond *cnd)
{
	bool is_and = cnd->kind == RC_AND;
	enum rcond_kind absorbing = is_and ? RC_FALSE : RC_TRUE;
	enum rcond_kind neutral = is_and ? RC_TRUE : RC_FALSE;
	bool saw_neutral = false;
	size_t keep = 0;

	if (cnd->kind == RC_NOT) {
		enum rcond_kind k = cnd->children[0].kind;
		if (k == RC_TRUE || k == RC_FALSE || k == RC_NONE) {
			cond_free_children(cnd);
			cnd->kind = k == RC_NONE   ? RC_NONE
				    : k == RC_TRUE ? RC_FALSE
						   : RC_TRUE;
		}
		return;
	}
	if (cnd->kind != RC_AND && cnd->kind != RC_OR)
		return;
	for (size_t i = 0; i < cnd->nchildren; i++)
		if (cnd->children[i].kind == absorbing) {
			cond_free_children(cnd);
			cnd->kind = absorbing;
			return;
		}
	for (size_t i = 0; i < cnd->nchildren; i++) {
		enum rcond_kind k = cnd->children[i].kind;
		if (k == neutral || k == RC_NONE) {
			saw_neutral |= k == neutral;
			cond_cleanup(&cnd->children[i]);
			continue;
		}
		cnd->children[keep++] = cnd->children[i];
	}
	cnd->nchildren = keep;
	if (keep == 0) {
		cond_free_children(cnd);
		cnd->kind = saw_neutral ? neutral : RC_NONE;
	} else if (keep == 1) {
		struct rcond only = cnd->children[0];
		free(cnd->children);
		*cnd = only;
	}
}

int resolve_cond(struct qctx *c, const struct spec_cond *sc, bool negated,
		 bool in_or, struct rcond *out)
{
	*out = (struct rcond){.param = -1};
	switch (sc->kind) {
	case SPEC_TERM:
		return resolve_term(c, sc, negated, in_or, out);
	case SPEC_EXISTS:
		/* filter(Exists(...)): a boolean expression as a term */
		out->kind = RC_EXPR;
		if (!(out->lhs = calloc(1, sizeof(*out->lhs))))
			return OOM(c->err);
		*out->lhs = (struct rexpr){.kind = RX_EXISTS,
					   .type = RT_BOOL,
					   .render = RENDER_BOOL,
					   .param = -1};
		return resolve_subquery(c, sc->exists, sc->at,
					&out->lhs->query);
	case SPEC_NOT:
		negated = !negated;
		out->kind = RC_NOT;
		break;
	case SPEC_OR:
		in_or = in_or || sc->nchildren > 1;
		out->kind = RC_OR;
		break;
	case SPEC_AND:
		out->kind = RC_AND;
		break;
	}
	if (sc->nchildren) {
		out->children = calloc(sc->nchildren, sizeof(*out->children));
		if (!out->children)
			return OOM(c->err);
	}
	out->nchildren = sc->nchildren;
	for (size_t i = 0; i < sc->nchildren; i++)
		if (resolve_cond(c, &sc->children[i], negated, in_or,
				 &out->children[i]) < 0)
			return -1;
	fold(out);
	return 0;
}

/* Folding drops the terms of an always-true OR or an always-false AND,
 * and their values with them: keep only the parameters the SQL uses, or
 * PostgreSQL could not infer the type of an unused $n. */
static int compact_params(struct qctx *c)
{
	struct rqs *qs = c->qs;
	bool *used = calloc(qs->nparams + 1, sizeof(bool));
	int *to = calloc(qs->nparams + 1, sizeof(int));
	size_t n = 0;

	if (!used || !to) {
		free(used);
		free(to);
		return OOM(c->err);
	}
	qs_mark_params(qs, used);
	for (size_t i = 0; i < qs->nparams; i++) {
		if (!used[i]) {
			free(qs->params[i]);
			continue;
		}
		to[i] = (int)n;
		qs->params[n++] = qs->params[i];
	}
	qs->nparams = n;
	qs_renumber_params(qs, to);
	free(used);
	free(to);
	return 0;
}

/* Appends the conjuncts of cnd (moved: its nested ANDs flattened) to
 * where or having, by whether they mention an aggregate (DESIGN.md
 * §6.3: filter() before annotate() for plain terms, after it for terms
 * on aggregates). */
static int split_conjuncts(struct qctx *c, struct rcond *cnd,
			   struct rcond *where, struct rcond *having)
{
	struct rcond *to, *slot;

	if (cnd->kind == RC_AND) {
		for (size_t i = 0; i < cnd->nchildren; i++)
			if (split_conjuncts(c, &cnd->children[i], where,
					    having) < 0)
				return -1;
		free(cnd->children);
		cnd->children = NULL;
		cnd->nchildren = 0;
		return 0;
	}
	to = cond_has_agg(cnd) ? having : where;
	slot = vec_push(&to->children, &to->nchildren, sizeof(*slot));
	if (!slot) {
		cond_cleanup(cnd);
		return OOM(c->err);
	}
	*slot = *cnd;
	*cnd = (struct rcond){.kind = RC_NONE};
	return 0;
}

/* A condition tree of conjuncts, folded; NULL when it is always true. */
static struct rcond *finish_conjuncts(struct rcond *all)
{
	fold(all);
	if (all->kind == RC_TRUE || all->kind == RC_NONE) {
		cond_free(all);
		return NULL;
	}
	return all;
}

/* where = filter AND NOT exclude, folded; an always-false where makes the
 * queryset empty (no query is sent). */
static int resolve_where(struct qctx *c, const struct spec_queryset *spec)
{
	struct rcond parts[2] = {{.kind = RC_NONE}, {.kind = RC_NONE}};
	struct rcond *where = calloc(1, sizeof(*where));
	struct rcond *having = calloc(1, sizeof(*having));
	int rc = -1;

	if (!where || !having) {
		free(where);
		free(having);
		return OOM(c->err);
	}
	where->kind = having->kind = RC_AND;
	if (spec->filter &&
	    resolve_cond(c, spec->filter, false, false, &parts[0]) < 0)
		goto out;
	if (spec->exclude) {
		struct rcond *neg = &parts[1];
		neg->kind = RC_NOT;
		neg->children = calloc(1, sizeof(*neg->children));
		if (!neg->children) {
			OOM(c->err);
			goto out;
		}
		neg->nchildren = 1;
		if (resolve_cond(c, spec->exclude, true, false,
				 &neg->children[0]) < 0)
			goto out;
		fold(neg);
	}
	for (int i = 0; i < 2; i++) {
		fold(&parts[i]);
		if (split_conjuncts(c, &parts[i], where, having) < 0)
			goto out;
	}
	c->qs->where = finish_conjuncts(where);
	c->qs->having = finish_conjuncts(having);
	where = having = NULL;
	if ((c->qs->where && c->qs->where->kind == RC_FALSE) ||
	    (c->qs->having && c->qs->having->kind == RC_FALSE))
		c->qs->empty = true;
	rc = 0;
out:
	cond_cleanup(&parts[0]);
	cond_cleanup(&parts[1]);
	cond_free(where);
	cond_free(having);
	return rc;
}

static int add_order(struct qctx *c, struct rcol col, bool desc)
{
	struct rorder *o = vec_push(&c->qs->order, &c->qs->norder, sizeof(*o));

	if (!o)
		return OOM(c->err);
	o->col = col;
	o->desc = desc;
	return 0;
}

/* Orders by an expression (moved into the ordering). */
static int add_order_expr(struct qctx *c, struct rexpr *e, bool desc)
{
	struct rorder *o = vec_push(&c->qs->order, &c->qs->norder, sizeof(*o));

	if (!o || !(o->expr = malloc(sizeof(*o->expr)))) {
		expr_cleanup(e);
		return OOM(c->err);
	}
	*o->expr = *e;
	o->desc = desc;
	return 0;
}

/* "published__year", "metadata__rank": a column with transforms. */
static int order_by_transform(struct qctx *c, int join,
			      const struct schema_column *col, char **parts,
			      int n, int from, bool desc, const char *at)
{
	struct rexpr e;

	expr_column(&e, join, col);
	if (expr_transforms(c, &e, parts, n, from, at, NULL) < 0) {
		expr_cleanup(&e);
		return -1;
	}
	return add_order_expr(c, &e, desc);
}

/* An annotation by name, as Django's order_by("-n_books"). */
static int order_by_annotation(struct qctx *c, int annot, char **parts, int n,
			       int used, bool desc, const char *at)
{
	struct rexpr e = {.kind = RX_ANNOT, .annot = annot, .param = -1};

	e.type = c->qs->annots[annot].expr.type;
	e.render = c->qs->annots[annot].expr.render;
	e.has_agg = c->qs->annots[annot].expr.has_agg;
	if (expr_transforms(c, &e, parts, n, used, at, NULL) < 0) {
		expr_cleanup(&e);
		return -1;
	}
	return add_order_expr(c, &e, desc);
}

static int resolve_order_term(struct qctx *c, const char *field, bool desc,
			      const char *at, int depth);

/* Ordering by a relation orders by the target's default ordering (Django
 * expands Meta.ordering), else by the FK column itself. */
static int order_by_relation(struct qctx *c, int join,
			     const struct schema_relation *rel, bool desc,
			     const char *at, int depth)
{
	const struct schema_model *t = rel->target;
	bool left = rel->to_many || rel->nullable || !rel->forward ||
		    c->qs->joins[join].left;

	if (t->nordering == 0 && !rel->to_many && rel->forward)
		return add_order(c, (struct rcol){join, rel->from_column},
				 desc);
	join = add_join(c, join, rel, 0, left);
	if (join < 0)
		return -1;
	if (t->nordering == 0 || depth > 4)
		return add_order(
			c, (struct rcol){join, t->pk ? t->pk : rel->to_column},
			desc);
	for (size_t i = 0; i < t->nordering; i++) {
		const char *term = t->ordering[i];
		bool d = term[0] == '-';
		const struct schema_column *col = find_field(t, term + d);
		if (!col)
			return pf_err_set(c->err, 500, "internal", at,
					  "bad default ordering on %s",
					  t->name);
		if (add_order(c, (struct rcol){join, col}, d != desc) < 0)
			return -1;
	}
	return 0;
}

static int resolve_order_term(struct qctx *c, const char *field, bool desc,
			      const char *at, int depth)
{
	char buf[1024], *parts[MAX_PARTS], names[1024];
	const struct schema_model *m = c->qs->model;
	int n, join = 0, annot, used;
	const char *bad = field;

	if (strcmp(field, "?") == 0) {
		struct rorder *o =
			vec_push(&c->qs->order, &c->qs->norder, sizeof(*o));
		if (!o)
			return OOM(c->err);
		o->random = true;
		return 0;
	}
	snprintf(buf, sizeof(buf), "%s", field);
	n = split_path(buf, parts, MAX_PARTS);
	if (n < 0)
		return pf_err_set(c->err, 422, "unknown_field", at,
				  "'%s' is not a valid ordering", field);
	annot = expr_find_annot_prefix(c, parts, n, &used);
	if (annot >= 0 && !(used == 1 && find_field(m, parts[0])))
		return order_by_annotation(c, annot, parts, n, used, desc, at);
	for (int i = 0; i < n; i++) {
		const struct schema_relation *rel =
			schema_find_query_relation(m, parts[i]);
		const struct schema_column *col = find_field(m, parts[i]);
		if (col && !rel) {
			enum rtype t = expr_column_type(col);
			if (i == n - 1)
				return add_order(c, (struct rcol){join, col},
						 desc);
			if (t == RT_JSON || t == RT_ARRAY || t == RT_DATE ||
			    t == RT_TIMESTAMP || t == RT_TIMESTAMPTZ ||
			    t == RT_TIME)
				return order_by_transform(c, join, col, parts,
							  n, i + 1, desc, at);
			/* Django: Join on 'title' not permitted. */
			bad = parts[i + 1];
			break;
		}
		if (!rel) {
			bad = parts[i];
			break;
		}
		if (i == n - 1)
			return order_by_relation(c, join, rel, desc, at, depth);
		join = add_join(c, join, rel, 0,
				rel->to_many || rel->nullable ||
					!rel->forward ||
					c->qs->joins[join].left);
		if (join < 0)
			return -1;
		m = rel->target;
	}
	choices(m, names, sizeof(names));
	return pf_err_set(c->err, 422, "unknown_field", at,
			  "Cannot resolve keyword '%s' into field. Choices "
			  "are: %s",
			  bad, names);
}

/* order_by, else the model's default ordering; then the pk as the last
 * tiebreak so that output is deterministic. */
static bool orders_by(const struct rqs *qs, int join,
		      const struct schema_column *col)
{
	for (size_t i = 0; i < qs->norder; i++)
		if (!qs->order[i].expr && !qs->order[i].random &&
		    qs->order[i].col.join == join &&
		    qs->order[i].col.col == col)
			return true;
	return false;
}

/* Whether the ordering has the annotation that values entry v is. */
static bool orders_by_expr(const struct rqs *qs, const struct rexpr *v)
{
	for (size_t i = 0; i < qs->norder && v->kind == RX_ANNOT; i++)
		if (qs->order[i].expr && qs->order[i].expr->kind == RX_ANNOT &&
		    qs->order[i].expr->annot == v->annot)
			return true;
	return false;
}

/* A values queryset's tiebreak: its own entries, in order. Rows equal in
 * all of them are alike, so the output is deterministic without the pk,
 * which a grouped or DISTINCT query cannot add. */
static int order_by_values(struct qctx *c)
{
	struct rqs *qs = c->qs;

	for (size_t i = 0; i < qs->nvalues; i++) {
		const struct rexpr *v = &qs->values[i].expr;
		struct rexpr e = {.kind = RX_ENTRY, .param = -1};
		if ((qs->group_values && v->has_agg) || orders_by_expr(qs, v))
			continue; /* the groups are told apart without it */
		if (v->kind == RX_COL) {
			if (orders_by(qs, v->col.join, v->col.col))
				continue;
			if (add_order(c, v->col, false) < 0)
				return -1;
			continue;
		}
		e.annot = (int)i;
		e.type = v->type;
		e.render = v->render;
		if (add_order_expr(c, &e, false) < 0)
			return -1;
	}
	return 0;
}

/* order_by, else the model's default ordering (not in a grouped values
 * query: Django 3.1+); then a tiebreak so that output is deterministic:
 * the pk, or a values queryset's entries. */
static int resolve_ordering(struct qctx *c, const struct spec_queryset *spec)
{
	const struct schema_model *m = c->qs->model;

	if (spec && spec->has_order_by) {
		for (size_t i = 0; i < spec->norder_by; i++)
			if (resolve_order_term(c, spec->order_by[i].field,
					       spec->order_by[i].desc,
					       spec->order_by[i].at, 0) < 0)
				return -1;
	} else if (!c->qs->group_values) {
		for (size_t i = 0; i < m->nordering; i++) {
			const char *t = m->ordering[i];
			if (resolve_order_term(c, t + (t[0] == '-'),
					       t[0] == '-', "order_by", 0) < 0)
				return -1;
		}
	}
	/* a grouped or DISTINCT values query has no pk to add */
	if (c->qs->has_values && (c->qs->group_values || c->qs->distinct))
		return order_by_values(c);
	if (!m->pk || orders_by(c->qs, 0, m->pk))
		return 0;
	return add_order(c, (struct rcol){0, m->pk}, false);
}

/* only/defer: a column name, a forward relation's name (its column), or
 * pk. The pk is always returned. */
static const struct schema_column *field_for_only(const struct schema_model *m,
						  const char *name)
{
	const struct schema_relation *rel = schema_find_relation(m, name);

	if (rel && rel->forward && !rel->to_many)
		return rel->from_column;
	return find_field(m, name);
}

static int resolve_fields(struct qctx *c, const struct spec_queryset *spec)
{
	const struct schema_model *m = c->qs->model;
	bool *keep = calloc(m->ncolumns + 1, sizeof(bool));
	const struct spec_name *names = spec ? spec->only : NULL;
	size_t nnames = spec ? spec->nonly : 0;
	bool only = spec && spec->has_only;
	int rc = -1;

	if (!keep)
		return OOM(c->err);
	if (spec && !only) {
		names = spec->defer;
		nnames = spec->ndefer;
	}
	for (size_t i = 0; i < m->ncolumns; i++)
		keep[i] = !only;
	for (size_t i = 0; i < nnames; i++) {
		const struct schema_column *col =
			field_for_only(m, names[i].name);
		if (!col) {
			pf_err_set(c->err, 422, "unknown_field", names[i].at,
				   "%s has no field named '%s'", c->cls,
				   names[i].name);
			goto out;
		}
		keep[col->index] = only;
	}
	if (m->pk)
		keep[m->pk->index] = true;
	c->qs->fields = calloc(m->ncolumns + 1, sizeof(*c->qs->fields));
	if (!c->qs->fields) {
		OOM(c->err);
		goto out;
	}
	for (size_t i = 0; i < m->ncolumns; i++)
		if (keep[i])
			c->qs->fields[c->qs->nfields++] = &m->columns[i];
	rc = 0;
out:
	free(keep);
	return rc;
}

static int select_related_error(struct qctx *c, const struct schema_model *m,
				const char *name, const char *at, bool column)
{
	char names[1024];
	size_t o = 0;

	names[0] = '\0';
	for (size_t i = 0; i < m->nrelations && o < sizeof(names); i++)
		if (!m->relations[i].to_many)
			o += (size_t)snprintf(names + o, sizeof(names) - o,
					      "%s%s", o ? ", " : "",
					      m->relations[i].name);
	return pf_err_set(c->err, 422,
			  column ? "not_a_relation" : "unknown_relation", at,
			  "Invalid field name(s) given in select_related: "
			  "'%s'. Choices are: %s",
			  name, o ? names : "(none)");
}

static int resolve_select_path(struct qctx *c, const struct spec_name *sn)
{
	char buf[1024], *parts[MAX_PARTS];
	struct rsel **list = &c->qs->select;
	size_t *count = &c->qs->nselect;
	const struct schema_model *m = c->qs->model;
	int n, join = 0;

	snprintf(buf, sizeof(buf), "%s", sn->name);
	n = split_path(buf, parts, MAX_PARTS);
	if (n < 0)
		return select_related_error(c, m, sn->name, sn->at, false);
	for (int i = 0; i < n; i++) {
		const struct schema_relation *rel =
			schema_find_relation(m, parts[i]);
		struct rsel *sel = NULL;
		if (!rel || rel->to_many)
			return select_related_error(
				c, m, parts[i], sn->at,
				rel || find_field(m, parts[i]));
		for (size_t k = 0; k < *count; k++)
			if ((*list)[k].rel == rel)
				sel = &(*list)[k];
		if (!sel) {
			bool left = rel->nullable || !rel->forward ||
				    c->qs->joins[join].left;
			int j = add_join(c, join, rel, 0, left);
			if (j < 0 ||
			    !(sel = vec_push(list, count, sizeof(*sel))))
				return j < 0 ? -1 : OOM(c->err);
			sel->rel = rel;
			sel->join = j;
		}
		join = sel->join;
		m = rel->target;
		list = &sel->children;
		count = &sel->nchildren;
	}
	return 0;
}

static void rsel_free(struct rsel *sel, size_t n)
{
	for (size_t i = 0; i < n; i++)
		rsel_free(sel[i].children, sel[i].nchildren);
	free(sel);
}

static void annots_free(struct rannot *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(a[i].name);
		free(a[i].empty);
		expr_cleanup(&a[i].expr);
	}
	free(a);
}

static void order_free(struct rqs *qs)
{
	for (size_t i = 0; i < qs->norder; i++) {
		expr_cleanup(qs->order[i].expr);
		free(qs->order[i].expr);
	}
	free(qs->order);
	qs->order = NULL;
	qs->norder = 0;
}

static void drop_values(struct rqs *qs)
{
	annots_free(qs->values, qs->nvalues);
	qs->values = NULL;
	qs->nvalues = 0;
	qs->has_values = false;
}

static void rqs_cleanup(struct rqs *qs)
{
	cond_free(qs->where);
	cond_free(qs->having);
	free(qs->joins);
	order_free(qs);
	free(qs->fields);
	rsel_free(qs->select, qs->nselect);
	for (size_t i = 0; i < qs->nparams; i++)
		free(qs->params[i]);
	free(qs->params);
	annots_free(qs->annots, qs->nannots);
	annots_free(qs->values, qs->nvalues);
	memset(qs, 0, sizeof(*qs));
}

void rqs_free(struct rqs *qs)
{
	if (!qs)
		return;
	rqs_cleanup(qs);
	free(qs);
}

/* A to-one level has no ordering (Django clears it), but its order_by names
 * are still checked, as Django checks them when they are given. The joins
 * the check adds are taken back, and so are the LEFT flags it set. */
static int check_ordering(struct qctx *c, const struct spec_queryset *spec)
{
	struct rqs *qs = c->qs;
	size_t njoins = qs->njoins;
	struct rjoin *saved = malloc(njoins * sizeof(*saved));
	int rc;

	if (!saved)
		return OOM(c->err);
	memcpy(saved, qs->joins, njoins * sizeof(*saved));
	rc = resolve_ordering(c, spec);
	memcpy(qs->joins, saved, njoins * sizeof(*saved));
	qs->njoins = njoins;
	free(saved);
	order_free(qs);
	return rc;
}

/* The §6 parts that do not go together (DESIGN.md §6.4, §6.5). */
static int check_shape(struct qctx *c, const struct spec_queryset *spec)
{
	const char *key = spec->values_list ? "values_list" : "values";
	char at[300];

	snprintf(at, sizeof(at), "%s%s%s", spec->at, spec->at[0] ? "." : "",
		 key);
	if (spec->has_values &&
	    (c->via || spec->nprefetch_related || spec->nselect_related))
		return pf_err_set(c->err, 422, "values_with_prefetch", at,
				  "Prefetch querysets cannot use raw(), "
				  "values(), and values_list().");
	if (spec->has_aggregate && spec->nprefetch_related)
		return pf_err_set(c->err, 400, "bad_spec", "aggregate",
				  "\"aggregate\" answers one object: it does "
				  "not go with prefetch_related");
	return 0;
}

/* Whether the rows are grouped by the objects (an aggregate annotation,
 * or a HAVING), and which to-one joins the GROUP BY names: a join whose
 * rows are one per object. */
static void decide_grouping(struct rqs *qs)
{
	bool agg = qs->having != NULL;
	/* aggregate() entries are annotations too, of the wrapped query */
	size_t n = qs->shape == SHAPE_AGGREGATE ? qs->first_agg : qs->nannots;

	for (size_t i = 0; i < n; i++)
		agg |= qs->annots[i].expr.has_agg;
	qs->grouped = agg && !qs->group_values;
}

/* The aggregate of a sliced, distinct or grouped queryset is over a
 * subquery of its rows, as Django wraps it: its entries read the rows'
 * own columns and annotations, so they may not join (the joins of
 * filters and annotations are inside). */
static int check_aggregate_wrap(struct qctx *c, size_t njoins)
{
	struct rqs *qs = c->qs;

	qs->agg_wrapped = qs->has_limit || qs->offset || qs->distinct ||
			  qs->grouped || qs->group_values;
	if (qs->agg_wrapped && qs->njoins > njoins)
		return pf_err_set(c->err, 422, "bad_expression", "aggregate",
				  "aggregate() over a sliced, distinct or "
				  "annotated queryset reads its rows' own "
				  "columns and annotations: its entries "
				  "cannot follow a relation");
	return 0;
}

/* Binds one queryset over c->qs->model: the main one (via NULL), the level
 * of relation via (spec NULL: its default queryset), or a subquery. A
 * to-one level has no ordering: Django clears it, as each parent gets one
 * object. */
static int bind_qs(struct qctx *c, const struct spec_queryset *spec,
		   bool ordered)
{
	struct rqs *qs = c->qs;
	struct rjoin *base;

	class_name(qs->model, c->cls, sizeof(c->cls));
	c->spec = spec;
	base = vec_push(&qs->joins, &qs->njoins, sizeof(*base));
	if (!base)
		return OOM(c->err);
	base->model = qs->model;
	base->parent = -1;
	if (spec && check_shape(c, spec) < 0)
		return -1;
	if (resolve_fields(c, spec) < 0)
		return -1;
	if (spec) {
		qs->distinct = spec->distinct;
		qs->offset = spec->offset;
		qs->limit = spec->limit;
		qs->has_limit = spec->has_limit;
		if (qs->has_limit && qs->limit == 0)
			qs->empty = true;
		if (expr_resolve_annotations(c, spec) < 0)
			return -1;
		/* aggregate() ignores select_related, as Django does */
		for (size_t i = 0;
		     i < spec->nselect_related && !spec->has_aggregate; i++)
			if (resolve_select_path(c, &spec->select_related[i]) <
			    0)
				return -1;
		if (resolve_where(c, spec) < 0)
			return -1;
		if (spec->has_values && expr_resolve_values(c, spec) < 0)
			return -1;
		/* values().aggregate(): over the groups when values groups
		 * (values("rating").annotate(n=Count("id")).aggregate(...)),
		 * else the values are ignored, as Django ignores them */
		if (spec->has_aggregate && qs->has_values && !qs->group_values)
			drop_values(qs);
		if (spec->has_aggregate) {
			size_t njoins = qs->njoins;
			c->in_aggregate = true;
			if (expr_resolve_aggregate(c, spec) < 0)
				return -1;
			decide_grouping(qs);
			if (check_aggregate_wrap(c, njoins) < 0)
				return -1;
		}
	}
	/* an aggregate's rows have no order, but its slice's do */
	if (qs->shape == SHAPE_AGGREGATE)
		ordered = qs->has_limit || qs->offset;
	if (ordered && resolve_ordering(c, spec) < 0)
		return -1;
	if (!ordered && spec && spec->has_order_by &&
	    qs->shape != SHAPE_AGGREGATE && check_ordering(c, spec) < 0)
		return -1;
	decide_grouping(qs);
	propagate_left(qs);
	return 0;
}

static int resolve_qs(const struct schema *s, const struct spec_queryset *spec,
		      const struct schema_model *m,
		      const struct schema_relation *via, struct rqs *qs,
		      struct pf_err *err)
{
	struct qctx c = {.qs = qs, .via = via, .schema = s, .err = err};

	qs->model = m;
	if (bind_qs(&c, spec, !via || via->to_many) < 0)
		return -1;
	return compact_params(&c);
}

int resolve_subquery(struct qctx *c, const struct spec_queryset *spec,
		     const char *at, struct rqs **out)
{
	const struct schema_model *m =
		schema_find_model(c->schema, spec->model);
	struct qctx inner = {.schema = c->schema,
			     .outer = c,
			     .params = c->params ? c->params : c->qs,
			     .err = c->err};
	char model_at[300];

	snprintf(model_at, sizeof(model_at), "%s.model", at);
	if (!m)
		return pf_err_set(c->err, 422, "unknown_model", model_at,
				  "no model named '%s' (see GET /schema)",
				  spec->model);
	if (spec->nprefetch_related || spec->nselect_related)
		return pf_err_set(c->err, 400, "bad_spec", at,
				  "a subquery takes no prefetch_related or "
				  "select_related");
	if (c->qs->outer_depth >= 2)
		return pf_err_set(c->err, 422, "bad_expression", at,
				  "subqueries nest two levels deep at most");
	if (!(*out = calloc(1, sizeof(**out))))
		return OOM(c->err);
	inner.qs = *out;
	(*out)->model = m;
	(*out)->outer_depth = c->qs->outer_depth + 1;
	/* a subquery's order matters with its slice only */
	if (bind_qs(&inner, spec, spec->has_limit || spec->offset) < 0)
		return -1;
	if (spec->has_limit) {
		char num[32];
		snprintf(num, sizeof(num), "%lld", spec->limit);
		if (((*out)->limit_param = add_param(&inner, num)) < 0)
			return -1;
	}
	if (spec->offset) {
		char num[32];
		snprintf(num, sizeof(num), "%lld", spec->offset);
		if (((*out)->offset_param = add_param(&inner, num)) < 0)
			return -1;
	}
	return 0;
}

/* ---- prefetch_related ------------------------------------------------ */

struct lookup {
	char *through; /* "published__comment_set" */
	char *to;      /* the same with the last part as to_attr */
	const struct spec_prefetch *src;
};

struct pctx {
	const struct schema *schema;
	struct resolved *rq;
	struct lookup *stack;
	size_t nstack;
	struct rlevel **done;
	size_t ndone;
	struct pf_err *err;
};

static struct rlevel *find_done(struct pctx *p, const char *path)
{
	for (size_t i = 0; i < p->ndone; i++)
		if (strcmp(p->done[i]->path, path) == 0)
			return p->done[i];
	return NULL;
}

static char *join_path(const char *prefix, const char *rest)
{
	size_t len = strlen(prefix) + strlen(rest) + 3;
	char *out = malloc(len);

	if (out)
		snprintf(out, len, "%s%s%s", prefix, prefix[0] ? "__" : "",
			 rest);
	return out;
}

/* Pushes a queryset's lookups so that the first is popped first, each
 * prefixed with the path of the level that owns them. */
static int push_lookups(struct pctx *p, const struct spec_queryset *qs,
			const char *prefix)
{
	for (size_t i = qs->nprefetch_related; i-- > 0;) {
		const struct spec_prefetch *sp = &qs->prefetch_related[i];
		struct lookup *l = vec_push(&p->stack, &p->nstack, sizeof(*l));
		char *to_local = NULL;

		if (!l)
			return OOM(p->err);
		l->src = sp;
		l->through = join_path(prefix, sp->lookup);
		if (sp->to_attr) {
			/* the last component is replaced by to_attr */
			const char *cut = strstr(sp->lookup, "__");
			const char *end = sp->lookup;
			while (cut) {
				end = cut + 2;
				cut = strstr(end, "__");
			}
			size_t keep = (size_t)(end - sp->lookup);
			to_local = malloc(keep + strlen(sp->to_attr) + 1);
			if (to_local)
				snprintf(to_local,
					 keep + strlen(sp->to_attr) + 1,
					 "%.*s%s", (int)keep, sp->lookup,
					 sp->to_attr);
		}
		l->to = join_path(prefix, to_local ? to_local : sp->lookup);
		free(to_local);
		if (!l->through || !l->to)
			return OOM(p->err);
	}
	return 0;
}

static void level_free(struct rlevel *lv)
{
	for (size_t i = 0; i < lv->nchildren; i++) {
		level_free(lv->children[i]);
		free(lv->children[i]);
	}
	free(lv->children);
	free(lv->path);
	free(lv->name);
	rqs_cleanup(&lv->qs);
}

/* The select_related entry of `rel` under level lv, when lv's objects
 * were read with it joined. */
static const struct rsel *joined_entry(const struct rlevel *lv,
				       const struct schema_relation *rel)
{
	const struct rsel *list = NULL;
	size_t n = 0;

	if (lv->kind == RL_ROOT || lv->kind == RL_QUERY) {
		list = lv->qs.select;
		n = lv->qs.nselect;
	} else if (lv->kind == RL_JOINED) {
		list = lv->sel->children;
		n = lv->sel->nchildren;
	}
	for (size_t i = 0; i < n; i++)
		if (list[i].rel == rel)
			return &list[i];
	return NULL;
}

/* Whether rel leads back to the objects lv was fetched from: a reverse FK
 * (or either side of a one-to-one) fills the child's link to its parent. */
static bool is_backref(const struct rlevel *lv,
		       const struct schema_relation *rel)
{
	return lv->kind == RL_QUERY && lv->rel->reverse == rel &&
	       (lv->rel->kind == REL_REVERSE_FK ||
		lv->rel->kind == REL_REVERSE_ONE_TO_ONE ||
		lv->rel->kind == REL_ONE_TO_ONE);
}

/* The level whose objects lv's objects are: a backref's objects are its
 * grandparent's, an alias's are its target's. */
static const struct rlevel *canonical(const struct rlevel *lv)
{
	for (;;) {
		if (lv->kind == RL_BACKREF)
			lv = lv->parent->parent;
		else if (lv->kind == RL_ALIAS)
			lv = lv->alias;
		else
			return lv;
	}
}

/* The query level that already fetched rel, under its own name (no
 * to_attr), for the objects of parent: Django finds those objects' caches
 * filled (book_set__author__book_set: the author is the parent instance,
 * whose book_set is prefetched), so the level costs no query. */
static const struct rlevel *fetched_already(const struct rlevel *parent,
					    const struct schema_relation *rel)
{
	const struct rlevel *owner = canonical(parent);

	if (owner == parent)
		return NULL;
	for (size_t i = 0; i < owner->nchildren; i++) {
		const struct rlevel *ch = owner->children[i];
		if (ch->rel == rel && strcmp(ch->name, rel->name) == 0 &&
		    (ch->kind == RL_QUERY || ch->kind == RL_ALIAS))
			return ch->kind == RL_ALIAS ? ch->alias : ch;
	}
	return NULL;
}

static int check_prefetch_qs(struct pctx *p, const struct spec_prefetch *sp,
			     const struct schema_relation *rel)
{
	const struct spec_queryset *qs = sp->queryset;

	if (qs->model && strcmp(qs->model, rel->target->name) != 0)
		return pf_err_set(p->err, 422, "unknown_model", qs->at,
				  "the queryset of '%s' must be of model "
				  "'%s', not '%s'",
				  sp->lookup, rel->target->name, qs->model);
	if (!rel->to_many && (qs->has_limit || qs->offset))
		return pf_err_set(p->err, 422, "slice_not_allowed", sp->at,
				  "Cannot filter a query once a slice has "
				  "been taken.");
	return 0;
}

static int check_to_attr(struct pctx *p, const struct rlevel *parent,
			 const struct spec_prefetch *sp)
{
	const struct schema_model *m = parent->model;
	char cls[128];

	if (!schema_find_column(m, sp->to_attr) &&
	    !schema_find_relation(m, sp->to_attr) &&
	    strcmp(sp->to_attr, "pk") != 0)
		return 0;
	class_name(m, cls, sizeof(cls));
	return pf_err_set(p->err, 422, "to_attr_conflict", sp->at,
			  "to_attr=%s conflicts with a field on the %s model.",
			  sp->to_attr, cls);
}

static struct rlevel *new_level(struct pctx *p, struct rlevel *parent,
				const struct schema_relation *rel,
				const char *path, const char *name)
{
	struct rlevel *lv = calloc(1, sizeof(*lv));
	struct rlevel **slot;

	if (!lv)
		return NULL;
	lv->parent = parent;
	lv->rel = rel;
	lv->model = rel->target;
	lv->path = strdup(path);
	lv->name = strdup(name);
	slot = vec_push(&parent->children, &parent->nchildren, sizeof(*slot));
	if (!slot) {
		level_free(lv);
		free(lv);
		return NULL;
	}
	*slot = lv;
	if (!lv->path || !lv->name)
		return NULL;
	slot = vec_push(&p->done, &p->ndone, sizeof(*slot));
	if (!slot)
		return NULL;
	*slot = lv;
	return lv;
}

/* Makes the level for relation part `i` of lookup l under parent. */
static struct rlevel *make_level(struct pctx *p, struct rlevel *parent,
				 const struct lookup *l, char **through, int i,
				 int n, const char *path)
{
	const struct spec_prefetch *sp = l->src;
	const struct schema_model *m = parent->model;
	const struct schema_relation *rel = schema_find_relation(m, through[i]);
	bool last = i == n - 1;
	const char *to_attr = last ? sp->to_attr : NULL;
	const struct spec_queryset *qs = last ? sp->queryset : NULL;
	struct rlevel *lv;
	char cls[128];

	if (!rel) {
		class_name(m, cls, sizeof(cls));
		if (find_field(m, through[i]))
			pf_err_set(p->err, 422, "not_a_relation", sp->at,
				   "'%s' does not resolve to an item that "
				   "supports prefetching - this is an invalid "
				   "parameter to prefetch_related().",
				   l->through);
		else
			pf_err_set(p->err, 422, "unknown_relation", sp->at,
				   "Cannot find '%s' on %s object, '%s' is an "
				   "invalid parameter to prefetch_related()",
				   through[i], cls, l->through);
		return NULL;
	}
	if (to_attr && check_to_attr(p, parent, sp) < 0)
		return NULL;
	if (qs && check_prefetch_qs(p, sp, rel) < 0)
		return NULL;
	lv = new_level(p, parent, rel, path, to_attr ? to_attr : rel->name);
	if (!lv) {
		OOM(p->err);
		return NULL;
	}
	/* A relation Django finds cached already costs no query, and then
	 * a Prefetch queryset is ignored (only a to_attr forces a query). */
	if (!to_attr && (lv->sel = joined_entry(parent, rel))) {
		lv->kind = RL_JOINED;
	} else if (!to_attr && is_backref(parent, rel)) {
		lv->kind = RL_BACKREF;
		lv->model = parent->parent->model;
	} else if (!to_attr && (lv->alias = fetched_already(parent, rel))) {
		lv->kind = RL_ALIAS;
	} else {
		lv->kind = RL_QUERY;
		if (resolve_qs(p->schema, qs, rel->target, rel, &lv->qs,
			       p->err) < 0)
			return NULL;
	}
	return lv;
}

/* Walks one lookup level by level, reusing what is done (Django's
 * prefetch_related_objects loop body). */
static int run_lookup(struct pctx *p, const struct lookup *l)
{
	char tbuf[1024], obuf[1024], *through[MAX_PARTS], *to[MAX_PARTS];
	char path[1024];
	struct rlevel *level = &p->rq->root;
	int n;

	if (find_done(p, l->to)) {
		if (l->src->queryset)
			return pf_err_set(
				p->err, 422, "lookup_conflict", l->src->at,
				"'%s' lookup was already seen with a "
				"different queryset. You may need to "
				"adjust the ordering of your lookups.",
				l->to);
		return 0;
	}
	snprintf(tbuf, sizeof(tbuf), "%s", l->through);
	snprintf(obuf, sizeof(obuf), "%s", l->to);
	n = split_path(tbuf, through, MAX_PARTS);
	if (n < 0 || split_path(obuf, to, MAX_PARTS) != n)
		return pf_err_set(p->err, 422, "unknown_relation", l->src->at,
				  "'%s' is not a valid lookup", l->through);
	path[0] = '\0';
	for (int i = 0; i < n; i++) {
		struct rlevel *next;
		size_t len = strlen(path);
		snprintf(path + len, sizeof(path) - len, "%s%s", i ? "__" : "",
			 to[i]);
		if ((next = find_done(p, path))) {
			level = next;
			continue;
		}
		next = make_level(p, level, l, through, i, n, path);
		if (!next)
			return -1;
		level = next;
		/* A queryset that is not run brings no lookups (Django only
		 * collects them from the queries it runs). */
		if (i == n - 1 && l->src->queryset && next->kind == RL_QUERY &&
		    push_lookups(p, l->src->queryset, path) < 0)
			return -1;
	}
	return 0;
}

static int resolve_prefetch(struct pctx *p, const struct spec_queryset *spec)
{
	int rc = 0;

	if (push_lookups(p, spec, "") < 0)
		return -1;
	while (p->nstack && rc == 0) {
		struct lookup l = p->stack[--p->nstack];
		rc = run_lookup(p, &l);
		free(l.through);
		free(l.to);
	}
	return rc;
}

struct resolved *resolve(const struct schema *s,
			 const struct spec_queryset *spec, struct pf_err *err)
{
	struct resolved *rq = calloc(1, sizeof(*rq));
	const struct schema_model *m;
	struct pctx p = {.schema = s, .rq = rq, .err = err};

	if (!rq) {
		OOM(err);
		return NULL;
	}
	m = schema_find_model(s, spec->model);
	if (!m) {
		pf_err_set(err, 422, "unknown_model", "model",
			   "no model named '%s' (see GET /schema)",
			   spec->model);
		goto fail;
	}
	rq->root.kind = RL_ROOT;
	rq->root.model = m;
	if (!(rq->root.path = strdup("")) || !(rq->root.name = strdup(""))) {
		OOM(err);
		goto fail;
	}
	if (resolve_qs(s, spec, m, NULL, &rq->root.qs, err) < 0 ||
	    resolve_prefetch(&p, spec) < 0)
		goto fail;
	free(p.stack);
	free(p.done);
	return rq;
fail:
	while (p.nstack) {
		free(p.stack[--p.nstack].through);
		free(p.stack[p.nstack].to);
	}
	free(p.stack);
	free(p.done);
	resolved_free(rq);
	return NULL;
}

void resolved_free(struct resolved *rq)
{
	if (!rq)
		return;
	level_free(&rq->root);
	free(rq);
}
