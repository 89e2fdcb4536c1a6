#include "config/config.h"
#include "auth/jwt.h"
#include "common/error.h"
#include "common/util.h"
#include "resource/resource.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *const default_extensions[] = {
	"csv", "tsv", "txt", "json", "jsonl", "parquet", "xlsx", "xls", "pdf", "md", "xml",
	"yaml", "yml", "gz", "zip", "sav", "dta", "rds", "rdata", "sas7bdat", "feather", "arrow",
	"png", "jpg", "jpeg", "tif", "tiff", "dcm", "nii", "vcf", "bam", "fastq", "fasta", NULL
};

/* Absolute form of `p` (which need not exist). */
static char *absolute_path(const char *p)
{
	char cwd[PATH_MAX];
	if (p[0] == '/')
		return util_strdup(p);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	if (p[0] == '.' && (p[1] == '\0'))
		return util_strdup(cwd);
	if (p[0] == '.' && p[1] == '/')
		p += 2;
	return util_path_join(cwd, p);
}

static int set_path(char **slot, const char *value)
{
	char *abs = absolute_path(value);
	if (!abs)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	free(*slot);
	*slot = abs;
	return AL_OK;
}

int config_set_data_dir(struct airlock_config *cfg, const char *dir)
{
	char *staging, *ws;
	int rc;
	if ((rc = set_path(&cfg->data_dir, dir)))
		return rc;
	/* Roots the file set explicitly stay where it put them. */
	staging = cfg->staging_root_explicit ? NULL : util_path_join(cfg->data_dir, "staging");
	ws = cfg->workspace_root_explicit ? NULL : util_path_join(cfg->data_dir, "workspaces");
	if ((!staging && !cfg->staging_root_explicit) || (!ws && !cfg->workspace_root_explicit)) {
		free(staging);
		free(ws);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	if (staging) {
		free(cfg->staging_root);
		cfg->staging_root = staging;
	}
	if (ws) {
		free(cfg->workspace_root);
		cfg->workspace_root = ws;
	}
	return AL_OK;
}

int config_parse_listen(struct airlock_config *cfg, const char *listen)
{
	const char *colon = strrchr(listen, ':');
	const char *port_s = colon ? colon + 1 : listen;
	char *end = NULL;
	long port;
	char *host;

	errno = 0;
	port = strtol(port_s, &end, 10);
	if (!*port_s || errno || *end || port < 0 || port > 65535)
		return al_error_set(AL_ERR_INVALID, "listen: '%s' is not host:port (e.g. 127.0.0.1:8080)", listen);
	if (colon && colon != listen) {
		size_t n = (size_t)(colon - listen);
		if (listen[0] == '[') { /* [::1]:8080 */
			if (n < 3 || listen[n - 1] != ']')
				return al_error_set(AL_ERR_INVALID, "listen: '%s' is not [IPv6-address]:port", listen);
			host = strndup(listen + 1, n - 2);
		} else if (memchr(listen, ':', n)) {
			/* A bare IPv6 address would be cut at its last ':'. */
			return al_error_set(AL_ERR_INVALID, "listen: write the IPv6 address in '%s' in brackets, "
							    "e.g. [::1]:8080", listen);
		} else {
			host = strndup(listen, n);
		}
	} else {
		host = util_strdup(cfg->listen_address ? cfg->listen_address : "127.0.0.1");
	}
	if (!host)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	free(cfg->listen_address);
	cfg->listen_address = host;
	cfg->port = (unsigned short)port;
	return AL_OK;
}

static int get_uint(const json_t *obj, const char *key, const char *where, uint64_t min, uint64_t max,
		    uint64_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return AL_OK;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min ||
	    (uint64_t)json_integer_value(v) > max)
		return al_error_set(AL_ERR_INVALID, "%s.%s: must be a whole number from %llu to %llu", where, key,
				    (unsigned long long)min, (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return AL_OK;
}

static int check_keys(const json_t *obj, const char *where, const char *const *allowed)
{
	const char *key;
	json_t *v;
	if (!json_is_object(obj))
		return al_error_set(AL_ERR_INVALID, "%s: must be a mapping", where);
	json_object_foreach((json_t *)obj, key, v) {
		int ok = 0;
		for (size_t i = 0; allowed[i]; i++)
			if (!strcmp(key, allowed[i]))
				ok = 1;
		if (!ok)
			return al_error_set(AL_ERR_INVALID, "%s%s%s: unknown setting", where, *where ? "." : "", key);
	}
	return AL_OK;
}

static const char *const airlock_roles[] = { "researcher", "data-engineer", "approver", "admin", NULL };

static int set_string(char **slot, const json_t *v, const char *where, const char *what)
{
	char *copy;
	if (!json_is_string(v) || !*json_string_value(v))
		return al_error_set(AL_ERR_INVALID, "%s: must be %s", where, what);
	if (!(copy = util_strdup(json_string_value(v))))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	free(*slot);
	*slot = copy;
	return AL_OK;
}

/* Defaults of the oidc section (used whether or not the file has one). */
static int oidc_defaults(struct config_oidc *o)
{
	o->algorithms = json_pack("[s, s]", "RS256", "ES256");
	o->groups_claim = util_strdup("groups");
	o->workspace_group_prefix = util_strdup("/jupyter-workspaces/");
	o->role_mapping = json_object();
	o->leeway_seconds = 60;
	if (!o->algorithms || !o->groups_claim || !o->workspace_group_prefix || !o->role_mapping)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	for (size_t i = 0; airlock_roles[i]; i++)
		if (json_object_set_new(o->role_mapping, airlock_roles[i], json_string(airlock_roles[i])))
			return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

static int apply_oidc(struct airlock_config *cfg, const json_t *v)
{
	static const char *const keys[] = { "issuer", "clientId", "clientSecretFile", "algorithms", "groupsClaim",
					    "workspaceGroupPrefix", "roleMapping", "leewaySeconds", "caFile", NULL };
	struct config_oidc *o = &cfg->oidc;
	const json_t *x;
	uint64_t u;
	int rc;

	if ((rc = check_keys(v, "oidc", keys)))
		return rc;
	if ((rc = set_string(&o->issuer, json_object_get(v, "issuer"), "oidc.issuer",
			     "the issuer URL, e.g. https://keycloak.example/realms/airlock")))
		return rc;
	if (strncmp(o->issuer, "https://", 8) && strncmp(o->issuer, "http://", 7))
		return al_error_set(AL_ERR_INVALID, "oidc.issuer: must be an https:// URL (http:// only on this machine)");
	if ((rc = set_string(&o->client_id, json_object_get(v, "clientId"), "oidc.clientId",
			     "the client id registered for airlock, e.g. airlock")))
		return rc;
	if ((x = json_object_get(v, "clientSecretFile"))) {
		if (!json_is_string(x) || !*json_string_value(x))
			return al_error_set(AL_ERR_INVALID, "oidc.clientSecretFile: must be the path of a file holding "
							    "the client secret");
		if ((rc = set_path(&o->client_secret_file, json_string_value(x))))
			return rc;
	}
	if ((x = json_object_get(v, "caFile"))) {
		if (!json_is_string(x) || !*json_string_value(x))
			return al_error_set(AL_ERR_INVALID, "oidc.caFile: must be the path of a PEM file");
		if ((rc = set_path(&o->ca_file, json_string_value(x))))
			return rc;
	}
	if ((x = json_object_get(v, "algorithms"))) {
		size_t i;
		json_t *a, *copy;
		if (!json_is_array(x) || json_array_size(x) == 0)
			return al_error_set(AL_ERR_INVALID, "oidc.algorithms: must be a non-empty list such as [RS256, ES256]");
		json_array_foreach(x, i, a) {
			const char *alg = json_string_value(a);
			if (alg && (!strcasecmp(alg, "none") || !strncasecmp(alg, "HS", 2)))
				return al_error_set(AL_ERR_INVALID, "oidc.algorithms[%zu]: %s is never accepted (unsigned "
								    "or shared-secret tokens); use RS256 or ES256", i, alg);
			if (!jwt_alg_supported(alg))
				return al_error_set(AL_ERR_INVALID, "oidc.algorithms[%zu]: must be one of RS256, RS384, "
								    "RS512, PS256, PS384, PS512, ES256, ES384, ES512", i);
		}
		if (!(copy = json_deep_copy(x)))
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		json_decref(o->algorithms);
		o->algorithms = copy;
	}
	if ((x = json_object_get(v, "groupsClaim")) &&
	    (rc = set_string(&o->groups_claim, x, "oidc.groupsClaim", "a claim name such as groups")))
		return rc;
	if ((x = json_object_get(v, "workspaceGroupPrefix"))) {
		if ((rc = set_string(&o->workspace_group_prefix, x, "oidc.workspaceGroupPrefix",
				     "a group path prefix such as /jupyter-workspaces/")))
			return rc;
		if (o->workspace_group_prefix[strlen(o->workspace_group_prefix) - 1] != '/')
			return al_error_set(AL_ERR_INVALID, "oidc.workspaceGroupPrefix: must end with '/', "
							    "e.g. /jupyter-workspaces/");
	}
	if ((x = json_object_get(v, "roleMapping"))) {
		const char *from;
		json_t *to, *copy;
		if (!json_is_object(x))
			return al_error_set(AL_ERR_INVALID, "oidc.roleMapping: must map Keycloak role names to "
							    "airlock roles, e.g. {sde-approver: approver}");
		json_object_foreach((json_t *)x, from, to) {
			int ok = 0;
			for (size_t i = 0; airlock_roles[i]; i++)
				if (json_is_string(to) && !strcmp(json_string_value(to), airlock_roles[i]))
					ok = 1;
			if (!ok)
				return al_error_set(AL_ERR_INVALID, "oidc.roleMapping.%s: must be researcher, "
								    "data-engineer, approver or admin", from);
		}
		if (!(copy = json_deep_copy(x)))
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		json_decref(o->role_mapping);
		o->role_mapping = copy;
	}
	u = (uint64_t)o->leeway_seconds;
	if ((rc = get_uint(v, "leewaySeconds", "oidc", 0, 300, &u)))
		return rc;
	o->leeway_seconds = (int)u;
	return AL_OK;
}

/* The frontend's settings. The external URL is an origin only: it decides
 * Secure cookies and which Origin a form may come from. */
static int apply_web(struct airlock_config *cfg, const json_t *v)
{
	static const char *const keys[] = { "externalUrl", "sessionIdleSeconds", NULL };
	const json_t *url = json_object_get(v, "externalUrl");
	uint64_t u = (uint64_t)cfg->session_idle_seconds;
	int rc;

	if ((rc = check_keys(v, "web", keys)) ||
	    (rc = get_uint(v, "sessionIdleSeconds", "web", 60, 24 * 3600, &u)))
		return rc;
	cfg->session_idle_seconds = (int)u;
	if (url) {
		const char *s = json_string_value(url), *host;
		size_t n = s ? strlen(s) : 0;
		if (n && s[n - 1] == '/')
			n--;
		host = !s ? NULL : !strncmp(s, "https://", 8) ? s + 8 : !strncmp(s, "http://", 7) ? s + 7 : NULL;
		if (!host || host >= s + n || memchr(host, '/', (size_t)(s + n - host)) ||
		    strcspn(host, " \t\r\n?#@") < (size_t)(s + n - host))
			return al_error_set(AL_ERR_INVALID, "web.externalUrl: must be an origin such as "
							    "https://airlock.example (no path)");
		free(cfg->external_url);
		if (!(cfg->external_url = util_strndup(s, n)))
			return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	return AL_OK;
}

static int apply_file(struct airlock_config *cfg, const json_t *doc)
{
	static const char *const top[] = { "listen", "dataDir", "stagingRoot", "workspaceRoot", "gates",
					   "jobs", "checks", "tokens", "runners", "oidc", "web", NULL };
	static const char *const runners_keys[] = { "default", "dltCommand", NULL };
	static const char *const jobs_keys[] = { "timeoutSeconds", NULL };
	static const char *const checks_keys[] = { "maxFileBytes", "maxTotalBytes", "maxFiles",
						   "allowedExtensions", NULL };
	static const char *const tokens_keys[] = { "ttlSeconds", NULL };
	const json_t *v;
	uint64_t u;
	int rc;

	if ((rc = check_keys(doc, "", top)))
		return rc;
	if ((v = json_object_get(doc, "dataDir"))) {
		if (!json_is_string(v) || !*json_string_value(v))
			return al_error_set(AL_ERR_INVALID, "dataDir: must be a path");
		if ((rc = config_set_data_dir(cfg, json_string_value(v))))
			return rc;
	}
	if ((v = json_object_get(doc, "listen"))) {
		if (!json_is_string(v))
			return al_error_set(AL_ERR_INVALID, "listen: must be a string such as 127.0.0.1:8080");
		if ((rc = config_parse_listen(cfg, json_string_value(v))))
			return rc;
	}
	if ((v = json_object_get(doc, "stagingRoot"))) {
		if (!json_is_string(v) || !*json_string_value(v))
			return al_error_set(AL_ERR_INVALID, "stagingRoot: must be a path");
		if ((rc = set_path(&cfg->staging_root, json_string_value(v))))
			return rc;
		cfg->staging_root_explicit = 1;
	}
	if ((v = json_object_get(doc, "workspaceRoot"))) {
		if (!json_is_string(v) || !*json_string_value(v))
			return al_error_set(AL_ERR_INVALID, "workspaceRoot: must be a path");
		if ((rc = set_path(&cfg->workspace_root, json_string_value(v))))
			return rc;
		cfg->workspace_root_explicit = 1;
	}
	if ((v = json_object_get(doc, "gates"))) {
		struct gates_config g;
		if ((rc = gates_config_from_json(&g, v)))
			return rc;
		gates_config_free(&cfg->gates);
		cfg->gates = g;
	}
	if ((v = json_object_get(doc, "jobs"))) {
		u = (uint64_t)cfg->job_timeout_seconds;
		if ((rc = check_keys(v, "jobs", jobs_keys)) ||
		    (rc = get_uint(v, "timeoutSeconds", "jobs", 1, 7 * 24 * 3600, &u)))
			return rc;
		cfg->job_timeout_seconds = (int)u;
	}
	if ((v = json_object_get(doc, "checks"))) {
		json_t *ext = json_object_get(v, "allowedExtensions");
		if ((rc = check_keys(v, "checks", checks_keys)) ||
		    (rc = get_uint(v, "maxFileBytes", "checks", 1, UINT64_MAX >> 1, &cfg->max_file_bytes)) ||
		    (rc = get_uint(v, "maxTotalBytes", "checks", 1, UINT64_MAX >> 1, &cfg->max_total_bytes)) ||
		    (rc = get_uint(v, "maxFiles", "checks", 1, 100000, &cfg->max_files)))
			return rc;
		if (ext) {
			size_t i;
			json_t *e;
			if (!json_is_array(ext))
				return al_error_set(AL_ERR_INVALID, "checks.allowedExtensions: must be a list");
			json_array_foreach(ext, i, e)
				if (!json_is_string(e) || !*json_string_value(e) || strchr(json_string_value(e), '.'))
					return al_error_set(AL_ERR_INVALID,
							    "checks.allowedExtensions[%zu]: must be an extension without the dot, e.g. csv", i);
			json_t *copy = json_deep_copy(ext);
			if (!copy)
				return al_error_set(AL_ERR_NOMEM, "out of memory");
			json_decref(cfg->allowed_extensions);
			cfg->allowed_extensions = copy;
		}
	}
	if ((v = json_object_get(doc, "runners"))) {
		const json_t *d = json_object_get(v, "default"), *cmd = json_object_get(v, "dltCommand");
		if ((rc = check_keys(v, "runners", runners_keys)))
			return rc;
		if (d && (rc = config_set_default_runner(cfg, json_string_value(d))))
			return al_error_wrap(rc, "runners.default");
		if (cmd) {
			if (!json_is_string(cmd) || !*json_string_value(cmd))
				return al_error_set(AL_ERR_INVALID, "runners.dltCommand: must be the path of "
								    "runners/dlt/airlock-dlt-runner");
			if ((rc = set_path(&cfg->dlt_command, json_string_value(cmd))))
				return rc;
		}
	}
	if ((v = json_object_get(doc, "oidc")) && (rc = apply_oidc(cfg, v)))
		return rc;
	if ((v = json_object_get(doc, "web")) && (rc = apply_web(cfg, v)))
		return rc;
	if ((v = json_object_get(doc, "tokens"))) {
		u = (uint64_t)cfg->token_ttl_seconds;
		if ((rc = check_keys(v, "tokens", tokens_keys)) ||
		    (rc = get_uint(v, "ttlSeconds", "tokens", 60, 30 * 24 * 3600, &u)))
			return rc;
		cfg->token_ttl_seconds = (int)u;
	}
	return AL_OK;
}

int config_set_default_runner(struct airlock_config *cfg, const char *runner)
{
	if (!runner || (strcmp(runner, "native") && strcmp(runner, "dlt")))
		return al_error_set(AL_ERR_INVALID, "the default runner \"%s\" is neither native nor dlt",
				    runner ? runner : "");
	cfg->default_runner_dlt = !strcmp(runner, "dlt");
	return AL_OK;
}

int config_load(struct airlock_config *cfg, const char *path)
{
	char *text = NULL;
	size_t len = 0;
	json_t *doc = NULL;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->port = 8080;
	cfg->job_timeout_seconds = 3600;
	cfg->max_file_bytes = (uint64_t)10 << 30;
	cfg->max_total_bytes = (uint64_t)100 << 30;
	cfg->max_files = 10000;
	cfg->token_ttl_seconds = 12 * 3600;
	cfg->session_idle_seconds = 30 * 60;
	cfg->allowed_extensions = json_array();
	cfg->listen_address = util_strdup("127.0.0.1");
	if (!cfg->allowed_extensions || !cfg->listen_address) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; default_extensions[i]; i++)
		json_array_append_new(cfg->allowed_extensions, json_string(default_extensions[i]));
	if ((rc = gates_config_init_default(&cfg->gates)) || (rc = config_set_data_dir(cfg, "var")) ||
	    (rc = oidc_defaults(&cfg->oidc)))
		goto fail;
	if (!path)
		return AL_OK;
	if ((rc = util_read_file(path, 1 << 20, &text, &len)))
		goto fail;
	if ((rc = resource_parse(text, len, &doc))) {
		al_error_wrap(rc, "%s", path);
		goto fail;
	}
	if ((rc = apply_file(cfg, doc))) {
		al_error_wrap(rc, "%s", path);
		goto fail;
	}
	json_decref(doc);
	free(text);
	return AL_OK;
fail:
	json_decref(doc);
	free(text);
	config_free(cfg);
	return rc;
}

void config_free(struct airlock_config *cfg)
{
	free(cfg->external_url);
	free(cfg->listen_address);
	free(cfg->data_dir);
	free(cfg->staging_root);
	free(cfg->workspace_root);
	free(cfg->dlt_command);
	gates_config_free(&cfg->gates);
	json_decref(cfg->allowed_extensions);
	free(cfg->oidc.issuer);
	free(cfg->oidc.client_id);
	free(cfg->oidc.client_secret_file);
	json_decref(cfg->oidc.algorithms);
	free(cfg->oidc.groups_claim);
	free(cfg->oidc.workspace_group_prefix);
	json_decref(cfg->oidc.role_mapping);
	free(cfg->oidc.ca_file);
	memset(cfg, 0, sizeof(*cfg));
}
