/*
 * runtime.h - where reconcilers get volumes, secrets, jobs and uploaders.
 * Two implementations share this interface: local (directories and
 * supervised child processes, runtime_local.c) and kube (PVC, Secret, Job,
 * Deployment + Service + Ingress: runtime_kube.c).
 *
 * Every object has a deterministic name chosen by the caller, and every call
 * is idempotent, so a reconciler killed at any instant converges on restart:
 *  - volume_ensure of an existing volume returns its path;
 *  - job_start of a job name that already exists (running or finished)
 *    answers AL_ERR_EXISTS and starts nothing: a job never runs twice.
 *
 * Staging volumes (uploads and collected data awaiting approval) and
 * workspace volumes (published data) live under separate roots.
 *
 * Open one with runtime_local_open (below) or runtime_kube_open
 * (runtime_kube.h; docs/kube-runtime.md).
 *
 * Ownership: char ** outputs are new strings (free them); inputs borrowed.
 */
#ifndef AL_RUNTIME_RUNTIME_H
#define AL_RUNTIME_RUNTIME_H

#include <jansson.h>

enum volume_class { VOLUME_STAGING = 0, VOLUME_WORKSPACE };

enum job_phase { JOB_NOT_FOUND = 0, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED };

/*
 * Jobs are described by what they do, not by how one machine runs them, so
 * that every runtime can run the same description:
 *
 *  - `args` is an airlock subcommand and its arguments ({"check-job",
 *    "--max-files", "10000", NULL}). The runtime supplies the airlock
 *    executable: the local runtime runs `<self_exe> <args...>`; a Kubernetes
 *    runtime runs the airlock runner image, whose entrypoint is airlock, with
 *    `args` as the container's args. Arguments never carry paths or secrets.
 *
 *  - `mounts` say what the job may reach. For each mount the runtime makes the
 *    volume directory, or the secret's file, available to the job and sets
 *    the environment variable `env` to its path *as the job sees it*:
 *      local: the volume's real directory, the secret's JSON file (0600);
 *      Kubernetes: e.g. a PVC mounted at /mnt/<env in lower case> (readOnly
 *      as asked), a Secret mounted as one file holding the JSON object (the
 *      runtime stores the object's JSON under one key and mounts it with
 *      items/subPath).
 *    The subcommands read those variables when their flags are absent.
 *    Unused entries have env == NULL. A volume or secret must exist before
 *    the job starts (volume_ensure / secret_ensure): AL_ERR_NOT_FOUND.
 *    `read_only` asks that the job can only read the volume. Kubernetes
 *    enforces it with a read-only mount; the local runtime cannot (a job runs
 *    as the same user as the server), so the subcommands that get read-only
 *    mounts (check-job, publish-job's source) open those paths read-only.
 *
 *  - The job sees AIRLOCK_JOB_NAME (its name) and the mounts' variables, and
 *    no other AIRLOCK_* variable of the process that started it. Its working
 *    directory is the runtime's choice (local: the job's own directory).
 *
 *  - A job reports through its output (stdout and stderr, in order, as
 *    job_logs returns them) and its exit status: a failure's reason is the
 *    last line of output. Jobs that return a result print it as their last
 *    line of stdout (see operator/jobresult.h).
 */
#define JOB_MOUNTS_MAX 4

/*
 * The object a child belongs to (the datasource). A Kubernetes runtime gives
 * every child it creates for an owner a controller owner reference to it
 * (controller: true, blockOwnerDeletion: true), so deleting the owner
 * deletes its children, and labels naming it; the local runtime ignores it.
 * NULL = no owner. Workspace volumes never get one: they are the workspace's
 * storage and outlive any datasource. Fields are borrowed; namespace NULL
 * means a cluster-scoped owner.
 */
struct runtime_owner {
	const char *api_version; /* "xlscsde.nhs.uk/v1" */
	const char *kind;        /* "AnalyticsWorkspaceDataSource" */
	const char *namespace;
	const char *name;
	const char *uid;
};

/* Points `out` at obj's apiVersion, kind, metadata.namespace/name/uid
 * (borrowed from obj: keep obj alive while `out` is used). AL_ERR_INVALID
 * when apiVersion, kind, name or uid is missing. */
