/*
 * test_parse_options.c - the command-line parser: option forms (long, =,
 * short, bundled, "--"), values and their checks, repeatable NAME=VALUE
 * lists, "did you mean" for unknown options and subcommands, subcommand
 * dispatch with a default, usage text generated from the table, and the
 * one map from library errors to exit codes.
 *
 * Output goes to memory streams (ctx->out, ctx->err), so every message is
 * checked as the user would read it.
 */
#include "testlib.h"

#include "error.h"
#include "exit.h"
#include "parse_options.h"
#include "suggest.h"

#include <stdbool.h>

struct cap {
	char *out_buf, *err_buf;
	size_t out_len, err_len;
	struct rh_cmd_ctx ctx;
};

static const struct rh_cmd leaf_cmd = {
    .name = "sub",
    .summary = "a leaf for the tests",
    .args = "ARG...",
    .epilogue = "exit status: 0 ok\n",
};

static void cap_open(struct cap *c, const struct rh_cmd *cmd, const char *path)
{
	memset(c, 0, sizeof(*c));
	c->ctx.cmd = cmd;
	snprintf(c->ctx.path, sizeof(c->ctx.path), "%s", path);
	c->ctx.out = open_memstream(&c->out_buf, &c->out_len);
	c->ctx.err = open_memstream(&c->err_buf, &c->err_len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c->ctx.out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c->ctx.err);
}

/* Flushes both streams so out_buf/err_buf hold everything so far. */
static void cap_flush(struct cap *c)
{
	fflush(c->ctx.out);
	fflush(c->ctx.err);
}

static void cap_close(struct cap *c)
{
	fclose(c->ctx.out);
	fclose(c->ctx.err);
	free(c->out_buf);
	free(c->err_buf);
}

struct opts {
	bool quiet, verbose, json;
	const char *out, *name;
	unsigned parallel;
	const char *var_items[3];
	struct rh_opt_list vars;
	const char *tag_items[4];
	struct rh_opt_list tags;
};

#define OPTIONS(o)                                                                                 \
	{                                                                                          \
		RH_OPT_BOOL('q', "quiet", &(o)->quiet, "say nothing"),                             \
		    RH_OPT_BOOL('v', NULL, &(o)->verbose, "say more"),                             \
		    RH_OPT_BOOL(0, "json", &(o)->json, "print JSON"),                              \
		    RH_OPT_STRING('o', "out", &(o)->out, "DIR", "where to write"),                 \
		    RH_OPT_UINT(0, "parallel", &(o)->parallel, "N", "in flight", 1, 64),           \
		    RH_OPT_GROUP("more"), RH_OPT_STRING(0, "name", &(o)->name, "NAME", "a name"),  \
		    RH_OPT_KV_LIST(0, "var", &(o)->vars, "NAME=VALUE", "override a var"),          \
		    RH_OPT_LIST(0, "tag", &(o)->tags, "TAG", "a tag"), RH_OPT_END(),               \
	}

static void opts_init(struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->vars = (struct rh_opt_list)RH_OPT_LIST_INIT(o->var_items);
	o->tags = (struct rh_opt_list)RH_OPT_LIST_INIT(o->tag_items);
}

/* Parses the NULL-terminated words (argv[0] = "sub") with the test table. */
static int parse(struct cap *c, struct opts *o, char **argv)
{
	const struct rh_option options[] = OPTIONS(o);
	int argc = 0;

	while (argv[argc])
		argc++;
	return rh_parse_options(&c->ctx, argc, argv, options);
}

static void test_parse_options__forms_and_positionals(void)
{
	char a0[] = "sub", a1[] = "first", a2[] = "--out", a3[] = "d1", a4[] = "-q",
	     a5[] = "--name=x=y", a6[] = "-", a7[] = "-oD2", a8[] = "--", a9[] = "--json",
	     a10[] = "last";
	char *argv[] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, NULL};
	struct opts o;
	struct cap c;
	int n;

	opts_init(&o);
	cap_open(&c, &leaf_cmd, "t sub");
	n = parse(&c, &o, argv);
	CU_ASSERT_EQUAL(n, 4);
	CU_ASSERT_STRING_EQUAL(argv[0], "first");
	CU_ASSERT_STRING_EQUAL(argv[1], "-");
	CU_ASSERT_STRING_EQUAL(argv[2], "--json"); /* after "--": an argument */
	CU_ASSERT_STRING_EQUAL(argv[3], "last");
	CU_ASSERT_PTR_NULL(argv[4]);
	CU_ASSERT_STRING_EQUAL(o.out, "D2"); /* the last one given wins */
	CU_ASSERT_STRING_EQUAL(o.name, "x=y");
	CU_ASSERT_TRUE(o.quiet);
	CU_ASSERT_FALSE(o.json);
	cap_flush(&c);
	CU_ASSERT_EQUAL(c.err_len, 0);
	CU_ASSERT_EQUAL(c.out_len, 0);
	cap_close(&c);
}

