/* Leveled logging to stderr: see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level current_level = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_set_level(const char *name)
{
	for (int i = LOG_DEBUG; i <= LOG_ERROR; i++)
		if (strcmp(name, level_names[i]) == 0) {
			current_level = (enum log_level)i;
			return 0;
		}
	return -1;
}

int log_enabled(enum log_level level)
{
	return level >= current_level;
}

static void write_prefix(FILE *out, const char *level)
{
	struct timeval tv;
	struct tm tm;
	char stamp[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(out, "%s.%03dZ %s ", stamp, (int)(tv.tv_usec / 1000), level);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	flockfile(stderr);
	write_prefix(stderr, level_names[level]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}

void log_access(const char *method, const char *path, int status, double ms,
		int queries, long rows, const char *request_id)
{
	if (!log_enabled(LOG_INFO))
		return;
	flockfile(stderr);
	write_prefix(stderr, "access");
	fprintf(stderr, "%s %s %d %.2fms queries=%d rows=%ld id=%s\n", method,
		path, status, ms, queries, rows, request_id ? request_id : "-");
	funlockfile(stderr);
}
