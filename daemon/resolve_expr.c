/*
 * Expressions, transforms and annotations (DESIGN.md §6.1-6.5) bound to the
 * schema: the one table of functions, aggregates and operators a spec may
 * name, Django's output type of each, and the checks Django makes (arity,
 * the types an operation takes). Values become parameter slots; nothing a
 * client writes reaches SQL but through resolve_fns' fixed texts.
 */
#include "resolve_int.h"
#include "vec.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
	FN_ADD,
	FN_SUB,
	FN_MUL,
	FN_DIV,
	FN_MOD,
	FN_COUNT,
	FN_SUM,
	FN_AVG,
	FN_MIN,
	FN_MAX,
	FN_STDDEV,
	FN_VARIANCE,
	FN_COALESCE,
	FN_CONCAT,
	FN_GREATEST,
	FN_LEAST,
	FN_NULLIF,
	FN_LOWER,
	FN_UPPER,
	FN_LENGTH,
	FN_TRIM,
	FN_LTRIM,
	FN_RTRIM,
	FN_REVERSE,
	FN_MD5,
	FN_ABS,
	FN_ROUND,
	FN_CEIL,
	FN_FLOOR,
	FN_SIGN,
	FN_SQRT,
	FN_TRUNC_FIRST, /* the trunc_* entries follow, then extract_* */
};

#define TRUNC(n, part)                                                         \
	{                                                                      \
		"trunc_" n, FC_TRUNC, NULL, part, 1, 1                         \
	}
#define EXTRACT(n, part)                                                       \
	{                                                                      \
		"extract_" n, FC_EXTRACT, NULL, part, 1, 1                     \
	}

const struct rfn resolve_fns[] = {
	[FN_ADD] = {"add", FC_ARITH, "+", NULL, 2, 2},
	[FN_SUB] = {"sub", FC_ARITH, "-", NULL, 2, 2},
	[FN_MUL] = {"mul", FC_ARITH, "*", NULL, 2, 2},
	[FN_DIV] = {"div", FC_ARITH, "/", NULL, 2, 2},
	[FN_MOD] = {"mod", FC_ARITH, "%", NULL, 2, 2},
	[FN_COUNT] = {"count", FC_AGG, "COUNT", NULL, 1, 1},
	[FN_SUM] = {"sum", FC_AGG, "SUM", NULL, 1, 1},
	[FN_AVG] = {"avg", FC_AGG, "AVG", NULL, 1, 1},
	[FN_MIN] = {"min", FC_AGG, "MIN", NULL, 1, 1},
	[FN_MAX] = {"max", FC_AGG, "MAX", NULL, 1, 1},
	/* part: the sample's function ("sample": true) */
	[FN_STDDEV] = {"stddev", FC_AGG, "STDDEV_POP", "STDDEV_SAMP", 1, 1},
	[FN_VARIANCE] = {"variance", FC_AGG, "VAR_POP", "VAR_SAMP", 1, 1},
	[FN_COALESCE] = {"coalesce", FC_CALL, "COALESCE", NULL, 2, 0},
	[FN_CONCAT] = {"concat", FC_CALL, "CONCAT", NULL, 2, 0},
	[FN_GREATEST] = {"greatest", FC_CALL, "GREATEST", NULL, 2, 0},
	[FN_LEAST] = {"least", FC_CALL, "LEAST", NULL, 2, 0},
	[FN_NULLIF] = {"nullif", FC_CALL, "NULLIF", NULL, 2, 2},
	[FN_LOWER] = {"lower", FC_CALL, "LOWER", NULL, 1, 1},
	[FN_UPPER] = {"upper", FC_CALL, "UPPER", NULL, 1, 1},
	[FN_LENGTH] = {"length", FC_CALL, "LENGTH", NULL, 1, 1},
	[FN_TRIM] = {"trim", FC_CALL, "TRIM", NULL, 1, 1},
	[FN_LTRIM] = {"ltrim", FC_CALL, "LTRIM", NULL, 1, 1},
	[FN_RTRIM] = {"rtrim", FC_CALL, "RTRIM", NULL, 1, 1},
	[FN_REVERSE] = {"reverse", FC_CALL, "REVERSE", NULL, 1, 1},
	[FN_MD5] = {"md5", FC_CALL, "MD5", NULL, 1, 1},
	[FN_ABS] = {"abs", FC_CALL, "ABS", NULL, 1, 1},
	[FN_ROUND] = {"round", FC_CALL, "ROUND", NULL, 1, 1},
	[FN_CEIL] = {"ceil", FC_CALL, "CEILING", NULL, 1, 1},
	[FN_FLOOR] = {"floor", FC_CALL, "FLOOR", NULL, 1, 1},
	[FN_SIGN] = {"sign", FC_CALL, "SIGN", NULL, 1, 1},
	[FN_SQRT] = {"sqrt", FC_CALL, "SQRT", NULL, 1, 1},
	TRUNC("year", "year"),
	TRUNC("quarter", "quarter"),
	TRUNC("month", "month"),
	TRUNC("week", "week"),
	TRUNC("day", "day"),
	TRUNC("hour", "hour"),
	TRUNC("minute", "minute"),
	TRUNC("second", "second"),
	{"trunc_date", FC_TO_DATE, NULL, NULL, 1, 1},
	{"trunc_time", FC_TO_TIME, NULL, NULL, 1, 1},
	EXTRACT("year", "YEAR"),
	EXTRACT("iso_year", "ISOYEAR"),
	EXTRACT("quarter", "QUARTER"),
	EXTRACT("month", "MONTH"),
	EXTRACT("week", "WEEK"),
	EXTRACT("day", "DAY"),
	EXTRACT("week_day", "DOW"),
	EXTRACT("iso_week_day", "ISODOW"),
	EXTRACT("hour", "HOUR"),
	EXTRACT("minute", "MINUTE"),
	EXTRACT("second", "SECOND"),
	{"array_len", FC_ARRAY_LEN, NULL, NULL, 1, 1},
	{NULL, FC_CALL, NULL, NULL, 0, 0},
};

static int find_fn(const char *name)
{
	for (int i = 0; resolve_fns[i].name; i++)
		if (strcmp(resolve_fns[i].name, name) == 0)
			return i;
	return -1;
}

/* ---- types ------------------------------------------------------------ */

static const char *const type_casts[] = {
	[RT_OTHER] = NULL,
	[RT_BOOL] = "pg_catalog.bool",
	[RT_INT] = "pg_catalog.int4",
	[RT_BIGINT] = "pg_catalog.int8",
	[RT_NUMERIC] = "pg_catalog.numeric",
	[RT_FLOAT] = "pg_catalog.float8",
	[RT_TEXT] = "pg_catalog.text",
	[RT_DATE] = "pg_catalog.date",
	[RT_TIMESTAMP] = "pg_catalog.timestamp",
	[RT_TIMESTAMPTZ] = "pg_catalog.timestamptz",
	[RT_TIME] = "pg_catalog.time",
	[RT_INTERVAL] = "pg_catalog.interval",
	[RT_UUID] = "pg_catalog.uuid",
	[RT_JSON] = "pg_catalog.jsonb",
	[RT_ARRAY] = NULL,
};

