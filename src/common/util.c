#include "common/util.h"
#include "common/buf.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void util_now_rfc3339(char out[UTIL_TIME_LEN])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, UTIL_TIME_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, UTIL_TIME_LEN - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

void util_now_rfc3339_seconds(char out[UTIL_TIME_LEN])
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, UTIL_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int64_t util_monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int util_parse_rfc3339(const char *s, int64_t *out)
{
	struct tm tm;
	const char *p;
	long off = 0;

	memset(&tm, 0, sizeof(tm));
	if (!s || !(p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)))
		return al_error_set(AL_ERR_INVALID, "'%s' is not an RFC 3339 time such as 2026-01-31T12:00:00Z",
				    s ? s : "");
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int sign = *p == '-' ? -1 : 1;
		int hh = (p[1] - '0') * 10 + (p[2] - '0');
		int mm = (p[4] - '0') * 10 + (p[5] - '0');
		off = sign * (hh * 3600L + mm * 60L);
		p += 6;
	} else {
		return al_error_set(AL_ERR_INVALID, "'%s' has no time zone (end it with Z)", s);
	}
	if (*p)
		return al_error_set(AL_ERR_INVALID, "'%s' has trailing characters", s);
	*out = (int64_t)timegm(&tm) - off;
	return AL_OK;
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void util_sha256_hex(const void *data, size_t len, char out[UTIL_SHA256_HEX_LEN + 1])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	hex_encode(md, 32, out);
}

int util_sha256_file(const char *path, char out[UTIL_SHA256_HEX_LEN + 1], uint64_t *size)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	unsigned char *chunk;
	uint64_t total = 0;
	EVP_MD_CTX *ctx;
	ssize_t n;
	int fd, rc = AL_OK;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return al_error_set(AL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
	chunk = malloc(1 << 16);
	ctx = EVP_MD_CTX_new();
	if (!chunk || !ctx) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = al_error_set(AL_ERR_INTERNAL, "SHA-256 unavailable");
		goto out;
	}
	while ((n = read(fd, chunk, 1 << 16)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = al_error_set(AL_ERR_IO, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		EVP_DigestUpdate(ctx, chunk, (size_t)n);
		total += (uint64_t)n;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	hex_encode(md, 32, out);
	if (size)
		*size = total;
out:
	EVP_MD_CTX_free(ctx);
	free(chunk);
	close(fd);
	return rc;
}

char *util_random_hex(size_t nbytes)
{
	unsigned char *raw = malloc(nbytes ? nbytes : 1);
	char *out = malloc(2 * nbytes + 1);
	if (!raw || !out) {
		free(raw);
		free(out);
		return NULL;
	}
	randombytes_buf(raw, nbytes);
	hex_encode(raw, nbytes, out);
	sodium_memzero(raw, nbytes);
	free(raw);
	return out;
}

char *util_uuid4(void)
{
	unsigned char r[16];
	char hex[33];
	char *out = malloc(37);
	if (!out)
		return NULL;
	randombytes_buf(r, sizeof(r));
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
	hex_encode(r, 16, hex);
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
	return out;
}

int util_mkdir_p(const char *path, mode_t mode)
{
	char *p = util_strdup(path);
	int rc = AL_OK;
	if (!p)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	for (char *s = p + 1; ; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, mode) < 0 && errno != EEXIST) {
				rc = al_error_set(AL_ERR_IO, "cannot create directory %s: %s", p, strerror(errno));
				break;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	free(p);
	return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

int util_remove_tree(const char *path)
{
	if (!path || !*path || !strcmp(path, "/"))
		return al_error_set(AL_ERR_INVALID, "refusing to remove '%s'", path ? path : "");
	if (!util_path_exists(path))
		return AL_OK;
	if (nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS) < 0)
		return al_error_set(AL_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
	return AL_OK;
}

int util_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return al_error_set(AL_ERR_IO, "cannot open directory %s: %s", dir, strerror(errno));
	if (fsync(fd) < 0 && errno != EINVAL) {
		int e = errno;
		close(fd);
		return al_error_set(AL_ERR_IO, "cannot sync directory %s: %s", dir, strerror(e));
	}
	close(fd);
	return AL_OK;
}

int util_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	struct buf tmp;
	char *dir = NULL, *slash;
	const char *p = data;
	int fd = -1, rc;

	char *rnd = util_random_hex(6);

	buf_init(&tmp, 0);
	/* Unique per writer, so two threads replacing one file never share a temp. */
	rc = rnd ? buf_appendf(&tmp, "%s.tmp.%ld.%s", path, (long)getpid(), rnd)
		 : al_error_set(AL_ERR_NOMEM, "out of memory");
	free(rnd);
	if (rc)
		goto out;
	fd = open(tmp.ptr, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot create %s: %s", tmp.ptr, strerror(errno));
		goto out;
	}
	fchmod(fd, mode);
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = al_error_set(AL_ERR_IO, "cannot write %s: %s", path, strerror(errno));
			goto out;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot sync %s: %s", path, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(tmp.ptr, path) < 0) {
		rc = al_error_set(AL_ERR_IO, "cannot rename into %s: %s", path, strerror(errno));
		unlink(tmp.ptr);
		goto out;
	}
	dir = util_strdup(path);
	if (!dir) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else {
		free(dir);
		dir = util_strdup(".");
	}
	rc = dir ? util_fsync_dir(dir) : al_error_set(AL_ERR_NOMEM, "out of memory");
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp.ptr);
	}
	free(dir);
	buf_free(&tmp);
	return rc;
}

