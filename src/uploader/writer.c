#include "uploader/writer.h"

#include "common/error.h"
#include "common/log.h"
#include "uploader/upload_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum buf_state { BUF_FREE = 0, BUF_FILLING, BUF_QUEUED };

struct writer {
	int fd;
	int direct;
	char *bufs[WRITER_BUFFERS];
	enum buf_state state[WRITER_BUFFERS]; /* guarded by lock */
	int cur;                  /* the buffer the caller fills */
	uint64_t cur_start;       /* file offset of bufs[cur][0] */
	size_t cur_len;
	/* FIFO of buffers for the thread (guarded by lock) */
	int q_idx[WRITER_BUFFERS];
	size_t q_len[WRITER_BUFFERS];
	uint64_t q_off[WRITER_BUFFERS];
	int q_head, q_count;
	int err;                  /* errno of the first failed write; sticky */
	int stop;
	int started;
	uint64_t wb_started;      /* without O_DIRECT: writeback started up to here (thread's) */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static uint64_t align_down(uint64_t v)
{
	return v - v % UPLOAD_DIRECT_ALIGN;
}

static int error_of(int e)
{
	return al_error_set(e == ENOSPC || e == EDQUOT ? AL_ERR_TOO_LARGE : AL_ERR_IO, "cannot write the upload: %s",
			    strerror(e));
}

/* Writes n bytes at off; 0 or an errno. */
static int pwrite_all(int fd, const char *p, size_t n, uint64_t off)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = pwrite(fd, p + done, n - done, (off_t)(off + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno;
		if (w == 0)
			return EIO;
		done += (size_t)w;
	}
	return 0;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		int idx, e = 0;
		size_t len;
		uint64_t off;

		while (!w->q_count && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (!w->q_count)
			break;
		idx = w->q_idx[w->q_head];
		len = w->q_len[w->q_head];
		off = w->q_off[w->q_head];
		pthread_mutex_unlock(&w->lock);
		if (!w->err) /* after a failure nothing more is written */
			e = pwrite_all(w->fd, w->bufs[idx], len, off);
		if (!e && !w->direct && off + len - w->wb_started >= WRITER_WRITEBACK_BYTES) {
			if (sync_file_range(w->fd, (off_t)w->wb_started, (off_t)(off + len - w->wb_started),
					    SYNC_FILE_RANGE_WRITE) < 0 && errno != ENOSYS && errno != EINVAL)
				log_warn("upload writer: sync_file_range: %s", strerror(errno));
			w->wb_started = off + len;
		}
		pthread_mutex_lock(&w->lock);
		if (e && !w->err)
			w->err = e;
		w->state[idx] = BUF_FREE;
		w->q_head = (w->q_head + 1) % WRITER_BUFFERS;
		w->q_count--;
		pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Waits until the thread has written everything queued. Caller holds lock. */
static void drain_locked(struct writer *w)
{
	while (w->q_count)
		pthread_cond_wait(&w->cond, &w->lock);
}

static int drain(struct writer *w)
{
	int e;
	pthread_mutex_lock(&w->lock);
	drain_locked(w);
	e = w->err;
	pthread_mutex_unlock(&w->lock);
	return e ? error_of(e) : AL_OK;
}

/* Hands the full current buffer to the thread and takes a free one. */
static int submit(struct writer *w)
{
	int e, next = -1;

	if (!w->started) {
		if (pthread_create(&w->thread, NULL, writer_main, w))
			return al_error_set(AL_ERR_IO, "cannot start the upload's writer thread");
		w->started = 1;
	}
	pthread_mutex_lock(&w->lock);
	w->q_idx[(w->q_head + w->q_count) % WRITER_BUFFERS] = w->cur;
	w->q_len[(w->q_head + w->q_count) % WRITER_BUFFERS] = w->cur_len;
	w->q_off[(w->q_head + w->q_count) % WRITER_BUFFERS] = w->cur_start;
	w->q_count++;
	w->state[w->cur] = BUF_QUEUED;
	pthread_cond_broadcast(&w->cond);
	while (next < 0 && !w->err) {
		for (int i = 0; i < WRITER_BUFFERS; i++)
			if (w->state[i] == BUF_FREE) {
				next = i;
				break;
			}
		if (next < 0)
			pthread_cond_wait(&w->cond, &w->lock);
	}
	e = w->err;
	if (next >= 0)
		w->state[next] = BUF_FILLING;
	pthread_mutex_unlock(&w->lock);
	if (e)
		return error_of(e);
	w->cur_start += w->cur_len;
	w->cur = next;
	w->cur_len = 0;
	return AL_OK;
}

static int place(struct writer *w, uint64_t offset, const void *prefix, size_t prefix_len)
{
	uint64_t start = w->direct ? align_down(offset) : offset;
	if (offset - start != prefix_len || (prefix_len && !prefix))
		return al_error_set(AL_ERR_INTERNAL, "writer: %zu bytes of prefix given for offset %llu", prefix_len,
				    (unsigned long long)offset);
	w->cur_start = start;
	w->cur_len = prefix_len;
	if (prefix_len)
		memcpy(w->bufs[w->cur], prefix, prefix_len);
	w->wb_started = start;
	return AL_OK;
}

int writer_open(struct writer **out, int fd, int direct, uint64_t offset, const void *prefix, size_t prefix_len)
{
	struct writer *w = calloc(1, sizeof(*w));
	int rc;

	*out = NULL;
	if (!w)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	w->fd = fd;
	w->direct = direct;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	for (int i = 0; i < WRITER_BUFFERS; i++)
		if (posix_memalign((void **)&w->bufs[i], UPLOAD_DIRECT_ALIGN, WRITER_BUFFER_SIZE)) {
			w->bufs[i] = NULL;
			writer_close(w);
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		}
	w->cur = 0;
	w->state[0] = BUF_FILLING;
	if ((rc = place(w, offset, prefix, prefix_len))) {
		writer_close(w);
		return rc;
	}
	*out = w;
	return AL_OK;
}

void writer_close(struct writer *w)
{
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->stop = 1;
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	for (int i = 0; i < WRITER_BUFFERS; i++)
		free(w->bufs[i]);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}

int writer_append(struct writer *w, const void *data, size_t len)
{
	const char *p = data;
	int rc;
	while (len) {
		size_t take = WRITER_BUFFER_SIZE - w->cur_len;
		if (take > len)
			take = len;
		memcpy(w->bufs[w->cur] + w->cur_len, p, take);
		w->cur_len += take;
		p += take;
		len -= take;
		if (w->cur_len == WRITER_BUFFER_SIZE && (rc = submit(w)))
			return rc;
	}
	return AL_OK;
}

int writer_sync(struct writer *w)
{
	char *b = w->bufs[w->cur];
	uint64_t end = w->cur_start + w->cur_len;
	int rc, e;

	if ((rc = drain(w)))
		return rc;
	if (w->direct) {
		size_t keep = w->cur_len % UPLOAD_DIRECT_ALIGN;
		size_t padded = w->cur_len + (keep ? UPLOAD_DIRECT_ALIGN - keep : 0);
		if (padded) {
			memset(b + w->cur_len, 0, padded - w->cur_len);
			if ((e = pwrite_all(w->fd, b, padded, w->cur_start)))
				return error_of(e);
		}
		if (padded != w->cur_len && ftruncate(w->fd, (off_t)end) < 0)
			return al_error_set(AL_ERR_IO, "cannot set the length of the upload: %s", strerror(errno));
		/* The partial block stays, to be written again whole. */
		memmove(b, b + (w->cur_len - keep), keep);
		w->cur_start += w->cur_len - keep;
		w->cur_len = keep;
	} else {
		if ((e = pwrite_all(w->fd, b, w->cur_len, w->cur_start)))
			return error_of(e);
		w->cur_start += w->cur_len;
		w->cur_len = 0;
	}
	if (fdatasync(w->fd) < 0)
		return al_error_set(AL_ERR_IO, "cannot make the upload durable: %s", strerror(errno));
	return AL_OK;
}

int writer_reset(struct writer *w, uint64_t offset, const void *prefix, size_t prefix_len)
{
	int rc = drain(w);
	if (rc)
		return rc;
	if (ftruncate(w->fd, (off_t)offset) < 0)
		return al_error_set(AL_ERR_IO, "cannot cut the upload back to %llu bytes: %s", (unsigned long long)offset,
				    strerror(errno));
	return place(w, offset, prefix, prefix_len);
}

uint64_t writer_offset(const struct writer *w)
{
	return w->cur_start + w->cur_len;
}
