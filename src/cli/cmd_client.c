/*
 * The user-facing client commands: login, user, workspace, apply, get, wait,
 * approve, reject, retry, audit, secret. Each talks to the airlock's
 * /api/v1 over HTTP with the token saved by `airlock login`.
 */
#include "audit/audit.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "net/curl_dl.h"
#include "resource/resource.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define SECRET_MAX 65536

/* ---- shared helpers ----------------------------------------------------- */

static int die(const char *cmd, int rc)
{
	fprintf(stderr, "airlock %s: %s\n", cmd, *al_error_message() ? al_error_message() : al_error_name(rc));
	return 1;
}

static int open_client(struct client *c, const char *server, const char *cmd)
{
	int rc;
	memset(c, 0, sizeof(*c));
	if ((rc = client_load(c, server)))
		return die(cmd, rc);
	c->timeout_ms = 60000;
	return 0;
}

/* GET/POST/... and print the error if any; *out is the JSON answer. */
static int call(struct client *c, const char *cmd, const char *method, const char *path, const json_t *body,
		json_t **out)
{
	long status = 0;
	json_t *ans = NULL;
	int rc = client_request(c, method, path, body, &status, &ans);
	if (rc) {
		json_decref(ans);
		if (out)
			*out = NULL;
		return die(cmd, rc);
	}
	if (out)
		*out = ans;
	else
		json_decref(ans);
	return 0;
}

/* Percent-encodes a path segment or query value (new string). */
static char *enc(const char *s)
{
	const struct curl_dl *cu = curl_dl();
	char *e = cu ? cu->easy_escape(NULL, s, 0) : NULL;
	char *out = e ? util_strdup(e) : NULL;
	if (e)
		cu->free(e);
	return out;
}

/* prefix + enc(a) + mid + enc(b), with NULL parts left out (new string). */
static char *path_of(const char *prefix, const char *a, const char *mid, const char *b)
{
	struct buf p;
	char *ea = a ? enc(a) : NULL, *eb = b ? enc(b) : NULL;
	int rc;
	buf_init(&p, 8192);
	rc = (a && !ea) || (b && !eb);
	if (!rc)
		rc = buf_appends(&p, prefix) || buf_appends(&p, ea ? ea : "") || buf_appends(&p, mid) ||
		     buf_appends(&p, eb ? eb : "");
	free(ea);
	free(eb);
	if (rc) {
		buf_free(&p);
		return NULL;
	}
	return buf_detach(&p);
}

/* Reads a secret: from a file, or stdin (without echo on a terminal). */
static int read_secret(const char *file, const char *prompt, char **out)
{
	struct buf b;
	int rc;
	*out = NULL;
	if (file) {
		size_t len = 0;
		if ((rc = util_read_file(file, SECRET_MAX, out, &len)))
			return rc;
		while (len && ((*out)[len - 1] == '\n' || (*out)[len - 1] == '\r'))
			(*out)[--len] = '\0';
		return AL_OK;
	}
	buf_init(&b, SECRET_MAX);
	{
		struct termios old, quiet;
		int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
		int ch;
		if (tty) {
			fprintf(stderr, "%s", prompt);
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
		}
		rc = AL_OK;
		while ((ch = getchar()) != EOF && ch != '\n')
			if ((rc = buf_appendc(&b, (char)ch)))
				break;
		if (tty) {
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
			fprintf(stderr, "\n");
		}
	}
	if (rc) {
		buf_free(&b);
		return rc;
	}
	if (b.len && b.ptr[b.len - 1] == '\r')
		b.ptr[--b.len] = '\0';
	*out = buf_detach(&b);
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

static void free_secret(char *s)
{
	if (s) {
		memset(s, 0, strlen(s));
		free(s);
	}
}

static const char *jstr(const json_t *o, const char *path)
{
	const char *s = resource_string_at(o, path);
	return s && *s ? s : "";
}

static const char *ws_label(const json_t *o)
{
	const char *s = json_string_value(json_object_get(
		json_object_get(json_object_get(o, "metadata"), "labels"), "xlscsde.nhs.uk/workspace"));
	return s ? s : "";
}

static void age(const char *ts, char out[32])
{
	int64_t t;
	long d;
	if (!ts || util_parse_rfc3339(ts, &t)) {
		snprintf(out, 32, "-");
		return;
	}
	d = (long)(time(NULL) - t);
	if (d < 0)
		d = 0;
	if (d < 120)
		snprintf(out, 32, "%lds", d);
	else if (d < 7200)
		snprintf(out, 32, "%ldm", d / 60);
	else if (d < 172800)
		snprintf(out, 32, "%ldh", d / 3600);
	else
		snprintf(out, 32, "%ldd", d / 86400);
}

static void print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (s)
		printf("%s\n", s);
	free(s);
}

/* ---- login ------------------------------------------------------------ */

