/*
 * runtime_kube.c - the runtime on Kubernetes (runtime_kube.h,
 * docs/kube-runtime.md): PersistentVolumeClaims, Secrets, batch/v1 Jobs and
 * the uploader's Deployment, Service and Ingress, in one namespace.
 *
 * Every "ensure" reads before it writes (GET, then POST when absent) instead
 * of relying on AlreadyExists alone: admission (a ResourceQuota above all)
 * runs before the existence check, so a create of an object that exists can
 * be refused with 403 in a namespace at its quota, and a reconcile of an
 * existing datasource must never fail for that. A create that loses a race
 * (AlreadyExists) is fine too: what exists is never modified.
 *
 * Every delete reads the object first and refuses one without the label
 * app.kubernetes.io/managed-by=airlock, then deletes with a uid
 * precondition, so an object replaced in between by someone else's is not
 * deleted either. This is what keeps a workspace's own claim safe.
 *
 * Job logs are plain text: kube_request_text (kube.h) reads them.
 */
#include "runtime/runtime_kube.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "kube/kube.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define KUBE_DEADLINE_MS 10000
#define LOGS_TIMEOUT_MS 120000L
#define LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define LABEL_PART_OF "app.kubernetes.io/part-of"
#define LABEL_VOLUME_CLASS "xlscsde.nhs.uk/volume-class"
#define LABEL_DATASOURCE_UID "xlscsde.nhs.uk/datasource-uid"
#define ANNOTATION_OWNER "xlscsde.nhs.uk/owner"
#define LABEL_JOB_NAME "job-name"
#define LABEL_APP_NAME "app.kubernetes.io/name"
#define LABEL_INSTANCE "app.kubernetes.io/instance"
#define UPLOADER_APP "airlock-uploader"
#define JOB_CONTAINER "airlock"
#define UPLOADER_CONTAINER "uploader"
/* A Job's name becomes the job-name label of its pods: at most 63. */
#define LABEL_VALUE_MAX 63

/* How many names the runtime remembers having ensured (see `ensured`). */
#define ENSURED_MAX 4096

struct runtime_kube {
	struct runtime base;
	struct kube_client *kc; /* borrowed */
	struct runtime_kube_options o;
	/* "<resource>/<name>" of the claims and Secrets this runtime ensured
	 * and has not deleted since: a job mounting them is started without
	 * reading each one back first. Emptied when it grows past ENSURED_MAX. */
	pthread_mutex_t lock;
	json_t *ensured;
};

static struct runtime_kube *kube_of(struct runtime *rt)
{
	return (struct runtime_kube *)rt;
}

static int oom(void)
{
	return al_error_set(AL_ERR_NOMEM, "out of memory");
}

/* ---- options ---------------------------------------------------------- */

static int set_str(char **dst, const char *v)
{
	char *c = NULL;
	if (v && !(c = util_strdup(v)))
		return oom();
	free(*dst);
	*dst = c;
	return AL_OK;
}

int runtime_kube_options_init(struct runtime_kube_options *o)
{
	memset(o, 0, sizeof(*o));
	o->backoff_limit = 0;
	o->active_deadline_seconds = RUNTIME_KUBE_DEFAULT_DEADLINE;
	o->ttl_seconds_after_finished = RUNTIME_KUBE_DEFAULT_TTL;
	o->run_as_user = o->run_as_group = o->fs_group = RUNTIME_KUBE_DEFAULT_UID;
	o->frontend_service_port = RUNTIME_KUBE_DEFAULT_FRONTEND_PORT;
	if (set_str(&o->namespace, RUNTIME_KUBE_DEFAULT_NAMESPACE) ||
	    set_str(&o->staging_storage_class, RUNTIME_KUBE_DEFAULT_STORAGE_CLASS) ||
	    set_str(&o->workspace_storage_class, RUNTIME_KUBE_DEFAULT_STORAGE_CLASS) ||
	    set_str(&o->staging_size, RUNTIME_KUBE_DEFAULT_SIZE) || set_str(&o->upload_size, RUNTIME_KUBE_DEFAULT_SIZE) ||
	    set_str(&o->workspace_size, RUNTIME_KUBE_DEFAULT_SIZE) ||
	    set_str(&o->access_mode, RUNTIME_KUBE_DEFAULT_ACCESS_MODE) ||
	    set_str(&o->runner_image, RUNTIME_KUBE_DEFAULT_IMAGE) ||
	    set_str(&o->runner_pull_policy, RUNTIME_KUBE_DEFAULT_PULL_POLICY) ||
	    set_str(&o->dlt_runner_image, RUNTIME_KUBE_DEFAULT_DLT_IMAGE) ||
	    set_str(&o->uploader_image, RUNTIME_KUBE_DEFAULT_IMAGE) ||
	    set_str(&o->uploader_pull_policy, RUNTIME_KUBE_DEFAULT_PULL_POLICY) ||
	    set_str(&o->uploader_proxy_secret, RUNTIME_KUBE_DEFAULT_PROXY_SECRET) ||
	    set_str(&o->uploader_proxy_secret_key, RUNTIME_KUBE_DEFAULT_PROXY_SECRET_KEY) ||
	    set_str(&o->frontend_service, RUNTIME_KUBE_DEFAULT_FRONTEND_SERVICE)) {
		runtime_kube_options_free(o);
		return oom();
	}
	return AL_OK;
}

void runtime_kube_options_free(struct runtime_kube_options *o)
{
	if (!o)
		return;
	free(o->namespace);
	free(o->staging_storage_class);
	free(o->upload_storage_class);
	free(o->workspace_storage_class);
	free(o->staging_size);
	free(o->upload_size);
	free(o->workspace_size);
	free(o->access_mode);
	free(o->workspace_access_mode);
	free(o->runner_image);
	free(o->runner_pull_policy);
	free(o->dlt_runner_image);
	json_decref(o->runner_resources);
	free(o->uploader_image);
	free(o->uploader_pull_policy);
	json_decref(o->uploader_resources);
	free(o->ingress_class);
	free(o->ingress_host);
	free(o->ingress_tls_secret);
	json_decref(o->ingress_annotations);
	free(o->uploader_proxy_secret);
	free(o->uploader_proxy_secret_key);
	free(o->frontend_service);
	memset(o, 0, sizeof(*o));
}

/* A set, non-empty variable, or NULL. */
static const char *env_value(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static int env_str(char **dst, const char *name)
{
	const char *v = env_value(name);
	return v ? set_str(dst, v) : AL_OK;
}

/* Set means what it says, even empty (= none). */
static int env_str_or_none(char **dst, const char *name)
{
	const char *v = getenv(name);
	if (!v)
		return AL_OK;
	return set_str(dst, *v ? v : NULL);
}

static int env_long(long *dst, const char *name, long min, long max)
{
	const char *v = env_value(name);
	char *end;
	long n;

	if (!v)
		return AL_OK;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < min || n > max)
		return al_error_set(AL_ERR_INVALID, "%s='%.40s' is not a whole number from %ld to %ld", name, v, min, max);
	*dst = n;
	return AL_OK;
}

static int env_int(int *dst, const char *name, int min, int max)
{
	long n = *dst;
	int rc = env_long(&n, name, min, max);
	if (!rc)
		*dst = (int)n;
	return rc;
}

/* A JSON object (the chart renders maps with toJson); `strings` asks that
 * every value be a string (annotations). */
static int env_json(json_t **dst, const char *name, int strings)
{
	const char *v = env_value(name);
	json_error_t jerr;
	json_t *j, *val;
	const char *k;
	int rc;

	if (!v)
		return AL_OK;
	if (!(j = json_loads(v, JSON_REJECT_DUPLICATES, &jerr)) || !json_is_object(j)) {
		json_decref(j);
		return al_error_set(AL_ERR_INVALID, "%s is not a JSON object (%s)", name, j ? "another JSON value" : jerr.text);
	}
	if (strings) {
		json_object_foreach(j, k, val) {
			if (!json_is_string(val)) {
				rc = al_error_set(AL_ERR_INVALID, "%s: the value of '%.80s' is not a string", name, k);
				json_decref(j);
				return rc;
			}
		}
	}
	json_decref(*dst);
	*dst = json_object_size(j) ? j : NULL;
	if (!*dst)
		json_decref(j);
	return AL_OK;
}

