/*
 * runtime_kube_driver - drives src/runtime/runtime_kube.c from the command
 * line for tests/kube/test_runtime_kube.py (against a real API server):
 *
 *   runtime_kube_driver KUBECONFIG [--owner APIVERSION,KIND,NAMESPACE,NAME,UID] COMMAND ARGS...
 *
 *   volume-ensure staging|workspace NAME     volume-delete staging|workspace NAME
 *   secret-ensure NAME JSON                  secret-delete NAME
 *   job-start NAME [--timeout S] [--mount volume:CLASS:NAME:ENV[:ro]]... [--mount secret:NAME:ENV]... -- ARGS...
 *   job-get NAME    job-logs NAME    job-delete NAME
 *   uploader-ensure NAME VOLUME              uploader-delete NAME
 *   uploader-wake NAME                       uploader-touch NAME
 *     (uploader_scale.h: the frontend's merge patches, replicas 1 and
 *     scaled-up-at, or last-activity, stamped with the current time)
 *
 * The runtime's options come from the AIRLOCK_* environment
 * (runtime_kube_options_from_env). Prints one JSON object:
 * {"rc": "ok"|<al_error_name>, "message": ..., ...results}; exits 0 when
 * the command ran (whatever its result), 2 on a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/error.h"
#include "common/log.h"
#include "kube/kube.h"
#include "runtime/runtime.h"
#include "runtime/runtime_kube.h"
#include "runtime/uploader_scale.h"

static int usage(const char *why)
{
	fprintf(stderr, "runtime_kube_driver: %s\n", why);
	return 2;
}

static int parse_class(const char *s, enum volume_class *out)
{
	if (!strcmp(s, "staging"))
		*out = VOLUME_STAGING;
	else if (!strcmp(s, "workspace"))
		*out = VOLUME_WORKSPACE;
	else
		return -1;
	return 0;
}

static const char *phase_name(enum job_phase p)
{
	switch (p) {
	case JOB_RUNNING: return "running";
	case JOB_SUCCEEDED: return "succeeded";
	case JOB_FAILED: return "failed";
	default: return "not_found";
	}
}

/* Splits "a:b:c" in place into at most n fields; returns how many. */
static int split(char *s, char sep, char **f, int n)
{
	int k = 0;
	f[k++] = s;
	for (char *p = s; *p && k < n; p++)
		if (*p == sep) {
			*p = '\0';
			f[k++] = p + 1;
		}
	return k;
}

