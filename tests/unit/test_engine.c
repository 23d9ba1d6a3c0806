/*
 * test_engine.c - the drill engine end to end on real runbooks: scheduling
 * order, real parallelism, skips and the final phase, retries with backoff,
 * timeouts that kill, interrupts (from a signal handler), outputs flowing
 * into later steps, http_probe against a small HTTP server in this process,
 * and the verdict/RTO/critical-path arithmetic.
 *
 * Runbooks are written to temporary files and loaded with rh_runbook_load,
 * so what is tested is what `rehydra drill` runs. Timing bounds are loose
 * on purpose (busy 2-core machines, ASan). Where a step needs a process with
 * a particular behaviour, this binary plays it (RH_ENGINE_HELPER, handled in
 * a constructor) rather than a shell.
 */
#include "clock.h"
#include "engine.h"
#include "error.h"
#include "record.h"
#include "runbook.h"
#include "steps.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helper roles of this binary ---------------------------------------- */

__attribute__((constructor)) static void engine_helper(void)
{
	const char *role = getenv("RH_ENGINE_HELPER");
	const char *file = getenv("RH_HELPER_FILE");

	if (!role)
		return;
	if (strcmp(role, "pidsleep") == 0 && file) {
		/* write our pid, then sleep until killed */
		FILE *f = fopen(file, "w");

		if (!f)
			_exit(90);
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
		sleep(60);
		_exit(0);
	}
	if (strcmp(role, "failonce") == 0 && file) {
		/* fail the first time (creating the marker), succeed afterwards */
		if (access(file, F_OK) == 0) {
			printf("{\"second\": true}\n");
			fflush(stdout);
			_exit(0);
		}
		fclose(fopen(file, "w"));
		fprintf(stderr, "first attempt fails on purpose\n");
		_exit(7);
	}
	_exit(91);
}

static char self_exe[4096];

static void init_self(void)
{
	ssize_t n;

	if (self_exe[0])
		return;
	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0)
		abort();
	self_exe[n] = '\0';
}

/* ---- fixture ------------------------------------------------------------ */

struct fx {
	char *dir;
	char *state;
	struct rh_runbook *rb;
	struct rh_drill d;
	bool drill_ready;
	double wall_s; /* how long rh_engine_run took */
	/* event log */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned starts[16];
	unsigned retries[16];
	unsigned ends[16];
	unsigned progress;
	bool interrupted_event;
	unsigned queued[16];
	unsigned running, max_running; /* from START and END events */
};

static void on_event(void *user, const struct rh_drill *d, const struct rh_event *ev)
{
	struct fx *f = user;

	(void)d;
	pthread_mutex_lock(&f->lock);
	if (ev->step < 16) {
		if (ev->kind == RH_EVENT_STEP_QUEUED)
			f->queued[ev->step]++;
		if (ev->kind == RH_EVENT_STEP_START && ++f->running > f->max_running)
			f->max_running = f->running;
		if (ev->kind == RH_EVENT_STEP_END && f->running > 0)
			f->running--;
		if (ev->kind == RH_EVENT_STEP_START)
			f->starts[ev->step]++;
		else if (ev->kind == RH_EVENT_STEP_RETRY)
			f->retries[ev->step]++;
		else if (ev->kind == RH_EVENT_STEP_END)
			f->ends[ev->step]++;
		else if (ev->kind == RH_EVENT_STEP_PROGRESS)
			f->progress++;
	}
	if (ev->kind == RH_EVENT_INTERRUPTED)
		f->interrupted_event = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

/* Writes `json` as a runbook, loads it, prepares a drill. */
static int fx_load(struct fx *f, const char *json)
{
	struct rh_diags diags = RH_DIAGS_INIT;
	char *path;
	int rc;

	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	f->dir = rh_test_tmpdir();
	f->state = rh_test_path(f->dir, "state");
	path = rh_test_path(f->dir, "runbook.json");
	rh_test_write_file(path, json);
	rc = rh_runbook_load(&f->rb, path, NULL, 0, &diags);
	if (rc < 0) {
		fprintf(stderr, "runbook did not load: %s\n", rh_error_last());
		for (size_t i = 0; i < diags.count; i++)
			fprintf(stderr, "  %d:%d %s\n", diags.items[i].line, diags.items[i].column,
				diags.items[i].message);
	}
	rh_diags_clear(&diags);
	free(path);
	if (rc < 0)
		return rc;
	rc = rh_drill_init(&f->d, f->rb, f->state);
	if (rc < 0)
		fprintf(stderr, "drill init: %s\n", rh_error_last());
	f->drill_ready = rc == 0;
	return rc;
}

static int fx_run(struct fx *f)
{
	struct rh_engine_opts opts = RH_ENGINE_OPTS_INIT;
	double t0 = rh_clock_mono();
	int rc;

	opts.on_event = on_event;
	opts.user = f;
	rc = rh_engine_run(&f->d, &opts);
	f->wall_s = rh_clock_mono() - t0;
	return rc;
}

static void fx_free(struct fx *f)
{
	if (f->drill_ready)
		rh_drill_release(&f->d);
	rh_runbook_free(f->rb);
	if (f->dir)
		rh_test_rm_rf(f->dir);
	free(f->dir);
	free(f->state);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
}

static const struct rh_step_result *res(struct fx *f, const char *id)
{
	long i = rh_runbook_step_index(f->rb, id);

	CU_ASSERT_FATAL(i >= 0);
	return &f->d.results[i];
}

static size_t idx(struct fx *f, const char *id)
{
	long i = rh_runbook_step_index(f->rb, id);

	CU_ASSERT_FATAL(i >= 0);
	return (size_t)i;
}

#define ASSERT_STATUS(f, id, st)                                                                   \
	CU_ASSERT_STRING_EQUAL(rh_step_status_name(res(f, id)->status), rh_step_status_name(st))

/* ---- scheduling --------------------------------------------------------- */

static void test_engine__dependency_order(void)
{
	struct fx f;
	struct stat st;
	char path[4400];
	const char *rb =
	    "{\"rehydra\": 1, \"name\": \"order\", \"steps\": ["
	    " {\"id\": \"c\", \"do\": \"exec\", \"argv\": [\"true\"], \"after\": [\"b\"]},"
	    " {\"id\": \"a\", \"do\": \"exec\", \"argv\": [\"sleep\", \"0.1\"]},"
	    " {\"id\": \"b\", \"do\": \"wait\", \"seconds\": 0.1, \"after\": [\"a\"]},"
	    " {\"id\": \"d\", \"do\": \"exec\", \"argv\": [\"true\"], \"after\": [\"a\"]}"
	    "]}";

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	/* the drill directory exists before the run, private */
	CU_ASSERT(strstr(f.d.id, "-order-") != NULL);
	CU_ASSERT_EQUAL(strlen(f.d.id), strlen("20261121T043318Z-order-") + 6);
	CU_ASSERT(f.d.id[8] == 'T' && f.d.id[15] == 'Z');
	CU_ASSERT_EQUAL(stat(f.d.dir, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/steps", f.d.dir);
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT(S_ISDIR(st.st_mode));
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(json_object_get(f.d.scope, "drill"), "id")), f.d.id);
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(json_object_get(f.d.scope, "rehydra"), "version")),
	    RH_VERSION);
	CU_ASSERT_PTR_NULL(f.d.provider);

	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "a", RH_STEP_OK);
	ASSERT_STATUS(&f, "b", RH_STEP_OK);
	ASSERT_STATUS(&f, "c", RH_STEP_OK);
	ASSERT_STATUS(&f, "d", RH_STEP_OK);
	CU_ASSERT(res(&f, "b")->start_s >= res(&f, "a")->end_s);
	CU_ASSERT(res(&f, "c")->start_s >= res(&f, "b")->end_s);
	CU_ASSERT(res(&f, "d")->start_s >= res(&f, "a")->end_s);
	CU_ASSERT(res(&f, "a")->start_s >= 0);
	CU_ASSERT(res(&f, "a")->end_s - res(&f, "a")->start_s >= 0.09);
	CU_ASSERT(res(&f, "b")->end_s - res(&f, "b")->start_s >= 0.09);
	for (size_t i = 0; i < 4; i++) {
		CU_ASSERT_EQUAL(f.starts[i], 1);
		CU_ASSERT_EQUAL(f.ends[i], 1);
		CU_ASSERT_EQUAL(f.d.results[i].attempts, 1);
		CU_ASSERT_PTR_NULL(f.d.results[i].error);
	}
	/* every step's logs are where the result says */
	snprintf(path, sizeof(path), "%s.stdout", res(&f, "a")->log_prefix);
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT(strncmp(res(&f, "a")->log_prefix, f.d.dir, strlen(f.d.dir)) == 0);
	/* no restores_service step: restored at the end of the last main step */
	CU_ASSERT(f.d.restored);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_MET);
	CU_ASSERT_EQUAL(f.d.rto_step, (long)idx(&f, "c"));
	CU_ASSERT_EQUAL_FATAL(f.d.n_critical, 3);
	CU_ASSERT_EQUAL(f.d.critical_path[0], idx(&f, "a"));
	CU_ASSERT_EQUAL(f.d.critical_path[1], idx(&f, "b"));
	CU_ASSERT_EQUAL(f.d.critical_path[2], idx(&f, "c"));
	fx_free(&f);
}

