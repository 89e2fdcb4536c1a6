#include "rocrate/manifest.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "runner/csv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HASH_CHUNK (256u << 10)
#define PATH_MAX_BYTES 4096

struct entry {
	char *path;
	uint64_t size;
	char sha[UTIL_SHA256_HEX_LEN + 1];
};

struct walk {
	const char *root;
	struct entry *v;
	size_t n, cap;
	unsigned char *chunk;
	const json_t *known; /* path -> {"size", "sha256"} from whoever wrote the file, or NULL */
};

static void hex(const unsigned char *in, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Hashes a file opened relative to dirfd without following a symlink, and
 * checks it is still the regular file the directory listing showed. */
static int hash_at(struct walk *w, int dirfd, const char *name, const char *rel, struct entry *e)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = NULL;
	struct stat st;
	uint64_t total = 0;
	ssize_t n;
	int fd, rc = AL_OK;

	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return al_error_set(errno == ELOOP ? AL_ERR_INVALID : AL_ERR_IO, "%s/%s: cannot open: %s",
				    w->root, rel, errno == ELOOP ? "it is a symbolic link" : strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = al_error_set(AL_ERR_INVALID, "%s/%s is not a regular file; remove it", w->root, rel);
		goto out;
	}
	{
		/* The writer hashed it as it wrote it (a runner): do not read it all
		 * again, as long as it is still that size. */
		const json_t *k = json_object_get(w->known, rel);
		const char *sha = json_string_value(json_object_get(k, "sha256"));
		json_t *size = json_object_get(k, "size");
		if (sha && strlen(sha) == UTIL_SHA256_HEX_LEN && json_is_integer(size) &&
		    (uint64_t)json_integer_value(size) == (uint64_t)st.st_size) {
			memcpy(e->sha, sha, UTIL_SHA256_HEX_LEN + 1);
			e->size = (uint64_t)st.st_size;
			goto out;
		}
	}
	if (!(ctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory for SHA-256");
		goto out;
	}
	while ((n = read(fd, w->chunk, HASH_CHUNK)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = al_error_set(AL_ERR_IO, "%s/%s: cannot read: %s", w->root, rel, strerror(errno));
			goto out;
		}
		EVP_DigestUpdate(ctx, w->chunk, (size_t)n);
		total += (uint64_t)n;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	hex(md, 32, e->sha);
	e->size = total;
out:
	EVP_MD_CTX_free(ctx);
	close(fd);
	return rc;
}

static int check_name(struct walk *w, const char *rel)
{
	size_t len = strlen(rel);
	for (const unsigned char *p = (const unsigned char *)rel; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return al_error_set(AL_ERR_INVALID, "%s: a file name contains a control character; "
							    "rename it", w->root);
	if (csv_utf8_valid_prefix(rel, len) != len)
		return al_error_set(AL_ERR_INVALID, "%s: file name '%s' is not valid UTF-8; rename it",
				    w->root, rel);
	return AL_OK;
}

static int walk_dir(struct walk *w, int dirfd, const char *prefix, int depth)
{
	DIR *d;
	struct dirent *de;
	int rc = AL_OK;

	if (depth > MANIFEST_MAX_DEPTH)
		return al_error_set(AL_ERR_TOO_LARGE, "%s/%s: directories nest deeper than %d levels", w->root,
				    prefix, MANIFEST_MAX_DEPTH);
	d = fdopendir(dirfd);
	if (!d) {
		close(dirfd);
		return al_error_set(AL_ERR_IO, "%s/%s: cannot list: %s", w->root, prefix, strerror(errno));
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		char rel[PATH_MAX_BYTES];
		struct stat st;
		int n;

		if (de->d_name[0] == '.')
			continue; /* also "." and ".." */
		n = snprintf(rel, sizeof(rel), "%s%s%s", prefix, *prefix ? "/" : "", de->d_name);
		if (n < 0 || (size_t)n >= sizeof(rel)) {
			rc = al_error_set(AL_ERR_INVALID, "%s: a path is longer than %d bytes", w->root,
					  PATH_MAX_BYTES - 1);
			break;
		}
		if ((rc = check_name(w, rel)))
			break;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = al_error_set(AL_ERR_IO, "%s/%s: cannot stat: %s", w->root, rel, strerror(errno));
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				rc = al_error_set(AL_ERR_IO, "%s/%s: cannot open directory: %s", w->root, rel,
						  strerror(errno));
				break;
			}
			if ((rc = walk_dir(w, sub, rel, depth + 1)))
				break;
			continue;
		}
		if (S_ISLNK(st.st_mode)) {
			rc = al_error_set(AL_ERR_INVALID, "%s/%s is a symbolic link; links are refused because "
							  "one could point outside the volume: replace it with the file",
					  w->root, rel);
			break;
		}
		if (!S_ISREG(st.st_mode)) {
			rc = al_error_set(AL_ERR_INVALID, "%s/%s is not a regular file (device, FIFO or "
							  "socket); remove it", w->root, rel);
			break;
		}
		if (w->n >= MANIFEST_MAX_FILES) {
			rc = al_error_set(AL_ERR_TOO_LARGE, "%s holds more than %d files; package them into "
							    "fewer files (e.g. an archive)", w->root, MANIFEST_MAX_FILES);
			break;
		}
		if (w->n == w->cap) {
			size_t ncap = w->cap ? 2 * w->cap : 64;
			struct entry *v = realloc(w->v, ncap * sizeof(*v));
			if (!v) {
				rc = al_error_set(AL_ERR_NOMEM, "out of memory");
				break;
			}
			w->v = v;
			w->cap = ncap;
		}
		memset(&w->v[w->n], 0, sizeof(w->v[w->n]));
		if ((rc = hash_at(w, dirfd, de->d_name, rel, &w->v[w->n])))
			break;
		if (!(w->v[w->n].path = util_strdup(rel))) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			break;
		}
		w->n++;
	}
	if (!rc && errno)
		rc = al_error_set(AL_ERR_IO, "%s/%s: cannot list: %s", w->root, prefix, strerror(errno));
	closedir(d);
	return rc;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

static int digest_line(EVP_MD_CTX *ctx, const char *sha, uint64_t size, const char *path)
{
	char head[UTIL_SHA256_HEX_LEN + 32];
	int n = snprintf(head, sizeof(head), "%s  %" PRIu64 "  ", sha, size);
	if (n < 0 || (size_t)n >= sizeof(head))
		return al_error_set(AL_ERR_INTERNAL, "manifest line too long");
	EVP_DigestUpdate(ctx, head, (size_t)n);
	EVP_DigestUpdate(ctx, path, strlen(path));
	EVP_DigestUpdate(ctx, "\n", 1);
	return AL_OK;
}

int manifest_digest(const json_t *files, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t i;
	json_t *f;
	int rc = AL_OK;

	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(ctx);
		return al_error_set(AL_ERR_NOMEM, "out of memory for SHA-256");
	}
	json_array_foreach(files, i, f) {
		const char *path = json_string_value(json_object_get(f, "path"));
		const char *sha = json_string_value(json_object_get(f, "sha256"));
		json_t *size = json_object_get(f, "size");
		if (!path || !sha || !json_is_integer(size) || json_integer_value(size) < 0) {
			rc = al_error_set(AL_ERR_INVALID, "manifest files[%zu]: needs path, size and sha256", i);
			break;
		}
		if ((rc = digest_line(ctx, sha, (uint64_t)json_integer_value(size), path)))
			break;
	}
	if (!rc) {
		EVP_DigestFinal_ex(ctx, md, &mdlen);
		hex(md, 32, out);
	}
	EVP_MD_CTX_free(ctx);
	return rc;
}

