/*
 * parse_options.h - the one command-line parser every command and
 * subcommand uses (git's parse-options is the model).
 *
 * A command is a `struct rh_cmd`: a name, a one-line summary, the
 * positional arguments it takes, a description, and either a `run`
 * function (a leaf) or a table of subcommands. `rh_cmd_run()` walks the
 * subcommand tables ("audit" -> "report"), suggesting the closest name for
 * a mistyped one, and calls the leaf's `run`, which declares its options in
 * a `struct rh_option` table and hands argv to `rh_parse_options()`.
 *
 * The usage text (`--help`, `rehydra help CMD`) is generated from the same
 * tables, so it cannot drift from what is parsed: `rehydra audit report
 * --help` lists exactly the options `audit report` accepts.
 *
 * Order of calls in a leaf:
 *     argc = rh_parse_options(ctx, argc, argv, options);
 *     if (argc < 0)
 *             return rh_parse_exit(argc);   (help shown: 0; bad usage: 2)
 *     argv[0..argc-1] are now the positional arguments.
 *
 * Values stored through the table (strings, list items) are borrowed from
 * argv; nothing here allocates. Everything printed goes to ctx->out (usage
 * on --help) or ctx->err (mistakes), stdout and stderr unless a test says
 * otherwise.
 */
#ifndef RH_PARSE_OPTIONS_H
#define RH_PARSE_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum rh_option_type {
	RH_OPTION_END = 0,
	RH_OPTION_GROUP,  /* a heading in the usage text; parses nothing */
	RH_OPTION_BOOL,	  /* bool *: set to true; takes no value */
	RH_OPTION_STRING, /* const char **: the value (never ""); the last one given wins */
	RH_OPTION_UINT,	  /* unsigned *: a decimal number from min to max */
	RH_OPTION_LIST,	  /* struct rh_opt_list *: every value, in order (repeatable) */
};

/* LIST flag: every value must be NAME=VALUE with a non-empty NAME. */
#define RH_OPT_F_KV 1u

/* The values of a repeatable option, in a caller's array of `max` slots. */
struct rh_opt_list {
	const char **items;
	size_t n;
	size_t max;
};

#define RH_OPT_LIST_INIT(array)                                                                    \
	{                                                                                          \
		(array), 0, sizeof(array) / sizeof((array)[0])                                     \
	}

struct rh_option {
	enum rh_option_type type;
	char short_name;       /* 'q' for -q, or 0 */
	const char *long_name; /* "quiet" for --quiet, or NULL */
	void *value;	       /* where the result goes; type as in rh_option_type */
	const char *argh;      /* the value's name in the usage ("DIR"); NULL for BOOL */
	const char *help;      /* one sentence, wrapped by the usage printer */
	unsigned flags;
	unsigned long min, max; /* UINT bounds */
};

#define RH_OPT_END()                                                                               \
	{                                                                                          \
		RH_OPTION_END, 0, NULL, NULL, NULL, NULL, 0, 0, 0                                  \
	}
#define RH_OPT_GROUP(heading)                                                                      \
	{                                                                                          \
		RH_OPTION_GROUP, 0, NULL, NULL, NULL, (heading), 0, 0, 0                           \
	}
#define RH_OPT_BOOL(s, l, v, h)                                                                    \
	{                                                                                          \
		RH_OPTION_BOOL, (s), (l), (v), NULL, (h), 0, 0, 0                                  \
	}
#define RH_OPT_STRING(s, l, v, a, h)                                                               \
	{                                                                                          \
		RH_OPTION_STRING, (s), (l), (v), (a), (h), 0, 0, 0                                 \
	}
#define RH_OPT_UINT(s, l, v, a, h, lo, hi)                                                         \
	{                                                                                          \
		RH_OPTION_UINT, (s), (l), (v), (a), (h), 0, (lo), (hi)                             \
	}
#define RH_OPT_LIST(s, l, v, a, h)                                                                 \
	{                                                                                          \
		RH_OPTION_LIST, (s), (l), (v), (a), (h), 0, 0, 0                                   \
	}