static void test_parse_options__bundled_flags_and_values(void)
{
	char a0[] = "sub", a1[] = "-qv", a2[] = "-qo", a3[] = "dir", a4[] = "x";
	char *argv[] = {a0, a1, a2, a3, a4, NULL};
	struct opts o;
	struct cap c;

	opts_init(&o);
	cap_open(&c, &leaf_cmd, "t sub");
	CU_ASSERT_EQUAL(parse(&c, &o, argv), 1);
	CU_ASSERT_TRUE(o.quiet);
	CU_ASSERT_TRUE(o.verbose);
	CU_ASSERT_STRING_EQUAL(o.out, "dir");
	CU_ASSERT_STRING_EQUAL(argv[0], "x");
	cap_close(&c);
}

/* Each bad command line: the result is RH_PARSE_ERROR and stderr says
 * `want`, names the command and points at its help. */
static void expect_error(const char *want, char **words)
{
	char *argv[16];
	char store[16][64];
	struct opts o;
	struct cap c;
	size_t i;

	for (i = 0; words[i] && i < 15; i++) {
		snprintf(store[i], sizeof(store[i]), "%s", words[i]);
		argv[i] = store[i];
	}
	argv[i] = NULL;
	opts_init(&o);
	cap_open(&c, &leaf_cmd, "t sub");
	CU_ASSERT_EQUAL(parse(&c, &o, argv), RH_PARSE_ERROR);
	cap_flush(&c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c.err_buf);
	if (!strstr(c.err_buf, want))
		fprintf(stderr, "\nexpected \"%s\" in:\n%s", want, c.err_buf);
	CU_ASSERT_PTR_NOT_NULL(strstr(c.err_buf, want));
	CU_ASSERT_PTR_NOT_NULL(strstr(c.err_buf, "rehydra t sub: "));
	CU_ASSERT_PTR_NOT_NULL(strstr(c.err_buf, "(see 'rehydra t sub --help')"));
	CU_ASSERT_EQUAL(c.out_len, 0);
	cap_close(&c);
}

static void test_parse_options__mistakes(void)
{
	expect_error("unknown option '--jsno': did you mean '--json'?",
		     (char *[]){"sub", "--jsno", NULL});
	expect_error("unknown option '--paralel': did you mean '--parallel'?",
		     (char *[]){"sub", "--paralel=3", NULL});
	expect_error("unknown option '--frobnicate'\n", (char *[]){"sub", "--frobnicate", NULL});
	expect_error("unknown option '-x'", (char *[]){"sub", "-qx", NULL});
	expect_error("--out needs DIR", (char *[]){"sub", "--out", NULL});
	expect_error("-o needs DIR", (char *[]){"sub", "-o", NULL});
	expect_error("--out needs DIR, not an empty value", (char *[]){"sub", "--out=", NULL});
	expect_error("--quiet takes no value", (char *[]){"sub", "--quiet=yes", NULL});
	expect_error("--parallel expects a number from 1 to 64, got '0'",
		     (char *[]){"sub", "--parallel", "0", NULL});
	expect_error("got '65'", (char *[]){"sub", "--parallel", "65", NULL});
	expect_error("got '-1'", (char *[]){"sub", "--parallel", "-1", NULL});
	expect_error("got '2x'", (char *[]){"sub", "--parallel", "2x", NULL});
	expect_error("got ' 2'", (char *[]){"sub", "--parallel", " 2", NULL});
	expect_error("--var expects NAME=VALUE, got 'novalue'",
		     (char *[]){"sub", "--var", "novalue", NULL});
	expect_error("--var expects NAME=VALUE, got '=v'", (char *[]){"sub", "--var", "=v", NULL});
	expect_error("more than 3 --var options", (char *[]){"sub", "--var", "a=1", "--var", "b=2",
							     "--var", "c=3", "--var", "d=4", NULL});
	expect_error("--tag needs TAG, not an empty value", (char *[]){"sub", "--tag=", NULL});
}

