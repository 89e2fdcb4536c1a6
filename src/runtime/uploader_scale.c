/*
 * uploader_scale.c - waking, readiness, activity and idleness of uploader
 * Deployments (uploader_scale.h). Every write is a merge patch on the
 * Deployment itself (not the scale subresource): one request carries the
 * replica count and the annotation together, and the operator's patches
 * carry the resourceVersion they decided on.
 */
#include "runtime/uploader_scale.h"
#include "common/error.h"
#include "common/util.h"
#include "kube/kube.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCALE_DEADLINE_MS 10000
#define MERGE_PATCH "application/merge-patch+json"

void uploader_time_format(int64_t t, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!n)
		return;
	if (!gmtime_r(&tt, &tm) || !strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
		out[0] = '\0';
}

static const char *annotation(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(json_object_get(obj, "metadata"), "annotations"), key));
}

int uploader_last_wanted(const json_t *deployment, int64_t now, int64_t *out_t)
{
	const char *keys[] = { UPLOADER_ANNOTATION_SCALED_UP_AT, UPLOADER_ANNOTATION_LAST_ACTIVITY };
	int found = 0;
	int64_t best = 0;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *v = annotation(deployment, keys[i]);
		int64_t t;
		/* Someone else's malformed value must not pin an uploader up:
		 * it counts as absent. */
		if (!v || util_parse_rfc3339(v, &t))
			continue;
		if (t > now)
			t = now; /* a clock ahead of ours gains nothing */
		if (!found || t > best)
			best = t;
		found = 1;
	}
	if (!found)
		return AL_ERR_NOT_FOUND;
	*out_t = best;
	return AL_OK;
}

long uploader_replicas(const json_t *deployment)
{
	json_t *r = json_object_get(json_object_get(deployment, "spec"), "replicas");
	return json_is_integer(r) ? (long)json_integer_value(r) : 0;
}

enum uploader_verdict uploader_decide(const json_t *deployment, int sealed, int idle_seconds, int64_t now,
				      int64_t *out_due)
{
	int64_t last;

	*out_due = 0;
	if (uploader_replicas(deployment) <= 0)
		return UPLOADER_AT_REST;
	if (sealed)
		return UPLOADER_SEALED;
	if (idle_seconds <= 0)
		idle_seconds = UPLOADER_IDLE_DEFAULT_S;
	if (uploader_last_wanted(deployment, now, &last)) {
		*out_due = now + idle_seconds;
		return UPLOADER_NEEDS_STAMP;
	}
	if (last + idle_seconds <= now)
		return UPLOADER_IDLE;
	*out_due = last + idle_seconds;
	return UPLOADER_IN_USE;
}

int uploader_touch_due(int64_t last_touch, int64_t now)
{
	return last_touch <= 0 || now - last_touch >= UPLOADER_TOUCH_INTERVAL_S || now < last_touch;
}

static int deployment_path(const char *ns, const char *name, char **out)
{
	if (!ns || !*ns || !name || !*name)
		return al_error_set(AL_ERR_INVALID, "uploader: a namespace and a Deployment name are required");
	if (!(*out = kube_path("apps/v1", ns, "deployments", name, NULL)))
		return al_error_wrap(AL_ERR_INVALID, "uploader Deployment %.80s", name);
	return AL_OK;
}

int uploader_get(struct kube_client *kc, const char *ns, const char *name, json_t **out)
{
	char *path = NULL;
	int rc;

	*out = NULL;
	if ((rc = deployment_path(ns, name, &path)))
		return rc;
	rc = kube_request_retry(kc, "GET", path, NULL, NULL, SCALE_DEADLINE_MS, NULL, out);
	if (rc) {
		json_decref(*out);
		*out = NULL;
	}
	free(path);
	return rc;
}

/* One merge patch of `patch` (consumed) on the Deployment. */
static int patch_deployment(struct kube_client *kc, const char *ns, const char *name, json_t *patch)
{
	char *path = NULL;
	int rc;

	if (!patch)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if ((rc = deployment_path(ns, name, &path)) == AL_OK)
		rc = kube_request_retry(kc, "PATCH", path, patch, MERGE_PATCH, SCALE_DEADLINE_MS, NULL, NULL);
	json_decref(patch);
	free(path);
	return rc;
}

int uploader_wake(struct kube_client *kc, const char *ns, const char *name, int64_t now)
{
	char t[32];
	uploader_time_format(now, t, sizeof(t));
	return patch_deployment(kc, ns, name,
				json_pack("{s:{s:{s:s}}, s:{s:i}}", "metadata", "annotations",
					  UPLOADER_ANNOTATION_SCALED_UP_AT, t, "spec", "replicas", 1));
}

int uploader_activity_touch(struct kube_client *kc, const char *ns, const char *name, int64_t now)
{
	char t[32];
	uploader_time_format(now, t, sizeof(t));
	return patch_deployment(kc, ns, name,
				json_pack("{s:{s:{s:s}}}", "metadata", "annotations", UPLOADER_ANNOTATION_LAST_ACTIVITY, t));
}

int uploader_stamp(struct kube_client *kc, const char *ns, const char *name, const char *resource_version,
		   int64_t now)
{
	char t[32];
	if (!resource_version || !*resource_version)
		return al_error_set(AL_ERR_INVALID, "uploader %.80s: stamping needs the resourceVersion read", name ? name : "");
	uploader_time_format(now, t, sizeof(t));
	return patch_deployment(kc, ns, name,
				json_pack("{s:{s:s, s:{s:s}}}", "metadata", "resourceVersion", resource_version,
					  "annotations", UPLOADER_ANNOTATION_SCALED_UP_AT, t));
}

int uploader_scale_down(struct kube_client *kc, const char *ns, const char *name, const char *resource_version)
{
	/* The resourceVersion makes the patch conditional: a wake or a touch
	 * since the read wins, and the caller decides again. */
	if (!resource_version || !*resource_version)
		return al_error_set(AL_ERR_INVALID, "uploader %.80s: scaling down needs the resourceVersion read",
				    name ? name : "");
	return patch_deployment(kc, ns, name,
				json_pack("{s:{s:s}, s:{s:i}}", "metadata", "resourceVersion", resource_version, "spec",
					  "replicas", 0));
}

int uploader_is_ready(const json_t *deployment)
{
	const json_t *st = json_object_get(deployment, "status");
	/* readyReplicas alone can lag a scale-down: spec.replicas must still
	 * ask for a pod too. */
	return uploader_replicas(deployment) >= 1 && json_integer_value(json_object_get(st, "readyReplicas")) >= 1 &&
	       json_integer_value(json_object_get(st, "availableReplicas")) >= 1;
}

int uploader_ready(struct kube_client *kc, const char *ns, const char *name, int *out_ready)
{
	json_t *dep = NULL;
	int rc;

	*out_ready = 0;
	if ((rc = uploader_get(kc, ns, name, &dep)))
		return rc;
	*out_ready = uploader_is_ready(dep);
	json_decref(dep);
	return AL_OK;
}
