/*
 * sync.c - copies one model version from a registry into a sink, and checks
 * a version's bytes in the registry.
 *
 * This is usually the step that sets a drill's RTO, so files move in
 * parallel (a bounded pool of workers, largest files first so the pool
 * finishes together) and nothing is sent twice: the sink is asked first
 * which files it already holds. The sink contract forbids has() and commit()
 * while puts run, so the run has three phases: ask about every file, put
 * the missing ones in parallel, then manifest.json (last: its presence says
 * the set is whole) and commit. The first failure cancels the other workers
 * through a private token, which also follows the caller's, and is the one
 * reported, naming the file.
 */
#include "sync.h"
#include "cancel.h"
#include "clock.h"
#include "error.h"
#include "sha256.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

#define SYNC_PROGRESS_EVERY_S 0.2
#define SYNC_RATE_WINDOW 8 /* samples, one per report: ~1.6 s of history */
#define SYNC_MIB (1024.0 * 1024.0)
#define VERIFY_CHUNK (1u << 20)
#define VERIFY_MAX_THREADS 4

/* A token that fires when the caller's does, or when we fire it. */
struct linked_cancel {
	struct rh_cancel token;
	struct rh_cancel stop; /* ends the watcher */
	struct rh_cancel *parent;
	pthread_t tid;
	bool running;
};

static void *linked_watch(void *arg)
{
	struct linked_cancel *lc = arg;

	for (;;) {
		struct pollfd pfd[2] = {
		    {.fd = rh_cancel_fd(&lc->stop), .events = POLLIN},
		    {.fd = rh_cancel_fd(lc->parent), .events = POLLIN},
		};

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents) {
			rh_cancel_fire(&lc->token);
			break;
		}
	}
	return NULL;
}

static int linked_init(struct linked_cancel *lc, struct rh_cancel *parent)
{
	int err;

	memset(lc, 0, sizeof(*lc));
	lc->token.fds[0] = lc->token.fds[1] = lc->stop.fds[0] = lc->stop.fds[1] = -1;
	lc->parent = parent;
	if ((err = rh_cancel_init(&lc->token)) < 0 || (err = rh_cancel_init(&lc->stop)) < 0)
		return err;
	if (!parent)
		return 0;
	if (rh_cancel_is_fired(parent))
		rh_cancel_fire(&lc->token);
	if (pthread_create(&lc->tid, NULL, linked_watch, lc) != 0)
		return rh_error_set(RH_ERROR, "cannot start a thread");
	lc->running = true;
	return 0;
}

static void linked_clear(struct linked_cancel *lc)
{
	if (lc->running) {
		rh_cancel_fire(&lc->stop);
		pthread_join(lc->tid, NULL);
		lc->running = false;
	}
	rh_cancel_clear(&lc->token);
	rh_cancel_clear(&lc->stop);
}

/* ---- sync --------------------------------------------------------------- */

struct sync_run {
	struct rh_registry *r;
	const struct rh_model_version *v;
	struct rh_sink *sink;
	const struct rh_sync_opts *opts;
	struct linked_cancel cancel;

	size_t *pending; /* indexes into v->files still to put, largest first */
	size_t n_pending;

	pthread_mutex_t lock; /* everything below */
	size_t next;	      /* the next pending entry to hand out */
	struct rh_sync_stats st;
	int err; /* the first failure */
	char *err_msg;
	uint64_t moved; /* payload bytes moved so far (progress) */
	double t0;
	double last_report;
	double sample_t[SYNC_RATE_WINDOW];
	uint64_t sample_b[SYNC_RATE_WINDOW];
	unsigned n_samples;
};