static void test_parse_options__lists_keep_order(void)
{
	char a0[] = "sub", a1[] = "--var", a2[] = "a=1", a3[] = "--var=b=", a4[] = "--tag",
	     a5[] = "t1", a6[] = "--tag", a7[] = "t2";
	char *argv[] = {a0, a1, a2, a3, a4, a5, a6, a7, NULL};
	struct opts o;
	struct cap c;

	opts_init(&o);
	cap_open(&c, &leaf_cmd, "t sub");
	CU_ASSERT_EQUAL(parse(&c, &o, argv), 0);
	CU_ASSERT_EQUAL_FATAL(o.vars.n, 2);
	CU_ASSERT_STRING_EQUAL(o.vars.items[0], "a=1");
	CU_ASSERT_STRING_EQUAL(o.vars.items[1], "b="); /* an empty value is a value */
	CU_ASSERT_EQUAL_FATAL(o.tags.n, 2);
	CU_ASSERT_STRING_EQUAL(o.tags.items[0], "t1");
	CU_ASSERT_STRING_EQUAL(o.tags.items[1], "t2");
	cap_close(&c);
}

static void test_parse_options__help_is_the_table(void)
{
	char a0[] = "sub", a1[] = "x", a2[] = "--help", a3[] = "--frob";
	char *argv[] = {a0, a1, a2, a3, NULL};
	static const char *const lines[] = {
	    "usage: rehydra t sub [options] ARG...\n",
	    "a leaf for the tests\n",
	    "options:\n",
	    "  -q, --quiet ",
	    "  -v ",
	    "  --json ",
	    "  -o, --out DIR ",
	    "  --parallel N ",
	    "more:\n",
	    "  --var NAME=VALUE  override a var (repeatable)\n",
	    "  --tag TAG ",
	    "exit status: 0 ok\n",
	};
	struct opts o;
	struct cap c;

	opts_init(&o);
	cap_open(&c, &leaf_cmd, "t sub");
	/* --help stops the parse: the unknown option after it is not reached */
	CU_ASSERT_EQUAL(parse(&c, &o, argv), RH_PARSE_HELP);
	CU_ASSERT_EQUAL(rh_parse_exit(RH_PARSE_HELP), RH_EXIT_MET);
	CU_ASSERT_EQUAL(rh_parse_exit(RH_PARSE_ERROR), RH_EXIT_USAGE);
	cap_flush(&c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c.out_buf);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (!strstr(c.out_buf, lines[i]))
			fprintf(stderr, "\nmissing \"%s\" in:\n%s", lines[i], c.out_buf);
		CU_ASSERT_PTR_NOT_NULL(strstr(c.out_buf, lines[i]));
	}
	/* "more:" comes after the options before it, in table order */
	CU_ASSERT_TRUE(strstr(c.out_buf, "--parallel") < strstr(c.out_buf, "more:"));
	CU_ASSERT_TRUE(strstr(c.out_buf, "more:") < strstr(c.out_buf, "--var"));
	/* no line is wider than 80 columns */
	for (const char *l = c.out_buf; *l;) {
		size_t w = strcspn(l, "\n");

		CU_ASSERT_TRUE(w <= 80);
		l += w + (l[w] ? 1 : 0);
	}
	CU_ASSERT_EQUAL(c.err_len, 0);
	cap_close(&c);
}

/* ---- subcommands --------------------------------------------------------- */

static int ran_alpha, ran_beta;
static char beta_args[128];

static int run_alpha(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	bool flag = false;
	const struct rh_option options[] = {
	    RH_OPT_BOOL(0, "alpha-only", &flag, "only alpha has it"),
	    RH_OPT_END(),
	};
	int n = rh_parse_options(ctx, argc, argv, options);

	if (n < 0)
		return rh_parse_exit(n);
	ran_alpha++;
	return flag ? 7 : 0;
}

static int run_beta(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	const char *name = NULL;
	const struct rh_option options[] = {
	    RH_OPT_STRING(0, "name", &name, "NAME", "beta's name"),
	    RH_OPT_END(),
	};
	int n = rh_parse_options(ctx, argc, argv, options);

	if (n < 0)
		return rh_parse_exit(n);
	ran_beta++;
	snprintf(beta_args, sizeof(beta_args), "%s %s %d %s", ctx->path, name ? name : "-", n,
		 n ? argv[0] : "-");
	return 0;
}