static void test_engine__parallel_branches(void)
{
	struct fx f;
	const char *rb = "{\"rehydra\": 1, \"name\": \"par\", \"steps\": ["
			 " {\"id\": \"left\", \"do\": \"exec\", \"argv\": [\"sleep\", \"0.5\"]},"
			 " {\"id\": \"right\", \"do\": \"exec\", \"argv\": [\"sleep\", \"0.5\"]},"
			 " {\"id\": \"join\", \"do\": \"exec\", \"argv\": [\"true\"],"
			 "  \"after\": [\"left\", \"right\"]}"
			 "]}";

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "left", RH_STEP_OK);
	ASSERT_STATUS(&f, "right", RH_STEP_OK);
	ASSERT_STATUS(&f, "join", RH_STEP_OK);
	CU_ASSERT(f.wall_s < 0.9);
	CU_ASSERT(f.wall_s >= 0.49);
	/* they overlapped */
	CU_ASSERT(res(&f, "left")->start_s < res(&f, "right")->end_s);
	CU_ASSERT(res(&f, "right")->start_s < res(&f, "left")->end_s);
	CU_ASSERT(res(&f, "join")->start_s >= res(&f, "left")->end_s);
	CU_ASSERT(res(&f, "join")->start_s >= res(&f, "right")->end_s);
	fx_free(&f);
}

/* max_parallel caps the steps (threads) running at once; the others wait
 * and the timeline says "queued" once for each. */
static void test_engine__max_parallel_queues(void)
{
	struct fx f;
	const char *rb = "{\"rehydra\": 1, \"name\": \"cap\", \"max_parallel\": 2, \"steps\": ["
			 " {\"id\": \"a\", \"do\": \"exec\", \"argv\": [\"sleep\", \"0.2\"]},"
			 " {\"id\": \"b\", \"do\": \"exec\", \"argv\": [\"sleep\", \"0.2\"]},"
			 " {\"id\": \"c\", \"do\": \"exec\", \"argv\": [\"sleep\", \"0.2\"]},"
			 " {\"id\": \"d\", \"do\": \"exec\", \"argv\": [\"sleep\", \"0.2\"]},"
			 " {\"id\": \"e\", \"do\": \"exec\", \"argv\": [\"sleep\", \"0.2\"]},"
			 " {\"id\": \"t\", \"do\": \"exec\", \"argv\": [\"true\"], \"when\": \"always\"}"
			 "]}";
	unsigned queued = 0;

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL(f.rb->max_parallel, 2);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	for (int i = 0; i < 5; i++) {
		CU_ASSERT(f.queued[i] <= 1);
		queued += f.queued[i];
	}
	CU_ASSERT_EQUAL(queued, 3); /* a and b start, c d e wait */
	CU_ASSERT_EQUAL(f.max_running, 2);
	CU_ASSERT(f.wall_s >= 0.59); /* three rounds of 0.2 s */
	ASSERT_STATUS(&f, "e", RH_STEP_OK);
	ASSERT_STATUS(&f, "t", RH_STEP_OK);
	fx_free(&f);

	/* the default is RH_MAX_PARALLEL_DEFAULT: two steps do not wait */
	CU_ASSERT_EQUAL_FATAL(
		fx_load(&f, "{\"rehydra\": 1, \"name\": \"nocap\", \"steps\": ["
			    " {\"id\": \"a\", \"do\": \"exec\", \"argv\": [\"true\"]},"
			    " {\"id\": \"b\", \"do\": \"exec\", \"argv\": [\"true\"]}]}"),
		0);
	CU_ASSERT_EQUAL(f.rb->max_parallel, RH_MAX_PARALLEL_DEFAULT);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	CU_ASSERT_EQUAL(f.queued[0] + f.queued[1], 0);
	fx_free(&f);
}