int runtime_kube_options_from_env(struct runtime_kube_options *o)
{
	int rc;

	if ((rc = env_str(&o->namespace, "AIRLOCK_LEASE_NAMESPACE")) || (rc = env_str(&o->namespace, "AIRLOCK_NAMESPACE")) ||
	    (rc = env_str(&o->staging_storage_class, "AIRLOCK_STORAGE_CLASS")) ||
	    (rc = env_str(&o->upload_storage_class, "AIRLOCK_STAGING_STORAGE_CLASS")) ||
	    (rc = env_str(&o->workspace_storage_class, "AIRLOCK_WORKSPACE_STORAGE_CLASS")) ||
	    (rc = env_str(&o->staging_size, "AIRLOCK_IMPORT_VOLUME_SIZE")) ||
	    (rc = env_str(&o->upload_size, "AIRLOCK_STAGING_VOLUME_SIZE")) ||
	    (rc = env_str(&o->workspace_size, "AIRLOCK_WORKSPACE_VOLUME_SIZE")) ||
	    (rc = env_str(&o->access_mode, "AIRLOCK_VOLUME_ACCESS_MODE")) ||
	    (rc = env_str(&o->workspace_access_mode, "AIRLOCK_WORKSPACE_VOLUME_ACCESS_MODE")) ||
	    (rc = env_str(&o->runner_image, "AIRLOCK_RUNNER_IMAGE")) ||
	    (rc = env_str(&o->runner_pull_policy, "AIRLOCK_RUNNER_IMAGE_PULL_POLICY")) ||
	    (rc = env_str(&o->dlt_runner_image, "AIRLOCK_DLT_RUNNER_IMAGE")) ||
	    (rc = env_json(&o->runner_resources, "AIRLOCK_RUNNER_RESOURCES", 0)) ||
	    (rc = env_str(&o->uploader_image, "AIRLOCK_UPLOADER_IMAGE")) ||
	    (rc = env_str(&o->uploader_pull_policy, "AIRLOCK_UPLOADER_IMAGE_PULL_POLICY")) ||
	    (rc = env_json(&o->uploader_resources, "AIRLOCK_UPLOADER_RESOURCES", 0)) ||
	    (rc = env_str_or_none(&o->ingress_class, "AIRLOCK_INGRESS_CLASS")) ||
	    (rc = env_str_or_none(&o->ingress_host, "AIRLOCK_INGRESS_HOST")) ||
	    (rc = env_str_or_none(&o->ingress_tls_secret, "AIRLOCK_INGRESS_TLS_SECRET")) ||
	    (rc = env_json(&o->ingress_annotations, "AIRLOCK_INGRESS_ANNOTATIONS", 1)) ||
	    (rc = env_str(&o->uploader_proxy_secret, "AIRLOCK_UPLOADER_PROXY_SECRET")) ||
	    (rc = env_str(&o->uploader_proxy_secret_key, "AIRLOCK_UPLOADER_PROXY_SECRET_KEY")) ||
	    (rc = env_str(&o->frontend_service, "AIRLOCK_FRONTEND_SERVICE")) ||
	    (rc = env_int(&o->frontend_service_port, "AIRLOCK_FRONTEND_SERVICE_PORT", 1, 65535)) ||
	    (rc = env_int(&o->backoff_limit, "AIRLOCK_JOB_BACKOFF_LIMIT", 0, 100)) ||
	    (rc = env_int(&o->active_deadline_seconds, "AIRLOCK_JOB_ACTIVE_DEADLINE_SECONDS", 0, INT_MAX)) ||
	    (rc = env_int(&o->ttl_seconds_after_finished, "AIRLOCK_JOB_TTL_SECONDS_AFTER_FINISHED", -1, INT_MAX)) ||
	    (rc = env_long(&o->run_as_user, "AIRLOCK_RUN_AS_USER", 1, INT_MAX)) ||
	    (rc = env_long(&o->run_as_group, "AIRLOCK_RUN_AS_GROUP", 1, INT_MAX)) ||
	    (rc = env_long(&o->fs_group, "AIRLOCK_FS_GROUP", 1, INT_MAX)))
		return rc;
	return AL_OK;
}

/* ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$, at most `max` (and, with `alpha`, a
 * letter first: a Service's name is an RFC 1035 label). */
static int dns_label(const char *s, size_t max, int alpha)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max)
		return 0;
	if (alpha && !(s[0] >= 'a' && s[0] <= 'z'))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && !(c == '-' && i > 0 && i < n - 1))
			return 0;
	}
	return 1;
}

static int one_of(const char *v, const char *const *set)
{
	for (; v && *set; set++)
		if (!strcmp(v, *set))
			return 1;
	return 0;
}

/* A Secret's data key: [-._a-zA-Z0-9]+, at most 253. */
static int secret_key_ok(const char *k)
{
	size_t n = k ? strlen(k) : 0;
	if (n == 0 || n > 253 || !strcmp(k, ".") || !strcmp(k, ".."))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = k[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return 0;
	}
	return 1;
}

static int check_options(const struct runtime_kube_options *o)
{
	static const char *const policies[] = { "Always", "IfNotPresent", "Never", NULL };
	static const char *const modes[] = { "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod", NULL };
	const char *req[][2] = { { "namespace", o->namespace },
				 { "staging storage class", o->staging_storage_class },
				 { "workspace storage class", o->workspace_storage_class },
				 { "staging claim size", o->staging_size },
				 { "upload claim size", o->upload_size },
				 { "workspace claim size", o->workspace_size },
				 { "runner image", o->runner_image },
				 { "dlt runner image", o->dlt_runner_image },
				 { "uploader image", o->uploader_image },
				 { "uploader proxy Secret", o->uploader_proxy_secret },
				 { "uploader proxy Secret key", o->uploader_proxy_secret_key },
				 { "frontend Service", o->frontend_service } };

	for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
		if (!req[i][1] || !*req[i][1])
			return al_error_set(AL_ERR_INVALID, "kube runtime: the %s is empty", req[i][0]);
	if (!dns_label(o->namespace, 63, 0))
		return al_error_set(AL_ERR_INVALID, "kube runtime: namespace '%.80s' is not a DNS label (lower-case letters, digits, '-')",
				    o->namespace);
	if (!one_of(o->runner_pull_policy, policies) || !one_of(o->uploader_pull_policy, policies))
		return al_error_set(AL_ERR_INVALID, "kube runtime: an image pull policy must be Always, IfNotPresent or Never");
	if (!one_of(o->access_mode, modes) || (o->workspace_access_mode && !one_of(o->workspace_access_mode, modes)))
		return al_error_set(AL_ERR_INVALID, "kube runtime: a volume access mode must be ReadWriteOnce, ReadOnlyMany, "
				    "ReadWriteMany or ReadWriteOncePod");
	if (o->backoff_limit < 0 || o->active_deadline_seconds < 0)
		return al_error_set(AL_ERR_INVALID, "kube runtime: backoffLimit and activeDeadlineSeconds must be >= 0");
	if (o->run_as_user < 1 || o->run_as_group < 1 || o->fs_group < 1)
		return al_error_set(AL_ERR_INVALID, "kube runtime: runAsUser, runAsGroup and fsGroup must be non-root ids (> 0)");
	if (o->ingress_tls_secret && !o->ingress_host)
		return al_error_set(AL_ERR_INVALID, "kube runtime: an ingress TLS Secret needs an ingress host");
	/* Both name objects in `namespace`: a Secret name is a DNS subdomain,
	 * but the chart's is a label, and a Service name must be one. */
	if (!dns_label(o->uploader_proxy_secret, 253, 0))
		return al_error_set(AL_ERR_INVALID, "kube runtime: uploader proxy Secret '%.80s' is not a valid name",
				    o->uploader_proxy_secret);
	if (!secret_key_ok(o->uploader_proxy_secret_key))
		return al_error_set(AL_ERR_INVALID,
				    "kube runtime: uploader proxy Secret key '%.80s' is not a valid key ([-._a-zA-Z0-9]+)",
				    o->uploader_proxy_secret_key);
	if (!dns_label(o->frontend_service, 63, 1))
		return al_error_set(AL_ERR_INVALID, "kube runtime: frontend Service '%.80s' is not a Service name (RFC 1035 label)",
				    o->frontend_service);
	if (o->frontend_service_port < 1 || o->frontend_service_port > 65535)
		return al_error_set(AL_ERR_INVALID, "kube runtime: the frontend Service port must be from 1 to 65535");
	return AL_OK;
}

