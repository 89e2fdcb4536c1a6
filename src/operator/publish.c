#include "operator/publish.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "rocrate/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int copy_file(const char *from, const char *to)
{
	char *chunk = NULL;
	int in = -1, out = -1, rc = AL_OK;
	ssize_t n;

	in = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return al_error_set(AL_ERR_CONFLICT, "cannot open %s: %s", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	chunk = malloc(1 << 17);
	if (out < 0 || !chunk) {
		rc = out < 0 ? al_error_set(AL_ERR_IO, "cannot create %s: %s", to, strerror(errno))
			     : al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	while ((n = read(in, chunk, 1 << 17)) != 0) {
		char *p = chunk;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = al_error_set(AL_ERR_IO, "cannot read %s: %s", from, strerror(errno));
			goto out;
		}
		while (n > 0) {
			ssize_t w = write(out, p, (size_t)n);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				rc = al_error_set(AL_ERR_IO, "cannot write %s: %s", to, strerror(errno));
				goto out;
			}
			p += w;
			n -= w;
		}
	}
	if (fsync(out) < 0)
		rc = al_error_set(AL_ERR_IO, "cannot sync %s: %s", to, strerror(errno));
out:
	free(chunk);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return rc;
}

static int make_read_only(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_F)
		return chmod(path, 0444);
	if (flag == FTW_DP || flag == FTW_D)
		return chmod(path, 0555);
	return 0;
}

static int make_writable(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_D)
		return chmod(path, 0700);
	return 0;
}

/* Removes a tree even if it was made read-only. */
static int remove_published_tree(const char *path)
{
	if (!util_path_exists(path))
		return AL_OK;
	nftw(path, make_writable, 32, FTW_PHYS);
	return util_remove_tree(path);
}

static int same_digest(const char *dir, const char *want, int *same)
{
	json_t *m = NULL;
	int rc = manifest_build(dir, &m);
	if (rc)
		return rc;
	*same = !strcmp(json_string_value(json_object_get(m, "digest")) ? json_string_value(json_object_get(m, "digest")) : "", want);
	json_decref(m);
	return AL_OK;
}

int publish_copy_verified(const char *src_dir, const json_t *manifest, const char *dest_dir)
{
	const char *want = json_string_value(json_object_get(manifest, "digest"));
	const json_t *files = json_object_get(manifest, "files");
	struct buf tmp;
	char *parent = NULL, *slash;
	size_t i;
	json_t *f;
	int rc, same = 0;

	if (!want || !json_is_array(files))
		return al_error_set(AL_ERR_INVALID, "no approved manifest to publish");
	buf_init(&tmp, 8192);
	if (util_path_exists(dest_dir)) {
		/* A previous attempt finished the rename: accept it if it verifies. */
		if ((rc = same_digest(dest_dir, want, &same)))
			goto out;
		if (same)
			goto out;
		if ((rc = remove_published_tree(dest_dir)))
			goto out;
	}
	parent = util_strdup(dest_dir);
	if (!parent || !(slash = strrchr(parent, '/'))) {
		rc = al_error_set(AL_ERR_INVALID, "bad publish path %s", dest_dir);
		goto out;
	}
	*slash = '\0';
	if ((rc = buf_appendf(&tmp, "%s/.%s.publishing", parent, slash + 1)) ||
	    (rc = remove_published_tree(tmp.ptr)) || (rc = util_mkdir_p(tmp.ptr, 0755)))
		goto out;
	json_array_foreach(files, i, f) {
		const char *rel = json_string_value(json_object_get(f, "path"));
		char *from, *to, *dir;
		if (!rel || util_path_escapes(rel)) {
			rc = al_error_set(AL_ERR_INVALID, "unsafe path in manifest");
			goto out;
		}
		from = util_path_join(src_dir, rel);
		to = util_path_join(tmp.ptr, rel);
		dir = to ? util_strdup(to) : NULL;
		if (!from || !to || !dir) {
			free(from);
			free(to);
			free(dir);
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
		*strrchr(dir, '/') = '\0';
		rc = util_mkdir_p(dir, 0755);
		if (!rc)
			rc = copy_file(from, to);
		free(from);
		free(to);
		free(dir);
		if (rc)
			goto out;
	}
	if ((rc = same_digest(tmp.ptr, want, &same)))
		goto out;
	if (!same) {
		rc = al_error_set(AL_ERR_CONFLICT, "the staged data no longer matches the approved manifest %.12s",
				  want);
		goto out;
	}
	if (nftw(tmp.ptr, make_read_only, 32, FTW_PHYS | FTW_DEPTH) != 0) {
		rc = al_error_set(AL_ERR_IO, "cannot make %s read-only: %s", tmp.ptr, strerror(errno));
		goto out;
	}
	if (rename(tmp.ptr, dest_dir) < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot move published data into %s: %s", dest_dir, strerror(errno));
		goto out;
	}
	rc = util_fsync_dir(parent);
out:
	if (rc && tmp.ptr)
		remove_published_tree(tmp.ptr);
	free(parent);
	buf_free(&tmp);
	return rc;
}
