/*
 * uploader_scale.h - the lifecycle of a Kubernetes uploader Deployment
 * (upload-<uid>, made scaled to 0 by runtime_kube.c): waking it, telling
 * whether it is ready, recording activity, and deciding when it is idle.
 * docs/kube-runtime.md ("Scaling uploaders") has the contract in full.
 *
 * The contract, in annotations on the uploader's Deployment (RFC 3339 UTC,
 * seconds precision, e.g. 2026-11-24T05:19:00Z):
 *
 *   xlscsde.nhs.uk/scaled-up-at   written by uploader_wake (the frontend,
 *                                 when a person opens the uploader), and by
 *                                 the operator when it finds an uploader
 *                                 running with neither annotation (someone
 *                                 scaled it by hand): that starts its clock.
 *   xlscsde.nhs.uk/last-activity  written by uploader_activity_touch (the
 *                                 frontend, while it proxies requests to the
 *                                 uploader), at most once every
 *                                 UPLOADER_TOUCH_INTERVAL_S per uploader.
 *
 * The operator scales an uploader with spec.replicas > 0 back to 0 when
 * max(scaled-up-at, last-activity) + idle_seconds <= now, or at once when
 * its datasource is no longer at stage Uploading ("sealed"). Its scale-down
 * is a merge patch carrying the resourceVersion it read, so a wake or a
 * touch that lands in between makes it a 409 and it looks again: an
 * uploader in use is never scaled down on a stale reading.
 *
 * Times written by one machine are compared with another's clock: keep
 * clocks in sync (NTP); a time in the future counts as now, so a skewed
 * clock can never keep an uploader up for longer than idle_seconds.
 *
 * Every function here is thread-safe (the kube client is) and sends only
 * the merge patches described; none reads or writes a Secret.
 * Ownership: json_t ** outputs are new references; inputs are borrowed.
 */
#ifndef AL_RUNTIME_UPLOADER_SCALE_H
#define AL_RUNTIME_UPLOADER_SCALE_H

#include <jansson.h>
#include <stdint.h>

struct kube_client;

#define UPLOADER_ANNOTATION_LAST_ACTIVITY "xlscsde.nhs.uk/last-activity"
#define UPLOADER_ANNOTATION_SCALED_UP_AT "xlscsde.nhs.uk/scaled-up-at"
/* AIRLOCK_UPLOADER_IDLE_SECONDS when unset (the chart's uploader.idleScaleDownSeconds). */
#define UPLOADER_IDLE_DEFAULT_S 900
/* The most AIRLOCK_UPLOADER_IDLE_SECONDS may be: 30 days. */
#define UPLOADER_IDLE_MAX_S (30 * 24 * 3600)
/* The frontend writes last-activity at most this often per uploader. */
#define UPLOADER_TOUCH_INTERVAL_S 60

/* What the operator should do with one uploader Deployment. */
enum uploader_verdict {
	UPLOADER_AT_REST,          /* replicas 0 (or unset): nothing */
	UPLOADER_IN_USE,           /* running, not idle yet: look again at *out_due */
	UPLOADER_NEEDS_STAMP,      /* running with no usable time: write scaled-up-at = now, look again at *out_due */
	UPLOADER_IDLE,             /* running and idle: scale to 0 */
	UPLOADER_SEALED,           /* running, its datasource left Uploading: scale to 0 */
};

/* Formats Unix seconds as RFC 3339 UTC with seconds ("...T05:19:00Z") into
 * out (at least 21 bytes; UTIL_TIME_LEN is enough). */
void uploader_time_format(int64_t t, char *out, size_t n);

/* The time the uploader was last known to be wanted:
 * max(scaled-up-at, last-activity), each parsed with util_parse_rfc3339
 * (an unparseable annotation counts as absent), and a time after `now`
 * counted as `now`. AL_OK with *out_t, or AL_ERR_NOT_FOUND when neither is
 * usable. `deployment` is the whole object. */
int uploader_last_wanted(const json_t *deployment, int64_t now, int64_t *out_t);

/* spec.replicas (0 when absent or not a number). */
long uploader_replicas(const json_t *deployment);

/* The decision, a pure function of the Deployment, `sealed` (its datasource
 * is no longer at stage Uploading), idle_seconds (> 0) and the clock.
 * *out_due: for UPLOADER_IN_USE the Unix second at which it will be idle,
 * for UPLOADER_NEEDS_STAMP now + idle_seconds; 0 otherwise. */
enum uploader_verdict uploader_decide(const json_t *deployment, int sealed, int idle_seconds, int64_t now,
				      int64_t *out_due);

/* 1 when the frontend should write last-activity now, having last written
 * it at `last_touch` (0 = never): at most once every UPLOADER_TOUCH_INTERVAL_S. */
int uploader_touch_due(int64_t last_touch, int64_t now);

/* Reads the Deployment `name` in `ns`: AL_OK with *out, AL_ERR_NOT_FOUND, or
 * another error (the API server's, retried while retryable for ~10 s). */
int uploader_get(struct kube_client *kc, const char *ns, const char *name, json_t **out);

/* Scales the uploader up: one merge patch setting spec.replicas to 1 and
 * scaled-up-at to `now`. Idempotent (a running uploader stays at 1 with a
 * fresh scaled-up-at, which also postpones its scale-down). AL_ERR_NOT_FOUND
 * when there is no such Deployment. Needs `patch` on deployments. */
int uploader_wake(struct kube_client *kc, const char *ns, const char *name, int64_t now);

/* 1 when the Deployment (the whole object) can take requests: spec.replicas
 * >= 1 and status.readyReplicas >= 1 and status.availableReplicas >= 1;
 * else 0 (scaled to 0, starting, or its pod not ready). A pure function,
 * for a caller that has read the Deployment anyway (uploader_get). */
int uploader_is_ready(const json_t *deployment);

/* Whether the uploader can take requests: *out_ready = uploader_is_ready of
 * a fresh read. AL_ERR_NOT_FOUND when there is no such Deployment. Needs
 * `get` on deployments. */
int uploader_ready(struct kube_client *kc, const char *ns, const char *name, int *out_ready);

/* Records activity: a merge patch of last-activity = `now`, nothing else
 * (so it never scales anything up or down). Call it while proxying traffic,
 * when uploader_touch_due says so. AL_ERR_NOT_FOUND when there is no such
 * Deployment. Needs `patch` on deployments. */
int uploader_activity_touch(struct kube_client *kc, const char *ns, const char *name, int64_t now);

/* The operator's side: writes scaled-up-at = `now` on a running uploader
 * that has no usable time, only if it is still the object read
 * (`resource_version`): AL_ERR_CONFLICT otherwise. */
int uploader_stamp(struct kube_client *kc, const char *ns, const char *name, const char *resource_version,
		   int64_t now);

/* The operator's side: spec.replicas = 0, only if the Deployment is still
 * the object read (`resource_version`, required): AL_ERR_CONFLICT when it
 * changed (a wake or touch landed: decide again on a fresh read). */
int uploader_scale_down(struct kube_client *kc, const char *ns, const char *name, const char *resource_version);

#endif
