/*
 * The one clock of the daemon's timings (request and database ms, drain):
 * monotonic, so a wall-clock step never makes a duration negative.
 */
#pragma once

#include <time.h>

/* Milliseconds since an arbitrary start. */
static inline double clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
