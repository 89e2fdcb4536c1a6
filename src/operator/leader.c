/*
 * Leader election on a Lease (leader.h). One thread per replica tries to
 * acquire or renew every retry period; the answer other threads see is an
 * atomic flag plus a monotonic deadline, so a renewal that hangs cannot keep
 * a replica acting past its renew deadline.
 */
#include "operator/leader.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "kube/kube.h"
#include "resource/resource.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LEASE_API "coordination.k8s.io/v1"

struct leader {
	struct kube_client *kc;
	char *name, *ns, *identity, *path, *collection;
	int duration_ms, renew_deadline_ms, retry_ms;

	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int stop;

	atomic_int leading;
	atomic_llong valid_until_ms; /* monotonic: act only before this */
	atomic_ullong acquisitions;

	/* The election thread's own. */
	char observed_rv[64];
	int64_t observed_at_ms;
	json_t *last;                /* the Lease as our last successful write left it */
};

void leader_options_init(struct leader_options *o)
{
	memset(o, 0, sizeof(*o));
	o->lease_name = LEADER_DEFAULT_LEASE_NAME;
	o->lease_duration_s = LEADER_DEFAULT_LEASE_DURATION_S;
	o->renew_deadline_s = LEADER_DEFAULT_RENEW_DEADLINE_S;
	o->retry_period_s = LEADER_DEFAULT_RETRY_PERIOD_S;
}

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static int env_seconds(const char *name, int *out)
{
	const char *v = env_nonempty(name);
	char *end = NULL;
	long n;
	if (!v)
		return AL_OK;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < 1 || n > 3600)
		return al_error_set(AL_ERR_INVALID, "%s=\"%.32s\": must be a whole number of seconds from 1 to 3600",
				    name, v);
	*out = (int)n;
	return AL_OK;
}

int leader_options_from_env(struct leader_options *o)
{
	int rc;
	if (env_nonempty("AIRLOCK_LEASE_NAME"))
		o->lease_name = env_nonempty("AIRLOCK_LEASE_NAME");
	if (env_nonempty("AIRLOCK_LEASE_NAMESPACE"))
		o->lease_namespace = env_nonempty("AIRLOCK_LEASE_NAMESPACE");
	if (env_nonempty("AIRLOCK_POD_NAME"))
		o->identity = env_nonempty("AIRLOCK_POD_NAME");
	if ((rc = env_seconds("AIRLOCK_LEASE_DURATION_SECONDS", &o->lease_duration_s)) ||
	    (rc = env_seconds("AIRLOCK_RENEW_DEADLINE_SECONDS", &o->renew_deadline_s)) ||
	    (rc = env_seconds("AIRLOCK_RETRY_PERIOD_SECONDS", &o->retry_period_s)))
		return rc;
	return AL_OK;
}

int leader_options_check(const struct leader_options *o)
{
	if (!o->lease_name || !resource_is_dns_subdomain(o->lease_name))
		return al_error_set(AL_ERR_INVALID, "lease name \"%s\" is not a valid object name (AIRLOCK_LEASE_NAME or --lease-name)",
				    o->lease_name ? o->lease_name : "");
	if (o->lease_namespace && !resource_is_dns_label(o->lease_namespace))
		return al_error_set(AL_ERR_INVALID, "lease namespace \"%s\" is not a valid namespace (AIRLOCK_LEASE_NAMESPACE)",
				    o->lease_namespace);
	if (o->identity && (!*o->identity || strlen(o->identity) > 253))
		return al_error_set(AL_ERR_INVALID, "AIRLOCK_POD_NAME: the holder identity must be 1 to 253 characters");
	if (o->retry_period_s < 1 || o->renew_deadline_s <= o->retry_period_s ||
	    o->lease_duration_s <= o->renew_deadline_s)
		return al_error_set(AL_ERR_INVALID,
				    "leader election timings: need 0 < retry period (%d s) < renew deadline (%d s) < lease duration (%d s)",
				    o->retry_period_s, o->renew_deadline_s, o->lease_duration_s);
	return AL_OK;
}

/* metav1.MicroTime: RFC 3339 with exactly six fractional digits. */
static void micro_time(char out[40])
{
	struct timespec ts;
	struct tm tm;
	char base[24];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 40, "%.19s.%06uZ", base, (unsigned)((unsigned long)ts.tv_nsec / 1000UL % 1000000UL));
}

static void set_leading(struct leader *l, int leading, const char *why)
{
	int was = atomic_exchange(&l->leading, leading);
	if (was && !leading)
		log_warn("leader election: %s no longer leads (lease %s/%s): %s", l->identity, l->ns, l->name, why);
	else if (!was && leading) {
		atomic_fetch_add(&l->acquisitions, 1);
		log_info("leader election: %s is the leader (lease %s/%s)", l->identity, l->ns, l->name);
	}
}

