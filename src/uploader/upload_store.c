#include "uploader/upload_store.h"

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "rocrate/manifest.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define INFO_NAME "info.json"
#define DATA_NAME "data.part"
#define LOCK_NAME "lock"
#define CREATE_LOCK_NAME "create.lock"
#define COMPLETED_NAME "completed.json"
#define TMP_PREFIX ".tmp-"
#define INFO_MAX ((size_t)256 << 10)
#define COPY_CHUNK ((size_t)1 << 20)
/* A concatenation directory left by a crash is removed after this. */
#define TMP_MAX_AGE_S 3600

struct upload_store {
	char *dir;   /* the datasource directory */
	char *udir;  /* dir/.uploads */
};

void upload_free(struct upload *u)
{
	if (!u)
		return;
	free(u->owner);
	free(u->path);
	free(u->metadata);
	free(u->concat);
	u->owner = u->path = u->metadata = u->concat = NULL;
}

static char *path3(const char *a, const char *b, const char *c)
{
	struct buf p;
	buf_init(&p, 8192);
	if (buf_appendf(&p, "%s/%s%s%s", a, b, c ? "/" : "", c ? c : "")) {
		buf_free(&p);
		return NULL;
	}
	return buf_detach(&p);
}

int upload_store_open(struct upload_store **out, const char *dir, int create)
{
	struct upload_store *st;
	struct stat sb;

	*out = NULL;
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
		return al_error_set(AL_ERR_NOT_FOUND, "the staging directory %s does not exist", dir);
	if (!(st = calloc(1, sizeof(*st))) || !(st->dir = util_strdup(dir)) ||
	    !(st->udir = util_path_join(dir, UPLOAD_STORE_SUBDIR))) {
		upload_store_close(st);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	if (create && mkdir(st->udir, 0700) == 0) {
		if (util_fsync_dir(dir) < 0) {
			upload_store_close(st);
			return al_error_wrap(AL_ERR_IO, "uploads of %s", dir);
		}
	} else if (create && errno != EEXIST) {
		int e = errno;
		upload_store_close(st);
		return al_error_set(AL_ERR_IO, "cannot create the uploads of %s: %s", dir, strerror(e));
	} else if (!create && (stat(st->udir, &sb) < 0 || !S_ISDIR(sb.st_mode))) {
		upload_store_close(st);
		return al_error_set(AL_ERR_NOT_FOUND, "%s has no uploads", dir);
	}
	*out = st;
	return AL_OK;
}

void upload_store_close(struct upload_store *st)
{
	if (!st)
		return;
	free(st->dir);
	free(st->udir);
	free(st);
}

const char *upload_store_dir(const struct upload_store *st)
{
	return st->dir;
}

/* ---- the in-memory index ---------------------------------------------------
 *
 * Creation checks the quota and the names against every upload of the
 * datasource. Reading every info.json each time would make a folder of n
 * files cost n^2 reads (seconds per file at ten thousand), so this process
 * keeps what those checks need - each upload's path, kind, length and offset
 * - per datasource: built by one scan of the disk on first use, then kept
 * current by the functions below that change uploads. That holds because one
 * process writes a volume's uploads (one uploader per datasource; the
 * embedded airlock for all of its own). Everything else (listing, the sweep,
 * "all files uploaded") still reads the disk.
 */
struct store_index {
	char *udir;
	json_t *ups;              /* id -> {"path", "kind", "length", "offset"} */
	struct store_index *next;
};

static pthread_mutex_t index_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store_index *index_list;

static json_t *index_entry(const struct upload *u)
{
	return json_pack("{s:s?, s:i, s:I, s:I}", "path", u->path, "kind", (int)u->kind, "length",
			 (json_int_t)u->length, "offset", (json_int_t)u->offset);
}

static struct store_index *index_find_locked(const char *udir)
{
	for (struct store_index *i = index_list; i; i = i->next)
		if (!strcmp(i->udir, udir))
			return i;
	return NULL;
}

/* Keeps u's entry current when the datasource's index exists; an index that
 * cannot be kept current (out of memory) is dropped, to be built again. */
static void index_update(const struct upload_store *st, const struct upload *u)
{
	struct store_index *i;
	pthread_mutex_lock(&index_lock);
	if ((i = index_find_locked(st->udir)) && i->ups && json_object_set_new(i->ups, u->id, index_entry(u))) {
		json_decref(i->ups);
		i->ups = NULL;
	}
	pthread_mutex_unlock(&index_lock);
}

static void index_remove(const struct upload_store *st, const char *id)
{
	struct store_index *i;
	pthread_mutex_lock(&index_lock);
	if ((i = index_find_locked(st->udir)) && i->ups)
		json_object_del(i->ups, id);
	pthread_mutex_unlock(&index_lock);
}

static int index_build_visit(void *ud, const struct upload *u)
{
	return json_object_set_new(ud, u->id, index_entry(u)) ? al_error_set(AL_ERR_NOMEM, "out of memory") : 0;
}

/* The datasource's index, built now when there is none; the caller holds
 * index_lock (the scan runs under it, once). */
static int index_get_locked(struct upload_store *st, struct store_index **out)
{
	struct store_index *i = index_find_locked(st->udir);
	json_t *ups;
	int rc;

	*out = NULL;
	if (i && i->ups) {
		*out = i;
		return AL_OK;
	}
	if (!(ups = json_object()))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if ((rc = upload_store_foreach(st, index_build_visit, ups))) {
		json_decref(ups);
		return rc;
	}
	if (!i) {
		if (!(i = calloc(1, sizeof(*i))) || !(i->udir = util_strdup(st->udir))) {
			free(i);
			json_decref(ups);
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		}
		i->next = index_list;
		index_list = i;
	}
	i->ups = ups;
	*out = i;
	return AL_OK;
}

void upload_store_forget_all(void)
{
	pthread_mutex_lock(&index_lock);
	while (index_list) {
		struct store_index *i = index_list;
		index_list = i->next;
		json_decref(i->ups);
		free(i->udir);
		free(i);
	}
	pthread_mutex_unlock(&index_lock);
}

/* ---- locks ---------------------------------------------------------------- */

static int lock_file(const char *path, int op, int *out_fd)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	*out_fd = -1;
	if (fd < 0)
		return al_error_set(AL_ERR_IO, "cannot open the lock %s: %s", path, strerror(errno));
	while (flock(fd, op) < 0) {
		int e = errno;
		if (e == EINTR)
			continue;
		close(fd);
		if (e == EWOULDBLOCK)
			return al_error_set(AL_ERR_UNAVAILABLE, "busy");
		return al_error_set(AL_ERR_IO, "cannot lock %s: %s", path, strerror(e));
	}
	*out_fd = fd;
	return AL_OK;
}

