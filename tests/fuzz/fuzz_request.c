/*
 * libFuzzer target: every input is a request body, run through spec_parse ->
 * resolve -> plan_build against the demo catalog fixture, once as is and
 * once with the overlay fixture (fuzz_one.h has the invariants). Built and
 * run by `make fuzz` (clang, -fsanitize=fuzzer,address,undefined); the
 * fixtures' folder is compiled in as FUZZ_FIXTURES.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_one.h"
#include "log.h"

#ifndef FUZZ_FIXTURES
#define FUZZ_FIXTURES "tests/unit/fixtures"
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct schema *plain, *overlay;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level("error");
	if (fuzz_load_schemas(FUZZ_FIXTURES, &plain, &overlay) < 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_one(plain, NULL, data, size);
	fuzz_one(overlay, FUZZ_HIDDEN_TABLE, data, size);
	return 0;
}
