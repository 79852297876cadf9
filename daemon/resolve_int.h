/*
 * What resolve.c (querysets, conditions, prefetch levels) and
 * resolve_expr.c (expressions, transforms, annotations: DESIGN.md §6) share.
 * Not for the other stages: they read resolve.h's tree only.
 */
#pragma once

#include "resolve.h"

#define OOM(err) pf_err_set(err, 500, "internal", "", "out of memory")
#define MAX_PARTS 32

/* The queryset being bound. outer: the queryset an $exists/$subquery
 * sits in ($outer refers to it); params: where the values go, the
 * statement's own list (a subquery's values go to its outer query's). */
struct qctx {
	struct rqs *qs;
	const struct schema_relation *via; /* the prefetch level's relation */
	const struct schema *schema;
	const struct spec_queryset *spec;
	struct qctx *outer;
	struct rqs *params;
	struct pf_err *err;
	bool in_aggregate;  /* binding aggregate(): an entry may aggregate an
			      aggregate annotation (over a subquery) */
	size_t first_entry; /* the annotation that is aggregate()'s first */
	bool no_split;	    /* an aggregate's filter, a When: a negated
			       to-many term tests the joined row itself */
	char cls[128];	    /* class name of qs->model, for messages */
};

/* A path walked from the queryset's model, see walk_path. */
struct walk {
	int join;
	int scope; /* > 0: the term is inside this EXISTS */
	const struct schema_model *model;
	const struct schema_column *col;
	bool via_join;
	int joins[MAX_PARTS]; /* joins this path made, to make LEFT later */
	int njoins;
	int nparts, next; /* parts consumed: parts[next..] remain */
	bool no_op;	  /* an expression's path: no operator at its end */
	bool promote;	  /* an expression's path: see hop_left */
	/* the next join's ON column in the parent, see rjoin.parent_col */
	const struct schema_column *parent_col;
};

int split_path(char *buf, char **parts, int max);
int find_op(const char *name);
const struct schema_column *find_field(const struct schema_model *m,
				       const char *name);
void camel_case(const char *snake, char *out, size_t len);
void class_name(const struct schema_model *m, char *out, size_t len);
void choices(const struct schema_model *m, char *out, size_t len);
int add_param(struct qctx *c, const char *text);
int walk_path(struct qctx *c, char **parts, int n, bool negated, bool left,
	      const char *at, struct walk *w, int *new_scope);
int resolve_cond(struct qctx *c, const struct spec_cond *sc, bool negated,
		 bool in_or, struct rcond *out);
void cond_free(struct rcond *cnd);
void cond_cleanup(struct rcond *cnd);
int resolve_subquery(struct qctx *c, const struct spec_queryset *spec,
		     const char *at, struct rqs **out);
void rqs_free(struct rqs *qs);
/* A value as JSON text (malloc'd): strings quoted, None the null. */
char *json_text(const struct spec_value *v);

/* ---- resolve_expr.c ---- */

/* An expression of the queryset in c. arg: a string stands for a field
 * path (Django's F()); left: joins it makes are LEFT (aggregates,
 * annotations), else as a filter's. */
int expr_resolve(struct qctx *c, const struct spec_expr *e, bool left,
		 struct rexpr *out);
/* The left side of a lookup: parts[from..n-1] after the column or
 * annotation in base, as transforms, leaving *next at the operator (the
 * last part, if it is one). base is consumed. */
int expr_transforms(struct qctx *c, struct rexpr *base, char **parts, int n,
		    int from, const char *at, int *next);
/* A column as an expression. */
void expr_column(struct rexpr *out, int join, const struct schema_column *col);
/* The annotation named name in c's queryset, or -1; by the first parts
 * of a split path (*used: how many), see resolve_expr.c. */
int expr_find_annot(const struct qctx *c, const char *name);
int expr_find_annot_prefix(const struct qctx *c, char **parts, int n,
			   int *used);
void expr_cleanup(struct rexpr *e);
/* Binds annotate (and aggregate, and values) of spec to c's queryset. */
int expr_resolve_annotations(struct qctx *c, const struct spec_queryset *spec);
int expr_resolve_values(struct qctx *c, const struct spec_queryset *spec);
int expr_resolve_aggregate(struct qctx *c, const struct spec_queryset *spec);
/* The type class of a column. */
enum rtype expr_column_type(const struct schema_column *col);
/* Marks (and renumbers) the parameter slots a queryset's parts use, its
 * subqueries' included. */
void qs_mark_params(const struct rqs *qs, bool *used);
void qs_renumber_params(struct rqs *qs, const int *to);
/* Whether a condition mentions an aggregate (it then goes to HAVING). */
bool cond_has_agg(const struct rcond *c);
