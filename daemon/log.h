/*
 * Logging to stderr: leveled lines with a UTC timestamp, and one access
 * line per request. The level is process state set once at start.
 */
#pragma once

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Returns -1 for an unknown level name. */
int log_set_level(const char *name);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* One line per request: method, path, status, ms, queries, rows. */
void log_access(const char *method, const char *path, int status, double ms,
		int queries, long rows, const char *request_id);
