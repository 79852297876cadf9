/* The option table and its parser: see config.h. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_type { OPT_STRING, OPT_INT, OPT_LONG };

struct option_def {
	const char *flag; /* without the leading "--" */
	const char *env;  /* NULL: no environment variable */
	enum opt_type type;
	size_t offset; /* into struct config */
	const char *def;
	long min, max; /* OPT_INT / OPT_LONG */
	const char *help;
};

#define OFF(field) offsetof(struct config, field)

static const struct option_def options[] = {
	{"listen", "PREFETCHD_LISTEN", OPT_STRING, OFF(listen),
	 "127.0.0.1:8080", 0, 0, "address:port to serve HTTP on (port 0: any)"},
	{"database-url", "DATABASE_URL", OPT_STRING, OFF(database_url), "", 0,
	 0, "libpq conninfo or URL (empty: libpq's PG* variables)"},
	{"schemas", "PREFETCHD_SCHEMAS", OPT_STRING, OFF(schemas), "public", 0,
	 0, "comma-separated PostgreSQL schemas to serve"},
	{"schema-overlay", "PREFETCHD_SCHEMA_OVERLAY", OPT_STRING,
	 OFF(schema_overlay), "", 0, 0,
	 "JSON file renaming models and declaring relations"},
	{"auth-token", "PREFETCHD_AUTH_TOKEN", OPT_STRING, OFF(auth_token), "",
	 0, 0, "bearer token required on every endpoint but health checks"},
	{"log-level", "PREFETCHD_LOG_LEVEL", OPT_STRING, OFF(log_level), "info",
	 0, 0, "debug, info, warn or error"},
	{"pool-size", "PREFETCHD_POOL_SIZE", OPT_INT, OFF(pool_size), "8", 1,
	 1000, "PostgreSQL connections at most"},
	{"prepare-cache", "PREFETCHD_PREPARE_CACHE", OPT_INT,
	 OFF(prepare_cache), "256", 0, 100000,
	 "prepared statements kept per connection (0: none)"},
	{"plan-mode", "PREFETCHD_PLAN_MODE", OPT_STRING, OFF(plan_mode), "auto",
	 0, 0,
	 "auto (prefetchd times the plans of each level), custom or generic "
	 "(PostgreSQL's plan_cache_mode forced for every statement)"},
	{"pool-timeout", "PREFETCHD_POOL_TIMEOUT", OPT_INT,
	 OFF(pool_timeout_ms), "5000", 1, 600000,
	 "ms a request may wait for a connection"},
	{"statement-timeout", "PREFETCHD_STATEMENT_TIMEOUT", OPT_INT,
	 OFF(statement_timeout_ms), "30000", 0, 86400000,
	 "ms per statement (0: none); over it the request gets 504"},
	{"max-body", "PREFETCHD_MAX_BODY", OPT_LONG, OFF(max_body), "1048576",
	 64, 64L * 1024 * 1024, "largest request body in bytes"},
	{"max-rows", "PREFETCHD_MAX_ROWS", OPT_LONG, OFF(max_rows), "1000000",
	 1, LONG_MAX, "rows over all queries of one request"},
	{"max-depth", "PREFETCHD_MAX_DEPTH", OPT_INT, OFF(max_depth), "16", 1,
	 256, "nesting of conditions and Prefetch querysets"},
	{"max-lookups", "PREFETCHD_MAX_LOOKUPS", OPT_INT, OFF(max_lookups),
	 "64", 1, 4096, "prefetch_related entries in one request"},
	{"http-timeout", "PREFETCHD_HTTP_TIMEOUT", OPT_INT, OFF(http_timeout_s),
	 "60", 1, 3600, "seconds to read a request or write a response"},
	{"drain-timeout", "PREFETCHD_DRAIN_TIMEOUT", OPT_INT,
	 OFF(drain_timeout_ms), "10000", 0, 600000,
	 "ms that requests in flight may take after SIGTERM"},
	{"max-headers", "PREFETCHD_MAX_HEADERS", OPT_INT, OFF(max_headers),
	 "65536", 1024, 16 * 1024 * 1024,
	 "bytes of request headers (over it: libevent's own 413)"},
	{"reuse-port", "PREFETCHD_REUSE_PORT", OPT_INT, OFF(reuse_port), "0", 0,
	 1, "1: SO_REUSEPORT, so that several processes share --listen"},
	{"max-concurrent", "PREFETCHD_MAX_CONCURRENT", OPT_INT,
	 OFF(max_concurrent), "1024", 1, 1000000,
	 "requests in flight at most, health checks aside (then 503)"},
	{"threads", "PREFETCHD_THREADS", OPT_INT, OFF(threads), "0", 0, 256,
	 "event loops, each with its share of the pool (0: one per core)"},
	{"max-held-mb", "PREFETCHD_MAX_HELD_MB", OPT_INT, OFF(max_held_mb),
	 "80", 0, 1024 * 1024,
	 "MB of rows held by requests at once; more waits (0: no limit)"},
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static void print_help(void)
{
	printf("usage: prefetchd [--option value]...\n\n"
	       "Serves Django-style querysets with prefetch_related over "
	       "PostgreSQL.\n\n");
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct option_def *o = &options[i];
		printf("  --%-20s %s\n  %-22s env %s, default \"%s\"\n",
		       o->flag, o->help, "", o->env ? o->env : "-", o->def);
	}
}