static int copy_options(struct runtime_kube_options *d, const struct runtime_kube_options *s)
{
	memset(d, 0, sizeof(*d));
	*d = *s;
	/* now deep-copy every pointer */
	d->namespace = d->staging_storage_class = d->upload_storage_class = d->workspace_storage_class = NULL;
	d->staging_size = d->upload_size = d->workspace_size = d->access_mode = d->workspace_access_mode = NULL;
	d->runner_image = d->runner_pull_policy = d->uploader_image = d->uploader_pull_policy = NULL;
	d->dlt_runner_image = NULL;
	d->ingress_class = d->ingress_host = d->ingress_tls_secret = NULL;
	d->uploader_proxy_secret = d->uploader_proxy_secret_key = d->frontend_service = NULL;
	d->runner_resources = json_deep_copy(s->runner_resources);
	d->uploader_resources = json_deep_copy(s->uploader_resources);
	d->ingress_annotations = json_deep_copy(s->ingress_annotations);
	if (set_str(&d->namespace, s->namespace) || set_str(&d->staging_storage_class, s->staging_storage_class) ||
	    set_str(&d->upload_storage_class, s->upload_storage_class) ||
	    set_str(&d->workspace_storage_class, s->workspace_storage_class) || set_str(&d->staging_size, s->staging_size) ||
	    set_str(&d->upload_size, s->upload_size) || set_str(&d->workspace_size, s->workspace_size) ||
	    set_str(&d->access_mode, s->access_mode) || set_str(&d->workspace_access_mode, s->workspace_access_mode) ||
	    set_str(&d->runner_image, s->runner_image) || set_str(&d->runner_pull_policy, s->runner_pull_policy) ||
	    set_str(&d->dlt_runner_image, s->dlt_runner_image) ||
	    set_str(&d->uploader_image, s->uploader_image) || set_str(&d->uploader_pull_policy, s->uploader_pull_policy) ||
	    set_str(&d->ingress_class, s->ingress_class) || set_str(&d->ingress_host, s->ingress_host) ||
	    set_str(&d->ingress_tls_secret, s->ingress_tls_secret) ||
	    set_str(&d->uploader_proxy_secret, s->uploader_proxy_secret) ||
	    set_str(&d->uploader_proxy_secret_key, s->uploader_proxy_secret_key) ||
	    set_str(&d->frontend_service, s->frontend_service) || (s->runner_resources && !d->runner_resources) ||
	    (s->uploader_resources && !d->uploader_resources) || (s->ingress_annotations && !d->ingress_annotations)) {
		runtime_kube_options_free(d);
		return oom();
	}
	return AL_OK;
}

/* ---- requests ---------------------------------------------------------- */

static int request(struct runtime_kube *rk, const char *method, const char *path, const json_t *body, json_t **out)
{
	return kube_request_retry(rk->kc, method, path, body, NULL, KUBE_DEADLINE_MS, NULL, out);
}

/* Path of one object (name may be NULL: the collection). */
static int object_path(struct runtime_kube *rk, const char *gv, const char *resource, const char *name, char **out)
{
	if (!(*out = kube_path(gv, rk->o.namespace, resource, name, NULL)))
		return al_error_wrap(AL_ERR_INVALID, "%s %.80s", resource, name ? name : "");
	return AL_OK;
}

/* GETs an object: AL_OK with *out, AL_ERR_NOT_FOUND, or another error. */
static int get_object(struct runtime_kube *rk, const char *gv, const char *resource, const char *name, json_t **out)
{
	char *path = NULL;
	int rc;

	*out = NULL;
	if ((rc = object_path(rk, gv, resource, name, &path)))
		return rc;
	rc = request(rk, "GET", path, NULL, out);
	if (rc) {
		json_decref(*out);
		*out = NULL;
	}
	free(path);
	return rc;
}

static void ensured_mark(struct runtime_kube *rk, const char *resource, const char *name, int present)
{
	struct buf key;
	buf_init(&key, 1024);
	if (buf_appendf(&key, "%s/%s", resource, name) == AL_OK) {
		pthread_mutex_lock(&rk->lock);
		if (!present)
			json_object_del(rk->ensured, buf_cstr(&key));
		else {
			if (json_object_size(rk->ensured) >= ENSURED_MAX)
				json_object_clear(rk->ensured);
			json_object_set_new(rk->ensured, buf_cstr(&key), json_true());
		}
		pthread_mutex_unlock(&rk->lock);
	}
	buf_free(&key);
}

static int ensured_known(struct runtime_kube *rk, const char *resource, const char *name)
{
	struct buf key;
	int known = 0;
	buf_init(&key, 1024);
	if (buf_appendf(&key, "%s/%s", resource, name) == AL_OK) {
		pthread_mutex_lock(&rk->lock);
		known = json_object_get(rk->ensured, buf_cstr(&key)) != NULL;
		pthread_mutex_unlock(&rk->lock);
	}
	buf_free(&key);
	return known;
}

/* Creates `body` unless an object of that name exists; never modifies one.
 * Created first (the usual case is a new object: one request, not two); an
 * existing one answers 409 and is left as it is. */
static int ensure_object(struct runtime_kube *rk, const char *gv, const char *resource, const char *name,
			 const json_t *body)
{
	char *path = NULL;
	int rc;

	/* Ensured by this runtime and not deleted by it since: nothing to do.
	 * (Only the airlock deletes what it made.) */
	if (ensured_known(rk, resource, name))
		return AL_OK;
	if ((rc = object_path(rk, gv, resource, NULL, &path)))
		return rc;
	rc = request(rk, "POST", path, body, NULL);
	if (rc == AL_ERR_EXISTS)
		rc = AL_OK;
	if (rc == AL_OK)
		ensured_mark(rk, resource, name, 1);
	free(path);
	return rc;
}

static const char *label_of(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), key));
}

static int managed(const json_t *obj)
{
	const char *v = label_of(obj, LABEL_MANAGED_BY);
	return v && !strcmp(v, RUNTIME_KUBE_MANAGED_BY);
}

/*
 * Deletes an object the airlock made: AL_OK when it is gone (or was never
 * there); AL_ERR_FORBIDDEN, untouched, when it lacks the managed-by label or
 * (expect_class) is of another volume class. The uid precondition makes
 * sure the object deleted is the one looked at.
 */
static int delete_managed(struct runtime_kube *rk, const char *gv, const char *resource, const char *what,
			  const char *name, const char *expect_class)
{
	char *path = NULL;
	int rc = AL_OK;

	if ((rc = object_path(rk, gv, resource, name, &path)))
		return rc;
	ensured_mark(rk, resource, name, 0);
	for (int attempt = 0; attempt < 3; attempt++) {
		json_t *cur = NULL, *opts;
		const char *uid, *cls;

		rc = request(rk, "GET", path, NULL, &cur);
		if (rc) {
			json_decref(cur);
			if (rc == AL_ERR_NOT_FOUND)
				rc = AL_OK;
			break;
		}
		if (!managed(cur)) {
			rc = al_error_set(AL_ERR_FORBIDDEN,
					  "%s %s/%s was not created by the airlock (it lacks the label %s=%s): the airlock "
					  "never deletes what it did not create, so it is left in place",
					  what, rk->o.namespace, name, LABEL_MANAGED_BY, RUNTIME_KUBE_MANAGED_BY);
			json_decref(cur);
			break;
		}
		cls = label_of(cur, LABEL_VOLUME_CLASS);
		if (expect_class && (!cls || strcmp(cls, expect_class))) {
			rc = al_error_set(AL_ERR_FORBIDDEN, "%s %s/%s is labelled %s=%s, not %s: not deleting it", what,
					  rk->o.namespace, name, LABEL_VOLUME_CLASS, cls ? cls : "<none>", expect_class);
			json_decref(cur);
			break;
		}
		if (json_object_get(json_object_get(cur, "metadata"), "deletionTimestamp")) {
			/* already going (a claim waits for its pods to let go) */
			json_decref(cur);
			break;
		}
		uid = json_string_value(json_object_get(json_object_get(cur, "metadata"), "uid"));
		opts = json_pack("{s:s, s:s, s:s, s:{s:s?}}", "kind", "DeleteOptions", "apiVersion", "v1",
				 "propagationPolicy", "Background", "preconditions", "uid", uid);
		json_decref(cur);
		if (!opts) {
			rc = oom();
			break;
		}
		rc = request(rk, "DELETE", path, opts, NULL);
		json_decref(opts);
		if (rc == AL_ERR_NOT_FOUND)
			rc = AL_OK;
		if (rc != AL_ERR_CONFLICT)
			break;
		/* replaced between our GET and DELETE: look again */
	}
	free(path);
	return rc;
}

/* ---- metadata ------------------------------------------------------------ */

/* A label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends. */
static int label_value_ok(const char *v)
{
	size_t n = v ? strlen(v) : 0;
	if (n == 0 || n > LABEL_VALUE_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || i == n - 1 || !(c == '-' || c == '_' || c == '.')))
			return 0;
	}
	return 1;
}