int cmd_login(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' }, { "user", required_argument, NULL, 'u' },
		{ "password-file", required_argument, NULL, 'p' }, { "password-stdin", no_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *user = NULL, *pwfile = NULL;
	struct client c;
	char *password = NULL;
	json_t *body = NULL, *ans = NULL;
	int opt, rc, ret = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "hs:u:", opts, NULL)) != -1) {
		switch (opt) {
		case 's': server = optarg; break;
		case 'u': user = optarg; break;
		case 'p': pwfile = optarg; break;
		case 'i': break;
		case 'h':
			printf("usage: airlock login [--server URL] --user NAME [--password-file FILE | --password-stdin]\n\n"
			       "Logs in and saves the server and token in ~/.config/airlock/config.json (mode 0600).\n"
			       "Without --password-file the password is read from standard input (no echo on a terminal).\n"
			       "The server defaults to $AIRLOCK_SERVER or %s.\n", CLIENT_DEFAULT_SERVER);
			return 0;
		default: return 2;
		}
	}
	if (!user) {
		fprintf(stderr, "airlock login: --user is required\n");
		return 2;
	}
	if (open_client(&c, server, "login"))
		return 1;
	if ((rc = read_secret(pwfile, "Password: ", &password))) {
		die("login", rc);
		goto out;
	}
	body = json_pack("{s:s, s:s}", "username", user, "password", password);
	free_secret(password);
	if (!body || call(&c, "login", "POST", "/api/v1/login", body, &ans))
		goto out;
	if ((rc = client_save(c.server, json_string_value(json_object_get(ans, "token"))))) {
		die("login", rc);
		goto out;
	}
	{
		char *cfg = client_config_path();
		printf("Logged in to %s as %s (roles: ", c.server, user);
		for (size_t i = 0; i < json_array_size(json_object_get(json_object_get(ans, "user"), "roles")); i++)
			printf("%s%s", i ? ", " : "", json_string_value(json_array_get(json_object_get(json_object_get(ans, "user"), "roles"), i)));
		printf("). Token saved in %s.\n", cfg ? cfg : "the config file");
		free(cfg);
	}
	ret = 0;
out:
	if (body) {
		json_t *pw = json_object_get(body, "password");
		if (pw)
			json_string_set(pw, "");
	}
	json_decref(body);
	json_decref(ans);
	client_free(&c);
	return ret;
}

int cmd_logout(int argc, char **argv)
{
	struct client c;
	json_t *ans = NULL;
	int ret = 1;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: airlock logout\n\nEnds the saved session on the server and forgets its token.\n");
		return 0;
	}
	if (open_client(&c, NULL, "logout"))
		return 1;
	if (!c.token) {
		printf("not logged in\n");
		client_free(&c);
		return 0;
	}
	/* The token is forgotten here even if the server could not be told
	 * (call() has printed why); it expires there on its own. */
	call(&c, "logout", "POST", "/api/v1/logout", NULL, &ans);
	if (client_save(c.server, NULL) == AL_OK) {
		printf("logged out of %s\n", c.server);
		ret = 0;
	} else {
		die("logout", AL_ERR_IO);
	}
	json_decref(ans);
	client_free(&c);
	return ret;
}

/* ---- user ------------------------------------------------------------- */

int cmd_user(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' }, { "role", required_argument, NULL, 'r' },
		{ "password-file", required_argument, NULL, 'p' }, { "password-stdin", no_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *pwfile = NULL, *sub;
	json_t *roles = json_array(), *ans = NULL, *body = NULL;
	struct client c;
	char *password = NULL, *path = NULL;
	int opt, rc, ret = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "hs:r:", opts, NULL)) != -1) {
		switch (opt) {
		case 's': server = optarg; break;
		case 'r': json_array_append_new(roles, json_string(optarg)); break;
		case 'p': pwfile = optarg; break;
		case 'i': break;
		case 'h':
			printf("usage: airlock user add NAME --role ROLE [--role ROLE...] [--password-file FILE | --password-stdin]\n"
			       "       airlock user list\n       airlock user delete NAME\n"
			       "       airlock user passwd NAME [--password-file FILE | --password-stdin]\n"
			       "       airlock user set-roles NAME --role ROLE [--role ROLE...]\n"
			       "       airlock user disable|enable NAME\n\n"
			       "Manages local accounts (needs the admin role). Roles: researcher, data-engineer, approver, admin.\n"
			       "Passwords have at least 10 characters.\n");
			json_decref(roles);
			return 0;
		default: json_decref(roles); return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "airlock user: say add, list or delete (see --help)\n");
		json_decref(roles);
		return 2;
	}
	sub = argv[optind];
	if (open_client(&c, server, "user")) {
		json_decref(roles);
		return 1;
	}
	if (!strcmp(sub, "list")) {
		size_t i;
		json_t *u;
		if (call(&c, "user", "GET", "/api/v1/users", NULL, &ans))
			goto out;
		printf("%-24s %s\n", "USERNAME", "ROLES");
		json_array_foreach(json_object_get(ans, "items"), i, u) {
			char *r = json_dumps(json_object_get(u, "roles"), JSON_COMPACT);
			printf("%-24s %s\n", jstr(u, "username"), r ? r : "");
			free(r);
		}
		ret = 0;
	} else if (!strcmp(sub, "add") && optind + 1 < argc) {
		if (json_array_size(roles) == 0) {
			fprintf(stderr, "airlock user add: give at least one --role\n");
			ret = 2;
			goto out;
		}
		if ((rc = read_secret(pwfile, "New password: ", &password))) {
			die("user", rc);
			goto out;
		}
		body = json_pack("{s:s, s:s, s:O}", "username", argv[optind + 1], "password", password, "roles", roles);
		free_secret(password);
		if (!body || call(&c, "user", "POST", "/api/v1/users", body, &ans))
			goto out;
		printf("user %s created\n", argv[optind + 1]);
		ret = 0;
	} else if (!strcmp(sub, "delete") && optind + 1 < argc) {
		path = path_of("/api/v1/users/", argv[optind + 1], "", NULL);
		if (!path || call(&c, "user", "DELETE", path, NULL, &ans))
			goto out;
		printf("user %s deleted\n", argv[optind + 1]);
		ret = 0;
	} else if ((!strcmp(sub, "passwd") || !strcmp(sub, "set-roles") || !strcmp(sub, "disable") ||
		    !strcmp(sub, "enable")) && optind + 1 < argc) {
		if (!strcmp(sub, "passwd")) {
			if ((rc = read_secret(pwfile, "New password: ", &password))) {
				die("user", rc);
				goto out;
			}
			body = json_pack("{s:s}", "password", password);
			free_secret(password);
		} else if (!strcmp(sub, "set-roles")) {
			if (json_array_size(roles) == 0) {
				fprintf(stderr, "airlock user set-roles: give at least one --role\n");
				ret = 2;
				goto out;
			}
			body = json_pack("{s:O}", "roles", roles);
		} else {
			body = json_pack("{s:b}", "disabled", !strcmp(sub, "disable"));
		}
		path = path_of("/api/v1/users/", argv[optind + 1], "", NULL);
		if (!body || !path || call(&c, "user", "PUT", path, body, &ans))
			goto out;
		printf("user %s: %s\n", argv[optind + 1],
		       !strcmp(sub, "passwd") ? "password changed (their sessions are signed out)"
		       : !strcmp(sub, "set-roles") ? "roles set"
		       : !strcmp(sub, "disable") ? "disabled (their sessions are signed out)" : "enabled");
		ret = 0;
	} else {
		fprintf(stderr, "airlock user: unknown or incomplete subcommand '%s' (see --help)\n", sub);
		ret = 2;
	}