int runtime_owner_from_object(struct runtime_owner *out, const json_t *obj);

enum job_mount_kind { JOB_MOUNT_VOLUME = 0, JOB_MOUNT_SECRET };

struct job_mount {
	enum job_mount_kind kind;
	enum volume_class cls;   /* volumes only */
	const char *name;        /* the volume's or secret's name */
	const char *env;         /* ^[A-Z_][A-Z0-9_]*$, unique in the job; NULL = unused entry */
	int read_only;           /* volumes: the job only reads it (see above) */
};

/* What a job runs. The airlock image is this very executable (args[0] is
 * one of its subcommands); the dlt image is the dlt job runner
 * (runners/dlt), which has the same contract as `airlock run-job` and takes
 * its inputs from the environment (args may be empty). Locally the dlt
 * runner is the command set with runtime_local_set_dlt_command; in
 * Kubernetes it is the dlt runner image. */
enum job_image { JOB_IMAGE_AIRLOCK = 0, JOB_IMAGE_DLT };

/* A plain environment variable for the job. Never a secret: secrets are
 * mounted (JOB_MOUNT_SECRET), so they stay out of process listings and
 * object specs. */
struct job_env {
	const char *name;  /* as a mount's env; NULL = unused entry */
	const char *value;
};

#define JOB_ENV_MAX 4

struct job_spec {
	const char *name;                       /* deterministic; see runtime_check_name() */
	const char *const *args;                /* airlock subcommand and arguments; NULL-terminated */
	struct job_mount mounts[JOB_MOUNTS_MAX];
	int timeout_seconds;                    /* the job is killed and fails after this; 0 = no limit */
	const struct runtime_owner *owner;      /* may be NULL; see struct runtime_owner */
	enum job_image image;                   /* JOB_IMAGE_AIRLOCK unless set */
	struct job_env env[JOB_ENV_MAX];
};

struct job_status {
	enum job_phase phase;
	int exit_code;           /* valid when finished */
	char *reason;            /* why it failed (last error line), or NULL */
	char *started_at;        /* RFC 3339 or NULL */
	char *finished_at;       /* RFC 3339 or NULL */
};

void job_status_free(struct job_status *st);

struct runtime;

struct runtime_ops {
	int (*volume_ensure)(struct runtime *rt, enum volume_class cls, const char *name,
			     const struct runtime_owner *owner, char **out_path);
	int (*volume_delete)(struct runtime *rt, enum volume_class cls, const char *name);
	int (*secret_ensure)(struct runtime *rt, const char *name, const json_t *data,
			     const struct runtime_owner *owner);
	int (*secret_delete)(struct runtime *rt, const char *name);
	int (*job_start)(struct runtime *rt, const struct job_spec *spec);
	int (*job_get)(struct runtime *rt, const char *name, struct job_status *out);
	int (*job_logs)(struct runtime *rt, const char *name, char **out);
	int (*job_delete)(struct runtime *rt, const char *name);
	int (*uploader_ensure)(struct runtime *rt, const char *name, const char *volume,
			       const struct runtime_owner *owner);
	int (*uploader_delete)(struct runtime *rt, const char *name);
	void (*close)(struct runtime *rt);
};

struct runtime {
	const struct runtime_ops *ops;
};

/* Local runtime rooted at state_dir (jobs/, secrets/), staging_root and
 * workspace_root. `self_exe` is the airlock binary: it runs as the job shim
 * (`<self_exe> job-shim <jobdir>`), which runs `<self_exe> <args...>`; NULL
 * means this very executable.
 * staging_root and workspace_root must be separate (neither inside the other)
 * and state_dir must not lie inside either: AL_ERR_INVALID, nothing created.
 * Jobs started here outlive the runtime handle and the process. */
int runtime_local_open(struct runtime **out, const char *state_dir, const char *staging_root,
		       const char *workspace_root, const char *self_exe);
/* The command that runs JOB_IMAGE_DLT jobs locally (an executable: the dlt
 * runner's wrapper runners/dlt/airlock-dlt-runner); NULL (the default)
 * refuses them with a message saying how to set it up. Copied. Every local
 * job also gets AIRLOCK_BIN, the airlock executable, so a runner can call
 * `airlock rocrate build`. */