static void test_engine__failure_skips_and_final_phase(void)
{
	struct fx f;
	const char *rb =
	    "{\"rehydra\": 1, \"name\": \"fail\", \"steps\": ["
	    " {\"id\": \"bad\", \"do\": \"exec\", \"argv\": [\"ls\", \"/nonexistent-rh-x\"]},"
	    " {\"id\": \"slow\", \"do\": \"exec\", \"argv\": [\"sleep\", \"20\"]},"
	    " {\"id\": \"child\", \"do\": \"exec\", \"argv\": [\"true\"], \"after\": [\"bad\"]},"
	    " {\"id\": \"grandchild\", \"do\": \"exec\", \"argv\": [\"true\"],"
	    "  \"after\": [\"child\"]},"
	    " {\"id\": \"cleanup\", \"do\": \"exec\", \"argv\": [\"true\"], \"when\": \"always\"},"
	    " {\"id\": \"alert\", \"do\": \"exec\", \"argv\": [\"true\"],"
	    "  \"when\": \"on_failure\", \"after\": [\"cleanup\"]}"
	    "]}";

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "bad", RH_STEP_FAILED);
	CU_ASSERT_PTR_NOT_NULL_FATAL(res(&f, "bad")->error);
	CU_ASSERT(strstr(res(&f, "bad")->error, "exited with status 2") != NULL);
	CU_ASSERT(strstr(res(&f, "bad")->error, "nonexistent-rh-x") != NULL); /* stderr line */
	CU_ASSERT(strncmp(res(&f, "bad")->error, "step 'bad'", 10) != 0);     /* id is beside it */
	ASSERT_STATUS(&f, "slow", RH_STEP_CANCELLED);
	ASSERT_STATUS(&f, "child", RH_STEP_SKIPPED);
	ASSERT_STATUS(&f, "grandchild", RH_STEP_SKIPPED);
	CU_ASSERT_EQUAL(res(&f, "child")->attempts, 0);
	CU_ASSERT_EQUAL(res(&f, "child")->start_s, -1);
	CU_ASSERT(strstr(res(&f, "child")->error, "bad") != NULL);
	ASSERT_STATUS(&f, "cleanup", RH_STEP_OK);
	ASSERT_STATUS(&f, "alert", RH_STEP_OK);
	/* the final phase ran after every main step had ended */
	CU_ASSERT(res(&f, "cleanup")->start_s >= res(&f, "slow")->end_s);
	CU_ASSERT(res(&f, "alert")->start_s >= res(&f, "cleanup")->end_s);
	CU_ASSERT(f.wall_s < 10.0); /* slow was cancelled, not waited for */
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_FAILED);
	CU_ASSERT_FALSE(f.d.restored);
	CU_ASSERT_FALSE(f.d.final_phase_failed);
	CU_ASSERT_EQUAL(f.ends[idx(&f, "child")], 1);
	fx_free(&f);
}

static void test_engine__on_failure_skipped_on_success(void)
{
	struct fx f;
	const char *rb =
	    "{\"rehydra\": 1, \"name\": \"ok\", \"steps\": ["
	    " {\"id\": \"a\", \"do\": \"exec\", \"argv\": [\"true\"]},"
	    " {\"id\": \"alert\", \"do\": \"exec\", \"argv\": [\"true\"],"
	    "  \"when\": \"on_failure\"},"
	    " {\"id\": \"cleanup\", \"do\": \"exec\", \"argv\": [\"false\"], \"when\": \"always\"}"
	    "]}";

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "a", RH_STEP_OK);
	ASSERT_STATUS(&f, "alert", RH_STEP_SKIPPED);
	ASSERT_STATUS(&f, "cleanup", RH_STEP_FAILED);
	/* a failed cleanup does not change the verdict, but is flagged */
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_MET);
	CU_ASSERT(f.d.final_phase_failed);
	fx_free(&f);
}

static void test_engine__retries_with_backoff(void)
{
	struct fx f;
	const char *rb =
	    "{\"rehydra\": 1, \"name\": \"retry\", \"steps\": ["
	    " {\"id\": \"flaky\", \"do\": \"exec\", \"argv\": [\"false\"], \"retries\": 2,"
	    "  \"backoff\": {\"initial_s\": 0.2, \"factor\": 2, \"max_s\": 10, \"jitter\": 0.01}}"
	    "]}";

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "flaky", RH_STEP_FAILED);
	CU_ASSERT_EQUAL(res(&f, "flaky")->attempts, 3);
	CU_ASSERT_EQUAL(f.starts[idx(&f, "flaky")], 3);
	CU_ASSERT_EQUAL(f.retries[idx(&f, "flaky")], 2);
	CU_ASSERT_EQUAL(f.ends[idx(&f, "flaky")], 1);
	/* 0.2 s + 0.4 s of backoff between the three attempts */
	CU_ASSERT(res(&f, "flaky")->end_s - res(&f, "flaky")->start_s >= 0.58);
	CU_ASSERT(res(&f, "flaky")->end_s - res(&f, "flaky")->start_s < 5.0);
	CU_ASSERT(strstr(res(&f, "flaky")->error, "exited with status 1") != NULL);
	fx_free(&f);
}

static void test_engine__retry_then_success(void)
{
	struct fx f;
	char rb[10000], marker[4200], path[4400];
	struct stat st;
	char *tmp = rh_test_tmpdir();

	init_self();
	snprintf(marker, sizeof(marker), "%s/marker", tmp);
	snprintf(rb, sizeof(rb),
		 "{\"rehydra\": 1, \"name\": \"retry2\", \"steps\": ["
		 " {\"id\": \"once\", \"do\": \"exec\", \"argv\": [\"%s\"], \"retries\": 3,"
		 "  \"env\": {\"RH_ENGINE_HELPER\": \"failonce\", \"RH_HELPER_FILE\": \"%s\"},"
		 "  \"backoff\": {\"initial_s\": 0.3, \"jitter\": 0.01}},"
		 " {\"id\": \"capped\", \"do\": \"exec\", \"argv\": [\"false\"], \"retries\": 1,"
		 "  \"backoff\": {\"initial_s\": 50, \"max_s\": 0.1, \"jitter\": 0.5},"
		 "  \"after\": [\"once\"]}"
		 "]}",
		 self_exe, marker);
	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "once", RH_STEP_OK);
	CU_ASSERT_EQUAL(res(&f, "once")->attempts, 2);
	CU_ASSERT(res(&f, "once")->end_s - res(&f, "once")->start_s >= 0.29);
	CU_ASSERT(json_is_true(json_object_get(res(&f, "once")->outputs, "second")));
	/* attempt 2 logs beside attempt 1's */
	snprintf(path, sizeof(path), "%s.stderr", res(&f, "once")->log_prefix);
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT(st.st_size > 0);
	snprintf(path, sizeof(path), "%s.2.stdout", res(&f, "once")->log_prefix);
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	/* the cap (max_s 0.1, +-50%) wins over initial_s 50 */
	ASSERT_STATUS(&f, "capped", RH_STEP_FAILED);
	CU_ASSERT_EQUAL(res(&f, "capped")->attempts, 2);
	CU_ASSERT(res(&f, "capped")->end_s - res(&f, "capped")->start_s < 5.0);
	CU_ASSERT(res(&f, "capped")->end_s - res(&f, "capped")->start_s >= 0.049);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_FAILED);
	fx_free(&f);
	rh_test_rm_rf(tmp);
	free(tmp);
}

