/*
 * cmd_schedule.c - `rehydra schedule SCENARIO... --systemd DIR | --cron`:
 * turns each scenario's cadence_days into a schedule that runs
 * `rehydra rehearse` for it.
 *
 * A contingency that is rehearsed "when someone remembers" is not
 * rehearsed. Calendars cannot say "every 30 days", so the schedule fires at
 * least that often: every N days of the month from the 1st for up to 31
 * days, which never leaves a gap longer than N days (the steps restart on
 * the 1st), and every N/31 months beyond that. systemd timers get Persistent=true (a machine
 * that was off catches up at boot) and RandomizedDelaySec (many hosts do
 * not rehearse against the same registry in the same second); cron lines
 * get a minute spread by the scenario's name instead. Units are written to
 * a temporary name and renamed; nothing is enabled: installing a schedule
 * is the operator's decision.
 */
#include "cli.h"
#include "error.h"
#include "fsutil.h"
#include "scenario.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

struct sched_opts {
	const char *files[256];
	size_t n_files;
	const char *systemd_dir;
	bool cron;
	const char *state_dir;
	const char *rehydra;
	const char *user;
};

/* When, as day-of-month or month steps: `dom_step` > 0 means every
 * dom_step days from the 1st, else every `mon_step` months on the 1st. */
struct when {
	int dom_step;
	int mon_step;
	int minute;
};

static struct when when_of(double cadence_days, const char *name)
{
	struct when w = {0, 0, 0};
	int n = (int)cadence_days;
	unsigned h = 5381;

	for (const char *p = name; *p; p++)
		h = h * 33u + (unsigned char)*p;
	w.minute = (int)(h % 60u);
	if (n < 1)
		n = 1;
	if (n <= 31) {
		w.dom_step = n;
	} else {
		w.mon_step = n / 31;
		if (w.mon_step > 12)
			w.mon_step = 12;
	}
	return w;
}

/* "01,08,15,22,29": every `step` from 1 up to `last`. Written out rather
 * than as 01/7: systemd 252 skips the first day of a year with a repetition
 * in the day field (01/7 goes from Dec 29 to Jan 8), and a list means the
 * same to systemd and cron. */
static void steps_list(char *buf, size_t size, int step, int last, bool pad)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int d = 1; d <= last && off < size; d += step) {
		int w = snprintf(buf + off, size - off, pad ? "%s%02d" : "%s%d", off ? "," : "", d);

		if (w < 0)
			break;
		off += (size_t)w;
	}
}

static void on_calendar(char *buf, size_t size, const struct when *w)
{
	char list[128];

	if (w->dom_step == 1) {
		snprintf(buf, size, "*-*-* 03:00:00");
	} else if (w->dom_step > 1) {
		steps_list(list, sizeof(list), w->dom_step, 31, true);
		snprintf(buf, size, "*-*-%s 03:00:00", list);
	} else {
		steps_list(list, sizeof(list), w->mon_step, 12, true);
		snprintf(buf, size, "*-%s-01 03:00:00", list);
	}
}

static void cron_fields(char *buf, size_t size, const struct when *w)
{
	char list[128];

	if (w->dom_step == 1) {
		snprintf(buf, size, "%d 3 * * *", w->minute);
	} else if (w->dom_step > 1) {
		steps_list(list, sizeof(list), w->dom_step, 31, false);
		snprintf(buf, size, "%d 3 %s * *", w->minute, list);
	} else {
		steps_list(list, sizeof(list), w->mon_step, 12, false);
		snprintf(buf, size, "%d 3 1 %s *", w->minute, list);
	}
}

/* One ExecStart word, quoted for systemd: "..." with \ and " escaped, and
 * % and $ doubled (specifiers and variables would be expanded). */
