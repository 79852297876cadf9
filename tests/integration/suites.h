/*
 * Every integration suite, for the runner (check_main.c). A new suite file
 * adds its prototype and its name in PFTEST_SUITES here, nothing else.
 */
#pragma once

#include <check.h>

Suite *endpoints_suite(void);
Suite *schema_endpoint_suite(void);
Suite *exec_suite(void);
Suite *cases_suite(void);
Suite *pool_suite(void);
Suite *values_suite(void);
Suite *injection_suite(void);
Suite *prefetch_suite(void);
Suite *protocol_suite(void);
Suite *metrics_suite(void);
Suite *reliability_suite(void);
Suite *auth_suite(void);
Suite *hidden_suite(void);
Suite *stream_suite(void);
Suite *planning_suite(void);
Suite *budget_suite(void);
Suite *threads_suite(void);
Suite *django_suites_suite(void);
Suite *keys_suite(void);

#define PFTEST_SUITES                                                          \
	endpoints_suite, schema_endpoint_suite, exec_suite, cases_suite,       \
		pool_suite, values_suite, injection_suite, prefetch_suite,     \
		protocol_suite, metrics_suite, reliability_suite, auth_suite,  \
		hidden_suite, stream_suite, planning_suite, budget_suite,      \
		threads_suite, django_suites_suite, keys_suite
