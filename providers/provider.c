/*
 * provider.c - the table of provider adapters and the per-drill context.
 *
 * Adapters are compiled in and listed here, once: the engine and the
 * runbook parser find them by name through rh_provider_find() and never
 * name an adapter themselves. The context carries what one drill's target
 * learnt (outputs) and the adapter's private state between hooks.
 */
#include "provider.h"
#include "cloud.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

#include "banned.h"

const struct rh_provider_ops *const rh_providers[] = {
    &rh_provider_local,	   &rh_provider_ssh,	 &rh_cloud_aws.ops,
    &rh_cloud_alibaba.ops, &rh_cloud_nebius.ops, NULL,
};

const struct rh_provider_ops *rh_provider_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; rh_providers[i]; i++)
		if (strcmp(rh_providers[i]->name, name) == 0)
			return rh_providers[i];
	return NULL;
}

int rh_provider_ctx_new(struct rh_provider_ctx **out, const struct rh_provider_ops *ops,
			const json_t *target, const char *drill_id, const char *state_dir,
			const char *drill_dir)
{
	struct rh_provider_ctx *p = NULL;
	int err = 0;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p) {
		err = rh_error_set(RH_ENOMEM, "out of memory creating the provider context");
		goto done;
	}
	p->outputs = json_object();
	if (!p->outputs) {
		err = rh_error_set(RH_ENOMEM, "out of memory creating the provider context");
		goto done;
	}
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		json_decref(p->outputs);
		err = rh_error_set(RH_ENOMEM, "cannot create the provider context's lock");
		goto done;
	}
	p->ops = ops;
	p->target = target;
	p->drill_id = drill_id;
	p->state_dir = state_dir;
	p->drill_dir = drill_dir;
	*out = p;
	p = NULL;
done:
	free(p);
	return err;
}

void rh_provider_ctx_free(struct rh_provider_ctx *p)
{
	if (!p)
		return;
	if (p->ops && p->ops->free)
		p->ops->free(p);
	if (p->expander.free_user)
		p->expander.free_user(p->expander.user);
	json_decref(p->outputs);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int rh_provider_expand(struct rh_provider_ctx *p, json_t **out, const json_t *value,
		       const json_t *bind)
{
	*out = NULL;
	if (!p->expander.expand)
		return rh_error_set(
		    RH_EUNSUPPORTED,
		    "the %s provider was given no way to expand ${...}: its context "
		    "was not created by the orchestrator",
		    p->ops ? p->ops->name : "?");
	return p->expander.expand(p->expander.user, out, value, bind);
}

const json_t *rh_provider_target(const struct rh_provider_ctx *p, const struct rh_provider_call *c)
{
	return c && c->target ? c->target : p->target;
}

int rh_provider_check_add(json_t *checks, const char *name, bool ok, const char *message,
			  const char *next)
{
	json_t *o = json_pack("{s:s, s:b, s:s}", "check", name, "ok", ok, "message",
			      message ? message : "");

	if (o && next && json_object_set_new(o, "next", json_string(next)) < 0) {
		json_decref(o);
		o = NULL;
	}
	if (!o || json_array_append_new(checks, o) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory recording a pre-flight check");
	return 0;
}

int rh_provider_standby_name_check(const char *model)
{
	size_t n = model ? strlen(model) : 0;

	if (n == 0 || n > 128 || strcmp(model, ".") == 0 || strcmp(model, "..") == 0 ||
	    strspn(model, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
		return rh_error_set(RH_EINVAL,
				    "model name \"%s\" cannot name a standby directory (letters, "
				    "digits, '.', '_' and '-' only)",
				    model ? model : "");
	return 0;
}
