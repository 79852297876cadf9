/*
 * The live schema: loads the catalog through the pool (asynchronously, on
 * the loop), builds a snapshot with the overlay file, and swaps it in. A
 * failed reload keeps the snapshot in use. Loads at start, whenever the pool
 * comes up without a schema, and on catalog_reload() (SIGHUP). One per
 * process: it loads on its pool's loop, and catalog_get and catalog_counts
 * may be called from any loop's thread.
 */
#pragma once

#include <stdbool.h>

#include "pool.h"
#include "schema.h"

struct catalog;

/* overlay_path may be "" for none. schemas is "public" or "a,b". */
struct catalog *catalog_new(struct pool *pool, const char *schemas,
			    const char *overlay_path);
void catalog_free(struct catalog *cat); /* NULL ok */

/* Starts a reload; a reload already under way makes this a no-op. */
void catalog_reload(struct catalog *cat);

/* The current snapshot with a new reference (schema_unref it), or NULL
 * while none has loaded. */
struct schema *catalog_get(struct catalog *cat);

/* Reloads that succeeded and failed, for /metrics. */
void catalog_counts(struct catalog *cat, unsigned long *ok,
		    unsigned long *failed);