static enum schema_render type_render(enum rtype t)
{
	switch (t) {
	case RT_BOOL:
		return RENDER_BOOL;
	case RT_INT:
	case RT_BIGINT:
	case RT_NUMERIC:
	case RT_FLOAT:
		return RENDER_NUMBER;
	case RT_DATE:
	case RT_TIMESTAMP:
	case RT_TIMESTAMPTZ:
		return RENDER_DATETIME;
	case RT_JSON:
		return RENDER_RAW;
	case RT_ARRAY:
		return RENDER_TO_JSON;
	default:
		return RENDER_STRING;
	}
}

/* An expression's type, with the cast and render kind that go with it. */
static void set_type(struct rexpr *e, enum rtype t)
{
	e->type = t;
	e->cast = type_casts[t];
	e->render = type_render(t);
}

static bool is_number(enum rtype t)
{
	return t == RT_INT || t == RT_BIGINT || t == RT_NUMERIC ||
	       t == RT_FLOAT;
}

static bool is_integer(enum rtype t)
{
	return t == RT_INT || t == RT_BIGINT;
}

static bool is_temporal(enum rtype t)
{
	return t == RT_DATE || t == RT_TIMESTAMP || t == RT_TIMESTAMPTZ ||
	       t == RT_TIME;
}

enum rtype expr_column_type(const struct schema_column *col)
{
	static const struct {
		const char *name;
		enum rtype type;
	} names[] = {
		{"bool", RT_BOOL},
		{"int2", RT_INT},
		{"int4", RT_INT},
		{"int8", RT_BIGINT},
		{"numeric", RT_NUMERIC},
		{"float4", RT_FLOAT},
		{"float8", RT_FLOAT},
		{"text", RT_TEXT},
		{"varchar", RT_TEXT},
		{"bpchar", RT_TEXT},
		{"citext", RT_TEXT},
		{"date", RT_DATE},
		{"timestamp", RT_TIMESTAMP},
		{"timestamptz", RT_TIMESTAMPTZ},
		{"time", RT_TIME},
		{"interval", RT_INTERVAL},
		{"uuid", RT_UUID},
		{"jsonb", RT_JSON},
	};
	const char *cast = col->cast;
	size_t len = strlen(cast);

	if (len > 2 && strcmp(cast + len - 2, "[]") == 0)
		return RT_ARRAY;
	/* "pg_catalog"."int4": the part after the schema */
	if (strncmp(cast, "\"pg_catalog\".\"", 14) != 0)
		return col->render == RENDER_NUMBER ? RT_NUMERIC
		       : col->render == RENDER_BOOL ? RT_BOOL
						    : RT_OTHER;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i].name);
		if (len == 14 + n + 1 &&
		    strncmp(cast + 14, names[i].name, n) == 0)
			return names[i].type;
	}
	return RT_OTHER;
}

void expr_column(struct rexpr *out, int join, const struct schema_column *col)
{
	*out = (struct rexpr){.kind = RX_COL, .col = {join, col}};
	out->type = expr_column_type(col);
	out->cast = col->cast;
	out->render = col->render;
	out->param = -1;
}

static const char *type_name(enum rtype t)
{
	static const char *const names[] = {
		[RT_OTHER] = "a value",
		[RT_BOOL] = "BooleanField",
		[RT_INT] = "IntegerField",
		[RT_BIGINT] = "BigIntegerField",
		[RT_NUMERIC] = "DecimalField",
		[RT_FLOAT] = "FloatField",
		[RT_TEXT] = "TextField",
		[RT_DATE] = "DateField",
		[RT_TIMESTAMP] = "DateTimeField",
		[RT_TIMESTAMPTZ] = "DateTimeField",
		[RT_TIME] = "TimeField",
		[RT_INTERVAL] = "DurationField",
		[RT_UUID] = "UUIDField",
		[RT_JSON] = "JSONField",
		[RT_ARRAY] = "ArrayField",
	};
	return names[t];
}

/* ---- building --------------------------------------------------------- */

void expr_cleanup(struct rexpr *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->nargs; i++)
		expr_cleanup(&e->args[i]);
	free(e->args);
	cond_free(e->filter);
	for (size_t i = 0; i < e->nwhens; i++)
		cond_cleanup(&e->whens[i]);
	free(e->whens);
	rqs_free(e->query);
	memset(e, 0, sizeof(*e));
}

/* e becomes a node of kind over nargs new (zeroed) operands. */
static int make_node(struct qctx *c, struct rexpr *e, enum rexpr_kind kind,
		     size_t nargs)
{
	*e = (struct rexpr){.kind = kind, .param = -1};
	if (nargs && !(e->args = calloc(nargs, sizeof(*e->args))))
		return OOM(c->err);
	e->nargs = nargs;
	return 0;
}

/* Wraps base (moved) as the only operand of a new node of kind. */
static int wrap(struct qctx *c, struct rexpr *base, enum rexpr_kind kind)
{
	struct rexpr inner = *base;

	if (make_node(c, base, kind, 1) < 0) {
		expr_cleanup(&inner);
		return -1;
	}
	base->args[0] = inner;
	base->has_agg = inner.has_agg;
	return 0;
}

/* 422 bad_expression: wrong arity, a type an operation does not take. */
#define bad(c, at, ...)                                                        \
	pf_err_set((c)->err, 422, "bad_expression", (at), __VA_ARGS__)

/* A literal: a bind parameter cast to the type its JSON kind gives. */
static int literal(struct qctx *c, const struct spec_value *v, bool json,
		   struct rexpr *out)
{
	*out = (struct rexpr){.kind = RX_PARAM, .param = -1};
	switch (v->kind) {
	case SPEC_NULL:
		out->kind = RX_NULL;
		out->render = RENDER_STRING;
		return 0;
	case SPEC_BOOL:
		set_type(out, RT_BOOL);
		break;
	case SPEC_NUMBER: {
		char *end;
		long long n;
		errno = 0;
		n = strtoll(v->text, &end, 10);
		if (*end || v->real) {
			/* psycopg sends Python's 0.1 as the numeric 0.1 */
			set_type(out, RT_FLOAT);
			out->cast = "pg_catalog.numeric";
			out->pg_numeric = true;
		} else
			set_type(out,
				 errno || n > 2147483647LL || n < -2147483648LL
					 ? RT_BIGINT
					 : RT_INT);
		break;
	}
	case SPEC_STRING:
		set_type(out, json ? RT_JSON : RT_TEXT);
		break;
	case SPEC_ARRAY:
	case SPEC_OBJECT:
		set_type(out, RT_JSON);
		break;
	}
	if (out->pg_numeric && !strpbrk(v->text, ".eE")) {
		/* 0.0 stays a numeric with a fraction, as Decimal("0.0") and
		 * Python's 0.0 are; the spec keeps the shortest text ("0") */
		char text[72];
		snprintf(text, sizeof(text), "%s.0", v->text);
		out->param = add_param(c, text);
	} else {
		out->param = add_param(c, v->text);
	}
	return out->param < 0 ? -1 : 0;
}

