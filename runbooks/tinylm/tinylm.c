/*
 * tinylm.c - the tinylm inference server: the small, real stack that
 * rehydra's demo drill recreates.
 *
 * It behaves like a production model server where a DR drill can see it:
 * it refuses to start on the wrong model version (the manifest's sha256 is
 * the model's identity), it listens at once but answers /health with 503
 * until every file the manifest lists has been mapped and its size and
 * sha256 checked, and a corrupt copy stops it with a message naming the
 * file. Completions are real: bytes sampled from the byte-level n-gram model
 * the build trained (tlm_model.h), read straight from the mapping. The
 * "weights" shards are verified and kept mapped but not used; they stand for
 * a real model's weights. The files are verified in parallel, one loader
 * thread per core (at most TLM_LOADERS_MAX), because the check is a
 * SHA-256 pass over every byte and a real model comes in many shards; the
 * first failure stops the others and is the one reported.
 *
 * Exit codes: 0 after SIGTERM/SIGINT, 1 usage or runtime error, 2 the model
 * directory does not hold the expected model (manifest missing, invalid or
 * with another sha256), 3 a model file failed verification while loading.
 */
#include "tlm_http.h"
#include "tlm_model.h"

#include "error.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "banned.h"

#define TLM_MANIFEST_MAX (1u << 20)
#define TLM_HASH_CHUNK (8u << 20)
#define TLM_MAX_TOKENS 2048
#define TLM_LOADERS_MAX 8
#define TLM_EXIT_USAGE 1
#define TLM_EXIT_IDENTITY 2
#define TLM_EXIT_VERIFY 3

enum tlm_state {
	TLM_LOADING,
	TLM_READY,
	TLM_FAILED,
};

struct tlm_file {
	char *path;	  /* new: relative to the model dir */
	const char *role; /* borrowed from the manifest; may be NULL */
	uint64_t size;
	char sha256[65];
	void *map; /* PROT_READ mapping of size bytes, or NULL */
};

struct tlm_server {
	const char *model_dir;
	int dir_fd;
	json_t *manifest;
	const char *name; /* borrowed from manifest */
	const char *version;
	char manifest_sha256[65];
	struct tlm_file *files;
	size_t n_files;
	size_t model_file; /* index of the file with role "model" */
	uint64_t bytes_total;

	atomic_int state;
	atomic_int stop;
	atomic_int load_failed;	   /* a loader failed: the others stop */
	atomic_size_t next_file;   /* the next file a loader takes */
	pthread_mutex_t fail_lock; /* fail_file and fail_msg while loading */
	size_t fail_file;	   /* index of the failed file; n_files: none */
	atomic_ullong bytes_verified;
	atomic_uint files_verified;
	char fail_msg[1024]; /* written by the loader before state FAILED */
	double load_seconds; /* written by the loader before state READY */
	int ready_logged;
	struct tlm_model model;

	uint64_t n_requests;

	/* streaming and the stall test option */
	struct tlm_http *http;
	int token_ms;
	double stall_after_s, stall_for_s; /* stall_for_s 0: never */
	int stall_armed;
};

static volatile sig_atomic_t tlm_signalled;
static int tlm_wake_w = -1;

static void on_signal(int sig)
{
	int saved = errno;

	(void)sig;
	tlm_signalled = 1;
	if (write(tlm_wake_w, "s", 1) < 0) {
		/* The pipe is full: a wake-up is pending anyway. */
	}
	errno = saved;
}

static void wake_loop(void)
{
	if (write(tlm_wake_w, "l", 1) < 0) {
		/* As above. */
	}
}