int runtime_local_set_dlt_command(struct runtime *rt, const char *command);

/* AL_OK when `name` can name a volume, secret or job:
 * ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ and no "..", so it is one safe
 * path component; else AL_ERR_INVALID naming `what` ("volume", "job" ...). */
int runtime_check_name(const char *what, const char *name);

/* The variable every job gets with its own name. */
#define RUNTIME_JOB_NAME_ENV "AIRLOCK_JOB_NAME"

/* AL_OK when `spec` is well formed (every runtime checks this before
 * anything else): a valid name, args starting with a subcommand, timeout
 * >= 0, and every used mount of a known kind and class, with a valid name and
 * a unique env (not RUNTIME_JOB_NAME_ENV); else AL_ERR_INVALID naming the
 * field. It does not look at what exists. */
int runtime_check_job_spec(const struct job_spec *spec);

/* Creates the volume unless it exists. *out_path (may be NULL) is where this
 * process can reach it (local: its directory); the reconcilers do not use it,
 * since in Kubernetes the operator cannot reach volumes: only jobs can. */
int runtime_volume_ensure(struct runtime *rt, enum volume_class cls, const char *name, char **out_path);
/* The same, for the child of `owner` (may be NULL; ignored for workspace
 * volumes, which never belong to a datasource). */
int runtime_volume_ensure_owned(struct runtime *rt, enum volume_class cls, const char *name,
				const struct runtime_owner *owner, char **out_path);
/* Deleting a volume that does not exist is AL_OK. A Kubernetes runtime never
 * deletes a claim the airlock did not create (AL_ERR_FORBIDDEN). */
int runtime_volume_delete(struct runtime *rt, enum volume_class cls, const char *name);
/* Stores `data` (a JSON object: key -> string, or any nested object) where
 * only the jobs that mount it can read it (local: state/secrets/<name>.json,
 * mode 0600; Kubernetes: a Secret). Ensuring it again replaces the data. */
int runtime_secret_ensure(struct runtime *rt, const char *name, const json_t *data);
int runtime_secret_ensure_owned(struct runtime *rt, const char *name, const json_t *data,
				const struct runtime_owner *owner);
int runtime_secret_delete(struct runtime *rt, const char *name);
/* Starts the job described above; AL_ERR_EXISTS when a job of that name
 * exists (running or finished: it is never started twice), AL_ERR_NOT_FOUND
 * when a mounted volume or secret does not exist, AL_ERR_INVALID for a bad
 * spec (name, args, mounts, timeout). */
int runtime_job_start(struct runtime *rt, const struct job_spec *spec);
int runtime_job_get(struct runtime *rt, const char *name, struct job_status *out);
/* The job's output (stdout and stderr as one stream), at most its last
 * RUNTIME_JOB_LOGS_MAX bytes: enough for the largest result line a job may
 * print (JOB_RESULT_MAX in operator/jobresult.h) plus some output before it.
 * AL_ERR_NOT_FOUND when there is no such job. */
#define RUNTIME_JOB_LOGS_MAX (((size_t)33) << 20)
int runtime_job_logs(struct runtime *rt, const char *name, char **out);
int runtime_job_delete(struct runtime *rt, const char *name);

/*
 * The uploader of an Uploaded datasource: what lets a person put files into
 * the staging volume `volume`. Kubernetes: the staging claim `volume` (of the
 * upload storage class, created if absent), a Deployment `name` scaled to 0
 * that mounts it, a Service `name` and an Ingress `name`, all children of
 * `owner` (docs/kube-runtime.md). Idempotent: what exists is left as it is.
 * The local runtime does nothing (AL_OK): the embedded uploader comes with a
 * later issue; until then files reach a local staging volume by other means.
 * `name` is a DNS label (^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$).
 * uploader_delete removes what uploader_ensure made except the volume
 * (deleted with runtime_volume_delete); what does not exist is AL_OK.
 */
int runtime_uploader_ensure(struct runtime *rt, const char *name, const char *volume,
			    const struct runtime_owner *owner);
int runtime_uploader_delete(struct runtime *rt, const char *name);
void runtime_close(struct runtime *rt);

#endif
