/*
 * runtime.h - where reconcilers get volumes, secrets and jobs. Two
 * implementations share this interface: local (directories and supervised
 * child processes, runtime_local.c) and, later, kube (PVC, Secret, Job ...).
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
 * Ownership: char ** outputs are new strings (free them); inputs borrowed.
 */
#ifndef AL_RUNTIME_RUNTIME_H
#define AL_RUNTIME_RUNTIME_H

#include <jansson.h>

enum volume_class { VOLUME_STAGING = 0, VOLUME_WORKSPACE };

enum job_phase { JOB_NOT_FOUND = 0, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED };

struct job_spec {
	const char *name;        /* deterministic; see runtime_check_name() */
	char *const *argv;       /* argv[0] is the program; NULL-terminated */
	const char *volume;      /* staging volume name mounted as the job's output (may be NULL) */
	const char *secret;      /* secret name whose file the job reads (may be NULL) */
	int timeout_seconds;     /* the job is killed and fails after this; 0 = no limit */
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
	int (*volume_ensure)(struct runtime *rt, enum volume_class cls, const char *name, char **out_path);
	int (*volume_delete)(struct runtime *rt, enum volume_class cls, const char *name);
	int (*secret_ensure)(struct runtime *rt, const char *name, const json_t *data, char **out_path);
	int (*secret_delete)(struct runtime *rt, const char *name);
	int (*job_start)(struct runtime *rt, const struct job_spec *spec);
	int (*job_get)(struct runtime *rt, const char *name, struct job_status *out);
	int (*job_logs)(struct runtime *rt, const char *name, char **out);
	int (*job_delete)(struct runtime *rt, const char *name);
	void (*close)(struct runtime *rt);
};

struct runtime {
	const struct runtime_ops *ops;
};

/* Local runtime rooted at state_dir (jobs/, secrets/), staging_root and
 * workspace_root. `self_exe` is the airlock binary used as the job shim
 * (`<self_exe> job-shim <jobdir>`); NULL means this very executable.
 * staging_root and workspace_root must be separate (neither inside the other)
 * and state_dir must not lie inside either: AL_ERR_INVALID, nothing created.
 * Jobs started here outlive the runtime handle and the process. */
int runtime_local_open(struct runtime **out, const char *state_dir, const char *staging_root,
		       const char *workspace_root, const char *self_exe);

/* AL_OK when `name` can name a volume, secret or job:
 * ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ and no "..", so it is one safe
 * path component; else AL_ERR_INVALID naming `what` ("volume", "job" ...). */
int runtime_check_name(const char *what, const char *name);

int runtime_volume_ensure(struct runtime *rt, enum volume_class cls, const char *name, char **out_path);
int runtime_volume_delete(struct runtime *rt, enum volume_class cls, const char *name);
/* Writes `data` (a JSON object, usually key -> string) where only the job can read
 * it: a file of mode 0600. Returns the file's path. */
int runtime_secret_ensure(struct runtime *rt, const char *name, const json_t *data, char **out_path);
int runtime_secret_delete(struct runtime *rt, const char *name);
int runtime_job_start(struct runtime *rt, const struct job_spec *spec);
int runtime_job_get(struct runtime *rt, const char *name, struct job_status *out);
int runtime_job_logs(struct runtime *rt, const char *name, char **out);
int runtime_job_delete(struct runtime *rt, const char *name);
void runtime_close(struct runtime *rt);

#endif