static double mono_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return 0;
	for (int i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* A manifest path must stay inside the model directory. */
static int path_ok(const char *p)
{
	const char *seg = p;

	if (!*p || *p == '/')
		return 0;
	for (;;) {
		const char *end = strchr(seg, '/');
		size_t n = end ? (size_t)(end - seg) : strlen(seg);

		if (n == 0 || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return 0;
		if (!end)
			return 1;
		seg = end + 1;
	}
}

static int read_manifest(struct tlm_server *srv, char **text, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd, err = 0;

	fd = openat(srv->dir_fd, "manifest.json", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = rh_error_set_errno(RH_ENOTFOUND, errno, "cannot open %s/manifest.json",
					 srv->model_dir);
		goto done;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > TLM_MANIFEST_MAX) {
		err =
		    rh_error_set(RH_EINVAL, "%s/manifest.json is not a regular file under %u bytes",
				 srv->model_dir, TLM_MANIFEST_MAX);
		goto done;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = rh_error_set_errno(RH_EIO, n < 0 ? errno : EIO,
						 "cannot read %s/manifest.json", srv->model_dir);
			goto done;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	*text = buf;
	*len = got;
	buf = NULL;
done:
	if (fd >= 0)
		close(fd);
	free(buf);
	return err;
}

static int parse_files(struct tlm_server *srv, json_t *files)
{
	size_t i;
	json_t *f;
	int have_model = 0, err = 0;

	srv->files = calloc(json_array_size(files), sizeof(*srv->files));
	if (!srv->files) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	json_array_foreach(files, i, f)
	{
		json_t *path = json_object_get(f, "path"), *size = json_object_get(f, "size");
		json_t *sha = json_object_get(f, "sha256"), *role = json_object_get(f, "role");
		struct tlm_file *tf = &srv->files[i];

		if (!json_is_string(path) || !path_ok(json_string_value(path))) {
			err = rh_error_set(RH_EINVAL,
					   "files[%zu].path must be a relative path inside "
					   "the model directory",
					   i);
			goto done;
		}
		if (!json_is_integer(size) || json_integer_value(size) < 0) {
			err = rh_error_set(RH_EINVAL, "files[%zu].size must be a byte count", i);
			goto done;
		}
		if (!json_is_string(sha) || !is_hex64(json_string_value(sha))) {
			err = rh_error_set(RH_EINVAL,
					   "files[%zu].sha256 must be 64 lowercase hex digits", i);
			goto done;
		}
		if (role && !json_is_string(role)) {
			err = rh_error_set(RH_EINVAL, "files[%zu].role must be a string", i);
			goto done;
		}
		tf->path = strdup(json_string_value(path));
		if (!tf->path) {
			err = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		srv->n_files = i + 1;
		tf->role = role ? json_string_value(role) : NULL;
		tf->size = (uint64_t)json_integer_value(size);
		memcpy(tf->sha256, json_string_value(sha), 65);
		srv->bytes_total += tf->size;
		if (!have_model && tf->role && strcmp(tf->role, "model") == 0) {
			srv->model_file = i;
			have_model = 1;
		}
	}
	if (!have_model)
		err = rh_error_set(RH_EINVAL, "no file has role \"model\": tinylm needs one");
done:
	return err;
}

/* Checks the manifest's identity, then its shape. */
static int load_manifest(struct tlm_server *srv, const char *expect)
{
	json_error_t jerr;
	json_t *files;
	char *text = NULL;
	size_t len = 0;
	int err;

	err = read_manifest(srv, &text, &len);
	if (err < 0)
		goto done;
	rh_sha256_buf_hex(srv->manifest_sha256, text, len);
	if (strcmp(srv->manifest_sha256, expect) != 0) {
		err = rh_error_set(RH_EVERIFY,
				   "%s/manifest.json has sha256 %s, not the expected %s: "
				   "this directory holds another model version; sync the model "
				   "again or fix --expect-sha256",
				   srv->model_dir, srv->manifest_sha256, expect);
		goto done;
	}
	srv->manifest = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!srv->manifest) {
		err = rh_error_set(RH_EINVAL, "%s/manifest.json:%d:%d: %s", srv->model_dir,
				   jerr.line, jerr.column, jerr.text);
		goto done;
	}
	if (json_integer_value(json_object_get(srv->manifest, "rehydra_manifest")) != 1) {
		err = rh_error_set(RH_EINVAL, "%s/manifest.json: rehydra_manifest must be 1",
				   srv->model_dir);
		goto done;
	}
	srv->name = json_string_value(json_object_get(srv->manifest, "name"));
	srv->version = json_string_value(json_object_get(srv->manifest, "version"));
	files = json_object_get(srv->manifest, "files");
	if (!srv->name || !srv->version || !json_is_array(files) || json_array_size(files) == 0) {
		err = rh_error_set(RH_EINVAL,
				   "%s/manifest.json needs name, version and a non-empty "
				   "files array",
				   srv->model_dir);
		goto done;
	}
	err = parse_files(srv, files);
	if (err < 0)
		rh_error_prefix(err, "%s/manifest.json", srv->model_dir);
done:
	free(text);
	return err;
}

/* Maps one file and checks its size and sha256, streaming over the mapping. */
static int verify_file(struct tlm_server *srv, struct tlm_file *f)
{
	struct rh_sha256 sc = {0};
	struct stat st;
	uint8_t digest[32];
	char hex[65];
	int fd, err = 0;

	fd = openat(srv->dir_fd, f->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = rh_error_set_errno(RH_EVERIFY, errno, "%s/%s: cannot open", srv->model_dir,
					 f->path);
		goto done;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		err =
		    rh_error_set(RH_EVERIFY, "%s/%s: not a regular file", srv->model_dir, f->path);
		goto done;
	}
	if ((uint64_t)st.st_size != f->size) {
		err = rh_error_set(RH_EVERIFY, "%s/%s: size is %lld bytes, the manifest says %llu",
				   srv->model_dir, f->path, (long long)st.st_size,
				   (unsigned long long)f->size);
		goto done;
	}
	err = rh_sha256_init(&sc);
	if (err < 0)
		goto done;
	if (f->size > 0) {
		f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (f->map == MAP_FAILED) {
			f->map = NULL;
			err = rh_error_set_errno(RH_EVERIFY, errno, "%s/%s: cannot map",
						 srv->model_dir, f->path);
			goto done;
		}
		madvise(f->map, f->size, MADV_SEQUENTIAL);
	}
	for (uint64_t off = 0; off < f->size; off += TLM_HASH_CHUNK) {
		size_t n =
		    f->size - off < TLM_HASH_CHUNK ? (size_t)(f->size - off) : TLM_HASH_CHUNK;

		if (atomic_load(&srv->stop) || atomic_load(&srv->load_failed)) {
			err = rh_error_set(RH_ECANCELLED, "stopped while loading");
			goto done;
		}
		rh_sha256_update(&sc, (const uint8_t *)f->map + off, n);
		atomic_fetch_add(&srv->bytes_verified, n);
	}
	rh_sha256_final(&sc, digest);
	rh_sha256_hex(hex, digest);
	if (strcmp(hex, f->sha256) != 0) {
		err = rh_error_set(RH_EVERIFY,
				   "%s/%s: sha256 is %s, the manifest says %s: the copy "
				   "is corrupt; sync the model again",
				   srv->model_dir, f->path, hex, f->sha256);
		goto done;
	}
	if (f->map)
		madvise(f->map, f->size, MADV_NORMAL);
done:
	rh_sha256_free(&sc);
	if (fd >= 0)
		close(fd);
	return err;
}

/* One loader thread: verifies files until none is left or one failed. A
 * failure keeps the lowest-numbered failed file's message in fail_msg. */
static void *verify_main(void *arg)
{
	struct tlm_server *srv = arg;

	for (;;) {
		size_t i = atomic_fetch_add(&srv->next_file, 1);
		int err;

		if (i >= srv->n_files)
			break;
		err = verify_file(srv, &srv->files[i]);
		if (err == RH_ECANCELLED)
			break;
		if (err < 0) {
			pthread_mutex_lock(&srv->fail_lock);
			if (i < srv->fail_file) {
				srv->fail_file = i;
				snprintf(srv->fail_msg, sizeof(srv->fail_msg), "%s",
					 rh_error_last());
			}
			pthread_mutex_unlock(&srv->fail_lock);
			atomic_store(&srv->load_failed, 1);
			break;
		}
		atomic_fetch_add(&srv->files_verified, 1);
	}
	return NULL;
}

static size_t loader_count(size_t n_files)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = cores > 0 ? (size_t)cores : 1;

	if (n > TLM_LOADERS_MAX)
		n = TLM_LOADERS_MAX;
	return n < n_files ? n : n_files;
}

static void *loader_main(void *arg)
{
	struct tlm_server *srv = arg;
	struct tlm_file *mf = &srv->files[srv->model_file];
	pthread_t tids[TLM_LOADERS_MAX];
	size_t n_threads = loader_count(srv->n_files), started = 0;
	double t0 = mono_seconds();
	int err = 0;

	srv->fail_file = srv->n_files;
	/* This thread is one of the loaders; the others are extra. */
	while (started + 1 < n_threads &&
	       pthread_create(&tids[started], NULL, verify_main, srv) == 0)
		started++;
	verify_main(srv);
	for (size_t i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	if (atomic_load(&srv->stop))
		return NULL;
	if (atomic_load(&srv->load_failed)) {
		atomic_store(&srv->state, TLM_FAILED);
		goto done;
	}
	err = tlm_model_open(&srv->model, mf->map, mf->size);
	if (err < 0) {
		rh_error_prefix(err, "%s/%s", srv->model_dir, mf->path);
		snprintf(srv->fail_msg, sizeof(srv->fail_msg), "%s", rh_error_last());
		atomic_store(&srv->state, TLM_FAILED);
	} else {
		srv->load_seconds = mono_seconds() - t0;
		atomic_store(&srv->state, TLM_READY);
	}
done:
	wake_loop();
	return NULL;
}

/* Six significant digits: load_seconds reads 1.497, not 1.4970000000000001. */
static char *dump(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;

	json_decref(j);
	return s;
}

static void respond_json(struct tlm_response *resp, int status, json_t *j)
{
	resp->body = dump(j);
	if (!resp->body) {
		tlm_http_error(resp, 500, "server_error", "cannot encode the response");
		return;
	}
	resp->status = status;
	resp->body_len = strlen(resp->body);
}

static void handle_health(struct tlm_server *srv, struct tlm_response *resp)
{
	int state = atomic_load(&srv->state);

	if (state == TLM_READY) {
		respond_json(resp, 200,
			     json_pack("{s:s,s:b,s:s,s:s,s:s,s:I,s:f}", "status", "ok", "ready", 1,
				       "model", srv->name, "version", srv->version, "model_sha256",
				       srv->manifest_sha256, "files", (json_int_t)srv->n_files,
				       "load_seconds", round(srv->load_seconds * 1000) / 1000));
		return;
	}
	respond_json(resp, 503,
		     json_pack("{s:s,s:b,s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "status",
			       state == TLM_FAILED ? "failed" : "loading", "ready", 0, "model",
			       srv->name, "version", srv->version, "model_sha256",
			       srv->manifest_sha256, "files", (json_int_t)srv->n_files,
			       "files_verified", (json_int_t)atomic_load(&srv->files_verified),
			       "bytes_verified", (json_int_t)atomic_load(&srv->bytes_verified),
			       "bytes_total", (json_int_t)srv->bytes_total));
}

static void handle_models(struct tlm_server *srv, struct tlm_response *resp)
{
	respond_json(resp, 200,
		     json_pack("{s:s,s:[{s:s,s:s,s:s,s:s,s:b}]}", "object", "list", "data", "id",
			       srv->name, "object", "model", "owned_by", "rehydra-demo", "version",
			       srv->version, "ready", atomic_load(&srv->state) == TLM_READY));
}

/* Reads the request's options; returns 0 or queues a 4xx in resp. */
static int completion_args(struct tlm_server *srv, json_t *body, struct tlm_response *resp,
			   const char **prompt, size_t *prompt_len, size_t *max_tokens,
			   double *temperature, int *have_seed, uint64_t *seed, int *stream)
{
	json_t *v;

	if (!json_is_object(body)) {
		tlm_http_error(resp, 400, "invalid_request_error",
			       "the body must be a JSON object");
		return -1;
	}
	v = json_object_get(body, "model");
	if (v && !json_is_string(v)) {
		tlm_http_error(resp, 400, "invalid_request_error", "model must be a string");
		return -1;
	}
	if (v && strcmp(json_string_value(v), srv->name) != 0) {
		tlm_http_error(resp, 404, "invalid_request_error",
			       "model %s is not served here; this server serves %s",
			       json_string_value(v), srv->name);
		return -1;
	}
	v = json_object_get(body, "prompt");
	if (json_is_array(v) && json_array_size(v) == 1)
		v = json_array_get(v, 0);
	if (v && !json_is_string(v)) {
		tlm_http_error(resp, 400, "invalid_request_error",
			       "prompt must be a string (or an array of one string)");
		return -1;
	}
	*prompt = v ? json_string_value(v) : "";
	*prompt_len = v ? json_string_length(v) : 0;
	v = json_object_get(body, "max_tokens");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > TLM_MAX_TOKENS) {
			tlm_http_error(resp, 400, "invalid_request_error",
				       "max_tokens must be an integer from 1 to %d",
				       TLM_MAX_TOKENS);
			return -1;
		}
		*max_tokens = (size_t)json_integer_value(v);
	}
	v = json_object_get(body, "temperature");
	if (v && !json_is_null(v)) {
		if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 2) {
			tlm_http_error(resp, 400, "invalid_request_error",
				       "temperature must be a number from 0 to 2");
			return -1;
		}
		*temperature = json_number_value(v);
	}
	v = json_object_get(body, "seed");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v)) {
			tlm_http_error(resp, 400, "invalid_request_error",
				       "seed must be an integer");
			return -1;
		}
		*have_seed = 1;
		*seed = (uint64_t)json_integer_value(v);
	}
	v = json_object_get(body, "stream");
	if (v && !json_is_null(v) && !json_is_boolean(v)) {
		tlm_http_error(resp, 400, "invalid_request_error", "stream must be true or false");
		return -1;
	}
	*stream = json_is_true(v);
	v = json_object_get(body, "n");
	if (v && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 1)) {
		tlm_http_error(resp, 400, "invalid_request_error", "n must be 1");
		return -1;
	}
	return 0;
}