out:
	if (body && json_object_get(body, "password"))
		json_string_set(json_object_get(body, "password"), "");
	json_decref(body);
	json_decref(roles);
	json_decref(ans);
	free(path);
	client_free(&c);
	return ret;
}

/* ---- workspace -------------------------------------------------------- */

static char *binding_name_for(const char *ws, const char *user)
{
	struct buf b;
	buf_init(&b, 512);
	if (buf_appendf(&b, "%s-", ws)) {
		buf_free(&b);
		return NULL;
	}
	for (const char *p = user; *p; p++) {
		char ch = *p;
		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
			buf_appendc(&b, ch);
		else
			buf_appendc(&b, '-');
	}
	while (b.len && b.ptr[b.len - 1] == '-')
		b.ptr[--b.len] = '\0';
	return buf_detach(&b);
}

int cmd_workspace(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' }, { "display-name", required_argument, NULL, 'n' },
		{ "description", required_argument, NULL, 'd' }, { "expires", required_argument, NULL, 'e' },
		{ "image", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *display = NULL, *desc = NULL, *expires = NULL, *image = NULL, *sub;
	json_t *ans = NULL, *body = NULL;
	struct client c;
	char *path = NULL, *bname = NULL;
	int opt, ret = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "hs:", opts, NULL)) != -1) {
		switch (opt) {
		case 's': server = optarg; break;
		case 'n': display = optarg; break;
		case 'd': desc = optarg; break;
		case 'e': expires = optarg; break;
		case 'i': image = optarg; break;
		case 'h':
			printf("usage: airlock workspace create NAME [--display-name TEXT] [--description TEXT] [--image IMAGE]\n"
			       "                                    [--expires YYYY-MM-DD]  (default: a year from today)\n"
			       "       airlock workspace list\n"
			       "       airlock workspace add-member WORKSPACE USER [--expires YYYY-MM-DD]\n"
			       "       airlock workspace remove-member WORKSPACE USER\n"
			       "       airlock workspace delete NAME\n\n"
			       "Creating workspaces and memberships needs the admin role. A member sees the workspace's\n"
			       "datasources and may bring data into it.\n");
			return 0;
		default: return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "airlock workspace: say create, list, add-member, remove-member or delete (see --help)\n");
		return 2;
	}
	sub = argv[optind];
	if (open_client(&c, server, "workspace"))
		return 1;
	if (!strcmp(sub, "list")) {
		size_t i;
		json_t *w;
		if (call(&c, "workspace", "GET", "/api/v1/workspaces", NULL, &ans))
			goto out;
		printf("%-32s %s\n", "NAME", "DISPLAY NAME");
		json_array_foreach(json_object_get(ans, "items"), i, w)
			printf("%-32s %s\n", jstr(w, "metadata.name"), jstr(w, "spec.displayName"));
		ret = 0;
	} else if (!strcmp(sub, "create") && optind + 1 < argc) {
		const char *name = argv[optind + 1];
		char from[16], until[16];
		time_t now = time(NULL), later = now + 365 * 86400;
		struct tm tm;
		strftime(from, sizeof(from), "%Y-%m-%d", gmtime_r(&now, &tm));
		strftime(until, sizeof(until), "%Y-%m-%d", gmtime_r(&later, &tm));
		/* AWMS workspaces say what they run (Jupyter by default) and when they are valid. */
		body = json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:s*, s:{s:s, s:s}, s:{s:s}}}", "apiVersion",
				 RESOURCE_API_VERSION, "kind", "AnalyticsWorkspace", "metadata", "name", name, "spec",
				 "displayName", display ? display : name, "description", desc ? desc : (display ? display : name), "validity",
				 "availableFrom", from, "expires", expires ? expires : until, "jupyterWorkspace", "image",
				 image ? image : "jupyter/datascience-notebook:latest");
		if (!body || call(&c, "workspace", "POST", "/api/v1/workspaces", body, &ans))
			goto out;
		printf("workspace %s created\n", name);
		ret = 0;
	} else if (!strcmp(sub, "add-member") && optind + 2 < argc) {
		const char *ws = argv[optind + 1], *user = argv[optind + 2];
		bname = binding_name_for(ws, user);
		body = json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:s, s:s*}}", "apiVersion", RESOURCE_API_VERSION, "kind",
				 "AnalyticsWorkspaceBinding", "metadata", "name", bname ? bname : "", "spec", "workspace",
				 ws, "username", user, "expires", expires);
		if (!bname || !body || call(&c, "workspace", "POST", "/api/v1/workspacebindings", body, &ans))
			goto out;
		printf("%s is now a member of %s%s%s\n", user, ws, expires ? " until " : "", expires ? expires : "");
		ret = 0;
	} else if (!strcmp(sub, "remove-member") && optind + 2 < argc) {
		bname = binding_name_for(argv[optind + 1], argv[optind + 2]);
		path = bname ? path_of("/api/v1/workspacebindings/", bname, "", NULL) : NULL;
		if (!path || call(&c, "workspace", "DELETE", path, NULL, &ans))
			goto out;
		printf("%s is no longer a member of %s\n", argv[optind + 2], argv[optind + 1]);
		ret = 0;
	} else if (!strcmp(sub, "delete") && optind + 1 < argc) {
		path = path_of("/api/v1/workspaces/", argv[optind + 1], "", NULL);
		if (!path || call(&c, "workspace", "DELETE", path, NULL, &ans))
			goto out;
		printf("workspace %s deleted\n", argv[optind + 1]);
		ret = 0;
	} else {
		fprintf(stderr, "airlock workspace: unknown or incomplete subcommand '%s' (see --help)\n", sub);
		ret = 2;
	}
