/* Monotonic time and sleeping for the C tests (POSIX: a test including this defines
 * _POSIX_C_SOURCE or _GNU_SOURCE first). */
#ifndef SMARTCACHE_CLOCK_H
#define SMARTCACHE_CLOCK_H

#include <time.h>

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Sleeps the whole time, resuming after a signal. */
static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

#endif