/* Bytes of the UTF-8 sequence at p (1 for a byte that does not start a
 * valid one, which is then sent as '?'). */
static size_t utf8_seq(const uint8_t *p, size_t left, int *valid)
{
	size_t n = p[0] < 0x80		   ? 1
		   : (p[0] & 0xe0) == 0xc0 ? 2
		   : (p[0] & 0xf0) == 0xe0 ? 3
		   : (p[0] & 0xf8) == 0xf0 ? 4
					   : 0;

	*valid = n > 0 && n <= left;
	for (size_t i = 1; *valid && i < n; i++)
		*valid = (p[i] & 0xc0) == 0x80;
	return *valid ? n : 1;
}

/* The completion as OpenAI-style stream chunks, one per token (a byte, or
 * the bytes of one UTF-8 character), token_ms apart. */
static void stream_events(struct tlm_server *srv, struct tlm_response *resp, const char *id,
			  long long created, const uint8_t *text, size_t len)
{
	char **ev = calloc(len ? len : 1, sizeof(*ev));
	size_t n = 0;

	if (!ev)
		goto oom;
	for (size_t off = 0; off < len;) {
		int valid;
		size_t k = utf8_seq(text + off, len - off, &valid);
		int last = off + k >= len;
		json_t *j =
		    json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:s%,s:n,s:s?}]}", "id", id, "object",
			      "text_completion", "created", (json_int_t)created, "model", srv->name,
			      "choices", "index", 0, "text", valid ? (const char *)text + off : "?",
			      valid ? k : 1, "logprobs", "finish_reason", last ? "length" : NULL);

		ev[n] = dump(j);
		if (!ev[n])
			goto oom;
		n++;
		off += k;
	}
	resp->status = 200;
	resp->events = ev;
	resp->n_events = n;
	resp->event_ms = srv->token_ms;
	return;