out:
	json_decref(body);
	json_decref(ans);
	free(path);
	free(bname);
	client_free(&c);
	return ret;
}

/* ---- apply ------------------------------------------------------------ */

static const char *collection_of(const char *kind)
{
	if (!kind)
		return NULL;
	if (!strcmp(kind, "AnalyticsWorkspace"))
		return "workspaces";
	if (!strcmp(kind, "AnalyticsWorkspaceBinding"))
		return "workspacebindings";
	if (!strcmp(kind, "AnalyticsWorkspaceDataSource"))
		return "datasources";
	if (!strcmp(kind, "AnalyticsWorkspaceDataBinding"))
		return "databindings";
	return NULL;
}

int cmd_apply(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' }, { "filename", required_argument, NULL, 'f' },
		{ "workspace", required_argument, NULL, 'w' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *file = NULL, *ws = NULL;
	char *text = NULL;
	size_t len = 0, i;
	json_t *docs = NULL, *doc;
	struct client c;
	int opt, rc, ret = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "hs:f:w:", opts, NULL)) != -1) {
		switch (opt) {
		case 's': server = optarg; break;
		case 'f': file = optarg; break;
		case 'w': ws = optarg; break;
		case 'h':
			printf("usage: airlock apply -f FILE [--workspace NAME]\n\n"
			       "Creates the resources in FILE (YAML or JSON, several documents allowed; '-' is stdin).\n"
			       "A datasource is brought into --workspace (or the workspace named by its label\n"
			       "xlscsde.nhs.uk/workspace). Existing workspaces and bindings are updated; a submitted\n"
			       "datasource's spec cannot change.\n");
			return 0;
		default: return 2;
		}
	}
	if (!file) {
		fprintf(stderr, "airlock apply: -f FILE is required\n");
		return 2;
	}
	if (!strcmp(file, "-"))
		file = "/dev/stdin";
	if ((rc = util_read_file(file, RESOURCE_MAX_DOCUMENT, &text, &len)))
		return die("apply", rc);
	if ((rc = resource_parse_all(text, len, &docs))) {
		free(text);
		fprintf(stderr, "airlock apply: %s: %s\n", file, al_error_message());
		return 1;
	}
	free(text);
	/* Validate everything first: a bad document means nothing is applied. */
	json_array_foreach(docs, i, doc) {
		if ((rc = resource_validate(doc))) {
			fprintf(stderr, "airlock apply: %s: document %zu: %s\n", file, i + 1, al_error_message());
			json_decref(docs);
			return 1;
		}
	}
	if (open_client(&c, server, "apply")) {
		json_decref(docs);
		return 1;
	}
	json_array_foreach(docs, i, doc) {
		const char *kind = json_string_value(json_object_get(doc, "kind"));
		const char *coll = collection_of(kind);
		const char *name = jstr(doc, "metadata.name");
		char *path = NULL;
		long status = 0;
		json_t *ans = NULL;
		struct buf p;

		buf_init(&p, 8192);
		if (ws && !strcmp(coll, "datasources")) {
			char *e = enc(ws);
			buf_appendf(&p, "/api/v1/%s?workspace=%s", coll, e ? e : "");
			free(e);
		} else {
			buf_appendf(&p, "/api/v1/%s", coll);
		}
		rc = client_request(&c, "POST", p.ptr, doc, &status, &ans);
		if (rc == AL_ERR_EXISTS || (rc == AL_ERR_CONFLICT && status == 409 && strstr(al_error_message(), "already exists"))) {
			json_t *cur = NULL;
			json_decref(ans);
			ans = NULL;
			path = path_of("/api/v1/", coll, "/", name);
			rc = path ? client_request(&c, "GET", path, NULL, &status, &cur) : AL_ERR_NOMEM;
			if (!rc) {
				json_t *upd = json_deep_copy(doc);
				json_object_set(json_object_get(upd, "metadata"), "resourceVersion",
						json_object_get(json_object_get(cur, "metadata"), "resourceVersion"));
				if (!strcmp(coll, "datasources")) {
					json_t *labels = json_object_get(json_object_get(cur, "metadata"), "labels");
					if (!json_object_get(json_object_get(upd, "metadata"), "labels"))
						json_object_set_new(json_object_get(upd, "metadata"), "labels", json_object());
					json_object_update_missing(json_object_get(json_object_get(upd, "metadata"), "labels"), labels);
				}
				json_object_del(upd, "status");
				if (json_equal(json_object_get(upd, "spec"), json_object_get(cur, "spec")) &&
				    json_equal(json_object_get(json_object_get(upd, "metadata"), "labels"),
					       json_object_get(json_object_get(cur, "metadata"), "labels"))) {
					printf("%s/%s unchanged\n", kind, name);
				} else {
					rc = client_request(&c, "PUT", path, upd, &status, &ans);
					if (!rc)
						printf("%s/%s configured\n", kind, name);
				}
				json_decref(upd);
			}
			json_decref(cur);
		} else if (!rc) {
			const char *stage = jstr(ans, "status.stage"), *state = jstr(ans, "status.dataState");
			printf("%s/%s created", kind, jstr(ans, "metadata.name"));
			if (*state || *stage)
				printf(" (dataState %s%s%s)", *state ? state : "-", *stage ? ", stage " : "", stage);
			printf("\n");
		}
		if (rc) {
			fprintf(stderr, "airlock apply: %s/%s: %s\n", kind, name, al_error_message());
			ret = 1;
		}
		json_decref(ans);
		free(path);
		buf_free(&p);
	}
	json_decref(docs);
	client_free(&c);
	return ret;
}