static void test_engine__timeout_kills(void)
{
	struct fx f;
	char rb[10000], pidfile[4200];
	char *tmp = rh_test_tmpdir();
	FILE *p;
	int pid = 0;

	init_self();
	snprintf(pidfile, sizeof(pidfile), "%s/pid", tmp);
	snprintf(
	    rb, sizeof(rb),
	    "{\"rehydra\": 1, \"name\": \"tmo\", \"steps\": ["
	    " {\"id\": \"hang\", \"do\": \"exec\", \"argv\": [\"%s\"], \"timeout_s\": 0.5,"
	    "  \"env\": {\"RH_ENGINE_HELPER\": \"pidsleep\", \"RH_HELPER_FILE\": \"%s\"}},"
	    " {\"id\": \"after\", \"do\": \"exec\", \"argv\": [\"true\"], \"after\": [\"hang\"]},"
	    " {\"id\": \"w\", \"do\": \"wait\", \"seconds\": 30, \"timeout_s\": 0.2,"
	    "  \"when\": \"always\"}"
	    "]}",
	    self_exe, pidfile);
	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "hang", RH_STEP_TIMED_OUT);
	CU_ASSERT(strstr(res(&f, "hang")->error, "deadline") != NULL);
	CU_ASSERT(res(&f, "hang")->end_s - res(&f, "hang")->start_s >= 0.45);
	CU_ASSERT(res(&f, "hang")->end_s - res(&f, "hang")->start_s < 8.0);
	ASSERT_STATUS(&f, "after", RH_STEP_SKIPPED);
	/* a wait longer than its timeout times out at the deadline */
	ASSERT_STATUS(&f, "w", RH_STEP_TIMED_OUT);
	CU_ASSERT(res(&f, "w")->end_s - res(&f, "w")->start_s < 5.0);
	CU_ASSERT(f.d.final_phase_failed);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_FAILED);
	p = fopen(pidfile, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(fscanf(p, "%d", &pid), 1);
	fclose(p);
	CU_ASSERT(pid > 0);
	CU_ASSERT(kill(pid, 0) < 0 && errno == ESRCH);
	fx_free(&f);
	rh_test_rm_rf(tmp);
	free(tmp);
}

/* ---- interrupt ------------------------------------------------------------ */

static struct rh_drill *sig_drill;

static void on_sigusr2(int sig)
{
	(void)sig;
	rh_engine_interrupt(sig_drill);
}

struct interrupter {
	struct fx *f;
	size_t step;
	pthread_t target;
	bool by_signal;
};

static void *interrupt_thread(void *arg)
{
	struct interrupter *it = arg;
	struct fx *f = it->f;
	struct timespec ts = {0, 300 * 1000 * 1000};
	double until = rh_clock_mono() + 20;

	pthread_mutex_lock(&f->lock);
	while (!f->starts[it->step] && rh_clock_mono() < until) {
		struct timespec abs;

		clock_gettime(CLOCK_REALTIME, &abs);
		abs.tv_nsec += 50 * 1000 * 1000;
		if (abs.tv_nsec >= 1000000000L) {
			abs.tv_sec++;
			abs.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&f->cond, &f->lock, &abs);
	}
	pthread_mutex_unlock(&f->lock);
	nanosleep(&ts, NULL);
	if (it->by_signal)
		pthread_kill(it->target, SIGUSR2); /* the handler interrupts */
	else
		rh_engine_interrupt(&f->d);
	return NULL;
}

static void run_interrupt_case(bool by_signal)
{
	struct fx f;
	struct interrupter it;
	struct sigaction sa, old;
	pthread_t tid;
	const char *rb =
	    "{\"rehydra\": 1, \"name\": \"intr\", \"steps\": ["
	    " {\"id\": \"quick\", \"do\": \"exec\", \"argv\": [\"true\"]},"
	    " {\"id\": \"long\", \"do\": \"exec\", \"argv\": [\"sleep\", \"30\"],"
	    "  \"after\": [\"quick\"]},"
	    " {\"id\": \"backoff\", \"do\": \"exec\", \"argv\": [\"false\"], \"retries\": 5,"
	    "  \"backoff\": {\"initial_s\": 30}},"
	    " {\"id\": \"next\", \"do\": \"exec\", \"argv\": [\"true\"], \"after\": [\"long\"]},"
	    " {\"id\": \"teardown\", \"do\": \"wait\", \"seconds\": 0.2, \"when\": \"always\"},"
	    " {\"id\": \"alert\", \"do\": \"exec\", \"argv\": [\"true\"], \"when\": \"on_failure\"}"
	    "]}";

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	it.f = &f;
	it.step = idx(&f, "long");
	it.target = pthread_self();
	it.by_signal = by_signal;
	if (by_signal) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_sigusr2;
		sigemptyset(&sa.sa_mask);
		sig_drill = &f.d;
		sigaction(SIGUSR2, &sa, &old);
	}
	CU_ASSERT_EQUAL_FATAL(pthread_create(&tid, NULL, interrupt_thread, &it), 0);
	CU_ASSERT_EQUAL(fx_run(&f), 0);
	pthread_join(tid, NULL);
	if (by_signal)
		sigaction(SIGUSR2, &old, NULL);

	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_INTERRUPTED);
	CU_ASSERT_EQUAL(rh_verdict_exit_code(f.d.verdict), 130);
	CU_ASSERT(f.interrupted_event);
	ASSERT_STATUS(&f, "quick", RH_STEP_OK);
	ASSERT_STATUS(&f, "long", RH_STEP_CANCELLED);
	ASSERT_STATUS(&f, "backoff", RH_STEP_CANCELLED); /* stopped in its backoff */
	CU_ASSERT_EQUAL(res(&f, "backoff")->attempts, 1);
	ASSERT_STATUS(&f, "next", RH_STEP_SKIPPED);
	ASSERT_STATUS(&f, "teardown", RH_STEP_OK); /* interrupt does not cancel the final phase */
	ASSERT_STATUS(&f, "alert", RH_STEP_OK);
	CU_ASSERT(res(&f, "teardown")->end_s - res(&f, "teardown")->start_s >= 0.19);
	CU_ASSERT(f.wall_s < 10.0);
	CU_ASSERT_FALSE(f.d.restored);
	fx_free(&f);
}

static void test_engine__interrupt(void)
{
	run_interrupt_case(false);
}

static void test_engine__interrupt_from_signal_handler(void)
{
	run_interrupt_case(true);
}

static void *abort_thread(void *arg)
{
	struct interrupter *it = arg;
	struct fx *f = it->f;
	struct timespec ts = {0, 300 * 1000 * 1000};

	pthread_mutex_lock(&f->lock);
	while (!f->starts[it->step])
		pthread_cond_wait(&f->cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
	rh_engine_interrupt(&f->d); /* in the final phase: changes nothing */
	nanosleep(&ts, NULL);
	rh_engine_abort(&f->d);
	return NULL;
}

static void test_engine__abort_cancels_final_phase(void)
{
	struct fx f;
	const char *rb = "{\"rehydra\": 1, \"name\": \"abort\", \"steps\": ["
			 " {\"id\": \"a\", \"do\": \"exec\", \"argv\": [\"true\"]},"
			 " {\"id\": \"stuck\", \"do\": \"exec\", \"argv\": [\"sleep\", \"30\"],"
			 "  \"when\": \"always\"},"
			 " {\"id\": \"later\", \"do\": \"exec\", \"argv\": [\"true\"],"
			 "  \"when\": \"always\", \"after\": [\"stuck\"]}"
			 "]}";
	struct interrupter it;
	pthread_t tid;

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	it.f = &f;
	it.step = idx(&f, "stuck");
	CU_ASSERT_EQUAL_FATAL(pthread_create(&tid, NULL, abort_thread, &it), 0);
	CU_ASSERT_EQUAL(fx_run(&f), 0);
	pthread_join(tid, NULL);
	ASSERT_STATUS(&f, "a", RH_STEP_OK);
	ASSERT_STATUS(&f, "stuck", RH_STEP_CANCELLED);
	ASSERT_STATUS(&f, "later", RH_STEP_SKIPPED);
	/* the interrupt came after the main phase: the verdict stands */
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_MET);
	CU_ASSERT(f.d.final_phase_failed);
	CU_ASSERT(res(&f, "stuck")->end_s - res(&f, "stuck")->start_s >= 0.25);
	CU_ASSERT(f.wall_s < 10.0);
	fx_free(&f);
}