oom:
	for (size_t i = 0; ev && i < n; i++)
		free(ev[i]);
	free(ev);
	tlm_http_error(resp, 500, "server_error", "out of memory");
}

static void handle_completions(struct tlm_server *srv, const struct tlm_request *req,
			       struct tlm_response *resp)
{
	struct tlm_rng rng;
	struct timespec now;
	json_error_t jerr;
	json_t *body = NULL;
	const char *prompt = "";
	size_t prompt_len = 0, max_tokens = 16;
	double temperature = 0.8;
	uint64_t seed = 0;
	uint8_t *buf = NULL;
	char id[48];
	int have_seed = 0, stream = 0;

	if (atomic_load(&srv->state) != TLM_READY) {
		tlm_http_error(resp, 503, "unavailable",
			       "model %s is still loading; retry when GET "
			       "/health says ready",
			       srv->name);
		goto done;
	}
	body = json_loadb(req->body, req->body_len, 0, &jerr);
	if (!body) {
		tlm_http_error(resp, 400, "invalid_request_error",
			       "the body is not valid JSON: "
			       "%s at line %d, column %d",
			       jerr.text, jerr.line, jerr.column);
		goto done;
	}
	if (completion_args(srv, body, resp, &prompt, &prompt_len, &max_tokens, &temperature,
			    &have_seed, &seed, &stream) < 0)
		goto done;
	if (srv->stall_for_s > 0 && !srv->stall_armed) {
		/* the stall test option counts from the first completion asked for */
		srv->stall_armed = 1;
		tlm_http_stall(srv->http, tlm_now_ms() + (int64_t)(srv->stall_after_s * 1000),
			       (int)(srv->stall_for_s * 1000));
	}
	buf = malloc(prompt_len + max_tokens + 1);
	if (!buf) {
		tlm_http_error(resp, 500, "server_error", "out of memory");
		goto done;
	}
	memcpy(buf, prompt, prompt_len);
	clock_gettime(CLOCK_REALTIME, &now);
	rng.s =
	    (uint64_t)now.tv_sec * 1000000007ULL ^ (uint64_t)now.tv_nsec ^ ++srv->n_requests << 40;
	snprintf(id, sizeof(id), "cmpl-%016llx%08llx", (unsigned long long)tlm_rng_next(&rng),
		 (unsigned long long)(tlm_rng_next(&rng) & 0xffffffffu));
	if (have_seed)
		rng.s = seed;
	tlm_model_generate(&srv->model, buf, prompt_len, max_tokens, temperature, &rng);
	if (stream) {
		stream_events(srv, resp, id, (long long)now.tv_sec, buf + prompt_len, max_tokens);
		goto done;
	}
	respond_json(resp, 200,
		     json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:s%,s:n,s:s}],s:{s:I,s:I,s:I}}", "id", id,
			       "object", "text_completion", "created", (json_int_t)now.tv_sec,
			       "model", srv->name, "choices", "index", 0, "text",
			       (const char *)buf + prompt_len, max_tokens, "logprobs",
			       "finish_reason", "length", "usage", "prompt_tokens",
			       (json_int_t)prompt_len, "completion_tokens", (json_int_t)max_tokens,
			       "total_tokens", (json_int_t)(prompt_len + max_tokens)));
