/*
 * Seed corpus for the fuzz target: writes every request found in the given
 * JSON files to OUTDIR, one compact JSON file each. A request is the value
 * of a "request" or "spec" key anywhere in a file (the files of proto/examples,
 * tests/cases and tests/unit/plan_cases.json), or a file's top-level
 * object when it has a "model" key. Prints how many it wrote.
 *
 *   seeds OUTDIR FILE...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static int written;

static void write_seed(const char *dir, json_t *spec)
{
	char path[4096];
	char *text = json_dumps(spec, JSON_COMPACT | JSON_ENCODE_ANY);
	FILE *f;

	if (!text)
		return;
	snprintf(path, sizeof(path), "%s/seed-%05d.json", dir, written);
	f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
		written++;
	}
	free(text);
}

static void walk(const char *dir, json_t *j)
{
	const char *key;
	json_t *v;
	size_t i;

	if (json_is_object(j)) {
		json_object_foreach (j, key, v) {
			if ((!strcmp(key, "request") || !strcmp(key, "spec")) &&
			    json_is_object(v))
				write_seed(dir, v);
			else
				walk(dir, v);
		}
	} else if (json_is_array(j)) {
		json_array_foreach (j, i, v)
			walk(dir, v);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: seeds OUTDIR FILE...\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		json_error_t jerr;
		json_t *doc = json_load_file(argv[i], 0, &jerr);

		if (!doc) {
			fprintf(stderr, "seeds: %s: %s (line %d)\n", argv[i],
				jerr.text, jerr.line);
			return 1;
		}
		if (json_is_object(doc) && json_object_get(doc, "model"))
			write_seed(argv[1], doc);
		else
			walk(argv[1], doc);
		json_decref(doc);
	}
	printf("seeds: %d requests from %d files\n", written, argc - 2);
	return 0;
}
