/*
 * Loads the schema snapshot: one catalog query on a pooled connection, the
 * overlay file read afresh each time (so SIGHUP picks up its changes), then
 * schema_build and a swap. See catalog.h.
 */
#include "catalog.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct catalog {
	/* Guards current and the counts: every event loop reads them, loop 0
	 * (whose pool loads) writes them. */
	pthread_mutex_t lock;
	struct pool *pool;
	char *schemas_array; /* "{public,app}": the text[] parameter */
	char *overlay_path;
	struct schema *current;
	bool loading;
	bool again; /* a reload was asked for while loading */
	struct pool_stmt stmt;
	const char *params[1];
	unsigned long loads_ok, loads_failed;
};

static void load_start(struct catalog *cat);

/* "public, app" -> {"public","app"}: each name quoted for the array. */
static char *schemas_to_array(const char *schemas)
{
	size_t len = strlen(schemas);
	char *out = malloc(len * 2 + 8), *o = out;
	const char *s = schemas;

	if (!out)
		return NULL;
	*o++ = '{';
	while (*s) {
		size_t n;
		while (*s == ' ' || *s == ',')
			s++;
		n = strcspn(s, ", ");
		if (!n)
			break;
		if (o[-1] != '{')
			*o++ = ',';
		*o++ = '"';
		for (size_t i = 0; i < n; i++) {
			if (s[i] == '"' || s[i] == '\\')
				*o++ = '\\';
			*o++ = s[i];
		}
		*o++ = '"';
		s += n;
	}
	*o++ = '}';
	*o = '\0';
	return out;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long len;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len + 1))) {
		if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
			free(buf);
			buf = NULL;
		} else {
			buf[len] = '\0';
		}
	}
	fclose(f);
	return buf;
}

static void load_finish(struct catalog *cat, struct schema *loaded)
{
	struct schema *old = NULL;

	pthread_mutex_lock(&cat->lock);
	if (loaded) {
		old = cat->current;
		cat->current = loaded;
		cat->loads_ok++;
	} else {
		cat->loads_failed++;
	}
	pthread_mutex_unlock(&cat->lock);
	schema_unref(old);
	if (loaded)
		log_info("schema loaded: %zu models", loaded->nmodels);
	cat->loading = false;
	if (cat->again) {
		cat->again = false;
		load_start(cat);
	}
}

static struct schema *build(struct catalog *cat, const PGresult *res)
{
	struct pf_err err = {0};
	struct schema *s;
	char *overlay = NULL;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_error("schema: catalog query failed: %s",
			  PQresultErrorMessage(res));
		return NULL;
	}
	if (cat->overlay_path[0] && !(overlay = read_file(cat->overlay_path))) {
		log_error("schema: cannot read overlay %s", cat->overlay_path);
		return NULL;
	}
	s = schema_build(PQgetvalue(res, 0, 0), overlay, &err);
	if (!s)
		log_error("schema: %s%s%s", err.message,
			  err.at[0] ? " at " : "", err.at);
	free(overlay);
	return s;
}

static void on_catalog(struct pool_conn *conn, struct pool_stmt *stmts,
		       size_t n, const struct pf_err *err, void *arg)
{
	struct catalog *cat = arg;
	struct schema *loaded = NULL;

	if (err)
		log_warn("schema: %s", err->message);
	else
		loaded = build(cat, stmts[0].result);
	PQclear(stmts[0].result);
	stmts[0].result = NULL;
	pool_release(conn, !err);
	load_finish(cat, loaded);
}

static void on_conn(struct pool_conn *conn, const struct pf_err *err, void *arg)
{
	struct catalog *cat = arg;
	struct pf_err run_err = {0};

	if (!conn) {
		/* The pool calls catalog_reload again when it comes up. */
		log_debug("schema: waiting for the database: %s", err->message);
		load_finish(cat, NULL);
		return;
	}
	cat->stmt = (struct pool_stmt){.sql = schema_catalog_sql(),
				       .nparams = 1,
				       .params = cat->params};
	cat->params[0] = cat->schemas_array;
	if (pool_run(conn, &cat->stmt, 1, on_catalog, cat, &run_err) < 0) {
		pool_release(conn, false);
		load_finish(cat, NULL);
	}
}

static void load_start(struct catalog *cat)
{
	cat->loading = true;
	pool_acquire(cat->pool, 30000, on_conn, cat);
}

static void on_pool_up(void *arg)
{
	struct catalog *cat = arg;

	if (!cat->current)
		catalog_reload(cat);
}

struct catalog *catalog_new(struct pool *pool, const char *schemas,
			    const char *overlay_path)
{
	struct catalog *cat = calloc(1, sizeof(*cat));

	if (!cat)
		return NULL;
	pthread_mutex_init(&cat->lock, NULL);
	cat->pool = pool;
	cat->schemas_array = schemas_to_array(schemas);
	cat->overlay_path = strdup(overlay_path);
	if (!cat->schemas_array || !cat->overlay_path) {
		catalog_free(cat);
		return NULL;
	}
	pool_on_up(pool, on_pool_up, cat);
	return cat;
}

void catalog_free(struct catalog *cat)
{
	if (!cat)
		return;
	schema_unref(cat->current);
	free(cat->schemas_array);
	free(cat->overlay_path);
	pthread_mutex_destroy(&cat->lock);
	free(cat);
}

void catalog_reload(struct catalog *cat)
{
	if (cat->loading) {
		cat->again = true;
		return;
	}
	load_start(cat);
}

struct schema *catalog_get(struct catalog *cat)
{
	struct schema *s;

	pthread_mutex_lock(&cat->lock);
	s = cat->current ? schema_ref(cat->current) : NULL;
	pthread_mutex_unlock(&cat->lock);
	return s;
}

void catalog_counts(struct catalog *cat, unsigned long *ok,
		    unsigned long *failed)
{
	pthread_mutex_lock(&cat->lock);
	*ok = cat->loads_ok;
	*failed = cat->loads_failed;
	pthread_mutex_unlock(&cat->lock);
}