/* ---- a step that ignores its deadline and its cancel ----------------------- */

/* Test double: a step type whose run() blocks on a pipe and watches neither
 * ctx->deadline nor ctx->cancel, as a library call stuck in recv() does. */
static int stuck_pipe[2] = {-1, -1};
static volatile bool stuck_returned;

static int stuck_run(struct rh_step_ctx *ctx)
{
	char c;

	(void)ctx;
	while (read(stuck_pipe[0], &c, 1) < 0 && errno == EINTR)
		;
	stuck_returned = true;
	return rh_error_set(RH_EIO, "released by the test");
}

static const struct rh_step_type stuck_type = {
    .name = "exec",
    .summary = "test double",
    .run = stuck_run,
};

static void test_engine__abandons_stuck_call(void)
{
	struct fx f;
	const char *rb =
	    "{\"rehydra\": 1, \"name\": \"stuck\", \"steps\": ["
	    " {\"id\": \"hang\", \"do\": \"exec\", \"argv\": [\"true\"], \"timeout_s\": 0.5},"
	    " {\"id\": \"after\", \"do\": \"exec\", \"argv\": [\"true\"], \"after\": [\"hang\"]},"
	    " {\"id\": \"teardown\", \"do\": \"exec\", \"argv\": [\"true\"],"
	    "  \"when\": \"always\"},"
	    " {\"id\": \"stuckfinal\", \"do\": \"exec\", \"argv\": [\"true\"],"
	    "  \"when\": \"always\", \"timeout_s\": 600}"
	    "]}";
	struct rh_engine_opts opts = RH_ENGINE_OPTS_INIT;
	struct timespec ts = {0, 200 * 1000 * 1000};
	double t0;

	CU_ASSERT_EQUAL_FATAL(pipe(stuck_pipe), 0);
	stuck_returned = false;
	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	f.rb->steps[idx(&f, "hang")].type = &stuck_type;
	opts.on_event = on_event;
	opts.user = &f;
	opts.abandon_grace_s = 0.5;
	/* the deadline of "hang" ends it; "stuckfinal" has 600 s and no one
	 * cancels it: an abort does, and then the engine waits 1 s at most */
	f.rb->steps[idx(&f, "stuckfinal")].type = &stuck_type;
	{
		struct interrupter it = {.f = &f, .step = idx(&f, "stuckfinal")};
		pthread_t tid;

		CU_ASSERT_EQUAL_FATAL(pthread_create(&tid, NULL, abort_thread, &it), 0);
		t0 = rh_clock_mono();
		CU_ASSERT_EQUAL(rh_engine_run(&f.d, &opts), 0);
		f.wall_s = rh_clock_mono() - t0;
		pthread_join(tid, NULL);
	}
	ASSERT_STATUS(&f, "hang", RH_STEP_TIMED_OUT);
	CU_ASSERT(strstr(res(&f, "hang")->error, "abandoned") != NULL);
	CU_ASSERT(res(&f, "hang")->end_s - res(&f, "hang")->start_s < 3.0);
	ASSERT_STATUS(&f, "after", RH_STEP_SKIPPED);
	ASSERT_STATUS(&f, "teardown", RH_STEP_OK);
	ASSERT_STATUS(&f, "stuckfinal", RH_STEP_CANCELLED);
	CU_ASSERT(strstr(res(&f, "stuckfinal")->error, "abandoned") != NULL);
	CU_ASSERT_EQUAL(f.d.n_abandoned, 2);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_FAILED);
	CU_ASSERT(f.wall_s < 6.0);
	/* release the two threads, let them see they were abandoned, then free */
	close(stuck_pipe[1]);
	while (!stuck_returned)
		nanosleep(&ts, NULL);
	nanosleep(&ts, NULL);
	close(stuck_pipe[0]);
	f.d.n_abandoned = 0;
	fx_free(&f);
}

/* ---- outputs and probes ---------------------------------------------------- */

static void test_engine__outputs_flow(void)
{
	struct fx f;
	const char *rb = "{\"rehydra\": 1, \"name\": \"flow\","
			 " \"vars\": {\"greeting\": \"hello\"}, \"steps\": ["
			 " {\"id\": \"a\", \"do\": \"exec\","
			 "  \"argv\": [\"echo\", \"{\\\"k\\\": \\\"v1\\\", \\\"n\\\": 42}\"]},"
			 " {\"id\": \"b\", \"do\": \"exec\", \"after\": [\"a\"],"
			 "  \"argv\": [\"echo\", \"noise\\n{\\\"got\\\": "
			 "\\\"${steps.a.outputs.k}-${vars.greeting}\\\","
			 " \\\"n\\\": ${steps.a.outputs.n}}\"]},"
			 " {\"id\": \"check\", \"do\": \"exec\", \"after\": [\"b\"],"
			 "  \"argv\": [\"test\", \"${steps.b.outputs.got}\", \"=\", \"v1-hello\"]},"
			 " {\"id\": \"drillenv\", \"do\": \"exec\", \"argv\": [\"test\", \"-d\","
			 "  \"${drill.dir}/steps\"], \"cwd\": \"/\"}"
			 "]}";

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "a", RH_STEP_OK);
	ASSERT_STATUS(&f, "b", RH_STEP_OK);
	ASSERT_STATUS(&f, "check", RH_STEP_OK);
	ASSERT_STATUS(&f, "drillenv", RH_STEP_OK);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(res(&f, "a")->outputs, "k")),
			       "v1");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(res(&f, "b")->outputs, "got")),
			       "v1-hello");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(res(&f, "b")->outputs, "n")), 42);
	/* the scope holds what later steps may read */
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(
		json_object_get(json_object_get(json_object_get(f.d.scope, "steps"), "a"),
				"outputs"),
		"k")),
	    "v1");
	fx_free(&f);
}