done:
	free(buf);
	json_decref(body);
}

static void handle(void *ctx, const struct tlm_request *req, struct tlm_response *resp)
{
	struct tlm_server *srv = ctx;
	int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;

	if (strcmp(req->path, "/health") == 0) {
		if (get)
			handle_health(srv, resp);
		else
			resp->allow = "GET, HEAD";
	} else if (strcmp(req->path, "/v1/completions") == 0) {
		if (strcmp(req->method, "POST") == 0)
			handle_completions(srv, req, resp);
		else
			resp->allow = "POST";
	} else if (strcmp(req->path, "/v1/models") == 0) {
		if (get)
			handle_models(srv, resp);
		else
			resp->allow = "GET, HEAD";
	} else {
		tlm_http_error(resp, 404, "not_found",
			       "no such path: %s (try /health or "
			       "/v1/completions)",
			       req->path);
	}
	if (resp->allow)
		tlm_http_error(resp, 405, "invalid_request_error",
			       "%s is not allowed on %s; use %s", req->method, req->path,
			       resp->allow);
}

/* Runs on the loop's thread when a signal or the loader woke it. */
static int on_wake(void *ctx)
{
	struct tlm_server *srv = ctx;
	int state = atomic_load(&srv->state);

	if (tlm_signalled)
		return 1;
	if (state == TLM_FAILED)
		return 2;
	if (state == TLM_READY && !srv->ready_logged) {
		srv->ready_logged = 1;
		fprintf(stderr, "tinylm: ready: %s %s, %zu files, %llu bytes verified in %.3f s\n",
			srv->name, srv->version, srv->n_files, (unsigned long long)srv->bytes_total,
			srv->load_seconds);
	}
	return 0;
}

