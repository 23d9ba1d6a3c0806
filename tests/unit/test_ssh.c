/*
 * test_ssh.c - the SSH layer against a real sshd started by the test:
 * host key checks (unknown, accepted, changed), authentication failures,
 * exec with hostile arguments, exit status, output and deadlines.
 */
#include "cancel.h"
#include "clock.h"
#include "error.h"
#include "ssh.h"
#include "testlib.h"
#include "sshd_test.h"

#include <pwd.h>

static struct sshd_test srv;
static char *tmp;

static void setup(void)
{
	if (srv.dir)
		return;
	unsetenv("SSH_AUTH_SOCK"); /* the tests choose their keys themselves */
	tmp = rh_test_tmpdir();
	sshd_test_start(&srv, tmp);
}

static int connect_with(struct rh_ssh **s, const char *host, const char *known_hosts,
			const char *key, bool accept)
{
	struct rh_ssh_opts o = RH_SSH_OPTS_INIT;

	o.known_hosts = known_hosts;
	o.identity_file = key;
	o.accept_new_host_key = accept;
	o.no_agent = true;
	return rh_ssh_connect(s, host, srv.port, &o);
}

static void test_ssh__quote_argv(void)
{
	const char *argv[] = { "a b", "it's", "", "$x", NULL };
	char *q = NULL;

	CU_ASSERT_EQUAL(rh_ssh_quote_argv(&q, argv), 0);
	CU_ASSERT_STRING_EQUAL(q, "'a b' 'it'\\''s' '' '$x'");
	free(q);
	CU_ASSERT_EQUAL(rh_ssh_quote_argv(&q, (const char *const[]){ NULL }), RH_EINVAL);
}

static void test_ssh__connect_ok(void)
{
	struct rh_ssh *s = NULL;
	struct passwd pwd, *pw = NULL;
	char pwbuf[4096];
	char want[512];
	char fp[128];
	char pub[600];

	setup();
	CU_ASSERT_EQUAL_FATAL(connect_with(&s, "127.0.0.1", srv.known_hosts, srv.user_key, false),
			      0);
	/* No user given: the name comes from the passwd entry (getpwuid_r). */
	CU_ASSERT_EQUAL_FATAL(getpwuid_r(getuid(), &pwd, pwbuf, sizeof(pwbuf), &pw), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(pw);
	snprintf(want, sizeof(want), "%s@127.0.0.1:%u", pw->pw_name, srv.port);
	CU_ASSERT_STRING_EQUAL(rh_ssh_name(s), want);
	snprintf(pub, sizeof(pub), "%s.pub", srv.host_key);
	sshd_test_fingerprint(pub, fp, sizeof(fp));
	CU_ASSERT_STRING_EQUAL(rh_ssh_host_fingerprint(s), fp);
	CU_ASSERT_TRUE(rh_ssh_sftp_has_ext(s, "posix-rename@openssh.com"));
	CU_ASSERT_TRUE(rh_ssh_sftp_has_ext(s, "fsync@openssh.com"));
	CU_ASSERT_FALSE(rh_ssh_sftp_has_ext(s, "no-such@example.com"));
	rh_ssh_free(s);
}

static void test_ssh__ipv6(void)
{
	struct rh_ssh *s = NULL;
	int err;

	setup();
	err = connect_with(&s, "::1", srv.known_hosts, srv.user_key, false);
	if (err == RH_EIO && strstr(rh_error_last(), "cannot connect")) {
		fprintf(stderr, "(no IPv6 loopback here: skipped) ");
		return;
	}
	CU_ASSERT_EQUAL(err, 0);
	if (s)
		CU_ASSERT_PTR_NOT_NULL(strstr(rh_ssh_name(s), "[::1]"));
	rh_ssh_free(s);
}

static void test_ssh__unknown_host_key(void)
{
	struct rh_ssh *s = NULL;
	char kh[600];
	char fp[128];
	char pub[600];

	setup();
	snprintf(kh, sizeof(kh), "%s/kh_empty", tmp);
	rh_test_write_file(kh, "# nothing known yet\n");
	snprintf(pub, sizeof(pub), "%s.pub", srv.host_key);
	sshd_test_fingerprint(pub, fp, sizeof(fp));
	CU_ASSERT_EQUAL(connect_with(&s, "127.0.0.1", kh, srv.user_key, false), RH_EVERIFY);
	CU_ASSERT_PTR_NULL(s);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "unknown host key"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), fp));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "ssh-ed25519"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "accept"));
}