static void test_engine__expansion_error_fails_step(void)
{
	struct fx f;
	const char *rb =
	    "{\"rehydra\": 1, \"name\": \"exp\", \"steps\": ["
	    " {\"id\": \"a\", \"do\": \"exec\", \"argv\": [\"echo\", \"{\\\"k\\\": 1}\"]},"
	    " {\"id\": \"b\", \"do\": \"exec\", \"after\": [\"a\"], \"retries\": 3,"
	    "  \"argv\": [\"echo\", \"${steps.a.outputs.missing}\"]}"
	    "]}";

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "a", RH_STEP_OK);
	ASSERT_STATUS(&f, "b", RH_STEP_FAILED);
	CU_ASSERT_PTR_NOT_NULL_FATAL(res(&f, "b")->error);
	/* stored beside the step's id, so it does not repeat it */
	CU_ASSERT(strncmp(res(&f, "b")->error, "step 'b'", 8) != 0);
	CU_ASSERT(strstr(res(&f, "b")->error, "steps.a.outputs.missing") != NULL);
	CU_ASSERT_EQUAL(res(&f, "b")->attempts, 1); /* retrying cannot help */
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_FAILED);
	fx_free(&f);
}

static void test_engine__provider_steps(void)
{
	struct fx f;
	const json_t *pid;
	const char *rb =
	    "{\"rehydra\": 1, \"name\": \"prov\","
	    " \"target\": {\"provider\": \"local\", \"region\": \"local\"},"
	    " \"stack\": {\"command\": [\"sleep\", \"30\"], \"env\": {\"PORT\": "
	    "\"${target.port}\"}},"
	    " \"steps\": ["
	    " {\"id\": \"provision\", \"do\": \"provision\"},"
	    " {\"id\": \"where\", \"do\": \"exec\", \"after\": [\"provision\"],"
	    "  \"argv\": [\"echo\", \"{\\\"addr\\\": \\\"${target.host}:${target.port}\\\"}\"]},"
	    " {\"id\": \"start\", \"do\": \"deploy\", \"after\": [\"provision\"]},"
	    " {\"id\": \"teardown\", \"do\": \"teardown\", \"when\": \"always\"}"
	    "]}";

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_PTR_NOT_NULL(f.d.provider);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "provision", RH_STEP_OK);
	ASSERT_STATUS(&f, "where", RH_STEP_OK);
	ASSERT_STATUS(&f, "start", RH_STEP_OK);
	ASSERT_STATUS(&f, "teardown", RH_STEP_OK);
	/* provision's outputs became ${target.*} for the later step */
	CU_ASSERT(json_is_string(json_object_get(res(&f, "provision")->outputs, "host")));
	CU_ASSERT(strncmp(json_string_value(json_object_get(res(&f, "where")->outputs, "addr")),
			  "127.0.0.1:", 10) == 0);
	CU_ASSERT(json_is_integer(json_object_get(json_object_get(f.d.scope, "target"), "port")));
	/* the stack started by deploy is gone after teardown */
	pid = json_object_get(res(&f, "start")->outputs, "pid");
	if (json_is_integer(pid))
		CU_ASSERT(kill((pid_t)json_integer_value(pid), 0) < 0 && errno == ESRCH);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_MET);
	CU_ASSERT_FALSE(f.d.final_phase_failed);
	fx_free(&f);
}

/* ---- a tiny HTTP server ------------------------------------------------------ */

struct http_server {
	int fd;
	int port;
	int stop[2];
	pthread_t tid;
	pthread_mutex_t lock;
	int fail_first; /* answer 503 to this many requests first */
	int status;	/* then this status */
	char body[512]; /* with this body */
	int requests;
	char last_request[2048];
};

static void http_handle(struct http_server *s, int c)
{
	char req[4096], resp[1024];
	size_t got = 0;
	int status;
	const char *body;
	char *hdr_end = NULL;

	while (got < sizeof(req) - 1) {
		struct pollfd p = {.fd = c, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 5000) <= 0)
			break;
		n = read(c, req + got, sizeof(req) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		req[got] = '\0';
		hdr_end = strstr(req, "\r\n\r\n");
		if (hdr_end) {
			const char *cl = strcasestr(req, "content-length:");
			size_t want = cl ? strtoul(cl + 15, NULL, 10) : 0;

			if (got >= (size_t)(hdr_end + 4 - req) + want)
				break;
		}
	}
	pthread_mutex_lock(&s->lock);
	s->requests++;
	got = strlen(req) < sizeof(s->last_request) - 1 ? strlen(req) : sizeof(s->last_request) - 1;
	memcpy(s->last_request, req, got);
	s->last_request[got] = '\0';
	if (s->requests <= s->fail_first) {
		status = 503;
		body = "{\"ready\": false}";
	} else {
		status = s->status;
		body = s->body;
	}
	snprintf(resp, sizeof(resp),
		 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		 "Connection: close\r\n\r\n%s",
		 status, strlen(body), body);
	pthread_mutex_unlock(&s->lock);
	if (write(c, resp, strlen(resp)) < 0)
		perror("write");
}

static void *http_thread(void *arg)
{
	struct http_server *s = arg;

	for (;;) {
		struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN},
				      {.fd = s->stop[0], .events = POLLIN}};
		int c;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!p[0].revents)
			continue;
		c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		http_handle(s, c);
		close(c);
	}
	return NULL;
}

static void http_start(struct http_server *s, int fail_first, int status, const char *body)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->fail_first = fail_first;
	s->status = status;
	snprintf(s->body, sizeof(s->body), "%s", body);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CU_ASSERT_FATAL(s->fd >= 0);
	CU_ASSERT_FATAL(bind(s->fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CU_ASSERT_FATAL(listen(s->fd, 16) == 0);
	CU_ASSERT_FATAL(getsockname(s->fd, (struct sockaddr *)&a, &len) == 0);
	s->port = ntohs(a.sin_port);
	CU_ASSERT_FATAL(pipe2(s->stop, O_CLOEXEC) == 0);
	CU_ASSERT_FATAL(pthread_create(&s->tid, NULL, http_thread, s) == 0);
}

static void http_stop(struct http_server *s)
{
	if (write(s->stop[1], "x", 1) < 0)
		perror("write");
	pthread_join(s->tid, NULL);
	close(s->fd);
	close(s->stop[0]);
	close(s->stop[1]);
	pthread_mutex_destroy(&s->lock);
}

static void test_engine__http_probe_polls_until_match(void)
{
	struct http_server srv;
	struct fx f;
	char rb[2048];

	http_start(&srv, 2, 200,
		   "{\"ready\": true, \"model\": \"tinylm\", \"n\": 3,"
		   " \"meta\": {\"sha\": \"abc\", \"x\": 1}}");
	snprintf(rb, sizeof(rb),
		 "{\"rehydra\": 1, \"name\": \"probe\", \"rto_target_s\": 30,"
		 " \"vars\": {\"port\": %d, \"token\": \"tok-123456\"}, \"steps\": ["
		 " {\"id\": \"answer\", \"do\": \"http_probe\","
		 "  \"url\": \"http://127.0.0.1:${vars.port}/health?k=1\", \"interval_s\": 0.05,"
		 "  \"headers\": {\"Authorization\": \"Bearer ${vars.token}\"},"
		 "  \"expect_status\": [200, 204],"
		 "  \"expect_json\": {\"ready\": \"true\", \"model\": \"tinylm\", \"n\": \"3\","
		 "                   \"meta\": {\"sha\": \"abc\"}},"
		 "  \"restores_service\": true, \"timeout_s\": 20},"
		 " {\"id\": \"post\", \"do\": \"http_probe\", \"after\": [\"answer\"],"
		 "  \"method\": \"POST\", \"url\": \"http://127.0.0.1:${vars.port}/v1\","
		 "  \"body\": {\"prompt\": \"hi\"}, \"timeout_s\": 20}"
		 "]}",
		 srv.port);
	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "answer", RH_STEP_OK);
	ASSERT_STATUS(&f, "post", RH_STEP_OK);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(res(&f, "answer")->outputs, "status")),
			200);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(res(&f, "answer")->outputs, "polls")),
			3);
	CU_ASSERT(json_is_number(json_object_get(res(&f, "answer")->outputs, "latency_ms")));
	CU_ASSERT(
	    json_number_value(json_object_get(res(&f, "answer")->outputs, "first_success_s")) > 0);
	CU_ASSERT(json_number_value(json_object_get(res(&f, "answer")->outputs,
						    "first_success_s")) <= f.d.rto_s + 0.01);
	CU_ASSERT_EQUAL(srv.requests, 4);
	/* the POST carried its JSON body and content type */
	CU_ASSERT(strncmp(srv.last_request, "POST /v1 ", 9) == 0);
	CU_ASSERT(strcasestr(srv.last_request, "content-type: application/json") != NULL);
	CU_ASSERT(strstr(srv.last_request, "{\"prompt\":\"hi\"}") != NULL);
	CU_ASSERT(f.d.restored);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_MET);
	CU_ASSERT_EQUAL(f.d.rto_step, (long)idx(&f, "answer"));
	fx_free(&f);
	http_stop(&srv);
}