/* The annotation that the first parts of a path name, as Django's
 * refs_expression tries them, shortest first ("book__rating__avg__gt" is
 * the annotation book__rating__avg and the operator gt); *used: its parts.
 * -1 when there is none. */
int expr_find_annot_prefix(const struct qctx *c, char **parts, int n, int *used)
{
	char name[1024];
	size_t len = 0;

	for (int k = 0; k < n; k++) {
		int i;
		len += (size_t)snprintf(name + len, sizeof(name) - len, "%s%s",
					k ? "__" : "", parts[k]);
		if (len >= sizeof(name))
			return -1;
		if ((i = expr_find_annot(c, name)) >= 0) {
			*used = k + 1;
			return i;
		}
	}
	return -1;
}

int expr_find_annot(const struct qctx *c, const char *name)
{
	for (size_t i = 0; i < c->qs->nannots; i++)
		if (strcmp(c->qs->annots[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int annot_ref(struct qctx *c, int i, struct rexpr *out)
{
	const struct rexpr *a = &c->qs->annots[i].expr;

	*out = (struct rexpr){.kind = RX_ANNOT, .annot = i, .param = -1};
	out->type = a->type;
	out->cast = a->cast;
	out->render = a->render;
	out->has_agg = a->has_agg;
	out->pg_numeric = a->pg_numeric;
	return 0;
}

/* ---- transforms (§6.2) ----------------------------------------------- */

/* A lookup's date transform and the function it is (published__year is
 * ExtractYear("published")). */
static const struct {
	const char *name;
	const char *fn;
} date_transforms[] = {
	{"year", "extract_year"},
	{"iso_year", "extract_iso_year"},
	{"quarter", "extract_quarter"},
	{"month", "extract_month"},
	{"week", "extract_week"},
	{"day", "extract_day"},
	{"week_day", "extract_week_day"},
	{"iso_week_day", "extract_iso_week_day"},
	{"hour", "extract_hour"},
	{"minute", "extract_minute"},
	{"second", "extract_second"},
	{"date", "trunc_date"},
	{"time", "trunc_time"},
};

/* Whether fn reads the time of day (a date has none) rather than the
 * date (a time has none). */
static bool reads_time_of_day(const struct rfn *f)
{
	static const char *const parts[] = {"hour", "minute", "second"};

	if (f->cls == FC_TO_TIME)
		return true;
	for (size_t i = 0; f->part && i < sizeof(parts) / sizeof(parts[0]); i++)
		if (strcasecmp(f->part, parts[i]) == 0)
			return true;
	return false;
}

/* The type of fn applied to an operand of type t, or -1 (and err) when
 * Django refuses it. */
static int temporal_fn_type(struct qctx *c, int fn, enum rtype t,
			    const char *at)
{
	const struct rfn *f = &resolve_fns[fn];
	bool time_part = reads_time_of_day(f);
	char cls[64];

	camel_case(f->name, cls, sizeof(cls));
	if (!is_temporal(t))
		return bad(c, at, "%s takes a date, time or datetime, not %s",
			   cls, type_name(t));
	if (t == RT_DATE && time_part)
		return bad(c, at,
			   "Cannot extract a time component (%s) from a "
			   "DateField.",
			   cls);
	if (t == RT_TIME && !time_part)
		return bad(c, at,
			   "Cannot extract a date component (%s) from a "
			   "TimeField.",
			   cls);
	switch (f->cls) {
	case FC_EXTRACT:
		return RT_INT;
	case FC_TO_DATE:
		return RT_DATE;
	case FC_TO_TIME:
		return RT_TIME;
	default: /* FC_TRUNC keeps the type */
		return (int)t;
	}
}

/* Applies function fn to e (moved into its operand). */
static int apply_fn(struct qctx *c, struct rexpr *e, int fn, const char *at)
{
	int t = temporal_fn_type(c, fn, e->type, at);

	if (t < 0)
		return -1;
	if (wrap(c, e, RX_FUNC) < 0)
		return -1;
	e->fn = fn;
	set_type(e, (enum rtype)t);
	return 0;
}

static bool is_index(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* A PostgreSQL text[] literal of keys: {"a","b"}. */
static char *key_path_literal(char **parts, int from, int to)
{
	size_t len = 3;
	char *out, *o;

	for (int i = from; i < to; i++)
		len += strlen(parts[i]) * 2 + 3;
	out = o = malloc(len);
	if (!out)
		return NULL;
	*o++ = '{';
	for (int i = from; i < to; i++) {
		if (i > from)
			*o++ = ',';
		*o++ = '"';
		for (const char *p = parts[i]; *p; p++) {
			if (*p == '"' || *p == '\\')
				*o++ = '\\';
			*o++ = *p;
		}
		*o++ = '"';
	}
	*o++ = '}';
	*o = '\0';
	return out;
}

/* jsonb keys parts[from..to-1] of e: one key is `e -> $n` (an integer for
 * an array index, as Django binds it), several `e #> $n::text[]`. */
static int json_keys(struct qctx *c, struct rexpr *e, char **parts, int from,
		     int to)
{
	char *path = NULL;
	int p;

	if (to - from > 1 && !(path = key_path_literal(parts, from, to)))
		return OOM(c->err);
	p = add_param(c, path ? path : parts[from]);
	free(path);
	if (p < 0 || wrap(c, e, RX_KEY) < 0)
		return -1;
	e->param = p;
	e->key_path = to - from > 1;
	/* a single numeric key is an array index: -> int, as Django binds
	 * it */
	e->key_index = !e->key_path && is_index(parts[from]) &&
		       strlen(parts[from]) < 10;
	set_type(e, RT_JSON);
	return 0;
}

/* The element type of an array column's cast ("x"[] -> "x"). */
static int array_index(struct qctx *c, struct rexpr *e, const char *part)
{
	char num[32];
	const char *cast = e->kind == RX_COL ? e->col.col->cast : NULL;
	long long i = strtoll(part, NULL, 10);
	int p;

	snprintf(num, sizeof(num), "%lld", i + 1);
	p = add_param(c, num);
	if (p < 0 || wrap(c, e, RX_INDEX) < 0)
		return -1;
	e->param = p;
	e->type = RT_OTHER;
	e->render = RENDER_STRING;
	e->cast = NULL;
	if (cast) {
		/* the element's type decides the cast and the rendering */
		static const struct {
			const char *cast;
			enum rtype type;
		} elems[] = {
			{"\"pg_catalog\".\"text\"[]", RT_TEXT},
			{"\"pg_catalog\".\"varchar\"[]", RT_TEXT},
			{"\"pg_catalog\".\"int4\"[]", RT_INT},
			{"\"pg_catalog\".\"int2\"[]", RT_INT},
			{"\"pg_catalog\".\"int8\"[]", RT_BIGINT},
			{"\"pg_catalog\".\"bool\"[]", RT_BOOL},
		};
		for (size_t k = 0; k < sizeof(elems) / sizeof(elems[0]); k++)
			if (strcmp(cast, elems[k].cast) == 0)
				set_type(e, elems[k].type);
	}
	return 0;
}

int expr_transforms(struct qctx *c, struct rexpr *e, char **parts, int n,
		    int from, const char *at, int *next)
{
	int i = from;

	while (i < n) {
		const char *p = parts[i];
		bool op = next && i == n - 1 && find_op(p) >= 0;
		int fn = -1;

		if (e->type == RT_JSON && !op) {
			/* keys up to the operator */
			int to = i;
			while (to < n && !(next && to == n - 1 &&
					   find_op(parts[to]) >= 0))
				to++;
			if (json_keys(c, e, parts, i, to) < 0)
				return -1;
			i = to;
			continue;
		}
		if (op)
			break;
		if (is_temporal(e->type))
			for (size_t k = 0;
			     k < sizeof(date_transforms) /
					 sizeof(date_transforms[0]);
			     k++)
				if (strcmp(date_transforms[k].name, p) == 0)
					fn = find_fn(date_transforms[k].fn);
		if (fn >= 0) {
			if (apply_fn(c, e, fn, at) < 0)
				return -1;
		} else if (e->type == RT_ARRAY && strcmp(p, "len") == 0) {
			if (wrap(c, e, RX_FUNC) < 0)
				return -1;
			e->fn = find_fn("array_len");
			set_type(e, RT_INT);
		} else if (e->type == RT_ARRAY && is_index(p) &&
			   strlen(p) < 10) {
			if (array_index(c, e, p) < 0)
				return -1;
		} else {
			return pf_err_set(
				c->err, 422,
				next ? "unknown_operator" : "unknown_field", at,
				"Unsupported lookup '%s' for %s or "
				"join on the field not permitted",
				p, type_name(e->type));
		}
		i++;
	}
	if (next)
		*next = i;
	return 0;
}

/* ---- field paths ------------------------------------------------------ */

/* A field path of an expression ("book__pages", "published__year",
 * "n_books", "metadata__color"): no operator at its end. */
static int field_path(struct qctx *c, const char *path, bool left,
		      const char *at, struct rexpr *out)
{
	char buf[1024], *parts[MAX_PARTS];
	struct walk w = {0};
	int n, annot, used, new_scope = 0;

	snprintf(buf, sizeof(buf), "%s", path);
	n = split_path(buf, parts, MAX_PARTS);
	if (n < 0)
		return pf_err_set(c->err, 422, "unknown_field", at,
				  "'%s' is not a valid field path", path);
	annot = expr_find_annot_prefix(c, parts, n, &used);
	if (annot >= 0 && !(used == 1 && find_field(c->qs->model, parts[0]))) {
		if (annot_ref(c, annot, out) < 0)
			return -1;
		return expr_transforms(c, out, parts, n, used, at, NULL);
	}
	w.no_op = true;
	w.promote = true;
	if (walk_path(c, parts, n, false, left, at, &w, &new_scope) < 0)
		return -1;
	expr_column(out, w.join, w.col);
	return expr_transforms(c, out, parts, n, w.next, at, NULL);
}

/* ---- expressions ------------------------------------------------------ */

static int check_arity(struct qctx *c, const struct spec_expr *e, int fn)
{
	const struct rfn *f = &resolve_fns[fn];
	char cls[64];
	int n = (int)e->nargs;

	camel_case(f->name, cls, sizeof(cls));
	if (n < f->min_args || (f->max_args && n > f->max_args)) {
		if (f->min_args == f->max_args)
			return pf_err_set(c->err, 422, "bad_expression", e->at,
					  "'%s' takes exactly %d argument%s "
					  "(%d given)",
					  cls, f->min_args,
					  f->min_args == 1 ? "" : "s", n);
		return pf_err_set(c->err, 422, "bad_expression", e->at,
				  "%s must take at least %s expressions", cls,
				  f->min_args == 2 ? "two" : "one");
	}
	if (f->cls != FC_AGG &&
	    (e->has_distinct || e->has_sample || e->filter || e->dflt))
		return bad(c, e->at,
			   "%s takes no option (distinct, filter, default and "
			   "sample are for aggregates)",
			   cls);
	if (e->has_sample && fn != FN_STDDEV && fn != FN_VARIANCE)
		return bad(c, e->at, "%s takes no \"sample\"", cls);
	return 0;
}

/* Django's CombinedExpression types: integers stay integers, a decimal
 * makes a decimal and a float a float; a decimal with a float, or
 * anything but numbers, needs an output_field a spec cannot give. */
static int arith_type(struct qctx *c, struct rexpr *e, int fn, const char *at)
{
	enum rtype a = e->args[0].type, b = e->args[1].type;
	bool a_null = e->args[0].kind == RX_NULL;
	bool b_null = e->args[1].kind == RX_NULL;
	/* a float8 of PostgreSQL's own (a float column), not a numeric
	 * that Django takes as a float */
	bool a_pg_float = a == RT_FLOAT && !e->args[0].pg_numeric;
	bool b_pg_float = b == RT_FLOAT && !e->args[1].pg_numeric;
	enum rtype t;

	if (a_null || b_null) {
		set_type(e, a_null ? b : a);
		e->pg_numeric = e->args[a_null ? 1 : 0].pg_numeric;
		return 0;
	}
	if (!is_number(a) || !is_number(b) ||
	    (a == RT_NUMERIC && b == RT_FLOAT) ||
	    (a == RT_FLOAT && b == RT_NUMERIC))
		return pf_err_set(c->err, 422, "bad_expression", at,
				  "Cannot infer type of '%s' expression "
				  "involving these types: %s, %s. You must "
				  "set output_field.",
				  resolve_fns[fn].sql, type_name(a),
				  type_name(b));
	if (a == RT_FLOAT || b == RT_FLOAT)
		t = RT_FLOAT;
	else if (a == RT_NUMERIC || b == RT_NUMERIC)
		t = RT_NUMERIC;
	else if (a == RT_BIGINT || b == RT_BIGINT)
		t = RT_BIGINT;
	else
		t = RT_INT;
	if (fn == FN_MOD && (a_pg_float || b_pg_float))
		return bad(c, at,
			   "%% of a FloatField is not supported by "
			   "PostgreSQL");
	set_type(e, t);
	e->pg_numeric = t == RT_FLOAT && !a_pg_float && !b_pg_float;
	return 0;
}

static int agg_type(struct qctx *c, struct rexpr *e, int fn, const char *at)
{
	enum rtype t = e->nargs ? e->args[0].type : RT_BIGINT;
	char cls[64];

	camel_case(resolve_fns[fn].name, cls, sizeof(cls));
	switch (fn) {
	case FN_COUNT:
		set_type(e, RT_BIGINT);
		return 0;
	case FN_MIN:
	case FN_MAX:
		e->type = e->args[0].type;
		e->cast = e->args[0].cast;
		e->render = e->args[0].render;
		return 0;
	default:
		break;
	}
	if (!is_number(t) &&
	    !((fn == FN_SUM || fn == FN_AVG) && t == RT_INTERVAL))
		return bad(c, at, "%s takes a number, not %s", cls,
			   type_name(t));
	if (fn == FN_SUM) {
		/* sum(int2/int4) is int8, sum(int8) numeric: both integers
		 * to Django */
		set_type(e, t == RT_INT ? RT_BIGINT : t);
		e->pg_numeric = e->args[0].pg_numeric;
		return 0;
	}
	/* Avg, StdDev, Variance: a float for integers (PostgreSQL computes
	 * a numeric), the operand's type otherwise; Avg of a DurationField
	 * is a duration */
	set_type(e, is_integer(t) ? RT_FLOAT : t);
	e->pg_numeric = is_integer(t) || e->args[0].pg_numeric;
	return 0;
}

static void common_type(struct rexpr *e, struct rexpr *ops, size_t n);

static int resolve_args(struct qctx *c, const struct spec_expr *e, bool left,
			struct rexpr *out)
{
	for (size_t i = 0; i < e->nargs; i++) {
		if (expr_resolve(c, &e->args[i], left, &out->args[i]) < 0)
			return -1;
		out->has_agg |= out->args[i].has_agg;
	}
	return 0;
}

static int resolve_agg(struct qctx *c, const struct spec_expr *e, int fn,
		       struct rexpr *out)
{
	const struct spec_expr *arg = &e->args[0];
	bool star = fn == FN_COUNT && arg->kind == SPEC_EX_FIELD &&
		    strcmp(arg->name, "*") == 0;
	char cls[64];

	camel_case(resolve_fns[fn].name, cls, sizeof(cls));
	if (make_node(c, out, RX_AGG, star ? 0 : 1) < 0)
		return -1;
	out->fn = fn;
	out->star = star;
	out->distinct = e->distinct;
	out->sample = e->sample;
	if (fn == FN_COUNT && e->dflt)
		return bad(c, e->at, "Count does not allow default.");
	if (star && e->filter)
		return bad(c, e->at,
			   "Star cannot be used with filter. Please specify a "
			   "field.");
	/* its path is promoted (field_path): over a to-many relation the
	 * joins are LEFT, so a parent with no child has its row (and a 0) */
	if (!star && expr_resolve(c, arg, false, &out->args[0]) < 0)
		return -1;
	/* aggregate() may aggregate an annotation's aggregate (Django wraps
	 * the query: Avg of Count per object), never its own entries */
	if (!star && out->args[0].has_agg &&
	    !(c->in_aggregate && out->args[0].kind == RX_ANNOT &&
	      (size_t)out->args[0].annot < c->first_entry))
		return bad(c, e->at,
			   "Cannot compute %s('%s'): '%s' is an aggregate", cls,
			   arg->name ? arg->name : "...",
			   arg->name ? arg->name : "its argument");
	if (e->filter) {
		if (!(out->filter = calloc(1, sizeof(*out->filter))))
			return OOM(c->err);
		/* FILTER (WHERE ...) must not drop rows: its joins are LEFT;
		 * and it tests each joined row, so a negation across a
		 * to-many relation is no NOT EXISTS (Django resolves it with
		 * split_subq=False) */
		bool split = c->no_split;
		c->no_split = true;
		int rc = resolve_cond(c, e->filter, false, true, out->filter);
		c->no_split = split;
		if (rc < 0)
			return -1;
		/* aggregate() reads an annotation's aggregate from its rows'
		 * subquery: Sum("age", filter=Q(age_agg__gt=...)) */
		if (cond_has_agg(out->filter) && !c->in_aggregate)
			return bad(c, e->filter->at,
				   "%s's filter cannot refer to an aggregate",
				   cls);
	}
	if (agg_type(c, out, fn, e->at) < 0)
		return -1;
	out->has_agg = true;
	if (e->dflt) {
		/* Django 4.0+: Coalesce(aggregate, default) */
		struct rexpr agg = *out, dflt;

		/* agg owns the aggregate now: out is rebuilt below */
		*out = (struct rexpr){.kind = RX_NULL, .param = -1};
		if (expr_resolve(c, e->dflt, false, &dflt) < 0) {
			expr_cleanup(&agg);
			expr_cleanup(&dflt);
			return -1;
		}
		if (make_node(c, out, RX_FUNC, 2) < 0) {
			expr_cleanup(&agg);
			expr_cleanup(&dflt);
			return -1;
		}
		out->fn = FN_COALESCE;
		out->args[0] = agg;
		out->args[1] = dflt;
		/* the default takes the aggregate's type: Max("published",
		 * default="2000-01-01") is a date */
		common_type(out, out->args, 2);
		out->has_agg = true;
	}
	return 0;
}

/* The type of a COALESCE/GREATEST/... or CASE: its first operand's that
 * is not a literal (Django asks for an output_field when they differ;
 * text and varchar mix as text). The literals take that type, as
 * psycopg's untyped literals do in PostgreSQL: Coalesce("birth_date",
 * Value("1900-01-01")) compares dates, Sum("price", default=0) is a
 * decimal. */
static void common_type(struct rexpr *e, struct rexpr *ops, size_t n)
{
	const struct rexpr *typed = NULL;

	for (size_t i = 0; i < n && !typed; i++)
		if (ops[i].kind != RX_NULL && ops[i].kind != RX_PARAM)
			typed = &ops[i];
	for (size_t i = 0; i < n && !typed; i++)
		if (ops[i].kind != RX_NULL)
			typed = &ops[i];
	if (!typed) {
		set_type(e, RT_OTHER);
		return;
	}
	e->type = typed->type;
	e->cast = typed->cast;
	e->render = typed->render;
	e->pg_numeric = typed->pg_numeric;
	if (e->type == RT_TEXT)
		set_type(e, RT_TEXT);
	for (size_t i = 0; i < n; i++)
		if (ops[i].kind == RX_PARAM && typed->kind != RX_PARAM &&
		    typed->cast) {
			ops[i].type = typed->type;
			ops[i].cast = typed->cast;
			ops[i].render = typed->render;
			ops[i].pg_numeric = typed->pg_numeric;
		}
}

static int call_type(struct qctx *c, struct rexpr *e, int fn, const char *at)
{
	const struct rfn *f = &resolve_fns[fn];
	enum rtype t = e->args[0].type;
	char cls[64];

	camel_case(f->name, cls, sizeof(cls));
	switch (fn) {
	case FN_COALESCE:
	case FN_GREATEST:
	case FN_LEAST:
	case FN_NULLIF:
		common_type(e, e->args, e->nargs);
		return 0;
	case FN_CONCAT:
		set_type(e, RT_TEXT);
		return 0;
	case FN_LENGTH:
		if (t != RT_TEXT && t != RT_OTHER && e->args[0].kind != RX_NULL)
			return bad(c, at, "%s takes a text value, not %s", cls,
				   type_name(t));
		set_type(e, RT_INT);
		return 0;
	case FN_LOWER:
	case FN_UPPER:
	case FN_TRIM:
	case FN_LTRIM:
	case FN_RTRIM:
	case FN_REVERSE:
	case FN_MD5:
		if (t != RT_TEXT && t != RT_OTHER && e->args[0].kind != RX_NULL)
			return bad(c, at, "%s takes a text value, not %s", cls,
				   type_name(t));
		set_type(e, RT_TEXT);
		return 0;
	case FN_ABS:
		if (!is_number(t))
			return bad(c, at, "%s takes a number, not %s", cls,
				   type_name(t));
		e->type = t;
		e->cast = e->args[0].cast;
		e->render = RENDER_NUMBER;
		e->pg_numeric = e->args[0].pg_numeric;
		return 0;
	case FN_ROUND:
	case FN_CEIL:
	case FN_FLOOR:
	case FN_SIGN:
	case FN_SQRT:
		if (!is_number(t))
			return bad(c, at, "%s takes a number, not %s", cls,
				   type_name(t));
		/* PostgreSQL takes integers as double precision here */
		set_type(e, t == RT_NUMERIC ? RT_NUMERIC : RT_FLOAT);
		e->pg_numeric = e->args[0].pg_numeric;
		return 0;
	default:
		break;
	}
	if (f->cls == FC_ARRAY_LEN) {
		if (t != RT_ARRAY)
			return bad(c, at, "%s takes an array, not %s", cls,
				   type_name(t));
		set_type(e, RT_INT);
		return 0;
	}
	{
		int tt = temporal_fn_type(c, fn, t, at);
		if (tt < 0)
			return -1;
		set_type(e, (enum rtype)tt);
	}
	return 0;
}

static int resolve_call(struct qctx *c, const struct spec_expr *e, bool left,
			struct rexpr *out)
{
	int fn = find_fn(e->name);
	const struct rfn *f;

	if (fn < 0 || resolve_fns[fn].cls == FC_ARRAY_LEN)
		return pf_err_set(c->err, 422, "bad_expression", e->at,
				  "unknown function or operator '$%s'",
				  e->name);
	if (check_arity(c, e, fn) < 0)
		return -1;
	f = &resolve_fns[fn];
	if (f->cls == FC_AGG)
		return resolve_agg(c, e, fn, out);
	if (make_node(c, out, f->cls == FC_ARITH ? RX_ARITH : RX_FUNC,
		      e->nargs) < 0)
		return -1;
	out->fn = fn;
	if (resolve_args(c, e, left, out) < 0)
		return -1;
	if (f->cls == FC_ARITH)
		return arith_type(c, out, fn, e->at);
	return call_type(c, out, fn, e->at);
}

static const struct {
	const char *name;
	const char *sql;
	enum rtype type;
} cast_targets[] = {
	{"integer", "integer", RT_INT},
	{"bigint", "bigint", RT_BIGINT},
	{"numeric", "numeric", RT_NUMERIC},
	{"float", "double precision", RT_FLOAT},
	{"text", "text", RT_TEXT},
	{"date", "date", RT_DATE},
	/* Django's DateTimeField with USE_TZ */
	{"timestamp", "timestamp with time zone", RT_TIMESTAMPTZ},
	{"boolean", "boolean", RT_BOOL},
};

const char *resolve_cast_sql(int target)
{
	return cast_targets[target].sql;
}

static int resolve_cast(struct qctx *c, const struct spec_expr *e, bool left,
			struct rexpr *out)
{
	size_t n = sizeof(cast_targets) / sizeof(cast_targets[0]);
	size_t i = 0;

	while (i < n && strcmp(cast_targets[i].name, e->name) != 0)
		i++;
	if (i == n)
		return pf_err_set(c->err, 422, "bad_expression", e->at,
				  "cannot cast to '%s': the targets are "
				  "integer, bigint, numeric, float, text, "
				  "date, timestamp, boolean",
				  e->name);
	if (make_node(c, out, RX_CAST, 1) < 0 || resolve_args(c, e, left, out))
		return -1;
	out->fn = (int)i;
	set_type(out, cast_targets[i].type);
	return 0;
}

static int resolve_case(struct qctx *c, const struct spec_expr *e, bool left,
			struct rexpr *out)
{
	if (make_node(c, out, RX_CASE, e->nwhens + 1) < 0)
		return -1;
	if (!(out->whens = calloc(e->nwhens, sizeof(*out->whens))))
		return OOM(c->err);
	out->nwhens = e->nwhens;
	for (size_t i = 0; i < e->nwhens; i++) {
		/* a When tests its row, as an aggregate's filter does */
		bool split = c->no_split;
		int rc;

		c->no_split = true;
		rc = resolve_cond(c, e->whens[i].when, false, true,
				  &out->whens[i]);
		c->no_split = split;
		if (rc < 0 ||
		    expr_resolve(c, e->whens[i].then, left, &out->args[i]) < 0)
			return -1;
		out->has_agg |=
			out->args[i].has_agg || cond_has_agg(&out->whens[i]);
	}
	if (e->dflt) {
		if (expr_resolve(c, e->dflt, left, &out->args[e->nwhens]) < 0)
			return -1;
		out->has_agg |= out->args[e->nwhens].has_agg;
	} else {
		out->args[e->nwhens] =
			(struct rexpr){.kind = RX_NULL, .param = -1};
	}
	common_type(out, out->args, e->nwhens + 1);
	return 0;
}

/* $outer: the path in the queryset `depth` levels out. Its joins belong
 * to that queryset. */
static int resolve_outer(struct qctx *c, const struct spec_expr *e,
			 struct rexpr *out)
{
	struct qctx *o = c;

	for (int i = 0; i < e->outer_depth && o; i++)
		o = o->outer;
	if (!o)
		return pf_err_set(c->err, 422, "bad_expression", e->at,
				  "This queryset contains a reference to an "
				  "outer query and may only be used in a "
				  "subquery.");
	if (field_path(o, e->name, false, e->at, out) < 0)
		return -1;
	if (out->has_agg)
		return bad(c, e->at,
			   "'$outer' cannot refer to an aggregate ('%s')",
			   e->name);
	if (wrap(c, out, RX_OUTER) < 0)
		return -1;
	out->outer = e->outer_depth;
	out->type = out->args[0].type;
	out->cast = out->args[0].cast;
	out->render = out->args[0].render;
	return 0;
}

static int resolve_query_expr(struct qctx *c, const struct spec_expr *e,
			      struct rexpr *out)
{
	bool exists = e->kind == SPEC_EX_EXISTS;

	*out = (struct rexpr){.kind = exists ? RX_EXISTS : RX_SUBQUERY,
			      .param = -1};
	if (resolve_subquery(c, e->query, e->at, &out->query) < 0)
		return -1;
	if (exists) {
		set_type(out, RT_BOOL);
		return 0;
	}
	if (out->query->nvalues != 1)
		return pf_err_set(c->err, 422, "bad_expression", e->at,
				  "a $subquery needs \"values\" with exactly "
				  "one entry (the column it returns)");
	out->type = out->query->values[0].expr.type;
	out->cast = out->query->values[0].expr.cast;
	out->render = out->query->values[0].expr.render;
	return 0;
}

int expr_resolve(struct qctx *c, const struct spec_expr *e, bool left,
		 struct rexpr *out)
{
	*out = (struct rexpr){.param = -1};
	switch (e->kind) {
	case SPEC_EX_VALUE:
		return literal(c, &e->value, false, out);
	case SPEC_EX_FIELD:
		if (strcmp(e->name, "*") == 0)
			return bad(c, e->at, "'*' is only Count(\"*\")");
		return field_path(c, e->name, left, e->at, out);
	case SPEC_EX_OUTER:
		return resolve_outer(c, e, out);
	case SPEC_EX_CALL:
		return resolve_call(c, e, left, out);
	case SPEC_EX_CASE:
		return resolve_case(c, e, left, out);
	case SPEC_EX_CAST:
		return resolve_cast(c, e, left, out);
	case SPEC_EX_EXISTS:
	case SPEC_EX_SUBQUERY:
		return resolve_query_expr(c, e, out);
	}
	return OOM(c->err);
}

/* ---- parameters ------------------------------------------------------- */

static void mark_expr(const struct rexpr *e, bool *used);

static void mark_cond(const struct rcond *c, bool *used)
{
	if (c->kind == RC_TERM && c->param >= 0) {
		used[c->param] = true;
		if (c->op == OP_RANGE)
			used[c->param + 1] = true;
	}
	if (c->lhs)
		mark_expr(c->lhs, used);
	if (c->rhs)
		mark_expr(c->rhs, used);
	for (size_t i = 0; i < c->nchildren; i++)
		mark_cond(&c->children[i], used);
}

static void mark_expr(const struct rexpr *e, bool *used)
{
	if (e->param >= 0)
		used[e->param] = true;
	for (size_t i = 0; i < e->nargs; i++)
		mark_expr(&e->args[i], used);
	if (e->filter)
		mark_cond(e->filter, used);
	for (size_t i = 0; i < e->nwhens; i++)
		mark_cond(&e->whens[i], used);
	if (e->query)
		qs_mark_params(e->query, used);
}

void qs_mark_params(const struct rqs *qs, bool *used)
{
	if (qs->where)
		mark_cond(qs->where, used);
	if (qs->having)
		mark_cond(qs->having, used);
	for (size_t i = 0; i < qs->nannots; i++)
		mark_expr(&qs->annots[i].expr, used);
	for (size_t i = 0; i < qs->nvalues; i++)
		mark_expr(&qs->values[i].expr, used);
	for (size_t i = 0; i < qs->norder; i++)
		if (qs->order[i].expr)
			mark_expr(qs->order[i].expr, used);
	if (qs->outer_depth && qs->has_limit)
		used[qs->limit_param] = true;
	if (qs->outer_depth && qs->offset)
		used[qs->offset_param] = true;
}

static void renumber_expr(struct rexpr *e, const int *to);

static void renumber_cond(struct rcond *c, const int *to)
{
	if (c->kind == RC_TERM && c->param >= 0)
		c->param = to[c->param];
	if (c->lhs)
		renumber_expr(c->lhs, to);
	if (c->rhs)
		renumber_expr(c->rhs, to);
	for (size_t i = 0; i < c->nchildren; i++)
		renumber_cond(&c->children[i], to);
}

static void renumber_expr(struct rexpr *e, const int *to)
{
	if (e->param >= 0)
		e->param = to[e->param];
	for (size_t i = 0; i < e->nargs; i++)
		renumber_expr(&e->args[i], to);
	if (e->filter)
		renumber_cond(e->filter, to);
	for (size_t i = 0; i < e->nwhens; i++)
		renumber_cond(&e->whens[i], to);
	if (e->query)
		qs_renumber_params(e->query, to);
}

void qs_renumber_params(struct rqs *qs, const int *to)
{
	if (qs->where)
		renumber_cond(qs->where, to);
	if (qs->having)
		renumber_cond(qs->having, to);
	for (size_t i = 0; i < qs->nannots; i++)
		renumber_expr(&qs->annots[i].expr, to);
	for (size_t i = 0; i < qs->nvalues; i++)
		renumber_expr(&qs->values[i].expr, to);
	for (size_t i = 0; i < qs->norder; i++)
		if (qs->order[i].expr)
			renumber_expr(qs->order[i].expr, to);
	if (qs->outer_depth && qs->has_limit)
		qs->limit_param = to[qs->limit_param];
	if (qs->outer_depth && qs->offset)
		qs->offset_param = to[qs->offset_param];
}

bool cond_has_agg(const struct rcond *c)
{
	if ((c->lhs && c->lhs->has_agg) || (c->rhs && c->rhs->has_agg))
		return true;
	for (size_t i = 0; i < c->nchildren; i++)
		if (cond_has_agg(&c->children[i]))
			return true;
	return false;
}

/* ---- annotate, values, aggregate --------------------------------------- */

/* field: an annotation, whose name may not be a field's (aggregate()
 * entries may: Django checks annotate() only). */
static int check_annotation_name(struct qctx *c,
				 const struct spec_annotation *a, bool field)
{
	const struct schema_model *m = c->qs->model;

	if (field &&
	    (find_field(m, a->name) || schema_find_query_relation(m, a->name) ||
	     schema_find_relation(m, a->name)))
		return pf_err_set(c->err, 422, "annotation_conflict", a->at,
				  "The annotation '%s' conflicts with a field "
				  "on the model.",
				  a->name);
	/* Django's check_alias; prefetchd never writes a name into SQL, but
	 * refuses what Django refuses */
	if (strpbrk(a->name, "'`\"[]; \t\n\r\f\v#") || strstr(a->name, "--") ||
	    strstr(a->name, "/*") || strstr(a->name, "*/"))
		return pf_err_set(c->err, 422, "bad_expression", a->at,
				  "Column aliases cannot contain whitespace "
				  "characters, hashes, quotation marks, "
				  "semicolons, or SQL comments.");
	if (expr_find_annot(c, a->name) >= 0)
		return pf_err_set(c->err, 422, "annotation_conflict", a->at,
				  "The annotation '%s' is given twice",
				  a->name);
	return 0;
}

int expr_resolve_annotations(struct qctx *c, const struct spec_queryset *spec)
{
	for (size_t i = 0; i < spec->nannotate; i++) {
		const struct spec_annotation *a = &spec->annotate[i];
		struct rannot *r;
		struct rexpr e;

		if (check_annotation_name(c, a, true) < 0)
			return -1;
		/* bound before it is added: it may use earlier ones only */
		if (expr_resolve(c, &a->expr, false, &e) < 0) {
			expr_cleanup(&e);
			return -1;
		}
		r = vec_push(&c->qs->annots, &c->qs->nannots, sizeof(*r));
		if (!r || !(r->name = strdup(a->name))) {
			expr_cleanup(&e);
			return OOM(c->err);
		}
		r->expr = e;
		r->selected = true;
	}
	return 0;
}

/* A values entry: a field ("author" is the FK's id), a path with
 * transforms, or an annotation. */
static int values_entry(struct qctx *c, const struct spec_name *sn,
			struct rannot *out)
{
	const struct schema_relation *rel =
		schema_find_relation(c->qs->model, sn->name);
	int annot = expr_find_annot(c, sn->name);

	if (!(out->name = strdup(sn->name)))
		return OOM(c->err);
	out->selected = true;
	if (annot >= 0)
		return annot_ref(c, annot, &out->expr);
	if (rel && rel->forward && !rel->to_many) {
		expr_column(&out->expr, 0, rel->from_column);
		return 0;
	}
	return field_path(c, sn->name, false, sn->at, &out->expr);
}

int expr_resolve_values(struct qctx *c, const struct spec_queryset *spec)
{
	struct rqs *qs = c->qs;
	bool listed_agg = false, unlisted_agg = false;

	qs->has_values = true;
	qs->shape = spec->values_list ? (spec->flat ? SHAPE_FLAT : SHAPE_LISTS)
				      : SHAPE_OBJECTS;
	if (!(qs->values = calloc(spec->nvalues + 1, sizeof(*qs->values))))
		return OOM(c->err);
	for (size_t i = 0; i < spec->nvalues; i++) {
		qs->nvalues = i + 1;
		if (values_entry(c, &spec->values[i], &qs->values[i]) < 0)
			return -1;
	}
	/* values() without fields: every column, as Django */
	for (size_t i = 0; i < qs->nannots; i++) {
		bool listed = false;
		for (size_t k = 0; k < qs->nvalues; k++)
			listed |= qs->values[k].expr.kind == RX_ANNOT &&
				  qs->values[k].expr.annot == (int)i;
		qs->annots[i].selected = false;
		if (qs->annots[i].expr.has_agg) {
			listed_agg |= listed;
			unlisted_agg |= !listed;
		}
	}
	if (listed_agg && unlisted_agg)
		return pf_err_set(
			c->err, 422, "ambiguous_grouping",
			spec->values_list ? "values_list" : "values",
			"some aggregate annotations are listed in values and "
			"some are not: a spec cannot say whether values() "
			"comes before annotate() (GROUP BY the values) or "
			"after it (one row per object)");
	qs->group_values = unlisted_agg;
	/* values("publisher").annotate(n=Count("id")): the aggregates come
	 * after the entries, one per group; a subquery returns its entries
	 * only (Django's .values("publisher_id") after the annotate) */
	for (size_t i = 0; i < qs->nannots && unlisted_agg && !c->outer; i++) {
		struct rannot *r;
		if (!qs->annots[i].expr.has_agg)
			continue;
		r = vec_push(&qs->values, &qs->nvalues, sizeof(*r));
		if (!r || !(r->name = strdup(qs->annots[i].name)))
			return OOM(c->err);
		r->selected = true;
		annot_ref(c, (int)i, &r->expr);
	}
	return 0;
}

/* What an aggregate entry is over no rows, when no query is sent (its
 * queryset can match nothing): Count is 0, a Coalesce its first operand
 * that is not null, a literal itself (Django's empty_result_set_value). */
static int empty_value(const struct qctx *c, const struct rexpr *e, char **out)
{
	struct spec_value v = {.kind = SPEC_NUMBER};

	*out = NULL;
	switch (e->kind) {
	case RX_AGG:
		if (e->fn == FN_COUNT && !(*out = strdup("0")))
			return -1;
		return 0;
	case RX_ANNOT:
		return empty_value(c, &c->qs->annots[e->annot].expr, out);
	case RX_PARAM:
		v.text = c->qs->params[e->param];
		if (e->type == RT_TEXT)
			v.kind = SPEC_STRING;
		if (v.text && !(*out = json_text(&v)))
			return -1;
		return 0;
	case RX_FUNC:
		if (e->fn != FN_COALESCE)
			return 0;
		for (size_t i = 0; i < e->nargs && !*out; i++)
			if (empty_value(c, &e->args[i], out) < 0)
				return -1;
		return 0;
	default:
		return 0;
	}
}

int expr_resolve_aggregate(struct qctx *c, const struct spec_queryset *spec)
{
	struct rqs *qs = c->qs;
	size_t base = qs->nannots;

	qs->shape = SHAPE_AGGREGATE;
	c->first_entry = base;
	/* entries may use earlier entries by name: they are bound as
	 * annotations, then moved out */
	for (size_t i = 0; i < spec->naggregate; i++) {
		const struct spec_annotation *a = &spec->aggregate[i];
		struct rannot *r;
		struct rexpr e;

		if (check_annotation_name(c, a, false) < 0)
			return -1;
		if (expr_resolve(c, &a->expr, false, &e) < 0) {
			expr_cleanup(&e);
			return -1;
		}
		r = vec_push(&qs->annots, &qs->nannots, sizeof(*r));
		if (!r || !(r->name = strdup(a->name))) {
			expr_cleanup(&e);
			return OOM(c->err);
		}
		r->expr = e;
		if (!e.has_agg)
			return pf_err_set(
				c->err, 422, "not_an_aggregate", a->at,
				"%s is not an aggregate expression", a->name);
		if (empty_value(c, &r->expr, &r->empty) < 0)
			return OOM(c->err);
	}
	qs->first_agg = base;
	qs->naggs = qs->nannots - base;
	/* aggregate() of nothing is {}, as Django answers it: no statement */
	if (qs->naggs == 0)
		qs->empty = true;
	return 0;
}
