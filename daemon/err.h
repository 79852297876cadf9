/*
 * The one error type of prefetchd: an HTTP status, a stable machine code,
 * the place in the request it concerns ("at") and a human message. Every
 * fallible function fills one and returns -1 (or NULL); only
 * http_reply_error() turns it into a response body.
 */
#pragma once

#include <stdarg.h>

struct pf_err {
	int status;	   /* HTTP status: 400, 422, 503, ... */
	char code[32];	   /* "unknown_field", "bad_spec", ... */
	char at[256];	   /* "prefetch_related[1].queryset.filter", or "" */
	char message[512]; /* for the client; never contains SQL */
};

/* Fills err (when not NULL) and returns -1, so that error paths are one
 * line: return pf_err_set(err, 422, "unknown_field", at, "...", ...). */
int pf_err_set(struct pf_err *err, int status, const char *code, const char *at,
	       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Resets err to "no error" (status 0). */
void pf_err_clear(struct pf_err *err);
