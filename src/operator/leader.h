/*
 * leader.h - leader election on a coordination.k8s.io/v1 Lease, so that of
 * several `airlock operator` replicas exactly one acts (the chart runs two).
 *
 * The algorithm is client-go's leaderelection with a Lease lock:
 *  - every retry period a candidate reads the Lease; if there is none it
 *    creates it holding it (an AlreadyExists means another won the race);
 *  - the holder renews: a PUT with the resourceVersion it read and a new
 *    spec.renewTime. A 409 means someone else wrote the Lease: the renewal
 *    lost, and the replica stops acting at once;
 *  - a candidate takes over a Lease held by another only when it has
 *    expired: spec.renewTime + spec.leaseDurationSeconds lies in the past,
 *    and the candidate has itself seen the Lease unchanged for
 *    leaseDurationSeconds (so a candidate whose clock runs ahead cannot take
 *    a live leader's Lease). A takeover sets holderIdentity, acquireTime and
 *    increments leaseTransitions; an empty holderIdentity (a released Lease)
 *    is taken at once;
 *  - leader_is_leader() answers 1 only while the last successful renewal is
 *    less than the renew deadline old, measured on the monotonic clock from
 *    before that renewal was sent. A leader that cannot reach the API server
 *    stops acting after the renew deadline, before its Lease can expire
 *    (renew deadline < lease duration) and a standby take over;
 *  - leader_stop() releases a Lease it holds (holderIdentity "",
 *    leaseDurationSeconds 1), so a standby takes over within a retry period
 *    after a clean shutdown (SIGTERM) instead of a lease duration.
 *
 * RBAC: get and update on the one Lease, create on leases (the chart's
 * airlock.rules.leaderElection). No patch, list or watch.
 *
 * Thread safety: leader_is_leader may be called from any thread.
 */
#ifndef AL_OPERATOR_LEADER_H
#define AL_OPERATOR_LEADER_H

#include <stdint.h>

struct kube_client;

#define LEADER_DEFAULT_LEASE_NAME "airlock-operator"
#define LEADER_DEFAULT_LEASE_DURATION_S 15
#define LEADER_DEFAULT_RENEW_DEADLINE_S 10
#define LEADER_DEFAULT_RETRY_PERIOD_S 2

/*
 * Settings; strings are borrowed. leader_options_from_env reads the chart's
 * variables (deploy/helm/airlock/README.md, "What the operator receives"):
 *   lease_name        AIRLOCK_LEASE_NAME                airlock-operator
 *   lease_namespace   AIRLOCK_LEASE_NAMESPACE           NULL = the client's namespace
 *   identity          AIRLOCK_POD_NAME                  NULL = <hostname>-<random>
 *   lease_duration_s  AIRLOCK_LEASE_DURATION_SECONDS    15
 *   renew_deadline_s  AIRLOCK_RENEW_DEADLINE_SECONDS    10
 *   retry_period_s    AIRLOCK_RETRY_PERIOD_SECONDS      2
 * An empty variable counts as unset.
 */
struct leader_options {
	const char *lease_name;
	const char *lease_namespace;
	const char *identity;
	int lease_duration_s;
	int renew_deadline_s;
	int retry_period_s;
};

void leader_options_init(struct leader_options *o);
/* AL_ERR_INVALID naming the variable for a value that is not a positive
 * whole number. */
int leader_options_from_env(struct leader_options *o);
/* AL_ERR_INVALID unless 0 < retry < renew deadline < lease duration and the
 * names are valid. */
int leader_options_check(const struct leader_options *o);

struct leader;

/* Starts the election thread on `kc` (borrowed; must outlive the leader).
 * Makes no API call before returning. */
int leader_start(struct leader **out, struct kube_client *kc, const struct leader_options *o);
/* 1 while this replica holds the Lease (see above). NULL: 0. */
int leader_is_leader(struct leader *l);
/* This replica's holderIdentity (borrowed). */
const char *leader_identity(const struct leader *l);
/* Times this replica became the leader. */
uint64_t leader_acquisitions(struct leader *l);
/* Stops the thread, releases the Lease if held, frees. NULL is a no-op. */
void leader_stop(struct leader *l);

/* For callers that have no leader (leader election off): always 1. An
 * adapter for the controller's is_leader callback: `ud` is a struct leader
 * or NULL. */
int leader_check(void *ud);

#endif