/* Owner references only within one namespace: Kubernetes ignores (and its
 * garbage collector then deletes!) a child whose namespaced owner lives in
 * another namespace. */
static int can_own(const struct runtime_kube *rk, const struct runtime_owner *owner)
{
	return owner && owner->api_version && owner->kind && owner->name && owner->uid &&
	       (!owner->namespace || !strcmp(owner->namespace, rk->o.namespace));
}

/*
 * metadata for a new object: name, namespace, the airlock's labels (plus
 * `extra`, stolen), and when `owner` is given its uid label, an annotation
 * naming it and a controller owner reference.
 */
static json_t *new_metadata(struct runtime_kube *rk, const char *name, json_t *extra, const struct runtime_owner *owner)
{
	json_t *md = json_pack("{s:s, s:s, s:{s:s, s:s}}", "name", name, "namespace", rk->o.namespace, "labels",
			       LABEL_MANAGED_BY, RUNTIME_KUBE_MANAGED_BY, LABEL_PART_OF, "airlock");
	json_t *labels = json_object_get(md, "labels");

	if (!md || (extra && json_object_update(labels, extra))) {
		json_decref(extra);
		json_decref(md);
		return NULL;
	}
	json_decref(extra);
	if (owner) {
		struct buf b;
		buf_init(&b, 1024);
		if (owner->uid && label_value_ok(owner->uid) &&
		    json_object_set_new(labels, LABEL_DATASOURCE_UID, json_string(owner->uid)))
			goto fail_buf;
		if (owner->kind && owner->name &&
		    (buf_appendf(&b, "%s/%s%s%s", owner->kind, owner->namespace ? owner->namespace : "",
				 owner->namespace ? "/" : "", owner->name) ||
		     json_object_set_new(md, "annotations", json_pack("{s:s}", ANNOTATION_OWNER, buf_cstr(&b)))))
			goto fail_buf;
		buf_free(&b);
		if (can_own(rk, owner) &&
		    json_object_set_new(md, "ownerReferences",
					json_pack("[{s:s, s:s, s:s, s:s, s:b, s:b}]", "apiVersion", owner->api_version,
						  "kind", owner->kind, "name", owner->name, "uid", owner->uid, "controller",
						  1, "blockOwnerDeletion", 1))) {
			json_decref(md);
			return NULL;
		}
		return md;
fail_buf:
		buf_free(&b);
		json_decref(md);
		return NULL;
	}
	return md;
}

static json_t *pod_security_context(struct runtime_kube *rk)
{
	return json_pack("{s:b, s:I, s:I, s:I, s:{s:s}}", "runAsNonRoot", 1, "runAsUser", (json_int_t)rk->o.run_as_user,
			 "runAsGroup", (json_int_t)rk->o.run_as_group, "fsGroup", (json_int_t)rk->o.fs_group,
			 "seccompProfile", "type", "RuntimeDefault");
}

static json_t *container_security_context(void)
{
	return json_pack("{s:b, s:b, s:b, s:{s:[s]}}", "allowPrivilegeEscalation", 0, "readOnlyRootFilesystem", 1,
			 "privileged", 0, "capabilities", "drop", "ALL");
}

/* ---- volumes ------------------------------------------------------------- */

static const char *class_label(enum volume_class cls)
{
	return cls == VOLUME_WORKSPACE ? "workspace" : "staging";
}

static int ensure_claim(struct runtime_kube *rk, enum volume_class cls, const char *name, const char *storage_class,
			const char *size, const char *mode, const struct runtime_owner *owner)
{
	json_t *md, *body;
	int rc;

	if ((rc = runtime_check_name("volume", name)) < 0)
		return rc;
	/* A workspace's storage outlives every datasource: never owned. */
	md = new_metadata(rk, name, json_pack("{s:s}", LABEL_VOLUME_CLASS, class_label(cls)),
			  cls == VOLUME_WORKSPACE ? NULL : owner);
	body = json_pack("{s:s, s:s, s:o, s:{s:[s], s:s, s:{s:{s:s}}}}", "apiVersion", "v1", "kind",
			 "PersistentVolumeClaim", "metadata", md, "spec", "accessModes", mode, "storageClassName",
			 storage_class, "resources", "requests", "storage", size);
	if (!md || !body) {
		json_decref(body);
		return oom();
	}
	rc = ensure_object(rk, "v1", "persistentvolumeclaims", name, body);
	json_decref(body);
	return rc;
}

static int kube_volume_ensure(struct runtime *rt, enum volume_class cls, const char *name,
			      const struct runtime_owner *owner, char **out_path)
{
	struct runtime_kube *rk = kube_of(rt);

	/* The operator cannot reach a claim: only jobs mount it. */
	if (out_path)
		*out_path = NULL;
	if (cls == VOLUME_STAGING)
		return ensure_claim(rk, cls, name, rk->o.staging_storage_class, rk->o.staging_size, rk->o.access_mode, owner);
	if (cls == VOLUME_WORKSPACE)
		return ensure_claim(rk, cls, name, rk->o.workspace_storage_class, rk->o.workspace_size,
				    rk->o.workspace_access_mode ? rk->o.workspace_access_mode : rk->o.access_mode, NULL);
	return al_error_set(AL_ERR_INVALID, "volume class %d is neither staging nor workspace", (int)cls);
}

static int kube_volume_delete(struct runtime *rt, enum volume_class cls, const char *name)
{
	int rc;
	if (cls != VOLUME_STAGING && cls != VOLUME_WORKSPACE)
		return al_error_set(AL_ERR_INVALID, "volume class %d is neither staging nor workspace", (int)cls);
	if ((rc = runtime_check_name("volume", name)) < 0)
		return rc;
	return delete_managed(kube_of(rt), "v1", "persistentvolumeclaims", "persistentvolumeclaim", name,
			      class_label(cls));
}

/* ---- secrets ------------------------------------------------------------- */

static void wipe_string(json_t *s)
{
	const char *v = json_string_value(s);
	if (v)
		sodium_memzero((char *)v, json_string_length(s));
}

static int kube_secret_ensure(struct runtime *rt, const char *name, const json_t *data, const struct runtime_owner *owner)
{
	struct runtime_kube *rk = kube_of(rt);
	char *text = NULL, *coll = NULL, *path = NULL;
	json_t *body = NULL, *md, *value = NULL;
	int rc;

	if ((rc = runtime_check_name("secret", name)) < 0)
		return rc;
	if (!json_is_object(data))
		return al_error_set(AL_ERR_INVALID, "secret %s: the data must be a JSON object", name);
	if (!(text = json_dumps(data, JSON_COMPACT)))
		return oom();
	md = new_metadata(rk, name, NULL, owner);
	value = json_string(text);
	sodium_memzero(text, strlen(text));
	free(text);
	/* One key: a job sees one file holding the JSON object, as with the
	 * local runtime. stringData: the API server encodes it. */
	body = json_pack("{s:s, s:s, s:o, s:s, s:{s:O}}", "apiVersion", "v1", "kind", "Secret", "metadata", md, "type",
			 "Opaque", "stringData", RUNTIME_KUBE_SECRET_KEY, value);
	if (!md || !value || !body) {
		rc = oom();
		goto out;
	}
	if ((rc = object_path(rk, "v1", "secrets", NULL, &coll)) || (rc = object_path(rk, "v1", "secrets", name, &path)))
		goto out;
	/* Created first: the usual case is a new Secret (one request). */
	rc = request(rk, "POST", coll, body, NULL);
	for (int attempt = 0; rc == AL_ERR_EXISTS && attempt < 3; attempt++) {
		json_t *cur = NULL;
		const char *rv;

		rc = request(rk, "GET", path, NULL, &cur);
		if (rc == AL_ERR_NOT_FOUND) {
			json_decref(cur);
			json_object_del(json_object_get(body, "metadata"), "resourceVersion");
			rc = request(rk, "POST", coll, body, NULL);
			if (rc == AL_ERR_EXISTS)
				continue; /* raced with another writer: replace it */
			break;
		}
		if (rc) {
			json_decref(cur);
			break;
		}
		if (!managed(cur)) {
			json_decref(cur);
			rc = al_error_set(AL_ERR_FORBIDDEN,
					  "secret %s/%s exists and was not created by the airlock (it lacks the label %s=%s): "
					  "not replacing it; remove or rename it",
					  rk->o.namespace, name, LABEL_MANAGED_BY, RUNTIME_KUBE_MANAGED_BY);
			break;
		}
		rv = json_string_value(json_object_get(json_object_get(cur, "metadata"), "resourceVersion"));
		rc = rv ? json_object_set_new(json_object_get(body, "metadata"), "resourceVersion", json_string(rv)) : 0;
		json_decref(cur);
		if (rc) {
			rc = oom();
			break;
		}
		/* Replaced as a whole, with the version read: a concurrent change
		 * answers 409 and we read again. */
		rc = request(rk, "PUT", path, body, NULL);
		if (rc == AL_ERR_CONFLICT)
			rc = AL_ERR_EXISTS; /* read again */
		else
			break;
	}
	if (rc == AL_ERR_EXISTS)
		rc = al_error_set(AL_ERR_CONFLICT, "secret %s/%s: changed by someone else three times while replacing it; retry",
				  rk->o.namespace, name);
	if (rc == AL_OK)
		ensured_mark(rk, "secrets", name, 1);
out:
	wipe_string(value);
	json_decref(value);
	json_decref(body);
	free(coll);
	free(path);
	return rc;
}