/* ---- get -------------------------------------------------------------- */

static void print_datasource(const json_t *ds)
{
	const json_t *st = json_object_get(ds, "status");
	size_t i;
	json_t *it;
	char a[32];

	age(jstr(ds, "metadata.creationTimestamp"), a);
	printf("Name:         %s\n", jstr(ds, "metadata.name"));
	printf("Workspace:    %s\n", ws_label(ds));
	printf("Type:         %s\n", jstr(ds, "spec.type"));
	printf("Display name: %s\n", jstr(ds, "spec.displayName"));
	printf("Requested by: %s\n", jstr(ds, "status.requestedBy"));
	printf("Data state:   %s\n", *jstr(ds, "status.dataState") ? jstr(ds, "status.dataState") : "-");
	printf("Stage:        %s\n", *jstr(ds, "status.stage") ? jstr(ds, "status.stage") : "-");
	if (*jstr(ds, "status.message"))
		printf("Message:      %s\n", jstr(ds, "status.message"));
	printf("Age:          %s\n", a);
	if (json_object_get(st, "manifest")) {
		printf("Manifest:     %s (%lld files, %lld bytes)\n", jstr(ds, "status.manifest.digest"),
		       (long long)json_integer_value(json_object_get(json_object_get(st, "manifest"), "fileCount")),
		       (long long)json_integer_value(json_object_get(json_object_get(st, "manifest"), "totalBytes")));
		json_array_foreach(json_object_get(json_object_get(st, "manifest"), "files"), i, it)
			printf("  %s  %12lld  %s\n", jstr(it, "sha256"), (long long)json_integer_value(json_object_get(it, "size")),
			       jstr(it, "path"));
	}
	if (json_array_size(json_object_get(st, "checks"))) {
		printf("Checks:\n");
		json_array_foreach(json_object_get(st, "checks"), i, it)
			printf("  %-12s %-12s %s\n", jstr(it, "name"), jstr(it, "result"), jstr(it, "message"));
	}
	if (json_array_size(json_object_get(st, "approvals"))) {
		printf("Decisions:\n");
		json_array_foreach(json_object_get(st, "approvals"), i, it)
			printf("  %s  %-7s %-8s %-22s by %s%s%s\n", jstr(it, "time"), jstr(it, "gate"), jstr(it, "decision"),
			       jstr(it, "type"), jstr(it, "user"), *jstr(it, "reason") ? ": " : "", jstr(it, "reason"));
	}
	if (*jstr(ds, "status.publishedPath"))
		printf("Published at: %s\n", jstr(ds, "status.publishedPath"));
}