int manifest_build(const char *dir, json_t **out)
{
	return manifest_build_known(dir, NULL, out);
}

int manifest_build_known(const char *dir, const json_t *known, json_t **out)
{
	struct walk w = { .root = dir, .known = known };
	json_t *m = NULL, *files = NULL;
	uint64_t total = 0;
	char digest[65];
	int fd, rc;

	*out = NULL;
	w.chunk = malloc(HASH_CHUNK);
	if (!w.chunk)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = al_error_set(errno == ENOENT ? AL_ERR_NOT_FOUND : AL_ERR_IO, "cannot open directory %s: %s",
				  dir, strerror(errno));
		goto out;
	}
	if ((rc = walk_dir(&w, fd, "", 0)))
		goto out;
	if (w.n)
		qsort(w.v, w.n, sizeof(*w.v), entry_cmp);
	if (!(files = json_array())) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < w.n; i++) {
		json_t *f = json_pack("{s:s, s:I, s:s}", "path", w.v[i].path, "size", (json_int_t)w.v[i].size,
				      "sha256", w.v[i].sha);
		if (!f || json_array_append_new(files, f)) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
		total += w.v[i].size;
	}
	if ((rc = manifest_digest(files, digest)))
		goto out;
	m = json_pack("{s:O, s:I, s:I, s:s}", "files", files, "fileCount", (json_int_t)w.n, "totalBytes",
		      (json_int_t)total, "digest", digest);
	if (!m) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	*out = m;
out:
	json_decref(files);
	for (size_t i = 0; i < w.n; i++)
		free(w.v[i].path);
	free(w.v);
	free(w.chunk);
	return rc;
}