static int kube_secret_delete(struct runtime *rt, const char *name)
{
	int rc;
	if ((rc = runtime_check_name("secret", name)) < 0)
		return rc;
	return delete_managed(kube_of(rt), "v1", "secrets", "secret", name, NULL);
}

/* ---- jobs ------------------------------------------------------------------ */

static int job_name_ok(const char *name)
{
	int rc;
	if ((rc = runtime_check_name("job", name)) < 0)
		return rc;
	if (strlen(name) > LABEL_VALUE_MAX || strchr(name, '.'))
		return al_error_set(AL_ERR_INVALID,
				    "job name '%.80s' cannot name a Kubernetes Job: at most %d characters and no '.' (it "
				    "becomes its pods' job-name label)",
				    name, LABEL_VALUE_MAX);
	return AL_OK;
}

/* "/mnt/airlock_output_dir", "/var/run/airlock/airlock_credentials_file" */
static char *lower_path(const char *dir, const char *env)
{
	struct buf b;
	buf_init(&b, 512);
	if (buf_appendf(&b, "%s/", dir)) {
		buf_free(&b);
		return NULL;
	}
	for (const char *p = env; *p; p++)
		if (buf_appendc(&b, (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p))) {
			buf_free(&b);
			return NULL;
		}
	return buf_detach(&b);
}

static int add_env(json_t *env, const char *name, const char *value)
{
	return json_array_append_new(env, json_pack("{s:s, s:s}", "name", name, "value", value));
}

/* The mounts of a job: its pod's volumes, the container's mounts and env. */
static int job_mounts(const struct job_spec *spec, json_t *volumes, json_t *mounts, json_t *env)
{
	for (size_t i = 0; i < JOB_MOUNTS_MAX; i++) {
		const struct job_mount *m = &spec->mounts[i];
		char vname[16], *dir = NULL, *file = NULL;
		int rc = 0;

		if (!m->env)
			continue;
		snprintf(vname, sizeof(vname), "mount-%zu", i);
		if (m->kind == JOB_MOUNT_VOLUME) {
			if (!(dir = lower_path(RUNTIME_KUBE_VOLUME_DIR, m->env)))
				return oom();
			rc = json_array_append_new(volumes, json_pack("{s:s, s:{s:s, s:b}}", "name", vname,
								     "persistentVolumeClaim", "claimName", m->name,
								     "readOnly", m->read_only ? 1 : 0)) ||
			     json_array_append_new(mounts, json_pack("{s:s, s:s, s:b}", "name", vname, "mountPath", dir,
								    "readOnly", m->read_only ? 1 : 0)) ||
			     add_env(env, m->env, dir);
		} else {
			struct buf b;
			if (!(dir = lower_path(RUNTIME_KUBE_SECRET_DIR, m->env)))
				return oom();
			buf_init(&b, 1024);
			if (buf_appendf(&b, "%s/%s", dir, RUNTIME_KUBE_SECRET_KEY) || !(file = buf_detach(&b))) {
				buf_free(&b);
				free(dir);
				return oom();
			}
			/* 0440 and the pod's fsGroup: the job's user reads it
			 * through its group, nobody else can. */
			rc = json_array_append_new(volumes,
						   json_pack("{s:s, s:{s:s, s:i, s:[{s:s, s:s}]}}", "name", vname, "secret",
							     "secretName", m->name, "defaultMode", 0440, "items", "key",
							     RUNTIME_KUBE_SECRET_KEY, "path", RUNTIME_KUBE_SECRET_KEY)) ||
			     json_array_append_new(mounts, json_pack("{s:s, s:s, s:b}", "name", vname, "mountPath", dir,
								    "readOnly", 1)) ||
			     add_env(env, m->env, file);
		}
		free(dir);
		free(file);
		if (rc)
			return oom();
	}
	return AL_OK;
}

static json_t *job_body(struct runtime_kube *rk, const struct job_spec *spec)
{
	json_t *args = json_array(), *volumes = json_array(), *mounts = json_array(), *env = json_array();
	json_t *container = NULL, *pod = NULL, *body = NULL, *md = NULL, *tmpl_labels = NULL;
	int deadline = spec->timeout_seconds > 0 ? spec->timeout_seconds : rk->o.active_deadline_seconds;

	if (!args || !volumes || !mounts || !env)
		goto fail;
	for (size_t i = 0; spec->args[i]; i++)
		if (json_array_append_new(args, json_string(spec->args[i])))
			goto fail;
	for (size_t i = 0; i < JOB_ENV_MAX; i++)
		if (spec->env[i].name && add_env(env, spec->env[i].name, spec->env[i].value))
			goto fail;
	if (add_env(env, RUNTIME_JOB_NAME_ENV, spec->name) ||
	    json_array_append_new(volumes, json_pack("{s:s, s:{}}", "name", "tmp", "emptyDir")) ||
	    json_array_append_new(mounts, json_pack("{s:s, s:s}", "name", "tmp", "mountPath", "/tmp")) ||
	    job_mounts(spec, volumes, mounts, env))
		goto fail;
	container = json_pack("{s:s, s:s, s:s, s:O, s:O, s:O, s:s, s:s, s:o}", "name", JOB_CONTAINER, "image",
			      spec->image == JOB_IMAGE_DLT ? rk->o.dlt_runner_image : rk->o.runner_image, "imagePullPolicy",
			      rk->o.runner_pull_policy, "args", args, "env", env,
			      "volumeMounts", mounts, "workingDir", "/tmp", "terminationMessagePolicy",
			      "FallbackToLogsOnError", "securityContext", container_security_context());
	if (!container || (rk->o.runner_resources && json_object_set(container, "resources", rk->o.runner_resources)))
		goto fail;
	pod = json_pack("{s:s, s:b, s:b, s:o, s:[O], s:O}", "restartPolicy", "Never", "automountServiceAccountToken", 0,
			"enableServiceLinks", 0, "securityContext", pod_security_context(rk), "containers", container,
			"volumes", volumes);
	tmpl_labels = json_pack("{s:s, s:s, s:s}", LABEL_MANAGED_BY, RUNTIME_KUBE_MANAGED_BY, LABEL_PART_OF, "airlock",
				LABEL_JOB_NAME, spec->name);
	md = new_metadata(rk, spec->name, json_pack("{s:s}", LABEL_JOB_NAME, spec->name), spec->owner);
	if (!pod || !tmpl_labels || !md)
		goto fail;
	body = json_pack("{s:s, s:s, s:O, s:{s:i, s:i, s:{s:{s:O}, s:O}}}", "apiVersion", "batch/v1", "kind", "Job",
			 "metadata", md, "spec", "backoffLimit", rk->o.backoff_limit, "activeDeadlineSeconds",
			 deadline > 0 ? deadline : 1, "template", "metadata", "labels", tmpl_labels, "spec", pod);
	if (!body)
		goto fail;
	if (deadline <= 0)
		json_object_del(json_object_get(body, "spec"), "activeDeadlineSeconds");
	if (rk->o.ttl_seconds_after_finished >= 0 &&
	    json_object_set_new(json_object_get(body, "spec"), "ttlSecondsAfterFinished",
				json_integer(rk->o.ttl_seconds_after_finished))) {
		json_decref(body);
		body = NULL;
	}
fail:
	json_decref(args);
	json_decref(volumes);
	json_decref(mounts);
	json_decref(env);
	json_decref(container);
	json_decref(pod);
	json_decref(tmpl_labels);
	json_decref(md);
	return body;
}

