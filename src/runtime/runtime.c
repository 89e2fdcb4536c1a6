/*
 * runtime.c - the runtime interface's dispatch: each runtime_* call checks
 * its handle and forwards to the implementation's ops table.
 */
#include "runtime/runtime.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

#define RUNTIME_NAME_MAX 253

void job_status_free(struct job_status *st)
{
	if (!st)
		return;
	free(st->reason);
	free(st->started_at);
	free(st->finished_at);
	memset(st, 0, sizeof(*st));
}

static int name_char(char c, int edge)
{
	if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return 1;
	return !edge && (c == '-' || c == '.');
}

int runtime_check_name(const char *what, const char *name)
{
	size_t len;

	if (!name || !*name)
		return al_error_set(AL_ERR_INVALID, "%s name is empty", what);
	len = strlen(name);
	if (len > RUNTIME_NAME_MAX)
		return al_error_set(AL_ERR_INVALID, "%s name is %zu characters long; at most %d are allowed",
				    what, len, RUNTIME_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		if (!name_char(name[i], i == 0 || i == len - 1))
			return al_error_set(AL_ERR_INVALID,
					    "%s name '%.*s' is not allowed: use lower-case letters, digits, '-' "
					    "and '.', starting and ending with a letter or digit",
					    what, (int)(len > 80 ? 80 : len), name);
	}
	if (strstr(name, ".."))
		return al_error_set(AL_ERR_INVALID, "%s name '%s' must not contain '..'", what, name);
	return AL_OK;
}