int upload_store_lock(struct upload_store *st, int exclusive, int wait, int *out_fd)
{
	char *p = util_path_join(st->udir, LOCK_NAME);
	int rc;
	if (!p)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = lock_file(p, (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB), out_fd);
	free(p);
	return rc;
}

int upload_store_lock_create(struct upload_store *st, int *out_fd)
{
	char *p = util_path_join(st->udir, CREATE_LOCK_NAME);
	int rc;
	if (!p)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = lock_file(p, LOCK_EX, out_fd);
	free(p);
	return rc;
}

void upload_store_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* closing the last descriptor releases the flock */
}

int upload_lock(struct upload_store *st, const char *id, int *out_fd)
{
	char *p;
	int fd;

	*out_fd = -1;
	if (!tus_is_id(id))
		return al_error_set(AL_ERR_NOT_FOUND, "no such upload");
	if (!(p = util_path_join(st->udir, id)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return errno == ENOENT ? al_error_set(AL_ERR_NOT_FOUND, "no such upload")
				       : al_error_set(AL_ERR_IO, "cannot open upload %s: %s", id, strerror(errno));
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (e == EINTR)
			continue;
		close(fd);
		if (e == EWOULDBLOCK)
			return al_error_set(AL_ERR_UNAVAILABLE,
					    "upload %s is being written by another request; try again shortly", id);
		return al_error_set(AL_ERR_IO, "cannot lock upload %s: %s", id, strerror(e));
	}
	*out_fd = fd;
	return AL_OK;
}

void upload_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* ---- info.json ------------------------------------------------------------ */

static const char *const kind_names[] = { "file", "partial", "final" };

json_t *upload_info_json(const struct upload *u)
{
	json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:s?, s:s, s:s?, s:I, s:I, s:I, s:b}", "version", 1, "id", u->id,
			      "kind", kind_names[u->kind], "owner", u->owner ? u->owner : "", "path", u->path,
			      "metadata", u->metadata ? u->metadata : "", "concat", u->concat, "offset",
			      (json_int_t)u->offset, "created", (json_int_t)u->created, "expires",
			      (json_int_t)u->expires, "complete", u->complete);
	if (!o)
		return NULL;
	if (json_object_set_new(o, "length", u->length < 0 ? json_null() : json_integer((json_int_t)u->length)) < 0)
		goto fail;
	if (u->sha256[0] && json_object_set_new(o, "sha256", json_string(u->sha256)) < 0)
		goto fail;
	if (!u->complete) {
		json_t *hs = sha256_run_save(&u->hash);
		if (!hs || json_object_set_new(o, "sha256State", hs) < 0)
			goto fail;
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

static int dup_field(const json_t *o, const char *key, int required, char **out)
{
	const json_t *v = json_object_get(o, key);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required)
			return al_error_set(AL_ERR_INVALID, "info.json: '%s' is missing", key);
		return AL_OK;
	}
	if (!json_is_string(v))
		return al_error_set(AL_ERR_INVALID, "info.json: '%s' must be a string", key);
	if (!(*out = util_strdup(json_string_value(v))))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

static int get_int(const json_t *o, const char *key, int64_t min, int64_t *out)
{
	const json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < min)
		return al_error_set(AL_ERR_INVALID, "info.json: '%s' must be an integer of at least %lld", key,
				    (long long)min);
	*out = (int64_t)json_integer_value(v);
	return AL_OK;
}