static int kube_job_start(struct runtime *rt, const struct job_spec *spec)
{
	struct runtime_kube *rk = kube_of(rt);
	json_t *body = NULL, *cur = NULL;
	char *path = NULL;
	int rc;

	if ((rc = runtime_check_job_spec(spec)) < 0 || (rc = job_name_ok(spec->name)) < 0)
		return rc;
	/* Never twice: a job of this name, running or finished, is the one
	 * (the create below answers 409 for it). What it mounts must exist, or
	 * its pod would wait for it until the deadline: what this runtime
	 * ensured itself is known to; anything else is read. */
	for (size_t i = 0; i < JOB_MOUNTS_MAX; i++) {
		const struct job_mount *m = &spec->mounts[i];
		int vol = m->kind == JOB_MOUNT_VOLUME;
		if (!m->env || ensured_known(rk, vol ? "persistentvolumeclaims" : "secrets", m->name))
			continue;
		rc = get_object(rk, "v1", vol ? "persistentvolumeclaims" : "secrets", m->name, &cur);
		json_decref(cur);
		cur = NULL;
		if (rc == AL_ERR_NOT_FOUND)
			return al_error_set(AL_ERR_NOT_FOUND, "job %s: mounts[%zu] (%s): %s %s does not exist in namespace %s; "
					    "ensure it before starting the job",
					    spec->name, i, m->env, vol ? "volume" : "secret", m->name, rk->o.namespace);
		if (rc)
			return rc;
	}
	if (!(body = job_body(rk, spec)))
		return oom();
	if (!(rc = object_path(rk, "batch/v1", "jobs", NULL, &path))) {
		rc = request(rk, "POST", path, body, NULL);
		if (rc == AL_ERR_EXISTS)
			al_error_set(AL_ERR_EXISTS, "job %s exists already (a job never runs twice)", spec->name);
	}
	json_decref(body);
	free(path);
	return rc;
}

static const json_t *condition(const json_t *job, const char *type)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(json_object_get(job, "status"), "conditions"), i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));
		const char *s = json_string_value(json_object_get(c, "status"));
		if (t && s && !strcmp(t, type) && !strcmp(s, "True"))
			return c;
	}
	return NULL;
}

static int dup_field(char **dst, const json_t *obj, const char *key)
{
	const char *v = json_string_value(json_object_get(obj, key));
	if (v && !(*dst = util_strdup(v)))
		return oom();
	return AL_OK;
}

/* Appends s percent-encoded for a query value. */
static int append_query_value(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = AL_OK;
	for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '.' || *p == '_' || *p == '~')
			rc = buf_appendc(b, (char)*p);
		else
			rc = buf_appendf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
	}
	return rc;
}

/*
 * The newest pod of a job (new reference in *out, NULL when it has none).
 * Pods are found by the Job's own selector (the controller-uid label the
 * API server put there), so a pod of an earlier Job of the same name is
 * never taken for this one's; job-name=<name> when there is no selector.
 */
static int newest_pod(struct runtime_kube *rk, const json_t *job, const char *name, json_t **out)
{
	const json_t *ml = json_object_get(json_object_get(json_object_get(job, "spec"), "selector"), "matchLabels");
	json_t *list = NULL, *item, *best = NULL;
	struct buf sel, q;
	char *path = NULL;
	const char *k;
	json_t *v;
	size_t i;
	int rc;

	*out = NULL;
	buf_init(&sel, 4096);
	buf_init(&q, 16384);
	if (json_object_size(ml)) {
		rc = AL_OK;
		json_object_foreach((json_t *)ml, k, v) {
			if (json_is_string(v) && !rc)
				rc = buf_appendf(&sel, "%s%s=%s", sel.len ? "," : "", k, json_string_value(v));
		}
	} else {
		rc = buf_appendf(&sel, "%s=%s", LABEL_JOB_NAME, name);
	}
	if (rc || (rc = object_path(rk, "v1", "pods", NULL, &path)) || (rc = buf_appendf(&q, "%s?labelSelector=", path)) ||
	    (rc = append_query_value(&q, buf_cstr(&sel))))
		goto out;
	if ((rc = request(rk, "GET", buf_cstr(&q), NULL, &list)))
		goto out;
	json_array_foreach(json_object_get(list, "items"), i, item) {
		const json_t *m = json_object_get(item, "metadata");
		const char *ts = json_string_value(json_object_get(m, "creationTimestamp"));
		const char *nm = json_string_value(json_object_get(m, "name"));
		const json_t *bm;
		const char *bts, *bnm;
		int cmp;
		if (!nm)
			continue;
		if (!best) {
			best = item;
			continue;
		}
		bm = json_object_get(best, "metadata");
		bts = json_string_value(json_object_get(bm, "creationTimestamp"));
		bnm = json_string_value(json_object_get(bm, "name"));
		cmp = strcmp(ts ? ts : "", bts ? bts : "");
		if (cmp > 0 || (cmp == 0 && strcmp(nm, bnm) > 0))
			best = item;
	}
	if (best)
		*out = json_incref(best);
out:
	json_decref(list);
	free(path);
	buf_free(&sel);
	buf_free(&q);
	return rc;
}

/* The job container's terminated state (this run, else the last), or NULL. */
static const json_t *terminated_state(const json_t *pod)
{
	size_t i;
	json_t *cs;
	json_array_foreach(json_object_get(json_object_get(pod, "status"), "containerStatuses"), i, cs) {
		const char *n = json_string_value(json_object_get(cs, "name"));
		const json_t *t;
		if (!n || strcmp(n, JOB_CONTAINER))
			continue;
		if ((t = json_object_get(json_object_get(cs, "state"), "terminated")))
			return t;
		return json_object_get(json_object_get(cs, "lastState"), "terminated");
	}
	return NULL;
}

/* The last non-empty line of `text` (bounded), as a new string. */
static char *last_line(const char *text)
{
	size_t end = text ? strlen(text) : 0, start;
	struct buf b;

	while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' '))
		end--;
	start = end;
	while (start > 0 && text[start - 1] != '\n')
		start--;
	if (end - start > 2048)
		start = end - 2048;
	buf_init(&b, 4096);
	if (buf_append(&b, text + start, end - start)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

/* Why a Failed job failed, in the local runtime's words where they apply:
 * "exit status N: <last line of output>", "deadline exceeded after N s". */
static int failure_reason(struct runtime_kube *rk, const json_t *job, const json_t *cond, const char *name,
			  struct job_status *out)
{
	const char *creason = json_string_value(json_object_get(cond, "reason"));
	const char *cmsg = json_string_value(json_object_get(cond, "message"));
	json_t *pod = NULL;
	struct buf b;
	int rc;

	out->exit_code = -1;
	buf_init(&b, 4096);
	if (creason && !strcmp(creason, "DeadlineExceeded")) {
		json_int_t d = json_integer_value(json_object_get(json_object_get(job, "spec"), "activeDeadlineSeconds"));
		rc = buf_appendf(&b, "deadline exceeded after %lld s", (long long)d);
		goto done;
	}
	if (newest_pod(rk, job, name, &pod) < 0) {
		/* The condition still says why; the pod only says it better. */
		log_warn("job %s: cannot read its pods for the failure reason: %s", name, al_error_message());
		pod = NULL;
	}
	{
		const json_t *t = terminated_state(pod);
		if (t && json_is_integer(json_object_get(t, "exitCode"))) {
			char *line = last_line(json_string_value(json_object_get(t, "message")));
			const char *treason = json_string_value(json_object_get(t, "reason"));
			out->exit_code = (int)json_integer_value(json_object_get(t, "exitCode"));
			if (!line)
				rc = oom();
			else if (*line)
				rc = buf_appendf(&b, "exit status %d: %s", out->exit_code, line);
			else if (treason && strcmp(treason, "Error") && strcmp(treason, "Completed"))
				rc = buf_appendf(&b, "exit status %d (%s)", out->exit_code, treason);
			else
				rc = buf_appendf(&b, "exit status %d", out->exit_code);
			free(line);
			goto done;
		}
	}
	if (creason || cmsg)
		rc = buf_appendf(&b, "%s%s%.1024s", creason ? creason : "", creason && cmsg ? ": " : "", cmsg ? cmsg : "");
	else
		rc = buf_appends(&b, "the job failed");
done:
	json_decref(pod);
	if (!rc && !(out->reason = buf_detach(&b)))
		rc = oom();
	buf_free(&b);
	return rc;
}

static int kube_job_get(struct runtime *rt, const char *name, struct job_status *out)
{
	struct runtime_kube *rk = kube_of(rt);
	const json_t *st, *cond;
	json_t *job = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = job_name_ok(name)) < 0)
		return rc;
	rc = get_object(rk, "batch/v1", "jobs", name, &job);
	if (rc == AL_ERR_NOT_FOUND)
		return AL_OK; /* JOB_NOT_FOUND */
	if (rc)
		return rc;
	st = json_object_get(job, "status");
	if ((rc = dup_field(&out->started_at, st, "startTime")))
		goto out;
	if ((cond = condition(job, "Complete"))) {
		out->phase = JOB_SUCCEEDED;
		out->exit_code = 0;
		rc = dup_field(&out->finished_at, st, "completionTime");
		if (!rc && !out->finished_at)
			rc = dup_field(&out->finished_at, cond, "lastTransitionTime");
	} else if ((cond = condition(job, "Failed"))) {
		out->phase = JOB_FAILED;
		if (!(rc = dup_field(&out->finished_at, cond, "lastTransitionTime")))
			rc = failure_reason(rk, job, cond, name, out);
	} else {
		out->phase = JOB_RUNNING;
	}