static void test_ssh__accept_new_host_key(void)
{
	struct rh_ssh *s = NULL;
	char kh[600];
	char line[1024];
	char want[64];
	FILE *f;

	setup();
	snprintf(kh, sizeof(kh), "%s/kh_new/known_hosts", tmp); /* the directory is created */
	CU_ASSERT_EQUAL(connect_with(&s, "127.0.0.1", kh, srv.user_key, true), 0);
	rh_ssh_free(s);
	s = NULL;
	f = fopen(kh, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof(line), f));
	fclose(f);
	snprintf(want, sizeof(want), "[127.0.0.1]:%u ssh-ed25519 ", srv.port);
	CU_ASSERT_EQUAL(strncmp(line, want, strlen(want)), 0);
	/* now known: no option needed */
	CU_ASSERT_EQUAL(connect_with(&s, "127.0.0.1", kh, srv.user_key, false), 0);
	rh_ssh_free(s);
}

static void test_ssh__changed_host_key(void)
{
	struct rh_ssh *s = NULL;
	char kh[600];
	char pub2[600];
	char pub[600];
	char fp[128];

	setup();
	/* known_hosts holds another key for this host on line 3 */
	snprintf(kh, sizeof(kh), "%s/kh_changed", tmp);
	snprintf(pub2, sizeof(pub2), "%s.pub", srv.host_key2);
	sshd_test_write_known_hosts(&srv, kh, pub2, "# a comment\n@cert-authority *.example "
				    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbogus\n");
	snprintf(pub, sizeof(pub), "%s.pub", srv.host_key);
	sshd_test_fingerprint(pub, fp, sizeof(fp));
	/* refused even when new keys are accepted: a changed key is not new */
	CU_ASSERT_EQUAL(connect_with(&s, "127.0.0.1", kh, srv.user_key, true), RH_EVERIFY);
	CU_ASSERT_PTR_NULL(s);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "has changed"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), fp));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "ssh-ed25519"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "line 3"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "ssh-keygen -R"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), kh));
}

static void test_ssh__wrong_user_key(void)
{
	struct rh_ssh *s = NULL;

	setup();
	CU_ASSERT_EQUAL(connect_with(&s, "127.0.0.1", srv.known_hosts, srv.user_key2, false),
			RH_ERROR);
	CU_ASSERT_PTR_NULL(s);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "permission denied"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), srv.user_key2));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "refused"));
	/* a key file that is not there is named as missing */
	CU_ASSERT_EQUAL(connect_with(&s, "127.0.0.1", srv.known_hosts, "/nonexistent/key",
				     false), RH_ERROR);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "/nonexistent/key (missing)"));
}

static void test_ssh__connect_refused_and_timeout(void)
{
	struct rh_ssh_opts o = RH_SSH_OPTS_INIT;
	struct rh_ssh *s = NULL;
	unsigned port = sshd_test_free_port();
	double t0;

	o.known_hosts = "/dev/null";
	o.no_agent = true;
	CU_ASSERT_EQUAL(rh_ssh_connect(&s, "127.0.0.1", port, &o), RH_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "cannot connect"));
	/* 192.0.2.0/24 is TEST-NET-1: never routed, so the connect hangs */
	o.connect_timeout_s = 0.5;
	t0 = rh_clock_mono();
	CU_ASSERT_TRUE(rh_ssh_connect(&s, "192.0.2.1", 22, &o) < 0);
	CU_ASSERT_TRUE(rh_clock_mono() - t0 < 5.0);
	CU_ASSERT_PTR_NULL(s);
}