/* Everything but the hash state, which needs the data (upload_load). */
int upload_info_parse(const json_t *info, struct upload *out)
{
	const char *id = json_string_value(json_object_get(info, "id"));
	const char *kind = json_string_value(json_object_get(info, "kind"));
	const char *sha = json_string_value(json_object_get(info, "sha256"));
	const json_t *len = json_object_get(info, "length");
	int64_t v;
	int rc;

	memset(out, 0, sizeof(*out));
	sha256_run_init(&out->hash);
	if (!json_is_object(info) || json_integer_value(json_object_get(info, "version")) != 1)
		return al_error_set(AL_ERR_INVALID, "info.json: not version 1");
	if (!tus_is_id(id))
		return al_error_set(AL_ERR_INVALID, "info.json: 'id' is not an upload id");
	memcpy(out->id, id, TUS_ID_LEN + 1);
	{
		int k;
		for (k = 0; k < 3; k++)
			if (kind && !strcmp(kind, kind_names[k]))
				break;
		if (k == 3)
			return al_error_set(AL_ERR_INVALID, "info.json: unknown kind");
		out->kind = (enum upload_kind)k;
	}
	if ((rc = dup_field(info, "owner", 1, &out->owner)) || (rc = dup_field(info, "path", 0, &out->path)) ||
	    (rc = dup_field(info, "metadata", 1, &out->metadata)) || (rc = dup_field(info, "concat", 0, &out->concat)))
		goto fail;
	if ((out->kind != UPLOAD_PARTIAL) != (out->path != NULL)) {
		rc = al_error_set(AL_ERR_INVALID, "info.json: a %s upload %s a path", kind, out->path ? "has" : "needs");
		goto fail;
	}
	if (json_is_null(len)) {
		out->length = -1;
	} else if ((rc = get_int(info, "length", 0, &out->length))) {
		goto fail;
	}
	if ((rc = get_int(info, "offset", 0, &v)))
		goto fail;
	out->offset = (uint64_t)v;
	if ((rc = get_int(info, "created", 0, &out->created)) || (rc = get_int(info, "expires", 0, &out->expires)))
		goto fail;
	if (out->length >= 0 && out->offset > (uint64_t)out->length) {
		rc = al_error_set(AL_ERR_INVALID, "info.json: offset past length");
		goto fail;
	}
	out->complete = json_is_true(json_object_get(info, "complete"));
	if (sha) {
		if (strlen(sha) != 64) {
			rc = al_error_set(AL_ERR_INVALID, "info.json: 'sha256' is not a digest");
			goto fail;
		}
		memcpy(out->sha256, sha, 65);
	}
	if (out->complete && (!sha || out->length < 0 || out->offset != (uint64_t)out->length)) {
		rc = al_error_set(AL_ERR_INVALID, "info.json: complete without all of its bytes and digest");
		goto fail;
	}
	return AL_OK;
fail:
	upload_free(out);
	return rc;
}

static char *upload_path(const struct upload_store *st, const char *id, const char *name)
{
	return path3(st->udir, id, name);
}

int upload_save(struct upload_store *st, const struct upload *u)
{
	json_t *o = upload_info_json(u);
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	char *p = upload_path(st, u->id, INFO_NAME);
	int rc;

	if (!o || !text || !p)
		rc = al_error_set(AL_ERR_NOMEM, "cannot record upload %s: out of memory", u->id);
	else
		rc = util_write_file_atomic(p, text, strlen(text), 0600);
	if (!rc)
		index_update(st, u);
	json_decref(o);
	free(text);
	free(p);
	return rc;
}

/* Hashes the first `len` bytes of `fd` into r (from scratch). */
static int hash_fd(int fd, uint64_t len, struct sha256_run *r)
{
	char *b = malloc(COPY_CHUNK);
	uint64_t done = 0;
	int rc = AL_OK;

	sha256_run_init(r);
	if (!b)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	while (done < len) {
		size_t want = len - done < COPY_CHUNK ? (size_t)(len - done) : COPY_CHUNK;
		ssize_t n = pread(fd, b, want, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = al_error_set(AL_ERR_IO, "cannot read upload data: %s", n < 0 ? strerror(errno) : "it is shorter than recorded");
			break;
		}
		sha256_run_update(r, b, (size_t)n);
		done += (uint64_t)n;
	}
	free(b);
	return rc;
}

/* The running hash of an unfinished upload: the saved state, with the bytes
 * after it replayed from data.part; or, when that fails, data.part hashed
 * again from the start. */