out:
	json_decref(job);
	if (rc)
		job_status_free(out);
	return rc;
}

/* ---- logs ---------------------------------------------------------------- */

static int kube_job_logs(struct runtime *rt, const char *name, char **out)
{
	struct runtime_kube *rk = kube_of(rt);
	json_t *job = NULL, *pod = NULL;
	char *path = NULL;
	struct buf q;
	const char *pod_name;
	int rc;

	*out = NULL;
	buf_init(&q, 2048);
	if ((rc = job_name_ok(name)) < 0)
		return rc;
	rc = get_object(rk, "batch/v1", "jobs", name, &job);
	if (rc == AL_ERR_NOT_FOUND) {
		rc = al_error_set(AL_ERR_NOT_FOUND, "no job %s in namespace %s", name, rk->o.namespace);
		goto out;
	}
	if (rc || (rc = newest_pod(rk, job, name, &pod)))
		goto out;
	if (!pod) {
		/* Not scheduled yet, or its pods already removed: no output. */
		rc = (*out = util_strdup("")) ? AL_OK : oom();
		goto out;
	}
	pod_name = json_string_value(json_object_get(json_object_get(pod, "metadata"), "name"));
	if (!(path = kube_path("v1", rk->o.namespace, "pods", pod_name, "log"))) {
		rc = al_error_wrap(AL_ERR_INVALID, "job %s: pod", name);
		goto out;
	}
	if ((rc = buf_appendf(&q, "%s?container=%s", path, JOB_CONTAINER)))
		goto out;
	/* The pod log API's limitBytes keeps the first bytes, and a job's
	 * result is its last line, so the whole log is read and only its tail
	 * kept. */
	rc = kube_request_text(rk->kc, buf_cstr(&q), RUNTIME_JOB_LOGS_MAX, KUBE_TEXT_TAIL, LOGS_TIMEOUT_MS, out, NULL);
	if (rc == AL_ERR_INVALID || rc == AL_ERR_NOT_FOUND || rc == AL_ERR_UNAVAILABLE || rc == AL_ERR_IO) {
		/* The kubelet serves logs: a pod on no node, a node gone, a
		 * container not started yet. Worth asking again later. */
		char detail[AL_ERROR_MSG_MAX];
		snprintf(detail, sizeof(detail), "%s", al_error_message());
		rc = al_error_set(AL_ERR_UNAVAILABLE, "job %s: the log of its pod %s is not available: %s", name, pod_name,
				  detail);
	}
out:
	json_decref(job);
	json_decref(pod);
	free(path);
	buf_free(&q);
	return rc;
}

static int kube_job_delete(struct runtime *rt, const char *name)
{
	int rc;
	if ((rc = job_name_ok(name)) < 0)
		return rc;
	/* Background propagation: the Job goes now, its pods right after. */
	return delete_managed(kube_of(rt), "batch/v1", "jobs", "job", name, NULL);
}

/* ---- uploader -------------------------------------------------------------- */