/* A successful write at `started_ms`: we may act until the renew deadline. */
static void renewed(struct leader *l, int64_t started_ms, json_t *lease)
{
	atomic_store(&l->valid_until_ms, (long long)(started_ms + l->renew_deadline_ms));
	json_decref(l->last);
	l->last = lease;
	{
		const char *rv = json_string_value(json_object_get(json_object_get(lease, "metadata"), "resourceVersion"));
		snprintf(l->observed_rv, sizeof(l->observed_rv), "%s", rv ? rv : "");
		l->observed_at_ms = started_ms;
	}
	set_leading(l, 1, "");
}

static int request_deadline(const struct leader *l)
{
	/* Never longer than a retry period, so a hung call cannot delay the
	 * next attempt (or our stopping to act) by much. */
	return l->retry_ms > 1000 ? l->retry_ms : 1000;
}

static int create_lease(struct leader *l, int64_t started)
{
	char now[40];
	json_t *body, *out = NULL;
	int rc;

	micro_time(now);
	body = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:i, s:s, s:s, s:i}}", "apiVersion", LEASE_API, "kind",
			 "Lease", "metadata", "name", l->name, "namespace", l->ns, "spec", "holderIdentity",
			 l->identity, "leaseDurationSeconds", l->duration_ms / 1000, "acquireTime", now, "renewTime",
			 now, "leaseTransitions", 0);
	if (!body)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = kube_request_retry(l->kc, "POST", l->collection, body, NULL, request_deadline(l), NULL, &out);
	json_decref(body);
	if (rc == AL_OK) {
		renewed(l, started, out);
		return AL_OK;
	}
	json_decref(out);
	if (rc == AL_ERR_EXISTS) {
		set_leading(l, 0, "another replica created the lease first");
		return AL_OK;
	}
	return rc;
}

/* One round: read the Lease, then create, renew, take over or wait. */
static int try_acquire_or_renew(struct leader *l)
{
	int64_t started = util_monotonic_ms();
	json_t *lease = NULL, *spec, *out = NULL;
	const char *holder, *renew, *rv;
	json_int_t duration_s, transitions;
	char now[40];
	int rc, mine;

	rc = kube_request_retry(l->kc, "GET", l->path, NULL, NULL, request_deadline(l), NULL, &lease);
	if (rc == AL_ERR_NOT_FOUND) {
		json_decref(lease);
		return create_lease(l, started);
	}
	if (rc) {
		json_decref(lease);
		return rc;
	}
	spec = json_object_get(lease, "spec");
	if (!json_is_object(spec)) {
		spec = json_object();
		json_object_set_new(lease, "spec", spec);
	}
	holder = json_string_value(json_object_get(spec, "holderIdentity"));
	renew = json_string_value(json_object_get(spec, "renewTime"));
	duration_s = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
	transitions = json_integer_value(json_object_get(spec, "leaseTransitions"));
	rv = json_string_value(json_object_get(json_object_get(lease, "metadata"), "resourceVersion"));
	if (duration_s <= 0)
		duration_s = l->duration_ms / 1000;
	if (!rv || strcmp(rv, l->observed_rv)) {
		/* The record changed: the holder is alive as of now. */
		snprintf(l->observed_rv, sizeof(l->observed_rv), "%s", rv ? rv : "");
		l->observed_at_ms = started;
	}
	mine = holder && !strcmp(holder, l->identity);
	if (holder && *holder && !mine) {
		int64_t renew_s = 0, wall = (int64_t)time(NULL);
		int wall_expired = !renew || util_parse_rfc3339(renew, &renew_s) || renew_s + duration_s < wall;
		int seen_expired = started - l->observed_at_ms >= duration_s * 1000;
		if (!(wall_expired && seen_expired)) {
			set_leading(l, 0, "the lease is held by another replica");
			json_decref(lease);
			return AL_OK;
		}
		log_info("leader election: the lease %s/%s of %s expired (renewed %s); taking over", l->ns, l->name,
			 holder, renew ? renew : "never");
	}
	micro_time(now);
	if (!mine) {
		json_object_set_new(spec, "acquireTime", json_string(now));
		json_object_set_new(spec, "leaseTransitions", json_integer(transitions + 1));
	}
	json_object_set_new(spec, "holderIdentity", json_string(l->identity));
	json_object_set_new(spec, "leaseDurationSeconds", json_integer(l->duration_ms / 1000));
	json_object_set_new(spec, "renewTime", json_string(now));
	json_object_del(json_object_get(lease, "metadata"), "managedFields");
	/* PUT with the resourceVersion read: a write in between is a 409. */
	rc = kube_request_retry(l->kc, "PUT", l->path, lease, NULL, request_deadline(l), NULL, &out);
	json_decref(lease);
	if (rc == AL_OK) {
		renewed(l, started, out);
		return AL_OK;
	}
	json_decref(out);
	if (rc == AL_ERR_CONFLICT) {
		set_leading(l, 0, "another replica wrote the lease first (409)");
		return AL_OK;
	}
	return rc;
}