static int load_hash(struct upload_store *st, struct upload *u, const json_t *saved)
{
	char *p = upload_path(st, u->id, DATA_NAME);
	unsigned char tail[64];
	size_t tail_len = (size_t)(u->offset % 64);
	struct stat sb;
	int fd, rc = AL_OK;

	if (!p)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	fd = open(p, O_RDONLY | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return errno == ENOENT ? al_error_set(AL_ERR_NOT_FOUND, "the data of upload %s is missing", u->id)
				       : al_error_set(AL_ERR_IO, "cannot open the data of upload %s: %s", u->id, strerror(errno));
	if (fstat(fd, &sb) < 0 || (uint64_t)sb.st_size < u->offset) {
		/* The offset is only recorded after the bytes are durable, so this
		 * means the disk lost acknowledged data. Carry on from what is there. */
		uint64_t have = fstat(fd, &sb) < 0 ? 0 : (uint64_t)sb.st_size;
		log_error("upload %s: data is %llu bytes but %llu were acknowledged; resuming from %llu", u->id,
			  (unsigned long long)have, (unsigned long long)u->offset, (unsigned long long)have);
		u->offset = have;
		saved = NULL;
	}
	if (saved && tail_len) {
		ssize_t n = pread(fd, tail, tail_len, (off_t)(u->offset - tail_len));
		if (n != (ssize_t)tail_len)
			saved = NULL;
	}
	if (!saved || sha256_run_restore(&u->hash, saved, u->offset, tail, tail_len) != AL_OK) {
		u->hash_recomputed = 1;
		rc = hash_fd(fd, u->offset, &u->hash);
	}
	close(fd);
	return rc;
}

int upload_load(struct upload_store *st, const char *id, struct upload *out)
{
	char *p, *text = NULL;
	json_t *info = NULL;
	json_error_t jerr;
	int rc;

	memset(out, 0, sizeof(*out));
	sha256_run_init(&out->hash);
	if (!tus_is_id(id))
		return al_error_set(AL_ERR_NOT_FOUND, "no such upload");
	if (!(p = upload_path(st, id, INFO_NAME)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = util_read_file(p, INFO_MAX, &text, NULL);
	free(p);
	if (rc) {
		free(text);
		return rc == AL_ERR_NOT_FOUND ? al_error_set(AL_ERR_NOT_FOUND, "no such upload") : rc;
	}
	info = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	free(text);
	if (!info)
		return al_error_set(AL_ERR_IO, "upload %s: info.json is not JSON: %s", id, jerr.text);
	if ((rc = upload_info_parse(info, out)))
		goto out;
	if (strcmp(out->id, id)) {
		rc = al_error_set(AL_ERR_IO, "upload %s: info.json names another upload", id);
		goto out;
	}
	/* A complete upload no longer needs its hash state; placement of one
	 * whose digest is recorded needs none either. */
	if (!out->complete && !out->sha256[0]) {
		rc = load_hash(st, out, json_object_get(info, "sha256State"));
		if (rc == AL_OK && out->hash_recomputed)
			log_warn("upload %s: the saved SHA-256 state was unusable; hashed its %llu bytes again", id,
				 (unsigned long long)out->offset);
	}
out:
	json_decref(info);
	if (rc)
		upload_free(out);
	return rc;
}

static int write_empty(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return al_error_set(AL_ERR_IO, "cannot create %s: %s", path, strerror(errno));
	if (fsync(fd) < 0) {
		int e = errno;
		close(fd);
		return al_error_set(AL_ERR_IO, "cannot sync %s: %s", path, strerror(e));
	}
	close(fd);
	return AL_OK;
}

int upload_create(struct upload_store *st, struct upload *u)
{
	char *id = util_random_hex(TUS_ID_LEN / 2), *d = NULL, *data = NULL;
	int rc;

	if (!id || strlen(id) != TUS_ID_LEN) {
		free(id);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	memcpy(u->id, id, TUS_ID_LEN + 1);
	free(id);
	u->created = (int64_t)time(NULL);
	u->offset = 0;
	u->complete = 0;
	u->sha256[0] = '\0';
	sha256_run_init(&u->hash);
	if (!(d = util_path_join(st->udir, u->id)) || !(data = util_path_join(d, DATA_NAME))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (mkdir(d, 0700) < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot create upload %s: %s", u->id, strerror(errno));
		goto out;
	}
	if ((rc = write_empty(data)) || (rc = upload_save(st, u)) || (rc = util_fsync_dir(st->udir)))
		util_remove_tree(d);
out:
	free(d);
	free(data);
	return rc;
}

int upload_data_open(struct upload_store *st, const struct upload *u, int want_direct, int *out_fd, int *out_direct)
{
	char *p = upload_path(st, u->id, DATA_NAME);
	int fd = -1;

	*out_fd = -1;
	*out_direct = 0;
	if (!p)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (want_direct) {
		fd = open(p, O_WRONLY | O_DIRECT | O_CLOEXEC);
		/* Some filesystems (tmpfs, some network ones) refuse O_DIRECT. */
		if (fd >= 0)
			*out_direct = 1;
	}
	if (fd < 0)
		fd = open(p, O_WRONLY | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return al_error_set(AL_ERR_IO, "cannot open the data of upload %s: %s", u->id, strerror(errno));
	/* Bytes past the acknowledged offset were never acknowledged. */
	if (ftruncate(fd, (off_t)u->offset) < 0 || lseek(fd, (off_t)u->offset, SEEK_SET) < 0) {
		int e = errno;
		close(fd);
		return al_error_set(AL_ERR_IO, "cannot prepare the data of upload %s: %s", u->id, strerror(e));
	}
	*out_fd = fd;
	return AL_OK;
}

int upload_data_read(struct upload_store *st, const struct upload *u, uint64_t off, void *buf, size_t len)
{
	char *p = upload_path(st, u->id, DATA_NAME);
	size_t done = 0;
	int fd, rc = AL_OK;

	if (!p)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	fd = open(p, O_RDONLY | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return al_error_set(AL_ERR_IO, "cannot read the data of upload %s: %s", u->id, strerror(errno));
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = al_error_set(AL_ERR_IO, "cannot read the data of upload %s: %s", u->id,
					  n < 0 ? strerror(errno) : "it is shorter than recorded");
			break;
		}
		done += (size_t)n;
	}
	close(fd);
	return rc;
}

/* ---- placing files -------------------------------------------------------- */

/* Opens (making them as needed, 0700) the directories of `rel`'s parent under
 * dirfd, never following a symbolic link. *out_parent is a directory fd and
 * *out_base points into rel at the last segment. */
static int open_parent(int dirfd, const char *rel, int *out_parent, const char **out_base)
{
	const char *seg = rel, *slash;
	int cur = dup(dirfd);

	*out_parent = -1;
	if (cur < 0)
		return al_error_set(AL_ERR_IO, "cannot open the staging directory: %s", strerror(errno));
	while ((slash = strchr(seg, '/'))) {
		char *name = util_strndup(seg, (size_t)(slash - seg));
		int next;
		if (!name) {
			close(cur);
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		}
		next = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT) {
			if (mkdirat(cur, name, 0700) < 0 && errno != EEXIST) {
				int e = errno;
				free(name);
				close(cur);
				return al_error_set(AL_ERR_IO, "cannot create folder '%.*s': %s", (int)(slash - rel), rel,
						    strerror(e));
			}
			if (fsync(cur) < 0)
				log_warn("cannot sync a folder of '%s': %s", rel, strerror(errno));
			next = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		free(name);
		if (next < 0) {
			int e = errno;
			close(cur);
			if (e == ENOTDIR || e == ELOOP)
				return al_error_set(AL_ERR_EXISTS, "'%.*s' is a file, so '%s' cannot be made",
						    (int)(slash - rel), rel, rel);
			return al_error_set(AL_ERR_IO, "cannot open folder '%.*s': %s", (int)(slash - rel), rel, strerror(e));
		}
		close(cur);
		cur = next;
		seg = slash + 1;
	}
	*out_parent = cur;
	*out_base = seg;
	return AL_OK;
}

/* data.part -> <dir>/<path>, never replacing anything, durably. */
static int move_into_place(struct upload_store *st, const struct upload *u)
{
	char *src = upload_path(st, u->id, DATA_NAME), *updir = util_path_join(st->udir, u->id);
	const char *base = NULL;
	int dirfd = -1, parent = -1, rc = AL_OK;

	if (!src || !updir) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	dirfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot open %s: %s", st->dir, strerror(errno));
		goto out;
	}
	if ((rc = open_parent(dirfd, u->path, &parent, &base)))
		goto out;
	if (renameat2(AT_FDCWD, src, parent, base, RENAME_NOREPLACE) < 0) {
		int e = errno;
		if (e == EEXIST)
			rc = al_error_set(AL_ERR_EXISTS, "'%s' exists already: terminate this upload and send the file under another name",
					  u->path);
		else
			rc = al_error_set(AL_ERR_IO, "cannot move upload %s to '%s': %s", u->id, u->path, strerror(e));
		goto out;
	}
	if (fsync(parent) < 0 || util_fsync_dir(updir) < 0)
		rc = al_error_set(AL_ERR_IO, "cannot sync the folder of '%s': %s", u->path, strerror(errno));
out:
	if (parent >= 0)
		close(parent);
	if (dirfd >= 0)
		close(dirfd);
	free(src);
	free(updir);
	return rc;
}

int upload_place(struct upload_store *st, struct upload *u)
{
	int rc;

	if (u->length < 0 || u->offset != (uint64_t)u->length)
		return al_error_set(AL_ERR_INTERNAL, "upload %s is not finished", u->id);
	if (!u->sha256[0]) {
		sha256_run_hex(&u->hash, u->sha256);
		/* Recorded first: a crash after the move still knows the digest. */
		if ((rc = upload_save(st, u)))
			return rc;
	}
	if (u->kind != UPLOAD_PARTIAL && (rc = move_into_place(st, u)))
		return rc;
	u->complete = 1;
	u->expires = 0;
	return upload_save(st, u);
}

int upload_recover(struct upload_store *st, struct upload *u)
{
	char *src, *dst;
	struct stat sb;
	int rc = AL_OK, moved;

	if (u->complete || u->length < 0 || u->offset != (uint64_t)u->length)
		return AL_OK;
	if (!u->sha256[0] || u->kind == UPLOAD_PARTIAL)
		return upload_place(st, u);
	/* The digest was recorded: the move may have happened already. */
	src = upload_path(st, u->id, DATA_NAME);
	dst = util_path_join(st->dir, u->path);
	if (!src || !dst) {
		free(src);
		free(dst);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	moved = lstat(src, &sb) < 0 && errno == ENOENT && lstat(dst, &sb) == 0 && S_ISREG(sb.st_mode) &&
		(uint64_t)sb.st_size == (uint64_t)u->length;
	free(src);
	free(dst);
	if (moved) {
		u->complete = 1;
		u->expires = 0;
		rc = upload_save(st, u);
	} else {
		rc = upload_place(st, u);
	}
	if (!rc)
		log_info("upload %s: finished placing '%s' after a restart", u->id, u->path);
	return rc;
}

/* Removes now-empty folders from `rel`'s parent up to dir; best effort. */
static void prune_parents(const char *dir, const char *rel)
{
	char *copy = util_strdup(rel), *slash;
	while (copy && (slash = strrchr(copy, '/'))) {
		char *p;
		*slash = '\0';
		if (!(p = util_path_join(dir, copy)) || rmdir(p) < 0) {
			free(p);
			break;
		}
		free(p);
	}
	free(copy);
}

int upload_remove(struct upload_store *st, const struct upload *u)
{
	char *d = util_path_join(st->udir, u->id);
	int rc;

	if (!d)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (u->complete && u->kind != UPLOAD_PARTIAL && u->path) {
		char *f = util_path_join(st->dir, u->path);
		if (!f || (unlink(f) < 0 && errno != ENOENT)) {
			rc = f ? al_error_set(AL_ERR_IO, "cannot remove '%s': %s", u->path, strerror(errno))
			       : al_error_set(AL_ERR_NOMEM, "out of memory");
			free(f);
			free(d);
			return rc;
		}
		free(f);
		prune_parents(st->dir, u->path);
	}
	rc = util_remove_tree(d);
	free(d);
	if (!rc) {
		index_remove(st, u->id);
		rc = util_fsync_dir(st->udir);
	}
	return rc;
}

/* ---- every upload -------------------------------------------------------- */

/* Reads info.json only (no hash state): enough to list and count. */
static int load_info_only(struct upload_store *st, const char *id, struct upload *out)
{
	char *p = upload_path(st, id, INFO_NAME), *text = NULL;
	json_t *info;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!p)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = util_read_file(p, INFO_MAX, &text, NULL);
	free(p);
	if (rc) {
		free(text);
		return rc;
	}
	info = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	free(text);
	if (!info)
		return al_error_set(AL_ERR_IO, "upload %s: info.json is not JSON", id);
	rc = upload_info_parse(info, out);
	json_decref(info);
	return rc;
}

int upload_store_foreach(struct upload_store *st, upload_visit_fn fn, void *ud)
{
	DIR *d = opendir(st->udir);
	struct dirent *e;
	int rc = AL_OK;

	if (!d)
		return errno == ENOENT ? AL_OK : al_error_set(AL_ERR_IO, "cannot read %s: %s", st->udir, strerror(errno));
	while (rc == AL_OK && (e = readdir(d))) {
		struct upload u;
		if (!tus_is_id(e->d_name))
			continue;
		{
			int lrc = load_info_only(st, e->d_name, &u);
			/* One without info.json yet is being created (or removed). */
			if (lrc == AL_ERR_NOT_FOUND)
				continue;
			if (lrc) {
				log_warn("upload %s in %s is unreadable: %s", e->d_name, st->dir, al_error_message());
				continue;
			}
		}
		rc = fn(ud, &u);
		upload_free(&u);
	}
	closedir(d);
	return rc;
}

int upload_store_usage(struct upload_store *st, uint64_t *bytes, uint64_t *files)
{
	struct store_index *i;
	const char *id;
	json_t *e;
	int rc;

	*bytes = *files = 0;
	pthread_mutex_lock(&index_lock);
	if (!(rc = index_get_locked(st, &i)))
		json_object_foreach(i->ups, id, e) {
			json_int_t len = json_integer_value(json_object_get(e, "length"));
			*bytes += (uint64_t)(len >= 0 ? len : json_integer_value(json_object_get(e, "offset")));
			if (json_integer_value(json_object_get(e, "kind")) != UPLOAD_PARTIAL)
				(*files)++;
		}
	pthread_mutex_unlock(&index_lock);
	return rc;
}

/* Does the reserved `other` (an upload's target) clash with `path`? */
static int name_clash(const char *path, size_t len, const char *other, const char *id)
{
	size_t l = strlen(other);
	if (!strcmp(other, path))
		return al_error_set(AL_ERR_EXISTS, "'%s' is already being uploaded (upload %s)", path, id);
	if (l < len && !strncmp(other, path, l) && path[l] == '/')
		return al_error_set(AL_ERR_EXISTS, "'%s' is a file being uploaded, so '%s' cannot be made", other, path);
	if (len < l && !strncmp(other, path, len) && other[len] == '/')
		return al_error_set(AL_ERR_EXISTS, "'%s' is a folder of '%s', which is being uploaded", path, other);
	return AL_OK;
}

int upload_store_name_free(struct upload_store *st, const char *path)
{
	struct store_index *idx;
	struct buf prefix;
	struct stat sb;
	const char *id;
	json_t *e;
	size_t len = strlen(path);
	char *full;
	int rc = AL_OK;

	buf_init(&prefix, 8192);
	/* Every parent that exists must be a folder. */
	for (const char *s = path; (s = strchr(s, '/')); s++) {
		buf_reset(&prefix);
		if (buf_appendf(&prefix, "%s/%.*s", st->dir, (int)(s - path), path)) {
			buf_free(&prefix);
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		}
		if (lstat(prefix.ptr, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
			rc = al_error_set(AL_ERR_EXISTS, "'%.*s' is a file, so '%s' cannot be made", (int)(s - path), path, path);
			break;
		}
	}
	buf_free(&prefix);
	if (rc)
		return rc;
	if (!(full = util_path_join(st->dir, path)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (lstat(full, &sb) == 0)
		rc = al_error_set(AL_ERR_EXISTS, "'%s' exists already", path);
	free(full);
	if (rc)
		return rc;
	pthread_mutex_lock(&index_lock);
	if (!(rc = index_get_locked(st, &idx)))
		json_object_foreach(idx->ups, id, e) {
			const char *other = json_string_value(json_object_get(e, "path"));
			if (other && (rc = name_clash(path, len, other, id)))
				break;
		}
	pthread_mutex_unlock(&index_lock);
	return rc;
}

struct sweep {
	struct upload_store *st;
	int64_t now;
	size_t removed;
};

static int sweep_visit(void *ud, const struct upload *u)
{
	struct sweep *sw = ud;
	int lock = -1;

	if (u->complete || !u->expires || u->expires > sw->now)
		return 0;
	if (upload_lock(sw->st, u->id, &lock))
		return 0; /* being written: not abandoned after all */
	if (upload_remove(sw->st, u) == AL_OK) {
		sw->removed++;
		log_info("upload %s (%s, %llu bytes received) expired and was removed", u->id,
			 u->path ? u->path : "partial", (unsigned long long)u->offset);
	} else {
		log_warn("cannot remove expired upload %s: %s", u->id, al_error_message());
	}
	upload_unlock(lock);
	return 0;
}

int upload_store_sweep(struct upload_store *st, int64_t now, size_t *removed)
{
	struct sweep sw = { st, now, 0 };
	DIR *d;
	struct dirent *e;
	int rc = upload_store_foreach(st, sweep_visit, &sw);

	/* Concatenations a crash interrupted. */
	if ((d = opendir(st->udir))) {
		while ((e = readdir(d))) {
			struct stat sb;
			char *p;
			if (strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) || !(p = util_path_join(st->udir, e->d_name)))
				continue;
			if (lstat(p, &sb) == 0 && sb.st_mtime + TMP_MAX_AGE_S < now && util_remove_tree(p) == AL_OK)
				sw.removed++;
			free(p);
		}
		closedir(d);
	}
	if (removed)
		*removed = sw.removed;
	return rc;
}

/* ---- concatenation -------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return al_error_set(errno == ENOSPC ? AL_ERR_TOO_LARGE : AL_ERR_IO, "cannot write: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return AL_OK;
}

static int append_part(struct upload_store *st, const struct upload *part, int out, struct sha256_run *h, char *b)
{
	char *p = upload_path(st, part->id, DATA_NAME);
	uint64_t left = part->offset;
	int fd, rc = AL_OK;

	if (!p)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	fd = open(p, O_RDONLY | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return al_error_set(AL_ERR_IO, "cannot read partial upload %s: %s", part->id, strerror(errno));
	while (left && rc == AL_OK) {
		ssize_t n = read(fd, b, left < COPY_CHUNK ? (size_t)left : COPY_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = al_error_set(AL_ERR_IO, "partial upload %s is shorter than recorded", part->id);
			break;
		}
		sha256_run_update(h, b, (size_t)n);
		rc = write_all(out, b, (size_t)n);
		left -= (uint64_t)n;
	}
	close(fd);
	return rc;
}

int upload_store_concat(struct upload_store *st, struct upload *final, const struct upload *parts, size_t n)
{
	char *id = util_random_hex(TUS_ID_LEN / 2), *tmp = NULL, *data = NULL, *dest = NULL;
	char *b = malloc(COPY_CHUNK);
	struct buf name;
	int fd = -1, rc = AL_OK;

	buf_init(&name, 256);
	if (!id || !b || strlen(id) != TUS_ID_LEN || buf_appendf(&name, TMP_PREFIX "%s", id) ||
	    !(tmp = util_path_join(st->udir, name.ptr)) || !(data = util_path_join(tmp, DATA_NAME)) ||
	    !(dest = util_path_join(st->udir, id))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(final->id, id, TUS_ID_LEN + 1);
	final->created = (int64_t)time(NULL);
	final->complete = 0;
	final->sha256[0] = '\0';
	sha256_run_init(&final->hash);
	if (mkdir(tmp, 0700) < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot create a concatenation: %s", strerror(errno));
		goto out;
	}
	fd = open(data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot create a concatenation: %s", strerror(errno));
		goto fail;
	}
	for (size_t i = 0; i < n && rc == AL_OK; i++)
		rc = append_part(st, &parts[i], fd, &final->hash, b);
	if (rc)
		goto fail;
	if (fdatasync(fd) < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot sync a concatenation: %s", strerror(errno));
		goto fail;
	}
	final->offset = final->hash.bytes;
	if (final->length < 0 || final->offset != (uint64_t)final->length) {
		rc = al_error_set(AL_ERR_INTERNAL, "the partial uploads do not add up to %lld bytes", (long long)final->length);
		goto fail;
	}
	{
		/* info.json is written inside the temporary directory, which then
		 * becomes the upload in one rename: no half-made upload is ever seen. */
		json_t *o = upload_info_json(final);
		char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		char *ip = util_path_join(tmp, INFO_NAME);
		rc = o && text && ip ? util_write_file_atomic(ip, text, strlen(text), 0600)
				     : al_error_set(AL_ERR_NOMEM, "out of memory");
		json_decref(o);
		free(text);
		free(ip);
		if (rc)
			goto fail;
	}
	if (rename(tmp, dest) < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot finish a concatenation: %s", strerror(errno));
		goto fail;
	}
	if ((rc = util_fsync_dir(st->udir)))
		goto out;
	if ((rc = upload_place(st, final)))
		goto out;
	for (size_t i = 0; i < n; i++)
		if (upload_remove(st, &parts[i]))
			log_warn("cannot remove partial upload %s after concatenation: %s", parts[i].id, al_error_message());
	goto out;
fail:
	util_remove_tree(tmp);
out:
	if (fd >= 0)
		close(fd);
	buf_free(&name);
	free(b);
	free(id);
	free(tmp);
	free(data);
	free(dest);
	return rc;
}

/* ---- all files uploaded --------------------------------------------------- */

struct unfinished {
	struct buf list;
	size_t n;
	json_t *known;
};

static int complete_visit(void *ud, const struct upload *u)
{
	struct unfinished *uf = ud;
	if (!u->complete || u->kind == UPLOAD_PARTIAL) {
		if (uf->n < 5) {
			if (u->kind == UPLOAD_PARTIAL && u->complete)
				buf_appendf(&uf->list, "%spartial upload %s (never concatenated)", uf->n ? ", " : "", u->id);
			else if (u->length >= 0)
				buf_appendf(&uf->list, "%s%s (%llu of %lld bytes)", uf->n ? ", " : "",
					    u->path ? u->path : "a partial upload", (unsigned long long)u->offset,
					    (long long)u->length);
			else
				buf_appendf(&uf->list, "%s%s (%llu bytes, length not yet known)", uf->n ? ", " : "",
					    u->path ? u->path : "a partial upload", (unsigned long long)u->offset);
		}
		uf->n++;
		return 0;
	}
	if (json_object_set_new(uf->known, u->path, json_pack("{s:I, s:s}", "size", (json_int_t)u->length, "sha256", u->sha256)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return 0;
}

static int make_read_only(const char *dir, const json_t *files)
{
	size_t i;
	json_t *f;
	json_array_foreach(files, i, f) {
		const char *rel = json_string_value(json_object_get(f, "path"));
		char *p = rel ? util_path_join(dir, rel) : NULL;
		int fd;
		if (!p)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		free(p);
		if (fd < 0 || fchmod(fd, 0444) < 0) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			return al_error_set(AL_ERR_IO, "cannot make '%s' read-only: %s", rel, strerror(e));
		}
		close(fd);
	}
	return AL_OK;
}

int upload_store_complete(struct upload_store *st, const char *round, const char *by, json_t **out_record)
{
	struct unfinished uf = { .n = 0 };
	json_t *man = NULL, *record = NULL;
	char now[UTIL_TIME_LEN], *text = NULL, *p = NULL;
	int rc, dirfd;

	*out_record = NULL;
	buf_init(&uf.list, 4096);
	if (!(uf.known = json_object())) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = upload_store_foreach(st, complete_visit, &uf)))
		goto out;
	if (uf.n) {
		rc = al_error_set(AL_ERR_CONFLICT,
				  "%zu upload%s not finished: %s%s. Finish %s, or terminate %s (DELETE), then try again",
				  uf.n, uf.n == 1 ? " is" : "s are", uf.list.ptr ? uf.list.ptr : "", uf.n > 5 ? ", ..." : "",
				  uf.n == 1 ? "it" : "them", uf.n == 1 ? "it" : "them");
		goto out;
	}
	if ((rc = manifest_build_known(st->dir, uf.known, &man)))
		goto out;
	if ((rc = make_read_only(st->dir, json_object_get(man, "files"))))
		goto out;
	/* The modes must be durable before completion is recorded. */
	dirfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0 || syncfs(dirfd) < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot sync %s: %s", st->dir, strerror(errno));
		if (dirfd >= 0)
			close(dirfd);
		goto out;
	}
	close(dirfd);
	util_now_rfc3339(now);
	record = json_pack("{s:i, s:s?, s:s, s:s, s:O}", "version", 1, "round", round, "completedBy", by ? by : "",
			   "completedAt", now, "manifest", man);
	text = record ? json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	p = util_path_join(st->udir, COMPLETED_NAME);
	if (!record || !text || !p) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = util_write_file_atomic(p, text, strlen(text), 0600)))
		goto out;
	*out_record = record;
	record = NULL;
out:
	buf_free(&uf.list);
	json_decref(uf.known);
	json_decref(man);
	json_decref(record);
	free(text);
	free(p);
	return rc;
}