/* Calls the caller's progress hook; with the lock held. */
static void sync_report(struct sync_run *run, bool force)
{
	struct rh_sync_progress p;
	double now = rh_clock_mono();
	unsigned oldest;

	if (!run->opts->progress || (!force && now - run->last_report < SYNC_PROGRESS_EVERY_S))
		return;
	run->last_report = now;
	run->sample_t[run->n_samples % SYNC_RATE_WINDOW] = now;
	run->sample_b[run->n_samples % SYNC_RATE_WINDOW] = run->moved;
	run->n_samples++;
	/* The rate over the last second or so, not since the start: it follows
	 * a link that slows down, and the ETA with it. */
	oldest = run->n_samples > SYNC_RATE_WINDOW ? run->n_samples % SYNC_RATE_WINDOW : 0;
	p.total = run->v->total_bytes;
	p.done = run->st.bytes_skipped + run->st.bytes_resumed + run->moved;
	if (p.done > p.total)
		p.done = p.total;
	if (now - run->sample_t[oldest] > 0.05)
		p.rate =
		    (double)(run->moved - run->sample_b[oldest]) / (now - run->sample_t[oldest]);
	else
		p.rate = now > run->t0 ? (double)run->moved / (now - run->t0) : 0;
	p.eta_s = p.rate > 0 ? (double)(p.total - p.done) / p.rate : (p.done == p.total ? 0 : -1);
	run->opts->progress(run->opts->progress_user, &p);
}

static void sync_on_bytes(void *user, uint64_t delta)
{
	struct sync_run *run = user;

	pthread_mutex_lock(&run->lock);
	run->moved += delta;
	sync_report(run, false);
	pthread_mutex_unlock(&run->lock);
}

/* Records the first real failure and stops the others. The message must
 * name the file; sinks usually do, registries too, but not every error. */
static void sync_fail(struct sync_run *run, int err, const char *path)
{
	const char *msg = rh_error_last();
	char *copy = NULL;

	if (path && !strstr(msg, path)) {
		if (asprintf(&copy, "%s: %s", path, msg[0] ? msg : rh_strerror(err)) < 0)
			copy = NULL;
	} else {
		copy = strdup(msg[0] ? msg : rh_strerror(err));
	}
	pthread_mutex_lock(&run->lock);
	/* A cancel caused by another worker's failure is not the news. */
	if (run->err == 0 || (run->err == RH_ECANCELLED && err != RH_ECANCELLED)) {
		run->err = err;
		free(run->err_msg);
		run->err_msg = copy;
		copy = NULL;
	}
	pthread_mutex_unlock(&run->lock);
	free(copy);
	rh_cancel_fire(&run->cancel.token);
}

static void *sync_worker(void *arg)
{
	struct sync_run *run = arg;
	const struct rh_model_version *v = run->v;

	for (;;) {
		struct rh_put_stats ps = {0};
		struct rh_source *src = NULL;
		const struct rh_manifest_file *mf;
		size_t idx;
		int err;

		pthread_mutex_lock(&run->lock);
		if (run->err || run->next == run->n_pending) {
			pthread_mutex_unlock(&run->lock);
			break;
		}
		idx = run->pending[run->next++];
		pthread_mutex_unlock(&run->lock);
		mf = &v->files[idx];

		if (rh_cancel_is_fired(&run->cancel.token)) {
			sync_fail(run, rh_error_set(RH_ECANCELLED, "cancelled before %s", mf->path),
				  mf->path);
			break;
		}
		err = rh_registry_file_source(&src, run->r, v, idx, &run->cancel.token);
		if (err == 0)
			err = run->sink->ops->put(run->sink, mf->path, mf->size, mf->sha256, src,
						  &ps);
		rh_registry_source_free(src);
		pthread_mutex_lock(&run->lock);
		run->st.bytes_sent += ps.bytes_sent;
		run->st.bytes_resumed += ps.bytes_resumed;
		if (err == 0)
			run->st.files_sent++;
		pthread_mutex_unlock(&run->lock);
		if (err < 0) {
			sync_fail(run, err, mf->path);
			break;
		}
	}
	return NULL;
}