static void usage(FILE *to)
{
	fprintf(to,
		"usage: tinylm --model-dir DIR --expect-sha256 HEX [--host ADDR] [--port N]\n"
		"              [--io-timeout SECONDS] [--token-ms MS]\n"
		"              [--stall-after SECONDS --stall-for SECONDS]\n"
		"\n"
		"Serves the tinylm model in DIR (manifest.json and the files it lists) over\n"
		"HTTP: GET /health, GET /v1/models, POST /v1/completions (OpenAI-style;\n"
		"\"stream\": true answers with server-sent events, one token each, ending\n"
		"with data: [DONE]). HTTP/1.1 connections are kept alive.\n"
		"Refuses to start unless manifest.json's sha256 is HEX. Listens at once and\n"
		"answers /health with 503 until every file's size and sha256 are checked.\n"
		"\n"
		"  --host ADDR           address to bind (default 127.0.0.1)\n"
		"  --port N              port to bind (default 8080; 0 picks a free one)\n"
		"  --io-timeout SECONDS  per-connection deadline (default 10)\n"
		"  --token-ms MS         pause between streamed tokens, as a bigger model's\n"
		"                        decoding would (default 0)\n"
		"  --stall-after SECONDS, --stall-for SECONDS\n"
		"                        test option: once, SECONDS after the first completion\n"
		"                        request, stop serving (no reads, writes or accepts)\n"
		"                        for --stall-for seconds, as a long pause would\n"
		"\n"
		"The first line on stdout is {\"event\":\"listening\",\"host\":...,\"port\":N}.\n"
		"Exit status: 0 after SIGTERM or SIGINT, 1 usage or runtime error, 2 DIR does\n"
		"not hold the expected model, 3 a file failed verification while loading.\n");
}