int main(int argc, char **argv)
{
	struct runtime_kube_options opts;
	struct kube_config cfg = { 0 };
	struct kube_client *kc = NULL;
	struct runtime *rt = NULL;
	struct runtime_owner owner = { 0 }, *ownerp = NULL;
	char owner_buf[1024];
	json_t *res = json_object();
	const char *cmd;
	char *ns = NULL; /* opts.namespace, kept past the options */
	int i = 2, rc, exit_code = 0;

	log_set_level(LOG_WARN);
	if (argc < 3)
		return usage("usage: runtime_kube_driver KUBECONFIG [--owner ...] COMMAND ARGS...");
	if (!strcmp(argv[i], "--owner")) {
		char *f[5];
		if (i + 1 >= argc || strlen(argv[i + 1]) >= sizeof(owner_buf))
			return usage("--owner needs APIVERSION,KIND,NAMESPACE,NAME,UID");
		snprintf(owner_buf, sizeof(owner_buf), "%s", argv[i + 1]);
		if (split(owner_buf, ',', f, 5) != 5)
			return usage("--owner needs APIVERSION,KIND,NAMESPACE,NAME,UID");
		owner = (struct runtime_owner){ .api_version = f[0], .kind = f[1], .namespace = *f[2] ? f[2] : NULL,
						.name = f[3], .uid = f[4] };
		ownerp = &owner;
		i += 2;
	}
	if (i >= argc)
		return usage("no command");
	cmd = argv[i++];

	if ((rc = runtime_kube_options_init(&opts)) || (rc = runtime_kube_options_from_env(&opts))) {
		fprintf(stderr, "options: %s\n", al_error_message());
		return 1;
	}
	if ((rc = kube_config_load(&cfg, argv[1])) || (rc = kube_client_new(&kc, &cfg)) ||
	    (rc = runtime_kube_open(&rt, kc, &opts))) {
		fprintf(stderr, "open: %s\n", al_error_message());
		runtime_kube_options_free(&opts);
		kube_config_free(&cfg);
		kube_client_free(kc);
		return 1;
	}
	/* The uploader commands patch by namespace and name, as the frontend does. */
	if (!(ns = strdup(opts.namespace ? opts.namespace : ""))) {
		fprintf(stderr, "out of memory\n");
		runtime_kube_options_free(&opts);
		runtime_close(rt);
		kube_client_free(kc);
		kube_config_free(&cfg);
		return 1;
	}
	runtime_kube_options_free(&opts);

	if (!strcmp(cmd, "volume-ensure") || !strcmp(cmd, "volume-delete")) {
		enum volume_class cls;
		if (i + 2 > argc || parse_class(argv[i], &cls)) {
			exit_code = usage("volume-ensure|volume-delete staging|workspace NAME");
			goto out;
		}
		rc = !strcmp(cmd, "volume-ensure") ? runtime_volume_ensure_owned(rt, cls, argv[i + 1], ownerp, NULL)
						   : runtime_volume_delete(rt, cls, argv[i + 1]);
	} else if (!strcmp(cmd, "secret-ensure")) {
		json_error_t jerr;
		json_t *data;
		if (i + 2 > argc) {
			exit_code = usage("secret-ensure NAME JSON");
			goto out;
		}
		data = json_loads(argv[i + 1], JSON_DECODE_ANY, &jerr);
		rc = runtime_secret_ensure_owned(rt, argv[i], data, ownerp);
		json_decref(data);
	} else if (!strcmp(cmd, "secret-delete") && i < argc) {
		rc = runtime_secret_delete(rt, argv[i]);
	} else if (!strcmp(cmd, "job-start") && i < argc) {
		struct job_spec spec = { .name = argv[i++], .owner = ownerp };
		int nm = 0;
		while (i < argc && strcmp(argv[i], "--")) {
			if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
				spec.timeout_seconds = atoi(argv[i + 1]);
			} else if (!strcmp(argv[i], "--mount") && i + 1 < argc && nm < JOB_MOUNTS_MAX) {
				char *f[5];
				int n = split(argv[i + 1], ':', f, 5);
				struct job_mount *m = &spec.mounts[nm++];
				if (!strcmp(f[0], "volume") && n >= 4 && !parse_class(f[1], &m->cls)) {
					m->kind = JOB_MOUNT_VOLUME;
					m->name = f[2];
					m->env = f[3];
					m->read_only = n == 5 && !strcmp(f[4], "ro");
				} else if (!strcmp(f[0], "secret") && n == 3) {
					m->kind = JOB_MOUNT_SECRET;
					m->name = f[1];
					m->env = f[2];
				} else {
					exit_code = usage("--mount volume:CLASS:NAME:ENV[:ro] or secret:NAME:ENV");
					goto out;
				}
			} else {
				exit_code = usage("job-start NAME [--timeout S] [--mount ...]... -- ARGS...");
				goto out;
			}
			i += 2;
		}
		if (i >= argc) {
			exit_code = usage("job-start: '--' and the job's arguments are missing");
			goto out;
		}
		spec.args = (const char *const *)&argv[i + 1];
		rc = runtime_job_start(rt, &spec);
	} else if (!strcmp(cmd, "job-get") && i < argc) {
		struct job_status st;
		rc = runtime_job_get(rt, argv[i], &st);
		if (!rc) {
			json_object_set_new(res, "phase", json_string(phase_name(st.phase)));
			json_object_set_new(res, "exit_code", json_integer(st.exit_code));
			json_object_set_new(res, "reason", st.reason ? json_string(st.reason) : json_null());
			json_object_set_new(res, "started_at", st.started_at ? json_string(st.started_at) : json_null());
			json_object_set_new(res, "finished_at", st.finished_at ? json_string(st.finished_at) : json_null());
			job_status_free(&st);
		}
	} else if (!strcmp(cmd, "job-logs") && i < argc) {
		char *logs = NULL;
		rc = runtime_job_logs(rt, argv[i], &logs);
		if (!rc)
			json_object_set_new(res, "logs", json_string(logs));
		free(logs);
	} else if (!strcmp(cmd, "job-delete") && i < argc) {
		rc = runtime_job_delete(rt, argv[i]);
	} else if (!strcmp(cmd, "uploader-ensure") && i + 2 <= argc) {
		rc = runtime_uploader_ensure(rt, argv[i], argv[i + 1], ownerp);
	} else if (!strcmp(cmd, "uploader-delete") && i < argc) {
		rc = runtime_uploader_delete(rt, argv[i]);
	} else if (!strcmp(cmd, "uploader-wake") && i < argc) {
		rc = uploader_wake(kc, ns, argv[i], (int64_t)time(NULL));
	} else if (!strcmp(cmd, "uploader-touch") && i < argc) {
		rc = uploader_activity_touch(kc, ns, argv[i], (int64_t)time(NULL));
	} else {
		exit_code = usage("unknown command or missing arguments");
		goto out;
	}
	json_object_set_new(res, "rc", json_string(rc ? al_error_name(rc) : "ok"));
	json_object_set_new(res, "message", json_string(rc ? al_error_message() : ""));
	{
		char *text = json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS);
		if (text)
			puts(text);
		free(text);
	}
out:
	free(ns);
	json_decref(res);
	runtime_close(rt);
	kube_client_free(kc);
	kube_config_free(&cfg);
	return exit_code;
}
