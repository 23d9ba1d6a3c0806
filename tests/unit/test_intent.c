/*
 * test_intent.c - the drill's intent file (format, parse, life cycle) and
 * the recovery of a drill whose rehydra is gone: it stops only the process
 * groups it can prove are the drill's, removes the workspace, journals the
 * drill as abandoned and removes the intent.
 *
 * The "killed rehydra" is a forked child that exited at once: its pid is
 * dead, which is what the next command sees after a SIGKILL. The drill's
 * processes are real `sleep` children started through rh_spawn with the
 * drill's marker; a second, unmarked `sleep` recorded with a wrong start
 * time stands for a stranger that reuses a recorded pid.
 */
#include "clock.h"
#include "error.h"
#include "intent.h"
#include "journal.h"
#include "pgroup.h"
#include "process.h"
#include "testlib.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const std_env[] = {"PATH=/usr/bin:/bin", NULL};

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf)
		buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_intent__roundtrip(void)
{
	struct rh_intent_group groups[2] = {{1234, 987654321ULL}, {99, 5}};
	struct rh_intent_info in = {0}, out;
	char *text;

	in.drill_id = "20261203T000000Z-x-abcdef";
	in.drill_dir = "/s/drills/20261203T000000Z-x-abcdef";
	in.started_at = "2026-12-03T00:00:00.000Z";
	in.marker = "REHYDRA_DRILL_ID=20261203T000000Z-x-abcdef";
	in.boot_id = "b00t";
	in.workspace = "/s/workspaces/x";
	in.pid = 4321;
	in.pid_start = 123456789012ULL;
	in.groups = groups;
	in.n_groups = 2;
	in.record = json_pack("{s:s}", "verdict", "met");
	text = rh_intent_format(&in);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_EQUAL_FATAL(rh_intent_parse(&out, text, strlen(text)), 0);
	CU_ASSERT_STRING_EQUAL(out.drill_id, in.drill_id);
	CU_ASSERT_STRING_EQUAL(out.drill_dir, in.drill_dir);
	CU_ASSERT_STRING_EQUAL(out.marker, in.marker);
	CU_ASSERT_STRING_EQUAL(out.boot_id, "b00t");
	CU_ASSERT_STRING_EQUAL(out.workspace, in.workspace);
	CU_ASSERT_PTR_NULL(out.terraform_dir);
	CU_ASSERT_EQUAL(out.pid, 4321);
	CU_ASSERT_EQUAL(out.pid_start, 123456789012ULL);
	CU_ASSERT_EQUAL_FATAL(out.n_groups, 2);
	CU_ASSERT_EQUAL(out.groups[0].pgid, 1234);
	CU_ASSERT_EQUAL(out.groups[0].start, 987654321ULL);
	CU_ASSERT_EQUAL(out.groups[1].pgid, 99);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(out.record, "verdict")), "met");
	rh_intent_info_clear(&out);
	json_decref(in.record);
	free(text);
}