static void test_engine__http_probe_mismatch_and_timeout(void)
{
	struct http_server srv, down;
	struct fx f;
	char rb[3072];
	const char *err;
	int closed_port;

	http_start(&srv, 1000000, 200, "{}"); /* always 503 */
	http_start(&down, 0, 200, "{\"model_sha256\": \"cd34\", \"ready\": true}");
	/* a port nobody listens on: start a server, stop it */
	{
		struct http_server tmp;

		http_start(&tmp, 0, 200, "{}");
		closed_port = tmp.port;
		http_stop(&tmp);
	}
	snprintf(rb, sizeof(rb),
		 "{\"rehydra\": 1, \"name\": \"probe2\", \"steps\": ["
		 " {\"id\": \"wrong\", \"do\": \"http_probe\", \"timeout_s\": 0.6,"
		 "  \"url\": \"http://127.0.0.1:%d/health\", \"interval_s\": 0.05,"
		 "  \"expect_json\": {\"ready\": true, \"model_sha256\": \"ab12\"}}"
		 "]}",
		 down.port);
	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "wrong", RH_STEP_TIMED_OUT);
	err = res(&f, "wrong")->error;
	CU_ASSERT_PTR_NOT_NULL_FATAL(err);
	CU_ASSERT(strstr(err, "model_sha256: expected \"ab12\", got \"cd34\"") != NULL);
	CU_ASSERT(strstr(err, "status 200") != NULL);
	CU_ASSERT(strncmp(err, "step 'wrong'", 12) != 0); /* id is beside it */
	CU_ASSERT(res(&f, "wrong")->end_s - res(&f, "wrong")->start_s >= 0.55);
	CU_ASSERT(res(&f, "wrong")->end_s - res(&f, "wrong")->start_s < 5.0);
	CU_ASSERT(json_object_size(res(&f, "wrong")->outputs) == 0);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_FAILED);
	fx_free(&f);

	/* final-phase steps are not cancelled by each other's failures, so the
	 * three run side by side to their own deadlines; the two that must see
	 * an answer before theirs get 2 s, as a sanitizer build on a busy
	 * machine may not finish one round trip within half a second */
	snprintf(rb, sizeof(rb),
		 "{\"rehydra\": 1, \"name\": \"probe3\", \"steps\": ["
		 " {\"id\": \"a\", \"do\": \"wait\", \"seconds\": 0.01},"
		 " {\"id\": \"unavailable\", \"do\": \"http_probe\", \"timeout_s\": 2,"
		 "  \"url\": \"http://user:pw@127.0.0.1:%d/health?token=s3cr3t\","
		 "  \"interval_s\": 0.05, \"when\": \"always\"},"
		 " {\"id\": \"refused\", \"do\": \"http_probe\", \"timeout_s\": 0.5,"
		 "  \"url\": \"http://127.0.0.1:%d/\", \"interval_s\": 0.05, \"when\": \"always\"},"
		 " {\"id\": \"notjson\", \"do\": \"http_probe\", \"timeout_s\": 2,"
		 "  \"url\": \"http://127.0.0.1:%d/\", \"interval_s\": 0.05, \"when\": \"always\","
		 "  \"expect_status\": 503, \"expect_json\": {\"ready\": \"true\"}}"
		 "]}",
		 srv.port, closed_port, srv.port);
	CU_ASSERT_EQUAL_FATAL(fx_load(&f, rb), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	ASSERT_STATUS(&f, "unavailable", RH_STEP_TIMED_OUT);
	err = res(&f, "unavailable")->error;
	CU_ASSERT_PTR_NOT_NULL_FATAL(err);
	CU_ASSERT(strstr(err, "status 503 (expected 2xx)") != NULL);
	/* neither the password nor the query string reach a message */
	CU_ASSERT(strstr(err, "pw@") == NULL);
	CU_ASSERT(strstr(err, "s3cr3t") == NULL);
	CU_ASSERT(strstr(err, "127.0.0.1") != NULL);
	ASSERT_STATUS(&f, "refused", RH_STEP_TIMED_OUT);
	CU_ASSERT(strcasestr(res(&f, "refused")->error, "connect") != NULL);
	/* the status matched (503 expected), the body did not: {"ready": false} */
	ASSERT_STATUS(&f, "notjson", RH_STEP_TIMED_OUT);
	CU_ASSERT(strstr(res(&f, "notjson")->error, "ready: expected \"true\", got false") != NULL);
	CU_ASSERT(f.d.final_phase_failed);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_MET);
	fx_free(&f);
	http_stop(&srv);
	http_stop(&down);
}

/* ---- verdicts ----------------------------------------------------------------- */

static void check_rto_consistency(struct fx *f)
{
	double sum = 0;

	CU_ASSERT_FATAL(f->d.restored);
	CU_ASSERT_FATAL(f->d.rto_step >= 0);
	CU_ASSERT_DOUBLE_EQUAL(f->d.rto_s, f->d.results[f->d.rto_step].end_s, 1e-9);
	CU_ASSERT_FATAL(f->d.n_critical > 0);
	CU_ASSERT_EQUAL(f->d.critical_path[f->d.n_critical - 1], (size_t)f->d.rto_step);
	for (size_t i = 0; i < f->d.n_critical; i++) {
		const struct rh_step_result *r = &f->d.results[f->d.critical_path[i]];

		sum += r->end_s - r->start_s;
		if (i > 0)
			CU_ASSERT(r->start_s >= f->d.results[f->d.critical_path[i - 1]].end_s);
	}
	CU_ASSERT(f->d.overhead_s >= 0);
	CU_ASSERT(f->d.overhead_s < f->d.rto_s);
	CU_ASSERT_DOUBLE_EQUAL(f->d.overhead_s, f->d.rto_s - sum, 1e-6);
}

