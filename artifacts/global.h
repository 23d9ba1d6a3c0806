/*
 * global.h - process-wide set-up of the libraries only artifacts/ talks to
 * directly (libcurl, libgit2), done once at program start.
 *
 * curl_global_init() is not thread-safe and git_libgit2_init() must come
 * before any other libgit2 call, so neither belongs in a module's first
 * call (where three modules each did it on their own): main() calls
 * rh_artifacts_global_init() before anything runs in parallel and
 * rh_artifacts_global_shutdown() after every thread has been joined. A unit
 * test that reaches libcurl or libgit2 does the same.
 *
 * Calls nest: each successful init wants one shutdown; the libraries are
 * torn down by the last one.
 */
#ifndef RH_ARTIFACTS_GLOBAL_H
#define RH_ARTIFACTS_GLOBAL_H

/* Initialises libcurl and libgit2. Returns 0, or RH_ERROR naming the
 * library that failed (nothing is left initialised then). Call it before
 * starting threads. */
int rh_artifacts_global_init(void);

/* Undoes one rh_artifacts_global_init(). Call it with no other thread
 * left running; harmless without a matching init. */
void rh_artifacts_global_shutdown(void);

/* 0 when rh_artifacts_global_init() has run, else RH_ERROR saying so: the
 * guard at the entry of every module that uses libcurl or libgit2. */
int rh_artifacts_global_check(void);

#endif
