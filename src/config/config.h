/*
 * config.h - settings of `airlock serve`, from an optional YAML file.
 *
 * Every setting has a sane default, so a new user needs no file at all.
 * Unknown settings are refused with a message naming them (a typo must not
 * silently leave a gate open). Paths are made absolute relative to the
 * current directory.
 *
 *   listen: 127.0.0.1:8080
 *   dataDir: ./var                  # database, job state, keys
 *   stagingRoot: <dataDir>/staging  # data awaiting approval
 *   workspaceRoot: <dataDir>/workspaces  # published data; never inside staging
 *   gates:
 *     request: []                   # e.g. [{type: information-governance, role: approver}]
 *     review: [{type: data-approver, role: approver}]
 *   jobs: {timeoutSeconds: 3600}
 *   checks: {maxFileBytes: 10737418240, maxTotalBytes: 107374182400, maxFiles: 10000,
 *            allowedExtensions: [csv, json, parquet, txt, ...]}
 *   tokens: {ttlSeconds: 43200}
 *   runners:
 *     default: native               # or dlt: for datasources without spec.runner
 *     dltCommand: <path>            # runners/dlt/airlock-dlt-runner (after scripts/dlt-venv.sh);
 *                                   # unset: dlt datasources fail saying how to set it up
 *   oidc:                           # unset: local accounts only (docs/oidc.md)
 *     issuer: https://keycloak.example/realms/airlock
 *     clientId: airlock
 *     clientSecretFile: /run/secrets/oidc-client-secret   # for the browser login
 *     algorithms: [RS256, ES256]    # asymmetric only; none and HS* are refused
 *     groupsClaim: groups
 *     workspaceGroupPrefix: /jupyter-workspaces/
 *     roleMapping: {researcher: researcher, data-engineer: data-engineer,
 *                   approver: approver, admin: admin}   # Keycloak role -> airlock role
 *     leewaySeconds: 60             # clock skew allowed on exp/nbf/iat
 *     caFile: <PEM bundle>          # to trust a private CA; default: the system's
 *   web:                            # the frontend's pages (docs/frontend.md)
 *     externalUrl: https://airlock.example   # how people reach it; https => Secure cookies
 *     sessionIdleSeconds: 1800      # a web session ends after this long unused
 *                                   # (and always tokens.ttlSeconds after login)
 */
#ifndef AL_CONFIG_CONFIG_H
#define AL_CONFIG_CONFIG_H

#include <jansson.h>
#include <stdint.h>

#include "gates/gates.h"

/* The `oidc:` section; issuer NULL means OIDC is off. Strings are owned. */
struct config_oidc {
	char *issuer;
	char *client_id;
	char *client_secret_file;   /* NULL: bearer tokens only, no browser login */
	json_t *algorithms;         /* array of alg names */
	char *groups_claim;
	char *workspace_group_prefix;
	json_t *role_mapping;       /* object: Keycloak role -> airlock role */
	int leeway_seconds;
	char *ca_file;              /* NULL: the system's trust store */
};

struct airlock_config {
	char *listen_address;       /* "127.0.0.1" */
	unsigned short port;        /* 8080; 0 = any free port */
	char *data_dir;
	char *staging_root;
	char *workspace_root;
	struct gates_config gates;
	int job_timeout_seconds;
	uint64_t max_file_bytes;
	uint64_t max_total_bytes;
	uint64_t max_files;
	json_t *allowed_extensions; /* array of lower-case extensions without the dot */
	int token_ttl_seconds;
	int default_runner_dlt;     /* runners.default is dlt */
	char *dlt_command;          /* runners.dltCommand, or NULL */
	int staging_root_explicit;  /* stagingRoot was set: config_set_data_dir keeps it */
	int workspace_root_explicit;
	struct config_oidc oidc;
	char *external_url;         /* web.externalUrl ("scheme://host[:port]"), or NULL */
	int session_idle_seconds;   /* web.sessionIdleSeconds */
};

/* Fills defaults, then applies the file at `path` if not NULL. */
int config_load(struct airlock_config *cfg, const char *path);
/* Parses "host:port", ":port" or "port". */
int config_parse_listen(struct airlock_config *cfg, const char *listen);
/* Sets dataDir and re-derives the staging/workspace roots that were not set explicitly. */
int config_set_data_dir(struct airlock_config *cfg, const char *dir);
/* "native" or "dlt" (AL_ERR_INVALID otherwise): the runner of datasources
 * that do not choose one. */
int config_set_default_runner(struct airlock_config *cfg, const char *runner);
void config_free(struct airlock_config *cfg);

#endif