static void test_ssh__exec_inert_arguments(void)
{
	const char *argv[] = { "printf", "%s|", "a b", "it's", "$(touch PWNED)", "`touch PWNED`",
			       "; touch PWNED", "x\ny", "${HOME}", "\\", "", NULL };
	struct rh_ssh_exec_result res;
	struct rh_ssh *s = NULL;
	char pwned[600];

	setup();
	CU_ASSERT_EQUAL_FATAL(connect_with(&s, "127.0.0.1", srv.known_hosts, srv.user_key, false),
			      0);
	CU_ASSERT_EQUAL(rh_ssh_exec(s, argv, NULL, &res), 0);
	CU_ASSERT_EQUAL(res.exit_status, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(res.out);
	CU_ASSERT_STRING_EQUAL(res.out, "a b|it's|$(touch PWNED)|`touch PWNED`|; touch PWNED|"
			       "x\ny|${HOME}|\\||");
	rh_ssh_exec_result_clear(&res);
	/* the command ran in the login directory: nothing named PWNED there */
	snprintf(pwned, sizeof(pwned), "%s/PWNED", getpwuid(getuid())->pw_dir);
	CU_ASSERT_NOT_EQUAL(access(pwned, F_OK), 0);
	rh_ssh_free(s);
}

static void test_ssh__exec_status_stdin_stderr(void)
{
	const char *fail[] = { "sh", "-c", "echo oops >&2; exit 3", NULL };
	const char *cat[] = { "cat", NULL };
	struct rh_ssh_exec_opts eo = RH_SSH_EXEC_OPTS_INIT;
	struct rh_ssh_exec_result res;
	struct rh_ssh *s = NULL;
	static char big[300000];

	setup();
	CU_ASSERT_EQUAL_FATAL(connect_with(&s, "127.0.0.1", srv.known_hosts, srv.user_key, false),
			      0);
	CU_ASSERT_EQUAL(rh_ssh_exec(s, fail, NULL, &res), 0);
	CU_ASSERT_EQUAL(res.exit_status, 3);
	CU_ASSERT_STRING_EQUAL(res.err ? res.err : "", "oops\n");
	rh_ssh_exec_result_clear(&res);
	/* stdin larger than the channel window, echoed back; output capped */
	memset(big, 'z', sizeof(big));
	eo.stdin_data = big;
	eo.stdin_len = sizeof(big);
	eo.max_output = 1000;
	CU_ASSERT_EQUAL(rh_ssh_exec(s, cat, &eo, &res), 0);
	CU_ASSERT_EQUAL(res.exit_status, 0);
	CU_ASSERT_EQUAL(res.out_len, 1000);
	CU_ASSERT_TRUE(res.truncated);
	rh_ssh_exec_result_clear(&res);
	rh_ssh_free(s);
}

static void test_ssh__exec_timeout_and_cancel(void)
{
	const char *slp[] = { "sleep", "30", NULL };
	const char *echo[] = { "echo", "still", "here", NULL };
	struct rh_ssh_exec_opts eo = RH_SSH_EXEC_OPTS_INIT;
	struct rh_ssh_exec_result res;
	struct rh_ssh_opts o = RH_SSH_OPTS_INIT;
	struct rh_cancel cancel;
	struct rh_ssh *s = NULL;
	double t0;

	setup();
	CU_ASSERT_EQUAL_FATAL(connect_with(&s, "127.0.0.1", srv.known_hosts, srv.user_key, false),
			      0);
	eo.timeout_s = 0.5;
	t0 = rh_clock_mono();
	CU_ASSERT_EQUAL(rh_ssh_exec(s, slp, &eo, &res), RH_ETIMEOUT);
	CU_ASSERT_TRUE(rh_clock_mono() - t0 < 5.0);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "did not finish"));
	rh_ssh_exec_result_clear(&res);
	rh_ssh_free(s);
	s = NULL;
	/* a cancel fired before the command stops it at once */
	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&cancel), 0);
	o.known_hosts = srv.known_hosts;
	o.identity_file = srv.user_key;
	o.no_agent = true;
	o.cancel = &cancel;
	CU_ASSERT_EQUAL_FATAL(rh_ssh_connect(&s, "127.0.0.1", srv.port, &o), 0);
	CU_ASSERT_EQUAL(rh_ssh_exec(s, echo, NULL, &res), 0);
	CU_ASSERT_STRING_EQUAL(res.out ? res.out : "", "still here\n");
	rh_ssh_exec_result_clear(&res);
	rh_cancel_fire(&cancel);
	t0 = rh_clock_mono();
	CU_ASSERT_EQUAL(rh_ssh_exec(s, slp, NULL, &res), RH_ECANCELLED);
	CU_ASSERT_TRUE(rh_clock_mono() - t0 < 5.0);
	rh_ssh_exec_result_clear(&res);
	rh_ssh_free(s);
	rh_cancel_clear(&cancel);
}

static void test_ssh__teardown(void)
{
	sshd_test_stop(&srv);
	rh_test_rm_rf(tmp);
	free(tmp);
	CU_PASS("stopped");
}

RH_TEST_MAIN("ssh",
	     { "quote_argv", test_ssh__quote_argv },
	     { "connect_ok", test_ssh__connect_ok },
	     { "ipv6", test_ssh__ipv6 },
	     { "unknown_host_key", test_ssh__unknown_host_key },
	     { "accept_new_host_key", test_ssh__accept_new_host_key },
	     { "changed_host_key", test_ssh__changed_host_key },
	     { "wrong_user_key", test_ssh__wrong_user_key },
	     { "connect_refused_and_timeout", test_ssh__connect_refused_and_timeout },
	     { "exec_inert_arguments", test_ssh__exec_inert_arguments },
	     { "exec_status_stdin_stderr", test_ssh__exec_status_stdin_stderr },
	     { "exec_timeout_and_cancel", test_ssh__exec_timeout_and_cancel },
	     { "teardown", test_ssh__teardown })
