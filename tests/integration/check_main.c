/*
 * The integration test runner: every suite of suites.h in one SRunner.
 * check's environment applies: CK_FORK=no (valgrind), CK_VERBOSITY,
 * CK_RUN_SUITE, CK_RUN_CASE. Prints check's "Checks: X, Failures: Y,
 * Errors: Z" line, which tests/run.sh adds up.
 */
#include <stdlib.h>

#include <check.h>

#include "suites.h"

int main(void)
{
	Suite *(*const suites[])(void) = {PFTEST_SUITES};
	SRunner *sr = srunner_create(NULL);
	int failed;

	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		srunner_add_suite(sr, suites[i]());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