int cmd_get(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' }, { "workspace", required_argument, NULL, 'w' },
		{ "output", required_argument, NULL, 'o' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *ws = NULL, *output = NULL, *what, *coll;
	char *path = NULL;
	json_t *ans = NULL;
	struct client c;
	int opt, ret = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "hs:w:o:", opts, NULL)) != -1) {
		switch (opt) {
		case 's': server = optarg; break;
		case 'w': ws = optarg; break;
		case 'o': output = optarg; break;
		case 'h':
			printf("usage: airlock get datasources|workspaces|workspacebindings|databindings [NAME] [-w WORKSPACE] [-o json]\n\n"
			       "Lists what you may see, or shows one object in detail (its manifest, checks and decisions).\n");
			return 0;
		default: return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "airlock get: say what to get: datasources, workspaces, workspacebindings, databindings\n");
		return 2;
	}
	what = argv[optind];
	if (!strncmp(what, "datasource", 10) || !strcmp(what, "ds"))
		coll = "datasources";
	else if (!strncmp(what, "workspacebinding", 16))
		coll = "workspacebindings";
	else if (!strncmp(what, "workspace", 9) || !strcmp(what, "ws"))
		coll = "workspaces";
	else if (!strncmp(what, "databinding", 11))
		coll = "databindings";
	else {
		fprintf(stderr, "airlock get: unknown kind '%s'\n", what);
		return 2;
	}
	if (output && strcmp(output, "json")) {
		fprintf(stderr, "airlock get: -o takes json\n");
		return 2;
	}
	if (open_client(&c, server, "get"))
		return 1;
	if (optind + 1 < argc)
		path = path_of("/api/v1/", coll, "/", argv[optind + 1]);
	else if (ws)
		path = path_of("/api/v1/", coll, "?workspace=", ws);
	else
		path = path_of("/api/v1/", coll, "", NULL);
	if (!path || call(&c, "get", "GET", path, NULL, &ans))
		goto out;
	ret = 0;
	if (output) {
		print_json(ans);
	} else if (optind + 1 < argc) {
		if (!strcmp(coll, "datasources"))
			print_datasource(ans);
		else
			print_json(ans);
	} else {
		size_t i;
		json_t *it;
		char a[32];
		if (!strcmp(coll, "datasources")) {
			printf("%-40s %-9s %-10s %-24s %-20s %s\n", "NAME", "TYPE", "DATASTATE", "STAGE", "WORKSPACE", "AGE");
			json_array_foreach(json_object_get(ans, "items"), i, it) {
				age(jstr(it, "metadata.creationTimestamp"), a);
				printf("%-40s %-9s %-10s %-24s %-20s %s\n", jstr(it, "metadata.name"), jstr(it, "spec.type"),
				       *jstr(it, "status.dataState") ? jstr(it, "status.dataState") : "-",
				       *jstr(it, "status.stage") ? jstr(it, "status.stage") : "-",
				       ws_label(it), a);
			}
		} else {
			printf("%-40s %s\n", "NAME", "AGE");
			json_array_foreach(json_object_get(ans, "items"), i, it) {
				age(jstr(it, "metadata.creationTimestamp"), a);
				printf("%-40s %s\n", jstr(it, "metadata.name"), a);
			}
		}
	}
out:
	json_decref(ans);
	free(path);
	client_free(&c);
	return ret;
}

/* ---- wait ------------------------------------------------------------- */

int cmd_wait(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' }, { "for", required_argument, NULL, 'f' },
		{ "timeout", required_argument, NULL, 't' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *cond = NULL, *name;
	char *path = NULL, *last = NULL;
	double timeout = 300;
	struct client c;
	int64_t deadline;
	int opt, ret = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "hs:", opts, NULL)) != -1) {
		switch (opt) {
		case 's': server = optarg; break;
		case 'f': cond = optarg; break;
		case 't': timeout = strtod(optarg, NULL); break;
		case 'h':
			printf("usage: airlock wait datasource NAME --for stage=STAGE|dataState=STATE [--timeout SECONDS]\n\n"
			       "Follows a datasource, printing each change, until it reaches the stage or state.\n"
			       "Exits 1 if it fails, is rejected or purged instead, or on timeout (default 300 s).\n");
			return 0;
		default: return 2;
		}
	}
	if (optind + 1 >= argc || strncmp(argv[optind], "datasource", 10) || !cond ||
	    (strncmp(cond, "stage=", 6) && strncmp(cond, "dataState=", 10))) {
		fprintf(stderr, "airlock wait: usage: airlock wait datasource NAME --for stage=STAGE (see --help)\n");
		return 2;
	}
	name = argv[optind + 1];
	if (open_client(&c, server, "wait"))
		return 1;
	path = path_of("/api/v1/datasources/", name, "", NULL);
	deadline = util_monotonic_ms() + (int64_t)(timeout * 1000);
	while (path) {
		json_t *ds = NULL;
		const char *stage, *state, *want;
		struct buf now;
		if (call(&c, "wait", "GET", path, NULL, &ds))
			break;
		stage = jstr(ds, "status.stage");
		state = jstr(ds, "status.dataState");
		buf_init(&now, 8192);
		buf_appendf(&now, "dataState=%s stage=%s%s%s", *state ? state : "-", *stage ? stage : "-",
			    *jstr(ds, "status.message") ? ": " : "", jstr(ds, "status.message"));
		if (!last || strcmp(last, now.ptr)) {
			char when[UTIL_TIME_LEN];
			util_now_rfc3339_seconds(when);
			printf("%s %s %s\n", when, name, now.ptr);
			fflush(stdout);
			free(last);
			last = buf_detach(&now);
		}
		buf_free(&now);
		want = strchr(cond, '=') + 1;
		if ((!strncmp(cond, "stage=", 6) && !strcmp(stage, want)) ||
		    (!strncmp(cond, "dataState=", 10) && !strcmp(state, want))) {
			ret = 0;
			json_decref(ds);
			break;
		}
		if ((!strcmp(stage, "Failed") || !strcmp(stage, "Rejected") || !strcmp(stage, "Purged") ||
		     !strcmp(stage, "Published")) && strcmp(want, stage)) {
			fprintf(stderr, "airlock wait: %s reached stage %s, not %s\n", name, stage, cond);
			json_decref(ds);
			break;
		}
		json_decref(ds);
		if (util_monotonic_ms() > deadline) {
			fprintf(stderr, "airlock wait: timed out after %.0f s waiting for %s\n", timeout, cond);
			break;
		}
		usleep(200 * 1000);
	}
	free(last);
	free(path);
	client_free(&c);
	return ret;
}

/* ---- approve / reject / retry ------------------------------------------ */