static int env_name_ok(const char *env)
{
	if (!env || !*env || (*env >= '0' && *env <= '9') || strlen(env) > 128)
		return 0;
	for (const char *p = env; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return 0;
	return 1;
}

int runtime_check_job_spec(const struct job_spec *spec)
{
	int rc;

	if (!spec)
		return al_error_set(AL_ERR_INVALID, "job spec is missing");
	if ((rc = runtime_check_name("job", spec->name)) < 0)
		return rc;
	if (spec->image != JOB_IMAGE_AIRLOCK && spec->image != JOB_IMAGE_DLT)
		return al_error_set(AL_ERR_INVALID, "job '%s': unknown image %d", spec->name, (int)spec->image);
	if (!spec->args || (spec->image == JOB_IMAGE_AIRLOCK &&
			    (!spec->args[0] || !spec->args[0][0] || spec->args[0][0] == '-')))
		return al_error_set(AL_ERR_INVALID, "job '%s': args must start with an airlock subcommand", spec->name);
	for (size_t i = 0; i < JOB_ENV_MAX; i++) {
		const struct job_env *e = &spec->env[i];
		if (!e->name)
			continue;
		if (!env_name_ok(e->name) || !strcmp(e->name, RUNTIME_JOB_NAME_ENV) || !e->value)
			return al_error_set(AL_ERR_INVALID, "job '%s': env[%zu] '%.40s' is not allowed (a name of "
							    "upper-case letters, digits and '_', not %s, with a value)",
					    spec->name, i, e->name, RUNTIME_JOB_NAME_ENV);
		for (size_t k = 0; k < JOB_MOUNTS_MAX; k++)
			if (spec->mounts[k].env && !strcmp(spec->mounts[k].env, e->name))
				return al_error_set(AL_ERR_INVALID, "job '%s': env[%zu] %s is also set by mounts[%zu]",
						    spec->name, i, e->name, k);
		for (size_t k = 0; k < i; k++)
			if (spec->env[k].name && !strcmp(spec->env[k].name, e->name))
				return al_error_set(AL_ERR_INVALID, "job '%s': env[%zu] and env[%zu] both set %s",
						    spec->name, k, i, e->name);
	}
	if (spec->timeout_seconds < 0)
		return al_error_set(AL_ERR_INVALID, "job '%s': timeout_seconds must be >= 0 (0 = no limit)", spec->name);
	for (size_t i = 0; i < JOB_MOUNTS_MAX; i++) {
		const struct job_mount *m = &spec->mounts[i];
		if (!m->env)
			continue;
		if (!env_name_ok(m->env) || !strcmp(m->env, RUNTIME_JOB_NAME_ENV))
			return al_error_set(AL_ERR_INVALID,
					    "job '%s': mounts[%zu].env '%.40s' is not allowed: use upper-case letters, "
					    "digits and '_', not starting with a digit, and not %s",
					    spec->name, i, m->env, RUNTIME_JOB_NAME_ENV);
		for (size_t k = 0; k < i; k++)
			if (spec->mounts[k].env && !strcmp(spec->mounts[k].env, m->env))
				return al_error_set(AL_ERR_INVALID, "job '%s': mounts[%zu] and mounts[%zu] both set %s",
						    spec->name, k, i, m->env);
		if (m->kind != JOB_MOUNT_VOLUME && m->kind != JOB_MOUNT_SECRET)
			return al_error_set(AL_ERR_INVALID, "job '%s': mounts[%zu] is neither a volume nor a secret",
					    spec->name, i);
		if (m->kind == JOB_MOUNT_VOLUME && m->cls != VOLUME_STAGING && m->cls != VOLUME_WORKSPACE)
			return al_error_set(AL_ERR_INVALID, "job '%s': mounts[%zu]: volume class %d is neither staging "
					    "nor workspace", spec->name, i, (int)m->cls);
		if ((rc = runtime_check_name(m->kind == JOB_MOUNT_VOLUME ? "volume" : "secret", m->name)) < 0)
			return al_error_wrap(rc, "job '%s': mounts[%zu]", spec->name, i);
	}
	return AL_OK;
}

#define DISPATCH(rt, fn, ...)                                                                      \
	do {                                                                                       \
		if (!(rt) || !(rt)->ops)                                                           \
			return al_error_set(AL_ERR_INVALID, "runtime is not open");                \
		if (!(rt)->ops->fn)                                                                \
			return al_error_set(AL_ERR_INTERNAL, "this runtime does not support " #fn); \
		return (rt)->ops->fn((rt), __VA_ARGS__);                                           \
	} while (0)

int runtime_owner_from_object(struct runtime_owner *out, const json_t *obj)
{
	const json_t *meta = json_object_get(obj, "metadata");

	memset(out, 0, sizeof(*out));
	out->api_version = json_string_value(json_object_get(obj, "apiVersion"));
	out->kind = json_string_value(json_object_get(obj, "kind"));
	out->namespace = json_string_value(json_object_get(meta, "namespace"));
	out->name = json_string_value(json_object_get(meta, "name"));
	out->uid = json_string_value(json_object_get(meta, "uid"));
	if (!out->api_version || !*out->api_version || !out->kind || !*out->kind || !out->name || !*out->name ||
	    !out->uid || !*out->uid) {
		memset(out, 0, sizeof(*out));
		return al_error_set(AL_ERR_INVALID, "owner object lacks apiVersion, kind, metadata.name or metadata.uid");
	}
	return AL_OK;
}

int runtime_volume_ensure(struct runtime *rt, enum volume_class cls, const char *name, char **out_path)
{
	DISPATCH(rt, volume_ensure, cls, name, NULL, out_path);
}

int runtime_volume_ensure_owned(struct runtime *rt, enum volume_class cls, const char *name,
				const struct runtime_owner *owner, char **out_path)
{
	DISPATCH(rt, volume_ensure, cls, name, owner, out_path);
}

int runtime_volume_delete(struct runtime *rt, enum volume_class cls, const char *name)
{
	DISPATCH(rt, volume_delete, cls, name);
}

int runtime_secret_ensure(struct runtime *rt, const char *name, const json_t *data)
{
	DISPATCH(rt, secret_ensure, name, data, NULL);
}

int runtime_secret_ensure_owned(struct runtime *rt, const char *name, const json_t *data,
				const struct runtime_owner *owner)
{
	DISPATCH(rt, secret_ensure, name, data, owner);
}

int runtime_secret_delete(struct runtime *rt, const char *name)
{
	DISPATCH(rt, secret_delete, name);
}

int runtime_job_start(struct runtime *rt, const struct job_spec *spec)
{
	DISPATCH(rt, job_start, spec);
}

int runtime_job_get(struct runtime *rt, const char *name, struct job_status *out)
{
	DISPATCH(rt, job_get, name, out);
}

int runtime_job_logs(struct runtime *rt, const char *name, char **out)
{
	DISPATCH(rt, job_logs, name, out);
}

int runtime_job_delete(struct runtime *rt, const char *name)
{
	DISPATCH(rt, job_delete, name);
}

int runtime_uploader_ensure(struct runtime *rt, const char *name, const char *volume,
			    const struct runtime_owner *owner)
{
	DISPATCH(rt, uploader_ensure, name, volume, owner);
}

int runtime_uploader_delete(struct runtime *rt, const char *name)
{
	DISPATCH(rt, uploader_delete, name);
}

void runtime_close(struct runtime *rt)
{
	if (rt && rt->ops && rt->ops->close)
		rt->ops->close(rt);
}
