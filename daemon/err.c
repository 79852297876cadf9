/* struct pf_err: see err.h. */
#include "err.h"

#include <stdio.h>
#include <string.h>

int pf_err_set(struct pf_err *err, int status, const char *code, const char *at,
	       const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -1;
	err->status = status;
	snprintf(err->code, sizeof(err->code), "%s", code);
	snprintf(err->at, sizeof(err->at), "%s", at ? at : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

void pf_err_clear(struct pf_err *err)
{
	memset(err, 0, sizeof(*err));
}