static int set_option(struct config *cfg, const struct option_def *o,
		      const char *value, const char *source, struct pf_err *err)
{
	char *field = (char *)cfg + o->offset;
	char *end;
	long n;

	if (o->type == OPT_STRING) {
		char **slot = (char **)(void *)field;
		char *copy = strdup(value);
		if (!copy)
			return pf_err_set(err, 500, "internal", source,
					  "out of memory");
		free(*slot);
		*slot = copy;
		return 0;
	}
	errno = 0;
	n = strtol(value, &end, 10);
	if (errno || end == value || *end || n < o->min || n > o->max)
		return pf_err_set(err, 400, "bad_config", source,
				  "%s must be an integer from %ld to %ld, "
				  "not \"%s\"",
				  source, o->min, o->max, value);
	if (o->type == OPT_INT)
		*(int *)(void *)field = (int)n;
	else
		*(long *)(void *)field = n;
	return 0;
}

static const struct option_def *find_flag(const char *arg)
{
	if (strncmp(arg, "--", 2) != 0)
		return NULL;
	for (size_t i = 0; i < NOPTIONS; i++)
		if (strcmp(arg + 2, options[i].flag) == 0)
			return &options[i];
	return NULL;
}

static int load_env_and_defaults(struct config *cfg, struct pf_err *err)
{
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct option_def *o = &options[i];
		const char *env = o->env ? getenv(o->env) : NULL;
		if (set_option(cfg, o, o->def, o->flag, err) < 0)
			return -1;
		if (env && set_option(cfg, o, env, o->env, err) < 0)
			return -1;
	}
	return 0;
}

int config_load(struct config *cfg, int argc, char **argv, struct pf_err *err)
{
	memset(cfg, 0, sizeof(*cfg));
	if (load_env_and_defaults(cfg, err) < 0)
		return -1;
	for (int i = 1; i < argc; i++) {
		const struct option_def *o;
		const char *value;
		char *eq;

		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			print_help();
			return 1;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("prefetchd 0.1\n");
			return 1;
		}
		/* --flag=value or --flag value */
		eq = strchr(argv[i], '=');
		if (eq) {
			char name[64];
			snprintf(name, sizeof(name), "%.*s",
				 (int)(eq - argv[i]), argv[i]);
			o = find_flag(name);
			value = eq + 1;
		} else {
			o = find_flag(argv[i]);
			value = i + 1 < argc ? argv[++i] : NULL;
		}
		if (!o)
			return pf_err_set(err, 400, "bad_config", argv[i],
					  "unknown option %s (see --help)",
					  argv[i]);
		if (!value)
			return pf_err_set(err, 400, "bad_config", o->flag,
					  "--%s needs a value", o->flag);
		if (set_option(cfg, o, value, o->flag, err) < 0)
			return -1;
	}
	return 0;
}

void config_cleanup(struct config *cfg)
{
	for (size_t i = 0; i < NOPTIONS; i++)
		if (options[i].type == OPT_STRING) {
			char **slot = (char **)(void *)((char *)cfg +
							options[i].offset);
			free(*slot);
			*slot = NULL;
		}
}

int config_split_listen(const char *listen, char *host, size_t hostlen,
			int *port)
{
	const char *colon = strrchr(listen, ':');
	char *end;
	long n;

	if (!colon || colon == listen || (size_t)(colon - listen) >= hostlen)
		return -1;
	errno = 0;
	n = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || n < 0 || n > 65535)
		return -1;
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	/* [::1]:8080 */
	if (host[0] == '[' && host[colon - listen - 1] == ']') {
		memmove(host, host + 1, (size_t)(colon - listen - 2));
		host[colon - listen - 2] = '\0';
	}
	*port = (int)n;
	return 0;
}
