/*
 * global.c - one place that initialises libcurl and libgit2 (see global.h).
 *
 * A counter under a mutex makes the calls nest, so a test suite and the
 * code it drives may both init and shut down without tearing the libraries
 * down under each other.
 */
#include "global.h"

#include "error.h"
#include "netstream.h"

#include <curl/curl.h>
#include <git2.h>
#include <pthread.h>

#include "banned.h"

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned global_count;

int rh_artifacts_global_init(void)
{
	CURLcode cc;
	int err = 0;
	int gr;

	pthread_mutex_lock(&global_lock);
	if (global_count > 0) {
		global_count++;
		goto done;
	}
	cc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (cc != CURLE_OK) {
		err =
		    rh_error_set(RH_ERROR, "cannot initialise libcurl: %s", curl_easy_strerror(cc));
		goto done;
	}
	gr = git_libgit2_init();
	if (gr < 0) {
		const git_error *e = git_error_last();

		err = rh_error_set(RH_ERROR, "cannot initialise libgit2: %s",
				   e && e->message ? e->message : "unknown libgit2 error");
		curl_global_cleanup();
		goto done;
	}
	/* libgit2 1.5 has no network timeouts: give it a TCP stream that has
	 * (registered again after every init: a shutdown forgets it) */
	if (rh_netstream_register() < 0) {
		err = RH_ERROR;
		git_libgit2_shutdown();
		curl_global_cleanup();
		goto done;
	}
	global_count = 1;
done:
	pthread_mutex_unlock(&global_lock);
	return err;
}

void rh_artifacts_global_shutdown(void)
{
	pthread_mutex_lock(&global_lock);
	if (global_count > 0 && --global_count == 0) {
		git_libgit2_shutdown();
		curl_global_cleanup();
	}
	pthread_mutex_unlock(&global_lock);
}

int rh_artifacts_global_check(void)
{
	unsigned n;

	pthread_mutex_lock(&global_lock);
	n = global_count;
	pthread_mutex_unlock(&global_lock);
	if (n == 0)
		return rh_error_set(RH_ERROR,
				    "libcurl and libgit2 are not initialised: the "
				    "program must call rh_artifacts_global_init() at start");
	return 0;
}