static char *upload_path(const char *name)
{
	struct buf b;
	buf_init(&b, 256);
	if (buf_appendf(&b, "%s/%s", RUNTIME_KUBE_UPLOAD_PATH, name)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

static json_t *uploader_deployment(struct runtime_kube *rk, const char *name, const char *volume, const char *base,
				   const struct runtime_owner *owner)
{
	char listen[32];
	json_t *container, *pod, *md, *sel;

	snprintf(listen, sizeof(listen), "0.0.0.0:%d", RUNTIME_KUBE_UPLOADER_PORT);
	container = json_pack(
		"{s:s, s:s, s:s, s:[s], s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}, {s:s, s:s}], s:[{s:s, s:i, s:s}],"
		" s:[{s:s, s:s}, {s:s, s:s}], s:{s:{s:s, s:s}, s:i, s:i}, s:s, s:o}",
		"name", UPLOADER_CONTAINER, "image", rk->o.uploader_image, "imagePullPolicy", rk->o.uploader_pull_policy,
		"args", "uploader", "env", "name", "AIRLOCK_UPLOADER_NAME", "value", name, "name", "AIRLOCK_UPLOAD_DIR",
		"value", RUNTIME_KUBE_UPLOAD_DIR, "name", "AIRLOCK_UPLOADER_LISTEN", "value", listen, "name",
		"AIRLOCK_UPLOADER_BASE_PATH", "value", base, "ports", "name", "http", "containerPort",
		RUNTIME_KUBE_UPLOADER_PORT, "protocol", "TCP", "volumeMounts", "name", "data", "mountPath",
		RUNTIME_KUBE_UPLOAD_DIR, "name", "tmp", "mountPath", "/tmp", "readinessProbe", "httpGet", "path", "/healthz",
		"port", "http", "periodSeconds", 5, "failureThreshold", 3, "terminationMessagePolicy",
		"FallbackToLogsOnError", "securityContext", container_security_context());
	if (container && rk->o.uploader_resources && json_object_set(container, "resources", rk->o.uploader_resources)) {
		json_decref(container);
		container = NULL;
	}
	/* The proxy secret: the uploader refuses to start without it. Only the
	 * Secret's name goes into the spec; the kubelet mounts the value. */
	if (container &&
	    (json_array_append_new(json_object_get(container, "env"),
				   json_pack("{s:s, s:s}", "name", "AIRLOCK_UPLOADER_PROXY_SECRET_FILE", "value",
					     RUNTIME_KUBE_PROXY_SECRET_DIR "/" RUNTIME_KUBE_PROXY_SECRET_FILE)) ||
	     json_array_append_new(json_object_get(container, "volumeMounts"),
				   json_pack("{s:s, s:s, s:b}", "name", "proxy-secret", "mountPath",
					     RUNTIME_KUBE_PROXY_SECRET_DIR, "readOnly", 1)))) {
		json_decref(container);
		container = NULL;
	}
	/* defaultMode 0440: the owner and the pod's fsGroup only. */
	pod = json_pack("{s:b, s:b, s:o, s:[o], s:[{s:s, s:{s:s}}, {s:s, s:{}}, {s:s, s:{s:s, s:[{s:s, s:s}], s:i}}]}",
			"automountServiceAccountToken", 0, "enableServiceLinks", 0, "securityContext",
			pod_security_context(rk), "containers", container, "volumes", "name", "data",
			"persistentVolumeClaim", "claimName", volume, "name", "tmp", "emptyDir", "name", "proxy-secret",
			"secret", "secretName", rk->o.uploader_proxy_secret, "items", "key", rk->o.uploader_proxy_secret_key,
			"path", RUNTIME_KUBE_PROXY_SECRET_FILE, "defaultMode", 0440);
	sel = json_pack("{s:s, s:s}", LABEL_APP_NAME, UPLOADER_APP, LABEL_INSTANCE, name);
	md = new_metadata(rk, name, json_deep_copy(sel), owner);
	if (!pod || !sel || !md) {
		json_decref(pod);
		json_decref(sel);
		json_decref(md);
		return NULL;
	}
	{
		json_t *tmpl_labels = json_deep_copy(sel);
		json_t *body;
		if (tmpl_labels)
			json_object_set_new(tmpl_labels, LABEL_MANAGED_BY, json_string(RUNTIME_KUBE_MANAGED_BY));
		/* Scaled to zero: the frontend scales it up when a person uploads. */
		body = json_pack("{s:s, s:s, s:o, s:{s:i, s:{s:o}, s:{s:{s:o}, s:o}}}", "apiVersion", "apps/v1", "kind",
				 "Deployment", "metadata", md, "spec", "replicas", 0, "selector", "matchLabels", sel,
				 "template", "metadata", "labels", tmpl_labels, "spec", pod);
		return body;
	}
}

static json_t *uploader_service(struct runtime_kube *rk, const char *name, const struct runtime_owner *owner)
{
	json_t *md = new_metadata(rk, name, json_pack("{s:s, s:s}", LABEL_APP_NAME, UPLOADER_APP, LABEL_INSTANCE, name), owner);
	return json_pack("{s:s, s:s, s:o, s:{s:s, s:{s:s, s:s}, s:[{s:s, s:i, s:s, s:s}]}}", "apiVersion", "v1", "kind",
			 "Service", "metadata", md, "spec", "type", "ClusterIP", "selector", LABEL_APP_NAME, UPLOADER_APP,
			 LABEL_INSTANCE, name, "ports", "name", "http", "port", 80, "targetPort", "http", "protocol", "TCP");
}

static json_t *uploader_ingress(struct runtime_kube *rk, const char *name, const char *base,
				const struct runtime_owner *owner)
{
	json_t *md = new_metadata(rk, name, json_pack("{s:s, s:s}", LABEL_APP_NAME, UPLOADER_APP, LABEL_INSTANCE, name), owner);
	/* To the frontend, not to the uploader: browsers go User -> NGINX ->
	 * frontend, which authenticates them and proxies to the uploader's
	 * Service with the proxy secret (seed; docs/uploader.md). The Ingress
	 * still claims the uploader's path, so it exists exactly while the
	 * uploader does. */
	json_t *rule = json_pack("{s:{s:[{s:s, s:s, s:{s:{s:s, s:{s:i}}}}]}}", "http", "paths", "path", base, "pathType",
				 "Prefix", "backend", "service", "name", rk->o.frontend_service, "port", "number",
				 rk->o.frontend_service_port);
	json_t *spec = json_object(), *body;

	if (!md || !rule || !spec)
		goto fail;
	if (rk->o.ingress_host && json_object_set_new(rule, "host", json_string(rk->o.ingress_host)))
		goto fail;
	if (json_object_set_new(spec, "rules", json_pack("[O]", rule)))
		goto fail;
	if (rk->o.ingress_class && json_object_set_new(spec, "ingressClassName", json_string(rk->o.ingress_class)))
		goto fail;
	if (rk->o.ingress_tls_secret &&
	    json_object_set_new(spec, "tls", json_pack("[{s:[s], s:s}]", "hosts", rk->o.ingress_host, "secretName",
						       rk->o.ingress_tls_secret)))
		goto fail;
	if (rk->o.ingress_annotations) {
		json_t *ann = json_object_get(md, "annotations");
		if (!ann && (json_object_set_new(md, "annotations", json_object()) || !(ann = json_object_get(md, "annotations"))))
			goto fail;
		if (json_object_update_missing(ann, rk->o.ingress_annotations))
			goto fail;
	}
	body = json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "networking.k8s.io/v1", "kind", "Ingress", "metadata", md,
			 "spec", spec);
	json_decref(rule);
	return body;
fail:
	json_decref(md);
	json_decref(rule);
	json_decref(spec);
	return NULL;
}

static int kube_uploader_ensure(struct runtime *rt, const char *name, const char *volume,
				const struct runtime_owner *owner)
{
	struct runtime_kube *rk = kube_of(rt);
	json_t *dep = NULL, *svc = NULL, *ing = NULL;
	char *base = NULL;
	int rc;

	if (!dns_label(name, 63, 1))
		return al_error_set(AL_ERR_INVALID,
				    "uploader name '%.80s' is not allowed: it names a Service, so at most 63 lower-case "
				    "letters, digits and '-', starting with a letter",
				    name ? name : "");
	if ((rc = runtime_check_name("volume", volume)) < 0)
		return rc;
	/* The uploads land on staging storage of its own class, kept apart
	 * from the workspaces' storage. */
	if ((rc = ensure_claim(rk, VOLUME_STAGING, volume,
			       rk->o.upload_storage_class ? rk->o.upload_storage_class : rk->o.staging_storage_class,
			       rk->o.upload_size, rk->o.access_mode, owner)))
		return rc;
	if (!(base = upload_path(name)) || !(dep = uploader_deployment(rk, name, volume, base, owner)) ||
	    !(svc = uploader_service(rk, name, owner)) || !(ing = uploader_ingress(rk, name, base, owner))) {
		rc = oom();
		goto out;
	}
	if ((rc = ensure_object(rk, "apps/v1", "deployments", name, dep)) ||
	    (rc = ensure_object(rk, "v1", "services", name, svc)) ||
	    (rc = ensure_object(rk, "networking.k8s.io/v1", "ingresses", name, ing)))
		goto out;
out:
	json_decref(dep);
	json_decref(svc);
	json_decref(ing);
	free(base);
	return rc;
}

static int kube_uploader_delete(struct runtime *rt, const char *name)
{
	struct runtime_kube *rk = kube_of(rt);
	int rc, first = AL_OK;
	char msg[AL_ERROR_MSG_MAX] = "";

	if (!dns_label(name, 63, 1))
		return al_error_set(AL_ERR_INVALID, "uploader name '%.80s' is not allowed", name ? name : "");
	/* Outside in: no more traffic, then the Service, then the pods. */
	if ((rc = delete_managed(rk, "networking.k8s.io/v1", "ingresses", "ingress", name, NULL))) {
		first = rc;
		snprintf(msg, sizeof(msg), "%s", al_error_message());
	}
	if ((rc = delete_managed(rk, "v1", "services", "service", name, NULL)) && !first) {
		first = rc;
		snprintf(msg, sizeof(msg), "%s", al_error_message());
	}
	if ((rc = delete_managed(rk, "apps/v1", "deployments", "deployment", name, NULL)) && !first) {
		first = rc;
		snprintf(msg, sizeof(msg), "%s", al_error_message());
	}
	return first ? al_error_set(first, "%s", msg) : AL_OK;
}

/* ---- handle ---------------------------------------------------------------- */

static void kube_close(struct runtime *rt)
{
	struct runtime_kube *rk = kube_of(rt);
	if (!rk)
		return;
	runtime_kube_options_free(&rk->o);
	json_decref(rk->ensured);
	pthread_mutex_destroy(&rk->lock);
	free(rk);
}

static const struct runtime_ops kube_ops = {
	.volume_ensure = kube_volume_ensure,
	.volume_delete = kube_volume_delete,
	.secret_ensure = kube_secret_ensure,
	.secret_delete = kube_secret_delete,
	.job_start = kube_job_start,
	.job_get = kube_job_get,
	.job_logs = kube_job_logs,
	.job_delete = kube_job_delete,
	.uploader_ensure = kube_uploader_ensure,
	.uploader_delete = kube_uploader_delete,
	.close = kube_close,
};

int runtime_kube_child_owner(const json_t *child, const char *kind, char **out_ns, char **out_name)
{
	const char *a = json_string_value(
		json_object_get(json_object_get(json_object_get(child, "metadata"), "annotations"), ANNOTATION_OWNER));
	size_t kl = kind ? strlen(kind) : 0;
	const char *ns, *slash;

	*out_ns = NULL;
	*out_name = NULL;
	/* <kind>/<namespace>/<name>: both parts non-empty, the name without '/'. */
	if (!a || !kl || strncmp(a, kind, kl) || a[kl] != '/')
		return AL_ERR_NOT_FOUND;
	ns = a + kl + 1;
	slash = strchr(ns, '/');
	if (!slash || slash == ns || !slash[1] || strchr(slash + 1, '/'))
		return AL_ERR_NOT_FOUND;
	*out_ns = util_strndup(ns, (size_t)(slash - ns));
	*out_name = util_strdup(slash + 1);
	if (!*out_ns || !*out_name) {
		free(*out_ns);
		free(*out_name);
		*out_ns = *out_name = NULL;
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	return AL_OK;
}

int runtime_kube_open(struct runtime **out, struct kube_client *kc, const struct runtime_kube_options *opts)
{
	struct runtime_kube_options defaults;
	struct runtime_kube *rk;
	int rc;

	*out = NULL;
	if (!kc)
		return al_error_set(AL_ERR_INVALID, "kube runtime: no Kubernetes client");
	if (!(rk = calloc(1, sizeof(*rk))))
		return oom();
	rk->base.ops = &kube_ops;
	rk->kc = kc;
	if (!(rk->ensured = json_object())) {
		free(rk);
		return oom();
	}
	pthread_mutex_init(&rk->lock, NULL);
	if (opts) {
		rc = copy_options(&rk->o, opts);
	} else if (!(rc = runtime_kube_options_init(&defaults))) {
		rk->o = defaults;
	}
	if (rc) {
		json_decref(rk->ensured);
		pthread_mutex_destroy(&rk->lock);
		free(rk);
		return rc;
	}
	if ((rc = check_options(&rk->o))) {
		kube_close(&rk->base);
		return rc;
	}
	*out = &rk->base;
	return AL_OK;
}