static int parse_seconds(const char *opt, const char *arg, double max, double *out)
{
	char *end;
	double t;

	errno = 0;
	t = strtod(arg, &end);
	if (errno || end == arg || *end || !(t >= 0 && t <= max)) {
		fprintf(stderr, "tinylm: %s must be 0..%g seconds, not %s\n", opt, max, arg);
		return -1;
	}
	*out = t;
	return 0;
}

static int parse_args(int argc, char **argv, const char **dir, const char **expect,
		      const char **host, const char **port, int *io_timeout_ms,
		      struct tlm_server *srv)
{
	static const struct option opts[] = {
	    {"model-dir", required_argument, NULL, 'd'},
	    {"expect-sha256", required_argument, NULL, 'e'},
	    {"host", required_argument, NULL, 'H'},
	    {"port", required_argument, NULL, 'p'},
	    {"io-timeout", required_argument, NULL, 't'},
	    {"token-ms", required_argument, NULL, 'k'},
	    {"stall-after", required_argument, NULL, 'a'},
	    {"stall-for", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char *end;
	double t;
	long p;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			*dir = optarg;
			break;
		case 'e':
			*expect = optarg;
			break;
		case 'H':
			*host = optarg;
			break;
		case 'p':
			errno = 0;
			p = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || p < 0 || p > 65535) {
				fprintf(stderr, "tinylm: --port must be 0..65535, not %s\n",
					optarg);
				return -1;
			}
			*port = optarg;
			break;
		case 't':
			errno = 0;
			t = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(t >= 0.01 && t <= 3600)) {
				fprintf(stderr,
					"tinylm: --io-timeout must be 0.01..3600 seconds\n");
				return -1;
			}
			*io_timeout_ms = (int)(t * 1000);
			break;
		case 'k':
			errno = 0;
			p = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || p < 0 || p > 10000) {
				fprintf(stderr, "tinylm: --token-ms must be 0..10000, not %s\n",
					optarg);
				return -1;
			}
			srv->token_ms = (int)p;
			break;
		case 'a':
			if (parse_seconds("--stall-after", optarg, 3600, &srv->stall_after_s) < 0)
				return -1;
			break;
		case 'f':
			if (parse_seconds("--stall-for", optarg, 600, &srv->stall_for_s) < 0)
				return -1;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tinylm: unexpected argument '%s' (see tinylm --help)\n",
			argv[optind]);
		return -1;
	}
	if (!*dir || !*expect) {
		fprintf(stderr, "tinylm: --model-dir and --expect-sha256 are required "
				"(see tinylm --help)\n");
		return -1;
	}
	if (!is_hex64(*expect)) {
		fprintf(stderr, "tinylm: --expect-sha256 must be 64 lowercase hex digits\n");
		return -1;
	}
	return 0;
}