static void test_intent__parse_rejects(void)
{
	static const struct {
		const char *text, *why;
	} cases[] = {
	    {"not json", "not a JSON object"},
	    {"[1]", "not a JSON object"},
	    {"{\"rehydra_intent\": 2, \"drill_id\": \"a\", \"pid\": 5, \"pid_start\": 1, "
	     "\"process_groups\": []}",
	     "format 2"},
	    {"{\"rehydra_intent\": 1, \"pid\": 5, \"pid_start\": 1, \"process_groups\": []}",
	     "\"drill_id\" is missing"},
	    {"{\"rehydra_intent\": 1, \"drill_id\": \"../x\", \"pid\": 5, \"pid_start\": 1, "
	     "\"process_groups\": []}",
	     "bad drill id"},
	    {"{\"rehydra_intent\": 1, \"drill_id\": \"a\", \"pid\": 0, \"pid_start\": 1, "
	     "\"process_groups\": []}",
	     "\"pid\""},
	    {"{\"rehydra_intent\": 1, \"drill_id\": \"a\", \"pid\": 5, \"pid_start\": 1, "
	     "\"process_groups\": {}}",
	     "\"process_groups\" must be an array"},
	    {"{\"rehydra_intent\": 1, \"drill_id\": \"a\", \"pid\": 5, \"pid_start\": 1, "
	     "\"process_groups\": [{\"pgid\": 1, \"start\": 0}]}",
	     "process_groups[0]"},
	    {"{\"rehydra_intent\": 1, \"drill_id\": \"a\", \"pid\": 5, \"pid_start\": 1, "
	     "\"process_groups\": [{\"pgid\": 7}]}",
	     "\"start\""},
	    {"{\"rehydra_intent\": 1, \"drill_id\": \"a\", \"pid\": 5, \"pid_start\": 1, "
	     "\"process_groups\": [], \"workspace\": 3}",
	     "\"workspace\""},
	    {"{\"rehydra_intent\": 1, \"drill_id\": \"a\", \"pid\": 5, \"pid_start\": 1, "
	     "\"process_groups\": [], \"record\": \"x\"}",
	     "\"record\""},
	    {"{\"rehydra_intent\": 1, \"drill_id\": \"a\", \"drill_id\": \"b\", \"pid\": 5, "
	     "\"pid_start\": 1, \"process_groups\": []}",
	     "not a JSON object"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rh_intent_info out;
		int rc = rh_intent_parse(&out, cases[i].text, strlen(cases[i].text));

		CU_ASSERT_EQUAL(rc, RH_EINVAL);
		if (rc != RH_EINVAL || !strstr(rh_error_last(), cases[i].why))
			fprintf(stderr, "case %zu: rc %d, message \"%s\", wanted \"%s\"\n", i, rc,
				rh_error_last(), cases[i].why);
		CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), cases[i].why));
		CU_ASSERT_PTR_NULL(out.drill_id);
	}
}

static void note_group(void *user, pid_t pgid)
{
	CU_ASSERT_EQUAL(rh_intent_note_group(user, pgid), 0);
}