#define RH_OPT_KV_LIST(s, l, v, a, h)                                                              \
	{                                                                                          \
		RH_OPTION_LIST, (s), (l), (v), (a), (h), RH_OPT_F_KV, 0, 0                         \
	}

struct rh_cmd_ctx;

struct rh_cmd {
	const char *name;
	const char *summary;	 /* one line, in the parent's list */
	const char *args;	 /* positional arguments for the usage line ("RUNBOOK"), or NULL */
	const char *description; /* printed under the usage line (preformatted), or NULL */
	const char *epilogue;	 /* printed last, e.g. the exit status (preformatted), or NULL */
	/* A leaf: parses its options and does the work; returns the exit code. */
	int (*run)(const struct rh_cmd_ctx *ctx, int argc, char **argv);
	/* Or a command of subcommands (NULL-terminated). */
	const struct rh_cmd *const *subs;
	/* The subcommand run when none is named (`providers` = `providers
	 * list`), or NULL when one must be named. */
	const char *default_sub;
};

/* Where a command runs: built by rh_cmd_run() for each level. */
struct rh_cmd_ctx {
	const struct rh_cmd *cmd;
	const struct rh_cmd_ctx *parent; /* NULL at the top (the program) */
	char path[96];			 /* "audit report"; "" at the top */
	FILE *out;			 /* usage text */
	FILE *err;			 /* mistakes */
};

/* rh_parse_options() results below 0. */
#define RH_PARSE_HELP (-1)  /* the usage was printed to ctx->out */
#define RH_PARSE_ERROR (-2) /* the mistake was printed to ctx->err */

/*
 * Parses argv[1..argc-1] against `options` (ending in RH_OPT_END()).
 * Options and positional arguments may be mixed; "--" ends the options;
 * "-" is a positional argument. Long options take their value as
 * "--name VALUE" or "--name=VALUE", short ones as "-o VALUE" or "-oVALUE";
 * short flags bundle ("-qv"). -h and --help print the usage.
 *
 * Returns the number of positional arguments, moved to argv[0..n-1] (and
 * argv[n] = NULL), or RH_PARSE_HELP, or RH_PARSE_ERROR after printing
 * "rehydra PATH: MESSAGE" with a "did you mean" for an unknown option.
 */
int rh_parse_options(const struct rh_cmd_ctx *ctx, int argc, char **argv,
		     const struct rh_option *options);

/* The exit code for a negative rh_parse_options() result: 0 for help, 2
 * for a mistake. */
int rh_parse_exit(int parse_result);

/*
 * Runs `cmd` with argv[0] = its name: a leaf's `run`, or, for a command of
 * subcommands, the one argv[1] names (recursively), after printing the
 * subcommand list for -h/--help, or an error with the closest name for an
 * unknown one (exit 2). `parent` is NULL for the program itself. Streams
 * are inherited from the parent (stdout, stderr at the top); a parent
 * whose cmd is NULL only lends its streams, and `cmd` is then the top.
 * Returns the exit code.
 */
int rh_cmd_run(const struct rh_cmd *cmd, const struct rh_cmd_ctx *parent, int argc, char **argv);

/* The subcommand of `cmd` named `name`, or NULL. */
const struct rh_cmd *rh_cmd_find(const struct rh_cmd *cmd, const char *name);

/* Prints the usage of the command in `ctx` to `f`: usage line, description,
 * its options (a leaf; `options` may be NULL) or its subcommands, epilogue. */
void rh_usage_print(const struct rh_cmd_ctx *ctx, const struct rh_option *options, FILE *f);

/* Prints "rehydra PATH: MESSAGE" and "(see 'rehydra PATH --help')" to
 * ctx->err and returns 2 (RH_EXIT_USAGE). */
int rh_cli_usage_error(const struct rh_cmd_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* True for "-h" and "--help". */
bool rh_cli_is_help(const char *arg);

#endif