static int setup_signals(int *wake_r)
{
	struct sigaction sa;
	int fds[2];

	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
		return rh_error_set_errno(RH_EIO, errno, "pipe");
	*wake_r = fds[0];
	tlm_wake_w = fds[1];
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	return 0;
}

/* The loader runs with signals blocked so that they reach the loop. */
static int start_loader(struct tlm_server *srv, pthread_t *tid)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(tid, NULL, loader_main, srv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return rh_error_set_errno(RH_ERROR, rc, "cannot start the loader thread");
	return 0;
}

static void server_release(struct tlm_server *srv)
{
	for (size_t i = 0; i < srv->n_files; i++) {
		if (srv->files[i].map)
			munmap(srv->files[i].map, srv->files[i].size);
		free(srv->files[i].path);
	}
	free(srv->files);
	json_decref(srv->manifest);
	if (srv->dir_fd >= 0)
		close(srv->dir_fd);
	pthread_mutex_destroy(&srv->fail_lock);
}

int main(int argc, char **argv)
{
	struct tlm_server srv;
	struct tlm_http http;
	const char *dir = NULL, *expect = NULL, *host = "127.0.0.1", *port = "8080";
	char addr[64];
	pthread_t loader;
	int io_timeout_ms = 10000, bound = 0, wake_r = -1, have_loader = 0, status = 1, rc;

	memset(&srv, 0, sizeof(srv));
	srv.dir_fd = -1;
	pthread_mutex_init(&srv.fail_lock, NULL);
	tlm_http_init(&http, -1, io_timeout_ms);
	rc = parse_args(argc, argv, &dir, &expect, &host, &port, &io_timeout_ms, &srv);
	if (rc != 0) {
		status = rc > 0 ? 0 : TLM_EXIT_USAGE;
		goto done;
	}
	srv.model_dir = dir;
	srv.dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (srv.dir_fd < 0) {
		fprintf(stderr, "tinylm: cannot open model dir %s: %s\n", dir, strerror(errno));
		status = TLM_EXIT_IDENTITY;
		goto done;
	}
	if (load_manifest(&srv, expect) < 0) {
		fprintf(stderr, "tinylm: %s\n", rh_error_last());
		status = TLM_EXIT_IDENTITY;
		goto done;
	}
	if (setup_signals(&wake_r) < 0)
		goto fail;
	tlm_http_init(&http, wake_r, io_timeout_ms);
	srv.http = &http;
	http.handle = handle;
	http.wake = on_wake;
	http.ctx = &srv;
	if (tlm_http_listen(&http, host, port, addr, sizeof(addr), &bound) < 0)
		goto fail;
	printf("{\"event\":\"listening\",\"host\":\"%s\",\"port\":%d}\n", addr, bound);
	fflush(stdout);
	fprintf(
	    stderr, "tinylm: listening on %s port %d; verifying %zu files (%llu bytes) of %s %s\n",
	    addr, bound, srv.n_files, (unsigned long long)srv.bytes_total, srv.name, srv.version);
	if (start_loader(&srv, &loader) < 0)
		goto fail;
	have_loader = 1;
	rc = tlm_http_run(&http);
	if (rc < 0)
		goto fail;
	if (rc == 2) {
		fprintf(stderr, "tinylm: verification failed: %s\n", srv.fail_msg);
		status = TLM_EXIT_VERIFY;
	} else {
		fprintf(stderr, "tinylm: stopping on signal\n");
		status = 0;
	}
	goto done;
fail:
	fprintf(stderr, "tinylm: %s\n", rh_error_last());
	status = 1;
done:
	if (have_loader) {
		atomic_store(&srv.stop, 1);
		pthread_join(loader, NULL);
	}
	tlm_http_release(&http);
	server_release(&srv);
	if (wake_r >= 0)
		close(wake_r);
	if (tlm_wake_w >= 0)
		close(tlm_wake_w);
	return status;
}
