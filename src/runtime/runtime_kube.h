/*
 * runtime_kube.h - the runtime (runtime.h) on Kubernetes: volumes are
 * PersistentVolumeClaims, secrets are Secrets holding one key secret.json,
 * jobs are batch/v1 Jobs running the runner image, and an Uploaded
 * datasource's uploader is a Deployment (scaled to 0) + Service + Ingress.
 * Every object lives in one namespace, carries the label
 * app.kubernetes.io/managed-by=airlock, and (when an owner is given and lives
 * in that namespace) a controller owner reference to its datasource.
 * docs/kube-runtime.md describes every object and why each setting is there.
 *
 * What the runtime promises beyond runtime.h:
 *  - it never modifies an existing claim, Deployment, Service or Ingress;
 *  - an uploader's Deployment names the proxy Secret (uploader_proxy_secret)
 *    and mounts it read-only; the value itself is never read by the
 *    runtime and so never appears in an object, a log or an error;
 *  - an uploader's Ingress routes to the frontend's Service, never to the
 *    uploader's own (browsers go through the frontend, which proxies);
 *  - it never deletes an object without the managed-by label (a workspace's
 *    own claim above all): AL_ERR_FORBIDDEN;
 *  - it never logs a secret's values;
 *  - a handle may be used from many threads at once (it holds no state that
 *    changes after runtime_kube_open).
 */
#ifndef AL_RUNTIME_RUNTIME_KUBE_H
#define AL_RUNTIME_RUNTIME_KUBE_H

#include "runtime/runtime.h"

struct kube_client;

/* Label every object the runtime creates carries (app.kubernetes.io/managed-by). */
#define RUNTIME_KUBE_MANAGED_BY "airlock"
/* A label selector matching exactly the objects the runtime creates. */
#define RUNTIME_KUBE_SELECTOR "app.kubernetes.io/managed-by=" RUNTIME_KUBE_MANAGED_BY

/*
 * Settings. Strings are owned by the options (runtime_kube_options_free);
 * runtime_kube_options_init sets the defaults, runtime_kube_options_from_env
 * overrides them from the AIRLOCK_* variables the Helm chart sets
 * (deploy/helm/airlock/README.md, "What the operator receives"):
 *
 *   field                      variable                              default
 *   namespace                  AIRLOCK_NAMESPACE, else AIRLOCK_LEASE_NAMESPACE  jupyterhub
 *   staging_storage_class      AIRLOCK_STORAGE_CLASS                 jupyter-default
 *   upload_storage_class       AIRLOCK_STAGING_STORAGE_CLASS         (staging_storage_class)
 *   workspace_storage_class    AIRLOCK_WORKSPACE_STORAGE_CLASS       jupyter-default
 *   staging_size               AIRLOCK_IMPORT_VOLUME_SIZE            10Gi
 *   upload_size                AIRLOCK_STAGING_VOLUME_SIZE           10Gi
 *   workspace_size             AIRLOCK_WORKSPACE_VOLUME_SIZE         10Gi
 *   access_mode                AIRLOCK_VOLUME_ACCESS_MODE            ReadWriteOnce
 *   workspace_access_mode      AIRLOCK_WORKSPACE_VOLUME_ACCESS_MODE  (access_mode)
 *   runner_image               AIRLOCK_RUNNER_IMAGE                  airlock:0.1.0
 *   runner_pull_policy         AIRLOCK_RUNNER_IMAGE_PULL_POLICY      IfNotPresent
 *   dlt_runner_image           AIRLOCK_DLT_RUNNER_IMAGE              airlock-dlt-runner:0.1.0
 *                              (jobs of JOB_IMAGE_DLT: its entrypoint is the dlt runner;
 *                              pulled with the runner_pull_policy)
 *   runner_resources           AIRLOCK_RUNNER_RESOURCES (JSON)       none
 *   uploader_image             AIRLOCK_UPLOADER_IMAGE                airlock:0.1.0
 *   uploader_pull_policy       AIRLOCK_UPLOADER_IMAGE_PULL_POLICY    IfNotPresent
 *   uploader_resources         AIRLOCK_UPLOADER_RESOURCES (JSON)     none
 *   ingress_class              AIRLOCK_INGRESS_CLASS                 none (cluster default)
 *   ingress_host               AIRLOCK_INGRESS_HOST                  none (any host)
 *   ingress_tls_secret         AIRLOCK_INGRESS_TLS_SECRET            none
 *   ingress_annotations        AIRLOCK_INGRESS_ANNOTATIONS (JSON)    none
 *   uploader_proxy_secret      AIRLOCK_UPLOADER_PROXY_SECRET         airlock-uploader-proxy
 *   uploader_proxy_secret_key  AIRLOCK_UPLOADER_PROXY_SECRET_KEY     secret
 *                              (the Secret, in `namespace`, whose key holds the shared secret the
 *                              frontend proves itself with; mounted read-only into every uploader)
 *   frontend_service           AIRLOCK_FRONTEND_SERVICE              airlock-frontend
 *   frontend_service_port      AIRLOCK_FRONTEND_SERVICE_PORT         80
 *                              (the Service, in `namespace`, every uploader Ingress routes to:
 *                              browsers reach an uploader only through the frontend's proxy)
 *   backoff_limit              AIRLOCK_JOB_BACKOFF_LIMIT             0
 *   active_deadline_seconds    AIRLOCK_JOB_ACTIVE_DEADLINE_SECONDS   3600 (when a spec has no timeout)
 *   ttl_seconds_after_finished AIRLOCK_JOB_TTL_SECONDS_AFTER_FINISHED 3600
 *   run_as_user / run_as_group / fs_group   AIRLOCK_RUN_AS_USER / _GROUP, AIRLOCK_FS_GROUP  65532
 *
 * A variable that is set but empty counts as unset, except the ingress
 * class, host and TLS Secret, where empty means none.
 */