int upload_store_completion(struct upload_store *st, json_t **out_record)
{
	char *p = util_path_join(st->udir, COMPLETED_NAME), *text = NULL;
	int rc;

	*out_record = NULL;
	if (!p)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (!util_path_exists(p)) {
		free(p);
		return AL_ERR_NOT_FOUND;
	}
	rc = util_read_file(p, (size_t)64 << 20, &text, NULL);
	free(p);
	if (rc) {
		free(text);
		return rc;
	}
	*out_record = json_loads(text, 0, NULL);
	free(text);
	return *out_record ? AL_OK : al_error_set(AL_ERR_IO, "completed.json of %s is not JSON", st->dir);
}

json_t *upload_to_json(const struct upload *u)
{
	json_t *o = json_pack("{s:s, s:s, s:s?, s:I, s:b}", "id", u->id, "kind", kind_names[u->kind], "path", u->path,
			      "offset", (json_int_t)u->offset, "complete", u->complete);
	if (!o)
		return NULL;
	if (json_object_set_new(o, "length", u->length < 0 ? json_null() : json_integer((json_int_t)u->length)) < 0)
		goto fail;
	if (u->complete && u->sha256[0] && json_object_set_new(o, "sha256", json_string(u->sha256)) < 0)
		goto fail;
	if (!u->complete && u->expires) {
		char when[UTIL_TIME_LEN];
		time_t t = (time_t)u->expires;
		struct tm tm;
		if (gmtime_r(&t, &tm) && strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) &&
		    json_object_set_new(o, "expires", json_string(when)) < 0)
			goto fail;
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}