int util_read_file(const char *path, size_t max, char **out, size_t *out_len)
{
	struct buf b;
	char chunk[8192];
	int fd, rc = AL_OK;
	ssize_t n;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return al_error_set(errno == ENOENT ? AL_ERR_NOT_FOUND : AL_ERR_IO, "cannot open %s: %s",
				    path, strerror(errno));
	buf_init(&b, max);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = al_error_set(AL_ERR_IO, "cannot read %s: %s", path, strerror(errno));
			break;
		}
		if ((rc = buf_append(&b, chunk, (size_t)n))) {
			al_error_wrap(rc, "%s", path);
			break;
		}
	}
	close(fd);
	if (rc) {
		buf_free(&b);
		return rc;
	}
	if (out_len)
		*out_len = b.len;
	*out = buf_detach(&b);
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

int util_path_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

char *util_path_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *out;
	while (la > 1 && a[la - 1] == '/')
		la--;
	while (*b == '/')
		b++, lb--;
	out = malloc(la + lb + 2);
	if (!out)
		return NULL;
	memcpy(out, a, la);
	out[la] = '/';
	memcpy(out + la + 1, b, lb + 1);
	return out;
}

int util_path_escapes(const char *rel)
{
	const char *p = rel;
	if (!rel || rel[0] == '/')
		return 1;
	while (*p) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return 1;
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

char *util_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

char *util_strndup(const char *s, size_t n)
{
	return s ? strndup(s, n) : NULL;
}

int util_hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int util_percent_decode(const char *s, size_t n, unsigned flags, char **out, size_t *out_len)
{
	char *o = malloc(n + 1);
	size_t len = 0;

	*out = NULL;
	if (!o)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			int hi = i + 2 < n ? util_hex_value(s[i + 1]) : -1;
			int lo = i + 2 < n ? util_hex_value(s[i + 2]) : -1;
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				free(o);
				return al_error_set(AL_ERR_INVALID, "bad %%-escape (write %%XX with two hex digits, "
								    "never %%00)");
			}
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && (flags & UTIL_PCT_PLUS)) {
			c = ' ';
		}
		o[len++] = c;
	}
	o[len] = '\0';
	*out = o;
	if (out_len)
		*out_len = len;
	return AL_OK;
}