static const struct rh_cmd alpha = {
    .name = "alpha",
    .summary = "the first",
    .run = run_alpha,
};
static const struct rh_cmd beta = {
    .name = "beta",
    .args = "THING",
    .summary = "the second",
    .run = run_beta,
};
static const struct rh_cmd *const subs[] = {&alpha, &beta, NULL};
static const struct rh_cmd group = {
    .name = "group",
    .summary = "two subcommands",
    .subs = subs,
};
static const struct rh_cmd group_default = {
    .name = "dgroup",
    .summary = "two subcommands, alpha by default",
    .subs = subs,
    .default_sub = "alpha",
};
static const struct rh_cmd *const top_subs[] = {&group, &group_default, NULL};
static const struct rh_cmd top = {
    .name = "rehydra",
    .summary = "the program",
    .subs = top_subs,
};

/* Runs the words from the top; returns the exit code, output in c. */
static int run_words(struct cap *c, char **words)
{
	static char store[16][64];
	static char *argv[17];
	size_t i;
	int rc;

	for (i = 0; words[i] && i < 16; i++) {
		snprintf(store[i], sizeof(store[i]), "%s", words[i]);
		argv[i] = store[i];
	}
	argv[i] = NULL;
	cap_open(c, NULL, ""); /* a context without a command lends its streams */
	rc = rh_cmd_run(&top, &c->ctx, (int)i, argv);
	cap_flush(c);
	return rc;
}

static void test_parse_options__subcommands(void)
{
	struct cap c;

	ran_alpha = ran_beta = 0;
	CU_ASSERT_EQUAL(
	    run_words(&c, (char *[]){"rehydra", "group", "beta", "x", "--name", "n", NULL}), 0);
	CU_ASSERT_EQUAL(ran_beta, 1);
	CU_ASSERT_STRING_EQUAL(beta_args, "group beta n 1 x");
	cap_close(&c);

	/* options belong to their subcommand */
	CU_ASSERT_EQUAL(
	    run_words(&c, (char *[]){"rehydra", "group", "alpha", "--alpha-only", NULL}), 7);
	cap_close(&c);
	CU_ASSERT_EQUAL(run_words(&c, (char *[]){"rehydra", "group", "beta", "--alpha-only", NULL}),
			RH_EXIT_USAGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(c.err_buf, "rehydra group beta: unknown option "
						 "'--alpha-only'"));
	cap_close(&c);

	/* did you mean, for commands and subcommands */
	CU_ASSERT_EQUAL(run_words(&c, (char *[]){"rehydra", "grup", NULL}), RH_EXIT_USAGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(c.err_buf, "rehydra: 'grup' is not a command: did you mean "
						 "'group'?"));
	cap_close(&c);
	CU_ASSERT_EQUAL(run_words(&c, (char *[]){"rehydra", "group", "btea", NULL}), RH_EXIT_USAGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(c.err_buf, "rehydra group: 'btea' is not a subcommand: did "
						 "you mean 'beta'?"));
	cap_close(&c);
	CU_ASSERT_EQUAL(run_words(&c, (char *[]){"rehydra", "group", "zzzzzz", NULL}),
			RH_EXIT_USAGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(c.err_buf, "expected alpha or beta"));
	cap_close(&c);
	CU_ASSERT_EQUAL(run_words(&c, (char *[]){"rehydra", "group", NULL}), RH_EXIT_USAGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(c.err_buf, "no subcommand: alpha or beta"));
	cap_close(&c);

	/* a default subcommand takes the options when none is named */
	ran_alpha = 0;
	CU_ASSERT_EQUAL(run_words(&c, (char *[]){"rehydra", "dgroup", NULL}), 0);
	cap_close(&c);
	CU_ASSERT_EQUAL(run_words(&c, (char *[]){"rehydra", "dgroup", "--alpha-only", NULL}), 7);
	CU_ASSERT_EQUAL(ran_alpha, 2);
	cap_close(&c);
	CU_ASSERT_EQUAL(run_words(&c, (char *[]){"rehydra", "group", "--alpha-only", NULL}),
			RH_EXIT_USAGE);
	cap_close(&c);
}

