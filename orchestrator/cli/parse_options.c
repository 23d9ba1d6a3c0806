/*
 * parse_options.c - declarative option tables, subcommand dispatch and the
 * usage text generated from them.
 *
 * Each command used to walk argv with its own strcmp chain, so `--help`
 * after a subcommand printed the whole command's help, `--json` was
 * rejected by some commands and silently ignored by others, and a typo got
 * no suggestion. Here one loop parses every command's argv from its table,
 * and one printer writes its usage from the same table.
 */
#include "parse_options.h"

#include "exit.h"
#include "suggest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

#define USAGE_WIDTH 80
#define HELP_COLUMN 24 /* the furthest an option's or subcommand's help starts */
#define MAX_NAMES 64   /* options or subcommands a table may hold, for suggestions */

static FILE *out_of(const struct rh_cmd_ctx *ctx)
{
	return ctx && ctx->out ? ctx->out : stdout;
}

static FILE *err_of(const struct rh_cmd_ctx *ctx)
{
	return ctx && ctx->err ? ctx->err : stderr;
}

/* "rehydra" or "rehydra audit report" */
static void print_prog(FILE *f, const struct rh_cmd_ctx *ctx)
{
	fprintf(f, "rehydra%s%s", ctx->path[0] ? " " : "", ctx->path);
}