static int decide(int argc, char **argv, const char *decision)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' }, { "type", required_argument, NULL, 't' },
		{ "digest", required_argument, NULL, 'd' }, { "reason", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *type = NULL, *digest = NULL, *reason = NULL, *name;
	char *path = NULL, *dpath = NULL;
	json_t *ans = NULL, *body = NULL, *ds = NULL;
	struct client c;
	int opt, ret = 1, approve = !strcmp(decision, "approve");

	optind = 1;
	while ((opt = getopt_long(argc, argv, "hs:", opts, NULL)) != -1) {
		switch (opt) {
		case 's': server = optarg; break;
		case 't': type = optarg; break;
		case 'd': digest = optarg; break;
		case 'r': reason = optarg; break;
		case 'h':
			if (approve)
				printf("usage: airlock approve NAME [--type TYPE] [--digest SHA256]\n\n"
				       "Approves a datasource at its current gate. At the review gate the approval is bound to\n"
				       "the manifest digest you reviewed: pass --digest (from 'airlock get datasource NAME'),\n"
				       "or the current one is shown and used. If the data changes, the approval stops counting.\n");
			else
				printf("usage: airlock reject NAME --reason TEXT [--type TYPE]\n\n"
				       "Rejects a datasource at its current gate; the reason is shown to the requester.\n");
			return 0;
		default: return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "airlock %s: name the datasource\n", decision);
		return 2;
	}
	if (!approve && (!reason || !*reason)) {
		fprintf(stderr, "airlock reject: --reason is required, so the requester knows what to change\n");
		return 2;
	}
	name = argv[optind];
	if (open_client(&c, server, decision))
		return 1;
	path = path_of("/api/v1/datasources/", name, "/approvals", NULL);
	dpath = path_of("/api/v1/datasources/", name, "", NULL);
	if (!path || !dpath)
		goto out;
	if (approve && !digest) {
		if (call(&c, decision, "GET", dpath, NULL, &ds))
			goto out;
		digest = resource_string_at(ds, "status.manifest.digest");
		if (digest && *digest)
			printf("approving manifest %s (%lld files, %lld bytes)\n", digest,
			       (long long)json_integer_value(json_object_get(json_object_get(json_object_get(ds, "status"), "manifest"), "fileCount")),
			       (long long)json_integer_value(json_object_get(json_object_get(json_object_get(ds, "status"), "manifest"), "totalBytes")));
	}
	body = json_pack("{s:s, s:s*, s:s*, s:s*}", "decision", decision, "type", type,
			 "digest", digest && *digest ? digest : NULL, "reason", reason);
	if (!body || call(&c, decision, "POST", path, body, &ans))
		goto out;
	printf("%s: %s; now dataState %s, stage %s\n", name, approve ? "approved" : "rejected",
	       *jstr(ans, "status.dataState") ? jstr(ans, "status.dataState") : "-",
	       *jstr(ans, "status.stage") ? jstr(ans, "status.stage") : "-");
	ret = 0;
out:
	json_decref(ans);
	json_decref(body);
	json_decref(ds);
	free(path);
	free(dpath);
	client_free(&c);
	return ret;
}

int cmd_approve(int argc, char **argv)
{
	return decide(argc, argv, "approve");
}

int cmd_reject(int argc, char **argv)
{
	return decide(argc, argv, "reject");
}

int cmd_retry(int argc, char **argv)
{
	const char *server = NULL;
	char *path;
	json_t *ans = NULL;
	struct client c;
	int ret = 1;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		printf("usage: airlock retry NAME [--server URL]\n\nStarts a failed datasource's collection again.\n");
		return argc < 2 ? 2 : 0;
	}
	if (argc >= 4 && !strcmp(argv[2], "--server"))
		server = argv[3];
	if (open_client(&c, server, "retry"))
		return 1;
	path = path_of("/api/v1/datasources/", argv[1], "/retry", NULL);
	if (path && !call(&c, "retry", "POST", path, NULL, &ans)) {
		printf("%s: retrying (attempt %lld)\n", argv[1],
		       (long long)json_integer_value(json_object_get(json_object_get(ans, "status"), "attempt")));
		ret = 0;
	}
	json_decref(ans);
	free(path);
	client_free(&c);
	return ret;
}

/* ---- audit ------------------------------------------------------------ */

static int verify_export_file(const char *file)
{
	uint64_t count = 0;
	if (audit_verify_file(strcmp(file, "-") ? file : "/dev/stdin", &count)) {
		fprintf(stderr, "airlock audit verify: %s (%llu records verified before it)\n", al_error_message(),
			(unsigned long long)count);
		return 1;
	}
	printf("audit log OK: %llu records, chain intact\n", (unsigned long long)count);
	return 0;
}