static void test_engine__verdicts(void)
{
	struct fx f;
	const char *met =
	    "{\"rehydra\": 1, \"name\": \"met\", \"rto_target_s\": 30, \"steps\": ["
	    " {\"id\": \"fast\", \"do\": \"wait\", \"seconds\": 0.05},"
	    " {\"id\": \"slow\", \"do\": \"wait\", \"seconds\": 0.3},"
	    " {\"id\": \"up\", \"do\": \"exec\", \"argv\": [\"true\"],"
	    "  \"after\": [\"fast\", \"slow\"], \"restores_service\": true},"
	    " {\"id\": \"extra\", \"do\": \"wait\", \"seconds\": 0.2, \"after\": [\"up\"]}"
	    "]}";
	const char *missed =
	    "{\"rehydra\": 1, \"name\": \"missed\", \"rto_target_s\": 0.1, \"steps\": ["
	    " {\"id\": \"slow\", \"do\": \"wait\", \"seconds\": 0.3, \"restores_service\": true}"
	    "]}";
	const char *failed =
	    "{\"rehydra\": 1, \"name\": \"failed\", \"rto_target_s\": 30, \"steps\": ["
	    " {\"id\": \"a\", \"do\": \"wait\", \"seconds\": 0.05},"
	    " {\"id\": \"up\", \"do\": \"exec\", \"argv\": [\"false\"], \"after\": [\"a\"],"
	    "  \"restores_service\": true}"
	    "]}";
	const char *late_fail =
	    "{\"rehydra\": 1, \"name\": \"late\", \"steps\": ["
	    " {\"id\": \"up\", \"do\": \"exec\", \"argv\": [\"true\"], \"restores_service\": true},"
	    " {\"id\": \"check\", \"do\": \"exec\", \"argv\": [\"false\"], \"after\": [\"up\"]}"
	    "]}";

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, met), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_MET);
	CU_ASSERT_EQUAL(rh_verdict_exit_code(f.d.verdict), 0);
	CU_ASSERT_EQUAL(f.d.rto_step, (long)idx(&f, "up"));
	check_rto_consistency(&f);
	/* the critical path goes through the dependency that finished last */
	CU_ASSERT_EQUAL_FATAL(f.d.n_critical, 2);
	CU_ASSERT_EQUAL(f.d.critical_path[0], idx(&f, "slow"));
	CU_ASSERT(f.d.rto_s >= 0.29);
	CU_ASSERT(f.d.rto_s < res(&f, "extra")->end_s); /* rto ends at 'up', not later */
	fx_free(&f);

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, missed), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_MISSED);
	CU_ASSERT_EQUAL(rh_verdict_exit_code(f.d.verdict), 1);
	CU_ASSERT(f.d.rto_s >= 0.29);
	check_rto_consistency(&f);
	fx_free(&f);

	CU_ASSERT_EQUAL_FATAL(fx_load(&f, failed), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_FAILED);
	CU_ASSERT_EQUAL(rh_verdict_exit_code(f.d.verdict), 3);
	CU_ASSERT_FALSE(f.d.restored);
	CU_ASSERT_EQUAL(f.d.rto_step, -1);
	CU_ASSERT_EQUAL(f.d.n_critical, 0);
	fx_free(&f);

	/* restored, but a later main step failed: the drill failed; the RTO stands */
	CU_ASSERT_EQUAL_FATAL(fx_load(&f, late_fail), 0);
	CU_ASSERT_EQUAL_FATAL(fx_run(&f), 0);
	CU_ASSERT_EQUAL(f.d.verdict, RH_VERDICT_FAILED);
	CU_ASSERT(f.d.restored);
	check_rto_consistency(&f);
	fx_free(&f);
}

static void test_engine__names(void)
{
	CU_ASSERT_STRING_EQUAL(rh_step_status_name(RH_STEP_TIMED_OUT), "timed_out");
	CU_ASSERT_STRING_EQUAL(rh_step_status_name(RH_STEP_CANCELLED), "cancelled");
	CU_ASSERT_STRING_EQUAL(rh_verdict_name(RH_VERDICT_MISSED), "missed");
	CU_ASSERT_STRING_EQUAL(rh_verdict_name(RH_VERDICT_INTERRUPTED), "interrupted");
	CU_ASSERT_EQUAL(rh_verdict_exit_code(RH_VERDICT_INTERRUPTED), 130);
}

static void test_engine__init_fails_cleanly(void)
{
	struct fx f;
	struct rh_drill d;
	char *file;

	CU_ASSERT_EQUAL_FATAL(fx_load(&f,
				      "{\"rehydra\": 1, \"name\": \"x\", \"steps\": "
				      "[{\"id\": \"a\", \"do\": \"exec\", \"argv\": [\"true\"]}]}"),
			      0);
	/* a state dir under a regular file cannot be created */
	file = rh_test_path(f.dir, "file");
	rh_test_write_file(file, "x");
	CU_ASSERT(rh_drill_init(&d, f.rb, file) < 0);
	CU_ASSERT(strstr(rh_error_last(), file) != NULL);
	free(file);
	fx_free(&f);
}

RH_TEST_MAIN(
    "engine", {"test_engine__dependency_order", test_engine__dependency_order},
    {"test_engine__parallel_branches", test_engine__parallel_branches},
    {"test_engine__max_parallel_queues", test_engine__max_parallel_queues},
    {"test_engine__failure_skips_and_final_phase", test_engine__failure_skips_and_final_phase},
    {"test_engine__on_failure_skipped_on_success", test_engine__on_failure_skipped_on_success},
    {"test_engine__retries_with_backoff", test_engine__retries_with_backoff},
    {"test_engine__retry_then_success", test_engine__retry_then_success},
    {"test_engine__timeout_kills", test_engine__timeout_kills},
    {"test_engine__interrupt", test_engine__interrupt},
    {"test_engine__interrupt_from_signal_handler", test_engine__interrupt_from_signal_handler},
    {"test_engine__abort_cancels_final_phase", test_engine__abort_cancels_final_phase},
    {"test_engine__abandons_stuck_call", test_engine__abandons_stuck_call},
    {"test_engine__outputs_flow", test_engine__outputs_flow},
    {"test_engine__provider_steps", test_engine__provider_steps},
    {"test_engine__expansion_error_fails_step", test_engine__expansion_error_fails_step},
    {"test_engine__http_probe_polls_until_match", test_engine__http_probe_polls_until_match},
    {"test_engine__http_probe_mismatch_and_timeout", test_engine__http_probe_mismatch_and_timeout},
    {"test_engine__verdicts", test_engine__verdicts}, {"test_engine__names", test_engine__names},
    {"test_engine__init_fails_cleanly", test_engine__init_fails_cleanly})