bool rh_cli_is_help(const char *arg)
{
	return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

static void vusage_error(const struct rh_cmd_ctx *ctx, const char *fmt, va_list ap)
{
	FILE *f = err_of(ctx);

	print_prog(f, ctx);
	fputs(": ", f);
	vfprintf(f, fmt, ap);
	fputs("\n(see '", f);
	print_prog(f, ctx);
	fputs(" --help')\n", f);
}

int rh_cli_usage_error(const struct rh_cmd_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vusage_error(ctx, fmt, ap);
	va_end(ap);
	return RH_EXIT_USAGE;
}

__attribute__((format(printf, 2, 3))) static int parse_error(const struct rh_cmd_ctx *ctx,
							     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vusage_error(ctx, fmt, ap);
	va_end(ap);
	return RH_PARSE_ERROR;
}

int rh_parse_exit(int parse_result)
{
	return parse_result == RH_PARSE_HELP ? RH_EXIT_MET : RH_EXIT_USAGE;
}

/* ---- usage text ---------------------------------------------------------- */

/* Prints `text` word-wrapped, its first line continuing at column `col`
 * (already reached), later lines indented to `indent`. A '\n' in the text
 * forces a break. */
static void print_wrapped(FILE *f, const char *text, size_t col, size_t indent)
{
	const char *p = text;

	while (*p) {
		size_t word = strcspn(p, " \n");

		if (col > indent && col + 1 + word > USAGE_WIDTH) {
			fprintf(f, "\n%*s", (int)indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', f);
			col++;
		}
		fwrite(p, 1, word, f);
		col += word;
		p += word;
		if (*p == '\n') {
			fprintf(f, "\n%*s", (int)indent, "");
			col = indent;
			p++;
		}
		while (*p == ' ')
			p++;
	}
	fputc('\n', f);
}

/* Prints "  LEFT" padded to column `hcol`, then the help wrapped. */
static void print_entry(FILE *f, const char *left, const char *help, size_t hcol)
{
	int n = fprintf(f, "  %s", left);
	size_t col = n > 0 ? (size_t)n : 0;

	if (!help || !*help) {
		fputc('\n', f);
		return;
	}
	if (col + 2 > hcol)
		fprintf(f, "\n%*s", (int)hcol, "");
	else
		fprintf(f, "%*s", (int)(hcol - col), "");
	print_wrapped(f, help, hcol, hcol);
}

/* The help column for entries whose widest left part is `widest`: two
 * spaces after it, but never beyond HELP_COLUMN (wider ones wrap). */
static size_t help_column(size_t widest)
{
	size_t col = 2 + widest + 2;

	return col > HELP_COLUMN ? HELP_COLUMN : col;
}

static bool takes_value(const struct rh_option *o)
{
	return o->type == RH_OPTION_STRING || o->type == RH_OPTION_UINT ||
	       o->type == RH_OPTION_LIST;
}

static size_t option_left(char *left, size_t size, const struct rh_option *o)
{
	int n;

	if (o->short_name && o->long_name)
		n = snprintf(left, size, "-%c, --%s", o->short_name, o->long_name);
	else if (o->short_name)
		n = snprintf(left, size, "-%c", o->short_name);
	else
		n = snprintf(left, size, "--%s", o->long_name);
	if (n > 0 && (size_t)n < size && takes_value(o))
		n += snprintf(left + n, size - (size_t)n, " %s", o->argh ? o->argh : "VALUE");
	return n > 0 ? strlen(left) : 0;
}

static void print_option(FILE *f, const struct rh_option *o, size_t hcol)
{
	char left[128];
	char help[512];

	option_left(left, sizeof(left), o);
	snprintf(help, sizeof(help), "%s%s", o->help ? o->help : "",
		 o->type == RH_OPTION_LIST ? " (repeatable)" : "");
	print_entry(f, left, help, hcol);
}

static void sub_left(char *left, size_t size, const struct rh_cmd_ctx *ctx, const struct rh_cmd *s)
{
	bool args = s->args && ctx->parent;

	snprintf(left, size, "%s%s%s", s->name, args ? " " : "", args ? s->args : "");
}

static bool has_options(const struct rh_option *opts)
{
	for (const struct rh_option *o = opts; o && o->type != RH_OPTION_END; o++)
		if (o->type != RH_OPTION_GROUP)
			return true;
	return false;
}

void rh_usage_print(const struct rh_cmd_ctx *ctx, const struct rh_option *options, FILE *f)
{
	const struct rh_cmd *cmd = ctx->cmd;

	fputs("usage: ", f);
	print_prog(f, ctx);
	if (cmd->subs) {
		fprintf(f, " %s\n", cmd->args ? cmd->args : "<subcommand> [options]");
	} else {
		if (has_options(options))
			fputs(" [options]", f);
		if (cmd->args)
			fprintf(f, " %s", cmd->args);
		fputc('\n', f);
	}
	if (cmd->summary || cmd->description)
		fputc('\n', f);
	if (cmd->description)
		fputs(cmd->description, f);
	else if (cmd->summary)
		print_wrapped(f, cmd->summary, 0, 0);
	if (cmd->subs) {
		char left[128];
		size_t widest = 0, hcol;

		for (size_t i = 0; cmd->subs[i]; i++) {
			sub_left(left, sizeof(left), ctx, cmd->subs[i]);
			if (strlen(left) <= HELP_COLUMN - 4 && strlen(left) > widest)
				widest = strlen(left);
		}
		hcol = help_column(widest);
		fprintf(f, "\n%s:\n", ctx->parent ? "subcommands" : "commands");
		for (size_t i = 0; cmd->subs[i]; i++) {
			sub_left(left, sizeof(left), ctx, cmd->subs[i]);
			print_entry(f, left, cmd->subs[i]->summary, hcol);
		}
		if (ctx->parent) {
			fputs("\n'", f);
			print_prog(f, ctx);
			fputs(" SUBCOMMAND --help' shows a subcommand's options\n", f);
		}
	} else if (has_options(options)) {
		bool headed = false;
		size_t widest = 0, hcol;
		char left[128];

		for (const struct rh_option *o = options; o->type != RH_OPTION_END; o++) {
			size_t w =
			    o->type == RH_OPTION_GROUP ? 0 : option_left(left, sizeof(left), o);

			if (w <= HELP_COLUMN - 4 && w > widest)
				widest = w;
		}
		hcol = help_column(widest);
		for (const struct rh_option *o = options; o->type != RH_OPTION_END; o++) {
			if (o->type == RH_OPTION_GROUP) {
				fprintf(f, "\n%s:\n", o->help);
				headed = true;
				continue;
			}
			if (!headed) {
				fputs("\noptions:\n", f);
				headed = true;
			}
			print_option(f, o, hcol);
		}
	}
	if (cmd->epilogue) {
		fputc('\n', f);
		fputs(cmd->epilogue, f);
	}
}

/* ---- parsing ------------------------------------------------------------- */

static const struct rh_option *find_long(const struct rh_option *opts, const char *name, size_t len)
{
	for (const struct rh_option *o = opts; o && o->type != RH_OPTION_END; o++)
		if (o->type != RH_OPTION_GROUP && o->long_name && strlen(o->long_name) == len &&
		    strncmp(o->long_name, name, len) == 0)
			return o;
	return NULL;
}

static const struct rh_option *find_short(const struct rh_option *opts, char c)
{
	for (const struct rh_option *o = opts; o && o->type != RH_OPTION_END; o++)
		if (o->type != RH_OPTION_GROUP && o->short_name == c)
			return o;
	return NULL;
}

/* How to name an option in a message: "--out" or "-o". */
static void opt_name(char *buf, size_t size, const struct rh_option *o)
{
	if (o->long_name)
		snprintf(buf, size, "--%s", o->long_name);
	else
		snprintf(buf, size, "-%c", o->short_name);
}

static int unknown_long(const struct rh_cmd_ctx *ctx, const struct rh_option *opts, const char *arg,
			size_t len)
{
	const char *names[MAX_NAMES + 2];
	char word[128];
	const char *best;
	size_t n = 0;

	for (const struct rh_option *o = opts; o && o->type != RH_OPTION_END && n < MAX_NAMES; o++)
		if (o->type != RH_OPTION_GROUP && o->long_name)
			names[n++] = o->long_name;
	names[n++] = "help";
	names[n] = NULL;
	snprintf(word, sizeof(word), "%.*s", (int)(len < 100 ? len : 100), arg);
	best = rh_suggest(word, names);
	if (best)
		return parse_error(ctx, "unknown option '--%s': did you mean '--%s'?", word, best);
	return parse_error(ctx, "unknown option '--%s'", word);
}

static int set_value(const struct rh_cmd_ctx *ctx, const struct rh_option *o, char *val)
{
	char name[80];

	opt_name(name, sizeof(name), o);
	switch (o->type) {
	case RH_OPTION_STRING:
		if (!*val)
			return parse_error(ctx, "%s needs %s, not an empty value", name,
					   o->argh ? o->argh : "a value");
		*(const char **)o->value = val;
		return 0;
	case RH_OPTION_UINT: {
		char *end = NULL;
		unsigned long v;

		errno = 0;
		v = strtoul(val, &end, 10);
		if (errno || end == val || *end || val[0] < '0' || val[0] > '9' || v < o->min ||
		    v > o->max)
			return parse_error(ctx, "%s expects a number from %lu to %lu, got '%s'",
					   name, o->min, o->max, val);
		*(unsigned *)o->value = (unsigned)v;
		return 0;
	}
	case RH_OPTION_LIST: {
		struct rh_opt_list *l = o->value;
		const char *eq = strchr(val, '=');

		if ((o->flags & RH_OPT_F_KV) && (!eq || eq == val))
			return parse_error(ctx, "%s expects %s, got '%s'", name,
					   o->argh ? o->argh : "NAME=VALUE", val);
		if (!(o->flags & RH_OPT_F_KV) && !*val)
			return parse_error(ctx, "%s needs %s, not an empty value", name,
					   o->argh ? o->argh : "a value");
		if (l->n >= l->max)
			return parse_error(ctx, "more than %zu %s options", l->max, name);
		l->items[l->n++] = val;
		return 0;
	}
	case RH_OPTION_BOOL:
		*(bool *)o->value = true;
		return 0;
	case RH_OPTION_GROUP:
	case RH_OPTION_END:
		break;
	}
	return parse_error(ctx, "%s: not an option", name);
}

static int parse_long(const struct rh_cmd_ctx *ctx, const struct rh_option *opts, int argc,
		      char **argv, int *i)
{
	char *name = argv[*i] + 2;
	char *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name);
	const struct rh_option *o = find_long(opts, name, len);
	char *val;

	if (!o && !eq && strcmp(name, "help") == 0) {
		rh_usage_print(ctx, opts, out_of(ctx));
		return RH_PARSE_HELP;
	}
	if (!o)
		return unknown_long(ctx, opts, name, len);
	if (o->type == RH_OPTION_BOOL) {
		if (eq)
			return parse_error(ctx, "--%s takes no value", o->long_name);
		return set_value(ctx, o, NULL);
	}
	if (eq) {
		val = eq + 1;
	} else if (*i + 1 < argc) {
		val = argv[++*i];
	} else {
		return parse_error(ctx, "--%s needs %s", o->long_name,
				   o->argh ? o->argh : "a value");
	}
	return set_value(ctx, o, val);
}

static int parse_short(const struct rh_cmd_ctx *ctx, const struct rh_option *opts, int argc,
		       char **argv, int *i)
{
	for (char *p = argv[*i] + 1; *p; p++) {
		const struct rh_option *o = find_short(opts, *p);

		if (!o && *p == 'h') {
			rh_usage_print(ctx, opts, out_of(ctx));
			return RH_PARSE_HELP;
		}
		if (!o)
			return parse_error(ctx, "unknown option '-%c'", *p);
		if (o->type == RH_OPTION_BOOL) {
			set_value(ctx, o, NULL);
			continue;
		}
		if (p[1])
			return set_value(ctx, o, p + 1);
		if (*i + 1 >= argc)
			return parse_error(ctx, "-%c needs %s", *p, o->argh ? o->argh : "a value");
		return set_value(ctx, o, argv[++*i]);
	}
	return 0;
}

int rh_parse_options(const struct rh_cmd_ctx *ctx, int argc, char **argv,
		     const struct rh_option *options)
{
	bool dashdash = false;
	int npos = 0;

	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		int rc;

		if (dashdash || a[0] != '-' || a[1] == '\0') {
			argv[npos++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		rc = a[1] == '-' ? parse_long(ctx, options, argc, argv, &i)
				 : parse_short(ctx, options, argc, argv, &i);
		if (rc < 0)
			return rc;
	}
	if (npos < argc)
		argv[npos] = NULL;
	return npos;
}

/* ---- subcommands --------------------------------------------------------- */

const struct rh_cmd *rh_cmd_find(const struct rh_cmd *cmd, const char *name)
{
	for (size_t i = 0; cmd->subs && cmd->subs[i]; i++)
		if (strcmp(cmd->subs[i]->name, name) == 0)
			return cmd->subs[i];
	return NULL;
}

/* "verify, list, show or push" */
static void sub_names(char *buf, size_t size, const struct rh_cmd *cmd)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; cmd->subs[i] && used < size; i++) {
		const char *sep = i == 0 ? "" : cmd->subs[i + 1] ? ", " : " or ";
		int n = snprintf(buf + used, size - used, "%s%s", sep, cmd->subs[i]->name);

		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static int unknown_sub(const struct rh_cmd_ctx *ctx, const char *word)
{
	const struct rh_cmd *cmd = ctx->cmd;
	const char *names[MAX_NAMES + 1];
	const char *what = ctx->parent ? "subcommand" : "command";
	const char *best;
	char list[512];
	size_t n = 0;

	for (size_t i = 0; cmd->subs[i] && n < MAX_NAMES; i++)
		names[n++] = cmd->subs[i]->name;
	names[n] = NULL;
	best = rh_suggest(word, names);
	if (best)
		return rh_cli_usage_error(ctx, "'%.100s' is not a %s: did you mean '%s'?", word,
					  what, best);
	sub_names(list, sizeof(list), cmd);
	return rh_cli_usage_error(ctx, "'%.100s' is not a %s: expected %s", word, what, list);
}

int rh_cmd_run(const struct rh_cmd *cmd, const struct rh_cmd_ctx *parent, int argc, char **argv)
{
	struct rh_cmd_ctx ctx = {.cmd = cmd, .parent = parent};
	const struct rh_cmd *sub;
	const char *word = argc > 1 ? argv[1] : NULL;
	char list[512];

	ctx.out = parent ? parent->out : NULL;
	ctx.err = parent ? parent->err : NULL;
	if (parent && !parent->cmd)
		parent = ctx.parent = NULL; /* it only lends its streams: cmd is the top */
	/* names are short words from the tables; a path too long is cut */
	if (parent && snprintf(ctx.path, sizeof(ctx.path), "%s%s%s", parent->path,
			       parent->path[0] ? " " : "", cmd->name) < 0)
		ctx.path[0] = '\0';
	if (!cmd->subs)
		return cmd->run(&ctx, argc, argv);
	if (word && rh_cli_is_help(word)) {
		rh_usage_print(&ctx, NULL, out_of(&ctx));
		return RH_EXIT_MET;
	}
	if (!word || (word[0] == '-' && word[1])) {
		sub = cmd->default_sub ? rh_cmd_find(cmd, cmd->default_sub) : NULL;
		if (sub)
			return rh_cmd_run(sub, &ctx, argc, argv);
		sub_names(list, sizeof(list), cmd);
		if (word)
			return rh_cli_usage_error(&ctx, "'%s' before the %s: name one first (%s)",
						  word, ctx.parent ? "subcommand" : "command",
						  list);
		return rh_cli_usage_error(&ctx, "no %s: %s", ctx.parent ? "subcommand" : "command",
					  list);
	}
	sub = rh_cmd_find(cmd, word);
	if (!sub)
		return unknown_sub(&ctx, word);
	return rh_cmd_run(sub, &ctx, argc - 1, argv + 1);
}