static void systemd_word(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if (*s == '%' || *s == '$')
			fputc(*s, f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/* One word for the shell cron runs: '...' with ' as '\'' and % as \%
 * (cron turns an unescaped % into a newline). */
static void cron_word(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", f);
		else if (*s == '%')
			fputs("\\%", f);
		else
			fputc(*s, f);
	}
	fputc('\'', f);
}

static bool unit_safe(const char *name)
{
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

/* Writes `path` through a temporary name; `fill` writes the content. */
static int write_unit(const char *path, void (*fill)(FILE *, const void *), const void *arg)
{
	char tmp[PATH_MAX + 16];
	FILE *f;
	int rc = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return rh_error_set_errno(RH_EIO, errno, "cannot write %s", tmp);
	fill(f, arg);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		rc = rh_error_set_errno(RH_EIO, errno, "cannot write %s", tmp);
	if (fclose(f) != 0 && rc == 0)
		rc = rh_error_set_errno(RH_EIO, errno, "cannot write %s", tmp);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = rh_error_set_errno(RH_EIO, errno, "cannot rename %s to %s", tmp, path);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

struct unit_args {
	const struct rh_scenario *s;
	const char *scenario_abs;
	const struct sched_opts *o;
	const struct when *w;
};

static void fill_service(FILE *f, const void *arg)
{
	const struct unit_args *a = arg;

	fprintf(f, "# written by 'rehydra schedule' from %s\n", a->scenario_abs);
	fprintf(f, "[Unit]\nDescription=rehydra rehearsal of scenario %s\n", a->s->name);
	fprintf(f, "Wants=network-online.target\nAfter=network-online.target\n\n");
	fprintf(f, "[Service]\nType=oneshot\n");
	if (a->o->user)
		fprintf(f, "User=%s\n", a->o->user);
	fprintf(f, "ExecStart=");
	systemd_word(f, a->o->rehydra);
	fprintf(f, " rehearse --quiet");
	if (a->o->state_dir) {
		fprintf(f, " --state-dir ");
		systemd_word(f, a->o->state_dir);
	}
	fputc(' ', f);
	systemd_word(f, a->scenario_abs);
	/* 1 (target missed) is a finding recorded in the journal, not a
	 * failure of the unit; 2, 3, 130 are. */
	fprintf(f, "\nSuccessExitStatus=1\n");
}

static void fill_timer(FILE *f, const void *arg)
{
	const struct unit_args *a = arg;
	char cal[256];

	on_calendar(cal, sizeof(cal), a->w);
	fprintf(f, "# written by 'rehydra schedule' from %s (cadence_days %g)\n", a->scenario_abs,
		a->s->cadence_days);
	fprintf(f,
		"[Unit]\nDescription=rehydra rehearsal of scenario %s, at least every %g "
		"days\n\n",
		a->s->name, a->s->cadence_days);
	fprintf(f, "[Timer]\nOnCalendar=%s\nPersistent=true\nRandomizedDelaySec=1h\n\n", cal);
	fprintf(f, "[Install]\nWantedBy=timers.target\n");
}

static int schedule_one(const struct sched_opts *o, const struct rh_policy *p, const char *file)
{
	struct rh_scenario *s = NULL;
	struct unit_args a = {.o = o};
	struct when w;
	char path[PATH_MAX + 64];
	char *abs = NULL;
	int rc;

	rc = rh_cli_load_scenario(&s, file, p);
	if (rc)
		return rc;
	rc = RH_EXIT_USAGE;
	if (s->cadence_days <= 0) {
		fprintf(stderr,
			"rehydra schedule: %s: scenario %s has no cadence_days: add "
			"\"cadence_days\": N to say how often it must be rehearsed\n",
			file, s->name);
		goto done;
	}
	if (!unit_safe(s->name)) {
		fprintf(stderr, "rehydra schedule: %s: the name %s cannot name a unit\n", file,
			s->name);
		goto done;
	}
	abs = realpath(file, NULL);
	if (!abs) {
		fprintf(stderr, "rehydra schedule: cannot resolve %s: %s\n", file, strerror(errno));
		goto done;
	}
	w = when_of(s->cadence_days, s->name);
	a.s = s;
	a.scenario_abs = abs;
	a.w = &w;
	if (o->cron) {
		char fields[256];

		cron_fields(fields, sizeof(fields), &w);
		printf("# rehydra rehearsal of scenario %s, at least every %g days\n", s->name,
		       s->cadence_days);
		printf("%s ", fields);
		cron_word(stdout, o->rehydra);
		printf(" rehearse --quiet");
		if (o->state_dir) {
			printf(" --state-dir ");
			cron_word(stdout, o->state_dir);
		}
		putchar(' ');
		cron_word(stdout, abs);
		putchar('\n');
	} else {
		snprintf(path, sizeof(path), "%s/rehydra-rehearse-%s.service", o->systemd_dir,
			 s->name);
		if (write_unit(path, fill_service, &a) < 0)
			goto fail;
		printf("%s\n", path);
		snprintf(path, sizeof(path), "%s/rehydra-rehearse-%s.timer", o->systemd_dir,
			 s->name);
		if (write_unit(path, fill_timer, &a) < 0)
			goto fail;
		printf("%s\n", path);
	}
	rc = 0;
	goto done;
fail:
	fprintf(stderr, "rehydra schedule: %s\n", rh_error_last());
	rc = RH_EXIT_FAILED;
done:
	free(abs);
	rh_scenario_free(s);
	return rc;
}

static int cmd_schedule_run(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct sched_opts o = {0};
	const struct rh_option options[] = {
	    RH_OPT_STRING(0, "systemd", &o.systemd_dir, "DIR",
			  "write rehydra-rehearse-NAME.service and .timer to DIR (OnCalendar, "
			  "Persistent=true, RandomizedDelaySec=1h); they are not installed or "
			  "enabled"),
	    RH_OPT_BOOL(
		0, "cron", &o.cron,
		"print crontab lines instead (the minute is spread by the scenario's name)"),
	    RH_OPT_STRING(0, "state-dir", &o.state_dir, "DIR",
			  "the state directory the rehearsals use (default: the running user's)"),
	    RH_OPT_STRING(0, "rehydra", &o.rehydra, "PATH",
			  "the binary to run (default: this one)"),
	    RH_OPT_STRING(0, "user", &o.user, "NAME", "User= for the service"),
	    RH_OPT_END(),
	};
	struct rh_policy *p = NULL;
	char self[PATH_MAX];
	char *state_abs = NULL;
	ssize_t len;
	int rc = 0, n;

	n = rh_parse_options(ctx, argc, argv, options);
	if (n < 0)
		return rh_parse_exit(n);
	if (n == 0)
		return rh_cli_usage_error(ctx, "no scenario given");
	if (n > 256)
		return rh_cli_usage_error(ctx, "more than 256 scenarios");
	for (int i = 0; i < n; i++)
		o.files[o.n_files++] = argv[i];
	if (!o.cron == !o.systemd_dir)
		return rh_cli_usage_error(ctx, "give one of --systemd DIR or --cron");
	if (o.user && !unit_safe(o.user))
		return rh_cli_usage_error(ctx, "--user needs a user name");
	if (o.systemd_dir && rh_fs_mkdir_p(o.systemd_dir) < 0) {
		fprintf(stderr, "rehydra schedule: %s\n", rh_error_last());
		return RH_EXIT_USAGE;
	}
	if (!o.rehydra) {
		len = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (len <= 0)
			return rh_cli_usage_error(ctx,
						  "cannot find this binary: pass --rehydra PATH");
		self[len] = '\0';
		o.rehydra = self;
	}
	if (o.rehydra[0] != '/')
		return rh_cli_usage_error(ctx, "--rehydra needs an absolute path");
	if (o.state_dir) {
		if (rh_fs_mkdir_p(o.state_dir) < 0 || !(state_abs = realpath(o.state_dir, NULL))) {
			fprintf(stderr, "rehydra schedule: cannot use the state directory %s\n",
				o.state_dir);
			return RH_EXIT_USAGE;
		}
		o.state_dir = state_abs;
	}
	rc = rh_cli_load_policy(&p, "schedule");
	for (size_t i = 0; i < o.n_files && rc == 0; i++)
		rc = schedule_one(&o, p, o.files[i]);
	if (rc == 0 && o.systemd_dir)
		fprintf(stderr,
			"rehydra schedule: install with: cp %s/rehydra-rehearse-*.{service,"
			"timer} /etc/systemd/system/ && systemctl daemon-reload && systemctl "
			"enable --now rehydra-rehearse-NAME.timer\n",
			o.systemd_dir);
	rh_policy_free(p);
	free(state_abs);
	return rc;
}

const struct rh_cmd rh_cmd_schedule = {
    .name = "schedule",
    .summary = "Schedule rehearsals: systemd timers or crontab lines from cadence_days",
    .args = "SCENARIO... (--systemd DIR | --cron)",
    .description =
	"For each scenario, a schedule that runs 'rehydra rehearse SCENARIO' at least every\n"
	"cadence_days days: up to 31 days as days of the month from the 1st (no gap is\n"
	"longer than the cadence), longer ones as months, at 03:00. 'rehydra rehearse\n"
	"--due DIR' is the alternative for one timer or CI job that drives every scenario\n"
	"of a directory.\n",
    .run = cmd_schedule_run,
};