static void release(struct leader *l)
{
	json_t *spec, *out = NULL;
	char now[40];
	int rc;

	if (!leader_is_leader(l) || !l->last)
		return;
	atomic_store(&l->leading, 0);
	spec = json_object_get(l->last, "spec");
	micro_time(now);
	json_object_set_new(spec, "holderIdentity", json_string(""));
	json_object_set_new(spec, "leaseDurationSeconds", json_integer(1));
	json_object_set_new(spec, "renewTime", json_string(now));
	json_object_set_new(spec, "acquireTime", json_string(now));
	json_object_del(json_object_get(l->last, "metadata"), "managedFields");
	rc = kube_request_retry(l->kc, "PUT", l->path, l->last, NULL, request_deadline(l), NULL, &out);
	json_decref(out);
	if (rc)
		log_warn("leader election: cannot release the lease %s/%s (a standby takes over when it expires): %s",
			 l->ns, l->name, al_error_message());
	else
		log_info("leader election: %s released the lease %s/%s", l->identity, l->ns, l->name);
}

static void *leader_main(void *arg)
{
	struct leader *l = arg;
	int failures = 0;

	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		struct timespec ts;
		int64_t wait_ms;
		int rc;

		pthread_mutex_unlock(&l->mu);
		rc = try_acquire_or_renew(l);
		if (rc) {
			failures++;
			/* Repeated, so logged at the first and then every tenth. */
			if (failures == 1 || failures % 10 == 0)
				log_warn("leader election: cannot read or write the lease %s/%s (%d in a row): %s", l->ns,
					 l->name, failures, al_error_message());
		} else {
			failures = 0;
		}
		if (atomic_load(&l->leading) && util_monotonic_ms() >= atomic_load(&l->valid_until_ms))
			set_leading(l, 0, "could not renew the lease within the renew deadline");
		pthread_mutex_lock(&l->mu);
		/* Jitter as client-go (up to +20%) so candidates spread out. */
		wait_ms = l->retry_ms;
		if (!atomic_load(&l->leading))
			wait_ms += rand() % (l->retry_ms / 5 + 1);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += wait_ms / 1000;
		ts.tv_nsec += (wait_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!l->stop && pthread_cond_timedwait(&l->cond, &l->mu, &ts) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&l->mu);
	release(l);
	return NULL;
}

static char *default_identity(void)
{
	char host[256], *hex = util_random_hex(4), *out = NULL;
	size_t n;
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "airlock");
	host[sizeof(host) - 1] = '\0';
	if (hex) {
		n = strlen(host) + strlen(hex) + 2;
		if ((out = malloc(n)))
			snprintf(out, n, "%s-%s", host, hex);
	}
	free(hex);
	return out;
}

int leader_start(struct leader **out, struct kube_client *kc, const struct leader_options *o)
{
	struct leader *l;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if ((rc = leader_options_check(o)))
		return rc;
	if (!(l = calloc(1, sizeof(*l))))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	l->kc = kc;
	l->name = util_strdup(o->lease_name);
	l->ns = util_strdup(o->lease_namespace ? o->lease_namespace : kube_client_namespace(kc));
	l->identity = o->identity ? util_strdup(o->identity) : default_identity();
	l->duration_ms = o->lease_duration_s * 1000;
	l->renew_deadline_ms = o->renew_deadline_s * 1000;
	l->retry_ms = o->retry_period_s * 1000;
	if (!l->name || !l->ns || !l->identity) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if (!(l->path = kube_path(LEASE_API, l->ns, "leases", l->name, NULL)) ||
	    !(l->collection = kube_path(LEASE_API, l->ns, "leases", NULL, NULL))) {
		rc = AL_ERR_INVALID;
		goto fail;
	}
	atomic_init(&l->leading, 0);
	atomic_init(&l->valid_until_ms, 0);
	atomic_init(&l->acquisitions, 0);
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&l->thread, NULL, leader_main, l) != 0) {
		pthread_cond_destroy(&l->cond);
		pthread_mutex_destroy(&l->mu);
		rc = al_error_set(AL_ERR_INTERNAL, "cannot start the leader election thread");
		goto fail;
	}
	log_info("leader election: %s competes for the lease %s/%s (duration %d s, renew deadline %d s, retry %d s)",
		 l->identity, l->ns, l->name, o->lease_duration_s, o->renew_deadline_s, o->retry_period_s);
	*out = l;
	return AL_OK;
fail:
	free(l->name);
	free(l->ns);
	free(l->identity);
	free(l->path);
	free(l->collection);
	free(l);
	return rc;
}

int leader_is_leader(struct leader *l)
{
	if (!l || !atomic_load(&l->leading))
		return 0;
	return util_monotonic_ms() < atomic_load(&l->valid_until_ms);
}

const char *leader_identity(const struct leader *l)
{
	return l ? l->identity : "";
}

uint64_t leader_acquisitions(struct leader *l)
{
	return l ? atomic_load(&l->acquisitions) : 0;
}

int leader_check(void *ud)
{
	return ud ? leader_is_leader(ud) : 1;
}

void leader_stop(struct leader *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = 1;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->thread, NULL);
	json_decref(l->last);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->mu);
	free(l->name);
	free(l->ns);
	free(l->identity);
	free(l->path);
	free(l->collection);
	free(l);
}
