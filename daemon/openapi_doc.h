/*
 * The OpenAPI 3.1 document that GET /openapi.json serves: proto/openapi.json
 * as it was at build time, compiled in by the Makefile
 * (build/openapi_doc.c), so the binary needs no file at run time.
 */
#pragma once

#include <stddef.h>

extern const unsigned char openapi_doc[];
extern const size_t openapi_doc_len;