int cmd_audit(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' }, { "file", required_argument, NULL, 'f' },
		{ "after", required_argument, NULL, 'a' }, { "limit", required_argument, NULL, 'l' },
		{ "output", required_argument, NULL, 'o' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *file = NULL, *after = "0", *limit = "1000", *output = NULL, *sub;
	json_t *ans = NULL;
	struct client c;
	char *path = NULL;
	int opt, ret = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "hs:f:o:", opts, NULL)) != -1) {
		switch (opt) {
		case 's': server = optarg; break;
		case 'f': file = optarg; break;
		case 'a': after = optarg; break;
		case 'l': limit = optarg; break;
		case 'o': output = optarg; break;
		case 'h':
			printf("usage: airlock audit list [--after SEQ] [--limit N] [-o json]\n"
			       "       airlock audit export            (JSON lines on stdout)\n"
			       "       airlock audit verify [--file FILE]\n\n"
			       "The audit log is append-only and hash-chained: each record carries the SHA-256 of the\n"
			       "one before. 'verify' walks the chain on the server, or offline in an exported FILE,\n"
			       "and names the first record that was edited, removed or reordered (exit 1).\n"
			       "Reading the log needs the admin or approver role.\n");
			return 0;
		default: return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "airlock audit: say list, export or verify (see --help)\n");
		return 2;
	}
	sub = argv[optind];
	if (!strcmp(sub, "verify") && file)
		return verify_export_file(file);
	if (open_client(&c, server, "audit"))
		return 1;
	if (!strcmp(sub, "verify")) {
		if (call(&c, "audit", "GET", "/api/v1/audit/verify", NULL, &ans))
			goto out;
		if (json_is_true(json_object_get(ans, "ok"))) {
			printf("audit log OK: %lld records, chain intact\n", (long long)json_integer_value(json_object_get(ans, "verified")));
			ret = 0;
		} else {
			fprintf(stderr, "audit log TAMPERED: %s (%lld records verified before it)\n", jstr(ans, "error"),
				(long long)json_integer_value(json_object_get(ans, "verified")));
		}
	} else if (!strcmp(sub, "list") || !strcmp(sub, "export")) {
		int export = !strcmp(sub, "export");
		unsigned long long next = strtoull(after, NULL, 10);
		for (;;) {
			size_t i, n;
			json_t *r;
			struct buf p;
			buf_init(&p, 256);
			buf_appendf(&p, "/api/v1/audit?after=%llu&limit=%s", next, export ? "10000" : limit);
			json_decref(ans);
			ans = NULL;
			if (call(&c, "audit", "GET", p.ptr, NULL, &ans)) {
				buf_free(&p);
				goto out;
			}
			buf_free(&p);
			n = json_array_size(json_object_get(ans, "items"));
			json_array_foreach(json_object_get(ans, "items"), i, r) {
				next = (unsigned long long)json_integer_value(json_object_get(r, "seq"));
				if (export || (output && !strcmp(output, "json"))) {
					char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
					if (s)
						printf("%s\n", s);
					free(s);
				} else {
					printf("%6lld %s %-6s %-18s %-18s %s/%s %s -> %s%s%s\n",
					       (long long)json_integer_value(json_object_get(r, "seq")), jstr(r, "time"),
					       jstr(r, "actor.type"), jstr(r, "actor.name"), jstr(r, "action"),
					       jstr(r, "object.kind"), jstr(r, "object.name"),
					       *jstr(r, "stageBefore") ? jstr(r, "stageBefore") : "-",
					       *jstr(r, "stageAfter") ? jstr(r, "stageAfter") : "-",
					       *jstr(r, "reason") ? ": " : "", jstr(r, "reason"));
				}
			}
			if (!export || n == 0)
				break;
		}
		ret = 0;
	} else {
		fprintf(stderr, "airlock audit: unknown subcommand '%s' (see --help)\n", sub);
		ret = 2;
	}
out:
	json_decref(ans);
	free(path);
	client_free(&c);
	return ret;
}

/* ---- secret ----------------------------------------------------------- */

int cmd_secret(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' }, { "value-file", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *vfile = NULL, *sub;
	json_t *ans = NULL, *body = NULL;
	struct client c;
	char *path = NULL, *value = NULL;
	int opt, rc, ret = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "hs:", opts, NULL)) != -1) {
		switch (opt) {
		case 's': server = optarg; break;
		case 'v': vfile = optarg; break;
		case 'h':
			printf("usage: airlock secret set KEY [--value-file FILE]   (else the value is read from stdin)\n"
			       "       airlock secret list\n       airlock secret delete KEY\n\n"
			       "Stores source-system credentials, encrypted, for import jobs. A datasource's\n"
			       "connections[].credentials.userKey / passwordKey name these keys. Values are never shown.\n");
			return 0;
		default: return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "airlock secret: say set, list or delete (see --help)\n");
		return 2;
	}
	sub = argv[optind];
	if (open_client(&c, server, "secret"))
		return 1;
	if (!strcmp(sub, "list")) {
		size_t i;
		json_t *k;
		if (call(&c, "secret", "GET", "/api/v1/secrets", NULL, &ans))
			goto out;
		json_array_foreach(json_object_get(ans, "items"), i, k)
			printf("%s\n", json_string_value(k));
		ret = 0;
	} else if (!strcmp(sub, "set") && optind + 1 < argc) {
		if ((rc = read_secret(vfile, "Value: ", &value))) {
			die("secret", rc);
			goto out;
		}
		body = json_pack("{s:s}", "value", value);
		free_secret(value);
		path = path_of("/api/v1/secrets/", argv[optind + 1], "", NULL);
		if (!body || !path || call(&c, "secret", "PUT", path, body, &ans))
			goto out;
		printf("secret %s set\n", argv[optind + 1]);
		ret = 0;
	} else if (!strcmp(sub, "delete") && optind + 1 < argc) {
		path = path_of("/api/v1/secrets/", argv[optind + 1], "", NULL);
		if (!path || call(&c, "secret", "DELETE", path, NULL, &ans))
			goto out;
		printf("secret %s deleted\n", argv[optind + 1]);
		ret = 0;
	} else {
		fprintf(stderr, "airlock secret: unknown or incomplete subcommand '%s' (see --help)\n", sub);
		ret = 2;
	}
out:
	if (body && json_object_get(body, "value"))
		json_string_set(json_object_get(body, "value"), "");
	json_decref(body);
	json_decref(ans);
	free(path);
	client_free(&c);
	return ret;
}