struct runtime_kube_options {
	char *namespace;
	char *staging_storage_class;
	char *upload_storage_class;   /* NULL = staging_storage_class */
	char *workspace_storage_class;
	char *staging_size;
	char *upload_size;
	char *workspace_size;
	char *access_mode;
	char *workspace_access_mode;  /* NULL = access_mode */
	char *runner_image;
	char *runner_pull_policy;
	char *dlt_runner_image;
	json_t *runner_resources;     /* ResourceRequirements or NULL */
	char *uploader_image;
	char *uploader_pull_policy;
	json_t *uploader_resources;
	char *ingress_class;          /* NULL = the cluster's default IngressClass */
	char *ingress_host;           /* NULL = every host */
	char *ingress_tls_secret;     /* NULL = no tls section */
	json_t *ingress_annotations;  /* object of strings or NULL */
	char *uploader_proxy_secret;  /* Secret name (never its value: the runtime never reads it) */
	char *uploader_proxy_secret_key;
	char *frontend_service;
	int frontend_service_port;
	int backoff_limit;
	int active_deadline_seconds;  /* used when a job spec has timeout_seconds 0; 0 = none */
	int ttl_seconds_after_finished; /* < 0 = never deleted by Kubernetes */
	long run_as_user;
	long run_as_group;
	long fs_group;
};

#define RUNTIME_KUBE_DEFAULT_NAMESPACE "jupyterhub"
#define RUNTIME_KUBE_DEFAULT_STORAGE_CLASS "jupyter-default"
#define RUNTIME_KUBE_DEFAULT_SIZE "10Gi"
#define RUNTIME_KUBE_DEFAULT_ACCESS_MODE "ReadWriteOnce"
#define RUNTIME_KUBE_DEFAULT_IMAGE "airlock:" AIRLOCK_VERSION
#define RUNTIME_KUBE_DEFAULT_DLT_IMAGE "airlock-dlt-runner:" AIRLOCK_VERSION
#define RUNTIME_KUBE_DEFAULT_PULL_POLICY "IfNotPresent"
#define RUNTIME_KUBE_DEFAULT_TTL 3600
#define RUNTIME_KUBE_DEFAULT_DEADLINE 3600
#define RUNTIME_KUBE_DEFAULT_UID 65532
#define RUNTIME_KUBE_DEFAULT_PROXY_SECRET "airlock-uploader-proxy"
#define RUNTIME_KUBE_DEFAULT_PROXY_SECRET_KEY "secret"
#define RUNTIME_KUBE_DEFAULT_FRONTEND_SERVICE "airlock-frontend"
#define RUNTIME_KUBE_DEFAULT_FRONTEND_PORT 80

/* Where a job sees its mounts: volumes at RUNTIME_KUBE_VOLUME_DIR/<env in
 * lower case>, secrets at RUNTIME_KUBE_SECRET_DIR/<env in lower case>/secret.json. */
#define RUNTIME_KUBE_VOLUME_DIR "/mnt"
#define RUNTIME_KUBE_SECRET_DIR "/var/run/airlock"
#define RUNTIME_KUBE_SECRET_KEY "secret.json"
/* Uploaders: the pod listens on this port, the Service on port 80, and the
 * Ingress routes RUNTIME_KUBE_UPLOAD_PATH/<name> to it. */
#define RUNTIME_KUBE_UPLOADER_PORT 8080
#define RUNTIME_KUBE_UPLOAD_PATH "/uploads"
#define RUNTIME_KUBE_UPLOAD_DIR "/data"
/* Where an uploader finds the proxy secret: this directory holds one file,
 * RUNTIME_KUBE_PROXY_SECRET_FILE, the Secret's key (AIRLOCK_UPLOADER_PROXY_SECRET_FILE). */
#define RUNTIME_KUBE_PROXY_SECRET_DIR "/var/run/airlock/proxy-secret"
#define RUNTIME_KUBE_PROXY_SECRET_FILE "secret"

/* Defaults (see the table). AL_ERR_NOMEM. */
int runtime_kube_options_init(struct runtime_kube_options *o);
/* Overrides from the environment; AL_ERR_INVALID naming the variable for a
 * value that is not a number, not JSON of the right shape, or not a valid
 * name. */
int runtime_kube_options_from_env(struct runtime_kube_options *o);
void runtime_kube_options_free(struct runtime_kube_options *o);

/* The owner of an object the runtime created, read from the annotation it
 * puts on every owned child ("<kind>/<namespace>/<name>"): AL_OK with
 * *out_ns and *out_name new strings when the owner is of kind `kind`;
 * AL_ERR_NOT_FOUND when the object names no owner of that kind (nothing is
 * allocated); AL_ERR_NOMEM. Lets a watch on Jobs wake their datasource. */
int runtime_kube_child_owner(const json_t *child, const char *kind, char **out_ns, char **out_name);

/* Opens the runtime on `kc` (borrowed: it must outlive the runtime) with a
 * copy of `opts` (NULL = the defaults). AL_ERR_INVALID for a bad namespace,
 * pull policy, access mode or a negative limit. Nothing is sent to the API
 * server until the first call. */
int runtime_kube_open(struct runtime **out, struct kube_client *kc, const struct runtime_kube_options *opts);

#endif