static int cmp_size_desc(const void *a, const void *b, void *arg)
{
	const struct rh_model_version *v = arg;
	uint64_t sa = v->files[*(const size_t *)a].size;
	uint64_t sb = v->files[*(const size_t *)b].size;

	if (sa != sb)
		return sa > sb ? -1 : 1;
	return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/* Phase 1: which files does the sink lack? */
static int sync_plan(struct sync_run *run)
{
	const struct rh_model_version *v = run->v;
	int err = 0;

	run->pending = calloc(v->n_files ? v->n_files : 1, sizeof(*run->pending));
	if (!run->pending)
		return rh_error_set(RH_ENOMEM, "out of memory syncing %s %s", v->name, v->version);
	for (size_t i = 0; i < v->n_files; i++) {
		const struct rh_manifest_file *mf = &v->files[i];
		bool present = false;

		if (rh_cancel_is_fired(&run->cancel.token)) {
			err = rh_error_set(RH_ECANCELLED, "cancelled syncing %s %s to %s", v->name,
					   v->version, run->sink->url);
			break;
		}
		err = run->sink->ops->has(run->sink, mf->path, mf->size, mf->sha256, &present);
		if (err < 0) {
			if (!strstr(rh_error_last(), mf->path))
				rh_error_prefix(err, "%s", mf->path);
			break;
		}
		if (present) {
			run->st.files_skipped++;
			run->st.bytes_skipped += mf->size;
		} else {
			run->pending[run->n_pending++] = i;
		}
	}
	if (err == 0 && run->n_pending > 1)
		qsort_r(run->pending, run->n_pending, sizeof(*run->pending), cmp_size_desc,
			(void *)v);
	return err;
}

/* Phase 2: the puts, in parallel. */
static int sync_put_all(struct sync_run *run)
{
	unsigned want = run->opts->parallel ? run->opts->parallel : run->sink->ops->max_parallel;
	unsigned max = run->sink->ops->max_parallel ? run->sink->ops->max_parallel : 1;
	pthread_t *tids = NULL;
	size_t started = 0;
	size_t n;
	int err = 0;

	if (run->n_pending == 0)
		return 0;
	if (want > max)
		want = max;
	if (want == 0)
		want = 1;
	n = want < run->n_pending ? want : run->n_pending;
	tids = calloc(n, sizeof(*tids));
	if (!tids)
		return rh_error_set(RH_ENOMEM, "out of memory syncing %s %s", run->v->name,
				    run->v->version);
	for (size_t i = 0; i < n; i++) {
		if (pthread_create(&tids[i], NULL, sync_worker, run) != 0)
			break;
		started++;
	}
	if (started == 0)
		sync_worker(run); /* no thread to be had: do it here */
	for (size_t i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	free(tids);
	if (run->err) {
		err = rh_error_set(run->err, "%s", run->err_msg ? run->err_msg : "");
		if (err == RH_ECANCELLED && run->opts->cancel &&
		    rh_cancel_is_fired(run->opts->cancel))
			err = rh_error_set(RH_ECANCELLED, "cancelled syncing %s %s to %s",
					   run->v->name, run->v->version, run->sink->url);
	}
	return err;
}

/* Phase 3: manifest.json, then commit. */
static int sync_finish(struct sync_run *run)
{
	const struct rh_model_version *v = run->v;
	struct rh_put_stats ps = {0};
	struct rh_source src;
	bool present = false;
	int err;

	if (rh_cancel_is_fired(&run->cancel.token))
		return rh_error_set(RH_ECANCELLED, "cancelled syncing %s %s to %s", v->name,
				    v->version, run->sink->url);
	err = run->sink->ops->has(run->sink, "manifest.json", v->manifest_len, v->manifest_sha256,
				  &present);
	if (err == 0 && !present) {
		rh_source_mem_init(&src, v->manifest_text, v->manifest_len, "manifest.json");
		err = run->sink->ops->put(run->sink, "manifest.json", v->manifest_len,
					  v->manifest_sha256, &src, &ps);
	}
	if (err < 0) {
		if (!strstr(rh_error_last(), "manifest.json"))
			rh_error_prefix(err, "manifest.json");
		return err;
	}
	err = run->sink->ops->commit(run->sink);
	if (err < 0)
		rh_error_prefix(err, "committing %s %s to %s", v->name, v->version, run->sink->url);
	return err;
}

int rh_sync_run(struct rh_registry *r, const struct rh_model_version *v, struct rh_sink *sink,
		const struct rh_sync_opts *opts, struct rh_sync_stats *stats)
{
	static const struct rh_sync_opts defaults = RH_SYNC_OPTS_INIT;
	struct sync_run run = {.r = r, .v = v, .sink = sink, .lock = PTHREAD_MUTEX_INITIALIZER};
	struct rh_cancel *saved_cancel = sink->cancel;
	void (*saved_progress)(void *, uint64_t) = sink->progress;
	void *saved_user = sink->progress_user;
	bool linked = false;
	int err;

	run.opts = opts ? opts : &defaults;
	run.t0 = rh_clock_mono();
	run.st.files = v->n_files;
	if (run.opts->version != RH_SYNC_OPTS_VERSION) {
		err = rh_error_set(RH_EINVAL, "sync options version %u is not %u",
				   run.opts->version, RH_SYNC_OPTS_VERSION);
		goto done;
	}
	if (!sink->ops || sink->ops->version != RH_SINK_OPS_VERSION) {
		err =
		    rh_error_set(RH_EINVAL, "sink %s implements ops version %u, not %u", sink->url,
				 sink->ops ? sink->ops->version : 0, RH_SINK_OPS_VERSION);
		goto done;
	}
	err = linked_init(&run.cancel, run.opts->cancel);
	linked = true;
	if (err < 0)
		goto done;
	sink->cancel = &run.cancel.token;
	sink->progress = sync_on_bytes;
	sink->progress_user = &run;

	err = sync_plan(&run);
	if (err < 0)
		goto done;
	pthread_mutex_lock(&run.lock);
	sync_report(&run, true);
	pthread_mutex_unlock(&run.lock);
	err = sync_put_all(&run);
	if (err < 0)
		goto done;
	err = sync_finish(&run);
	if (err < 0)
		goto done;
	pthread_mutex_lock(&run.lock);
	sync_report(&run, true);
	pthread_mutex_unlock(&run.lock);
done:
	sink->cancel = saved_cancel;
	sink->progress = saved_progress;
	sink->progress_user = saved_user;
	if (linked)
		linked_clear(&run.cancel);
	run.st.seconds = rh_clock_mono() - run.t0;
	run.st.throughput_mib_s =
	    run.st.seconds > 0 ? (double)run.st.bytes_sent / SYNC_MIB / run.st.seconds : 0;
	if (stats)
		*stats = run.st;
	free(run.pending);
	free(run.err_msg);
	pthread_mutex_destroy(&run.lock);
	return err;
}

/* ---- verify ------------------------------------------------------------- */

struct verify_run {
	struct rh_registry *r;
	const struct rh_model_version *v;
	struct rh_cancel *cancel;
	pthread_mutex_t lock;
	size_t next;
	size_t bad;
	int fatal; /* an error that is not a bad file: stop */
	char *fatal_msg;
	size_t first_bad; /* the lowest bad index, for a stable message */
	char *first_msg;
};

/* Reads one file through the registry and checks size and sha256. Returns
 * 0, RH_EVERIFY (bad bytes; message says how), or another error. */
static int verify_one(struct verify_run *vr, size_t idx, uint8_t *buf)
{
	const struct rh_manifest_file *mf = &vr->v->files[idx];
	struct rh_source *src = NULL;
	struct rh_sha256 c = {0};
	uint8_t d[32];
	char hex[65];
	uint64_t off = 0;
	int err;

	err = rh_registry_file_source(&src, vr->r, vr->v, idx, vr->cancel);
	if (err < 0)
		goto done;
	err = rh_sha256_init(&c);
	if (err < 0)
		goto done;
	for (;;) {
		long n;

		if (vr->cancel && rh_cancel_is_fired(vr->cancel)) {
			err = rh_error_set(RH_ECANCELLED, "cancelled while verifying %s", mf->path);
			goto done;
		}
		n = src->read_at(src->user, off, buf, VERIFY_CHUNK);
		if (n < 0) {
			err = (int)n;
			goto done;
		}
		if (n == 0)
			break;
		rh_sha256_update(&c, buf, (size_t)n);
		off += (uint64_t)n;
		if (off > mf->size)
			break;
	}
	if (off != mf->size) {
		err = rh_error_set(RH_EVERIFY, "%s has %s%llu bytes, the manifest says %llu",
				   mf->path, off > mf->size ? "more than " : "",
				   (unsigned long long)off, (unsigned long long)mf->size);
		goto done;
	}
	rh_sha256_final(&c, d);
	rh_sha256_hex(hex, d);
	if (strcmp(hex, mf->sha256) != 0)
		err = rh_error_set(RH_EVERIFY,
				   "%s: sha256 mismatch: the manifest says %s, the "
				   "registry holds %s",
				   mf->path, mf->sha256, hex);
done:
	rh_sha256_free(&c);
	rh_registry_source_free(src);
	return err;
}

static void *verify_worker(void *arg)
{
	struct verify_run *vr = arg;
	uint8_t *buf = malloc(VERIFY_CHUNK);

	for (;;) {
		size_t idx;
		int err;
		const char *msg;
		const char *path;

		pthread_mutex_lock(&vr->lock);
		if (!buf && !vr->fatal) {
			vr->fatal = RH_ENOMEM;
			vr->fatal_msg = strdup("out of memory verifying");
		}
		if (vr->fatal || vr->next == vr->v->n_files) {
			pthread_mutex_unlock(&vr->lock);
			break;
		}
		idx = vr->next++;
		pthread_mutex_unlock(&vr->lock);
		err = verify_one(vr, idx, buf);
		if (err == 0)
			continue;
		msg = rh_error_last();
		path = vr->v->files[idx].path;
		pthread_mutex_lock(&vr->lock);
		/* A bad or missing object, a malformed pointer: this file is bad.
		 * Running out of memory or being cancelled: verification is off. */
		if (err == RH_ECANCELLED || err == RH_ENOMEM) {
			if (!vr->fatal) {
				vr->fatal = err;
				vr->fatal_msg = strdup(msg);
			}
		} else {
			vr->bad++;
			if (!vr->first_msg || idx < vr->first_bad) {
				free(vr->first_msg);
				if (strstr(msg, path))
					vr->first_msg = strdup(msg);
				else if (asprintf(&vr->first_msg, "%s: %s", path, msg) < 0)
					vr->first_msg = NULL;
				vr->first_bad = idx;
			}
		}
		pthread_mutex_unlock(&vr->lock);
	}
	free(buf);
	return NULL;
}

int rh_sync_verify(struct rh_registry *r, const struct rh_model_version *v,
		   struct rh_cancel *cancel, size_t *bad)
{
	struct verify_run vr = {
	    .r = r, .v = v, .cancel = cancel, .lock = PTHREAD_MUTEX_INITIALIZER};
	pthread_t tids[VERIFY_MAX_THREADS];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = cpus > 0 ? (size_t)cpus : 1;
	size_t started = 0;
	char hex[65];
	int err = 0;

	if (n > VERIFY_MAX_THREADS)
		n = VERIFY_MAX_THREADS;
	if (n > v->n_files)
		n = v->n_files;
	for (size_t i = 0; i < n; i++) {
		if (pthread_create(&tids[i], NULL, verify_worker, &vr) != 0)
			break;
		started++;
	}
	if (started == 0 && v->n_files)
		verify_worker(&vr);
	for (size_t i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	/* The manifest's bytes are the model's identity: check them too. */
	rh_sha256_buf_hex(hex, v->manifest_text, v->manifest_len);
	if (!vr.fatal && strcmp(hex, v->manifest_sha256) != 0) {
		vr.bad++;
		if (!vr.first_msg)
			vr.first_msg = strdup("manifest.json: its bytes changed since it was read");
	}
	if (vr.fatal)
		err = rh_error_set(vr.fatal, "%s %s: %s", v->name, v->version,
				   vr.fatal_msg ? vr.fatal_msg : rh_strerror(vr.fatal));
	else if (vr.bad == 1)
		err = rh_error_set(RH_EVERIFY, "%s %s: %s", v->name, v->version,
				   vr.first_msg ? vr.first_msg : "a file is bad");
	else if (vr.bad > 1)
		err = rh_error_set(RH_EVERIFY, "%s %s: %s (and %zu more bad files)", v->name,
				   v->version, vr.first_msg ? vr.first_msg : "files are bad",
				   vr.bad - 1);
	if (bad)
		*bad = vr.bad;
	free(vr.fatal_msg);
	free(vr.first_msg);
	pthread_mutex_destroy(&vr.lock);
	return err;
}