static void test_intent__lifecycle(void)
{
	char *dir = rh_test_tmpdir();
	char *path = NULL, *text;
	const char *argv[] = {"true", NULL};
	struct rh_spawn_opts so = {.argv = argv, .envp = std_env};
	struct rh_intent *in = NULL;
	struct rh_intent_info info;
	struct rh_child c;

	CU_ASSERT_EQUAL_FATAL(rh_intent_begin(&in, dir, "d1", "/x/drills/d1", NULL, NULL), 0);
	CU_ASSERT_STRING_EQUAL(rh_intent_marker(in), "REHYDRA_DRILL_ID=d1");
	CU_ASSERT(asprintf(&path, "%s/intents/d1.json", dir) > 0);
	text = slurp(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_EQUAL_FATAL(rh_intent_parse(&info, text, strlen(text)), 0);
	CU_ASSERT_EQUAL(info.pid, getpid());
	CU_ASSERT_EQUAL(info.n_groups, 0);
	CU_ASSERT_STRING_EQUAL(info.terraform_dir, "/x/drills/d1/terraform");
	/* the writer is alive: not stale; the same pid with another start is */
	CU_ASSERT_FALSE(rh_intent_is_stale(&info));
	info.pid_start++;
	CU_ASSERT(rh_intent_is_stale(&info));
	rh_intent_info_clear(&info);
	free(text);

	/* a watched spawn lands in the file at once */
	CU_ASSERT_EQUAL(rh_spawn_watch_set(rh_intent_marker(in), note_group, in), 0);
	CU_ASSERT_EQUAL_FATAL(rh_spawn(&c, &so), 0);
	rh_spawn_watch_set(NULL, NULL, NULL);
	CU_ASSERT_EQUAL(rh_intent_note_path(in, "workspace", "/x/ws"), 0);
	CU_ASSERT_EQUAL(rh_intent_note_path(in, "nonsense", "/x"), RH_EINVAL);
	text = slurp(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_EQUAL_FATAL(rh_intent_parse(&info, text, strlen(text)), 0);
	CU_ASSERT_EQUAL_FATAL(info.n_groups, 1);
	CU_ASSERT_EQUAL(info.groups[0].pgid, c.pid);
	CU_ASSERT(info.groups[0].start > 0);
	CU_ASSERT_STRING_EQUAL(info.workspace, "/x/ws");
	rh_intent_info_clear(&info);
	free(text);
	rh_child_wait(&c, rh_clock_mono() + 10, NULL);
	rh_child_release(&c);

	CU_ASSERT_EQUAL(rh_intent_finish(in), 0);
	CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0);
	free(path);
	rh_test_rm_rf(dir);
	free(dir);
}

struct seen {
	unsigned calls, stopped, killed;
	bool journaled, workspace;
};

static void on_recovered(void *user, const struct rh_intent_recovery *r)
{
	struct seen *s = user;

	s->calls++;
	s->stopped += r->groups_stopped;
	s->killed += r->processes_killed;
	s->journaled = r->journaled;
	s->workspace = r->workspace != NULL;
	if (r->problem)
		fprintf(stderr, "recovery problem: %s\n", r->problem);
}

static int last_verdict(const struct rh_journal_entry *e, void *user)
{
	if (e->record)
		snprintf(user, 32, "%s", json_string_value(json_object_get(e->record, "verdict")));
	return 0;
}

static void test_intent__recover(void)
{
	char *dir = rh_test_tmpdir();
	char *ws = rh_test_path(dir, "dead"), *idir = rh_test_path(dir, "intents");
	char *ipath = rh_test_path(idir, "dead.json"), *text;
	const char *argv[] = {"sleep", "30", NULL};
	struct rh_spawn_opts so = {.argv = argv, .envp = std_env};
	struct rh_child mine, stranger;
	struct rh_intent_group groups[2];
	struct rh_intent_info info = {0};
	struct rh_journal_problem prob;
	struct rh_journal *j = NULL;
	struct seen seen = {0};
	char verdict[32] = "";
	unsigned n = 0;
	pid_t dead;
	int status;

	/* the killed rehydra: a pid that no longer runs */
	dead = fork();
	if (dead == 0)
		_exit(0);
	CU_ASSERT_FATAL(dead > 0);
	waitpid(dead, &status, 0);

	CU_ASSERT_EQUAL(rh_spawn_watch_set("REHYDRA_DRILL_ID=dead", NULL, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_spawn(&mine, &so), 0);
	rh_spawn_watch_set(NULL, NULL, NULL);
	CU_ASSERT_EQUAL_FATAL(rh_spawn(&stranger, &so), 0);
	CU_ASSERT_EQUAL(rh_proc_count_marked("REHYDRA_DRILL_ID=dead"), 1);
	CU_ASSERT_EQUAL_FATAL(rh_proc_start_ticks(mine.pid, &groups[0].start), 0);
	CU_ASSERT_EQUAL_FATAL(rh_proc_start_ticks(stranger.pid, &groups[1].start), 0);
	groups[0].pgid = mine.pid;
	/* recorded with another start time and no marker: a reused pid */
	groups[1].pgid = stranger.pid;
	groups[1].start += 1;

	CU_ASSERT_EQUAL_FATAL(mkdir(ws, 0700), 0);
	{
		char *f = rh_test_path(ws, "model");

		rh_test_write_file(f, "weights");
		free(f);
	}
	CU_ASSERT_EQUAL_FATAL(mkdir(idir, 0700), 0);
	info.drill_id = "dead";
	info.marker = "REHYDRA_DRILL_ID=dead";
	info.workspace = ws;
	info.pid = dead;
	info.pid_start = 1;
	info.groups = groups;
	info.n_groups = 2;
	info.record = json_pack("{s:i, s:s, s:{s:s}, s:n, s:s}", "rehydra", 1, "drill_id", "dead",
				"runbook", "name", "crash", "target", "verdict", "failed");
	text = rh_intent_format(&info);
	json_decref(info.record);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	rh_test_write_file(ipath, text);
	free(text);

	CU_ASSERT_EQUAL(rh_intent_recover(dir, 10, on_recovered, &seen, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_EQUAL(seen.calls, 1);
	CU_ASSERT_EQUAL(seen.stopped, 1);
	CU_ASSERT_EQUAL(seen.killed, 1);
	CU_ASSERT(seen.journaled);
	CU_ASSERT(seen.workspace);
	/* ours died by SIGKILL; the stranger runs on */
	CU_ASSERT_EQUAL(rh_child_wait(&mine, rh_clock_mono() + 5, NULL), 0);
	CU_ASSERT(WIFSIGNALED(mine.status) && WTERMSIG(mine.status) == SIGKILL);
	CU_ASSERT(rh_child_running(&stranger));
	CU_ASSERT_NOT_EQUAL(access(ws, F_OK), 0);
	CU_ASSERT_NOT_EQUAL(access(ipath, F_OK), 0);
	CU_ASSERT_EQUAL(rh_proc_count_marked("REHYDRA_DRILL_ID=dead"), 0);

	CU_ASSERT_EQUAL_FATAL(rh_journal_open(&j, dir), 0);
	CU_ASSERT_EQUAL(rh_journal_verify(j, &prob, NULL), 0);
	CU_ASSERT_EQUAL(rh_journal_foreach(j, last_verdict, verdict), 0);
	CU_ASSERT_STRING_EQUAL(verdict, "abandoned");
	rh_journal_close(j);

	/* nothing left to recover: a second pass does nothing */
	seen.calls = 0;
	CU_ASSERT_EQUAL(rh_intent_recover(dir, 10, on_recovered, &seen, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(seen.calls, 0);

	rh_child_stop(&stranger, 0);
	rh_child_release(&stranger);
	rh_child_release(&mine);
	rh_test_rm_rf(dir);
	free(ws);
	free(idir);
	free(ipath);
	free(dir);
}

/* Killed after writing its record, before the journal entry: that record,
 * not an abandoned one, is journaled, and it is left as it was. */
static void test_intent__own_record(void)
{
	char *dir = rh_test_tmpdir();
	char *ddir = rh_test_path(dir, "drill"), *idir = rh_test_path(dir, "intents");
	char *ipath = rh_test_path(idir, "done.json"), *rpath = rh_test_path(ddir, "record.json");
	struct rh_intent_info info = {0};
	struct rh_journal *j = NULL;
	struct seen seen = {0};
	char verdict[32] = "", *text;
	unsigned n = 0;
	pid_t dead;
	int status;

	dead = fork();
	if (dead == 0)
		_exit(0);
	CU_ASSERT_FATAL(dead > 0);
	waitpid(dead, &status, 0);
	CU_ASSERT_EQUAL_FATAL(mkdir(ddir, 0700), 0);
	CU_ASSERT_EQUAL_FATAL(mkdir(idir, 0700), 0);
	rh_test_write_file(rpath, "{\"rehydra\": 1, \"drill_id\": \"done\", \"verdict\": \"met\", "
				  "\"runbook\": {\"name\": \"r\"}}");
	info.drill_id = "done";
	info.drill_dir = ddir;
	info.pid = dead;
	info.pid_start = 1;
	text = rh_intent_format(&info);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	rh_test_write_file(ipath, text);
	free(text);

	CU_ASSERT_EQUAL(rh_intent_recover(dir, 10, on_recovered, &seen, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT(seen.journaled);
	CU_ASSERT_EQUAL_FATAL(rh_journal_open(&j, dir), 0);
	CU_ASSERT_EQUAL(rh_journal_foreach(j, last_verdict, verdict), 0);
	CU_ASSERT_STRING_EQUAL(verdict, "met");
	rh_journal_close(j);
	text = slurp(rpath);
	CU_ASSERT(text && strstr(text, "\"met\"") != NULL);
	free(text);

	rh_test_rm_rf(dir);
	free(ddir);
	free(idir);
	free(ipath);
	free(rpath);
	free(dir);
}

RH_TEST_MAIN("intent", {"test_intent__roundtrip", test_intent__roundtrip},
	     {"test_intent__parse_rejects", test_intent__parse_rejects},
	     {"test_intent__lifecycle", test_intent__lifecycle},
	     {"test_intent__recover", test_intent__recover},
	     {"test_intent__own_record", test_intent__own_record})