static void test_parse_options__help_per_level(void)
{
	struct cap c;
	char *group_help, *beta_help;

	CU_ASSERT_EQUAL(run_words(&c, (char *[]){"rehydra", "group", "--help", NULL}), 0);
	group_help = strdup(c.out_buf ? c.out_buf : "");
	cap_close(&c);
	CU_ASSERT_EQUAL(run_words(&c, (char *[]){"rehydra", "group", "beta", "--help", NULL}), 0);
	beta_help = strdup(c.out_buf ? c.out_buf : "");
	cap_close(&c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(group_help);
	CU_ASSERT_PTR_NOT_NULL_FATAL(beta_help);
	CU_ASSERT_PTR_NOT_NULL(strstr(group_help, "usage: rehydra group <subcommand> [options]"));
	CU_ASSERT_PTR_NOT_NULL(strstr(group_help, "  alpha       the first\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(group_help, "  beta THING  the second\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(beta_help, "usage: rehydra group beta [options] THING\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(beta_help, "--name NAME"));
	CU_ASSERT_PTR_NULL(strstr(beta_help, "alpha"));
	free(group_help);
	free(beta_help);
}

static void test_parse_options__exit_codes(void)
{
	CU_ASSERT_EQUAL(rh_cli_exit_code(0, RH_CLI_INPUT), RH_EXIT_MET);
	CU_ASSERT_EQUAL(rh_cli_exit_code(RH_ECANCELLED, RH_CLI_INPUT), RH_EXIT_INTERRUPTED);
	CU_ASSERT_EQUAL(rh_cli_exit_code(RH_ECANCELLED, RH_CLI_RUN), RH_EXIT_INTERRUPTED);
	CU_ASSERT_EQUAL(rh_cli_exit_code(RH_EINVAL, RH_CLI_INPUT), RH_EXIT_USAGE);
	CU_ASSERT_EQUAL(rh_cli_exit_code(RH_ENOTFOUND, RH_CLI_INPUT), RH_EXIT_USAGE);
	CU_ASSERT_EQUAL(rh_cli_exit_code(RH_EUNSUPPORTED, RH_CLI_INPUT), RH_EXIT_USAGE);
	CU_ASSERT_EQUAL(rh_cli_exit_code(RH_EINVAL, RH_CLI_RUN), RH_EXIT_FAILED);
	CU_ASSERT_EQUAL(rh_cli_exit_code(RH_EIO, RH_CLI_INPUT), RH_EXIT_FAILED);
	CU_ASSERT_EQUAL(rh_cli_exit_code(RH_EVERIFY, RH_CLI_RUN), RH_EXIT_FAILED);
	CU_ASSERT_EQUAL(rh_cli_exit_code(RH_ENOMEM, RH_CLI_RUN), RH_EXIT_FAILED);
	CU_ASSERT_EQUAL(rh_cli_exit_code(RH_ERROR, RH_CLI_RUN), RH_EXIT_FAILED);
}

static void test_parse_options__suggest(void)
{
	static const char *const cmds[] = {"drill", "plan", "validate", "audit", NULL};

	CU_ASSERT_STRING_EQUAL(rh_suggest("dril", cmds), "drill");
	CU_ASSERT_STRING_EQUAL(rh_suggest("vaildate", cmds), "validate"); /* a transposition */
	CU_ASSERT_STRING_EQUAL(rh_suggest("PLAN", cmds), "plan");
	CU_ASSERT_PTR_NULL(rh_suggest("x", cmds));
	CU_ASSERT_PTR_NULL(rh_suggest("frobnicate", cmds));
}

RH_TEST_MAIN("parse_options",
	     {"test_parse_options__forms_and_positionals",
	      test_parse_options__forms_and_positionals},
	     {"test_parse_options__bundled_flags_and_values",
	      test_parse_options__bundled_flags_and_values},
	     {"test_parse_options__mistakes", test_parse_options__mistakes},
	     {"test_parse_options__lists_keep_order", test_parse_options__lists_keep_order},
	     {"test_parse_options__help_is_the_table", test_parse_options__help_is_the_table},
	     {"test_parse_options__subcommands", test_parse_options__subcommands},
	     {"test_parse_options__help_per_level", test_parse_options__help_per_level},
	     {"test_parse_options__exit_codes", test_parse_options__exit_codes},
	     {"test_parse_options__suggest", test_parse_options__suggest})
