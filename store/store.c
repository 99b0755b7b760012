/*
 * store.c - opening and closing the store, the submission queue, stats and
 * the error mapping at the LMDB boundary (style rule 23). The writer thread
 * itself is in writer.c, reads in read.c, the layout in schema.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "store/store_int.h"

void store_log(store *s, int level, const char *fmt, ...)
{
	if (!s->o.log)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	s->o.log(level, line);
}

/* store_map_mdb: MDB_MAP_FULL and ENOSPC mean "full", the caller may retry
 * once space is freed (escrow_err_is_retriable); everything else is a
 * storage failure. Never called with 0. */
int store_map_mdb(int rc)
{
	if (rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT)
		return ESCROW_ERR_STORAGE_FULL;
	return ESCROW_ERR_STORAGE;
}

bool store_closing(store *s)
{
	pthread_mutex_lock(&s->mu);
	bool c = s->closing;
	pthread_mutex_unlock(&s->mu);
	return c;
}

/* make_dir creates @dir with mode 0700 unless it exists. Only the last
 * component is created: a missing parent is most likely a typo. */
static int make_dir(const char *dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return 0;
	snprintf(err, errlen, "cannot create the data directory %s: %s", dir, strerror(errno));
	return ESCROW_ERR_STORAGE;
}

int store_open(store **out, const store_opts *o, char *err, size_t errlen)
{
	*out = NULL;
	if (errlen)
		err[0] = 0;
	if (!o || !o->dir || !o->done) {
		snprintf(err, errlen, "store_open: dir and done are required");
		return ESCROW_ERR_STORAGE;
	}
	store *s = xcalloc(1, sizeof *s);
	s->o = *o;
	s->dir = xstrdup(o->dir);
	s->o.dir = s->dir;
	s->lock_fd = -1;
	s->role = o->role;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_mutex_init(&s->pos_mu, NULL);

	int rc = make_dir(s->dir, err, errlen);
	if (rc)
		goto fail;

	if ((rc = store_dir_lock(s->dir, &s->lock_fd, err, errlen)))
		goto fail;

	uint64_t map = o->map_size_bytes ? o->map_size_bytes : STORE_DEFAULT_MAP_SIZE;
	/* MDB_NOTLS: read transactions are not tied to threads, so the
	 * network thread's reset rtxn and a store_load_* transaction may
	 * coexist on one thread. No MDB_WRITEMAP: it forbids nested
	 * transactions, which later ops may want. */
	/* --sync full: MDB_NOMETASYNC, with each batch answered only once the
	 * next commit's (or an explicit) fdatasync covered its meta page
	 * (store_writer_main): one fdatasync per commit, not two. */
	unsigned flags = MDB_NOTLS | (o->sync == STORE_SYNC_NONE ? MDB_NOSYNC : MDB_NOMETASYNC);
	if ((rc = store_env_open(s->dir, map, flags, true, &s->env, err, errlen)))
		goto fail;
	s->maxkey = (unsigned)mdb_env_get_maxkeysize(s->env);

	if ((rc = store_schema_open(s, err, errlen)))
		goto fail;
	MDB_txn *rt;
	if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &rt) == 0) {
		int lrc = store_repl_load(s, rt);
		mdb_txn_abort(rt);
		if (lrc) {
			snprintf(err, errlen, "cannot read the replication position in %s: %s", s->dir,
			         mdb_strerror(lrc));
			rc = ESCROW_ERR_STORAGE;
			goto fail;
		}
	}

	if (pthread_create(&s->writer, NULL, store_writer_main, s)) {
		snprintf(err, errlen, "cannot start the store writer thread");
		rc = ESCROW_ERR_STORAGE;
		goto fail;
	}
	s->writer_started = true;
	*out = s;
	return 0;

fail:
	if (s->env)
		mdb_env_close(s->env);
	store_dir_unlock(s->lock_fd);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->pos_mu);
	free(s->cap);
	free(s->dir);
	free(s);
	return rc;
}

/*
 * store_close: after `closing` is set under the lock no op enters the queue
 * (store_submit answers NOT_READY itself), so once the writer has found the
 * queue empty with `closing` set, nothing can be left behind.
 * @locality any thread but the writer (it joins the writer)
 */
void store_close(store *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->closing = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (s->writer_started)
		pthread_join(s->writer, NULL);

	if (s->rtxn.msgs)
		mdb_cursor_close(s->rtxn.msgs);
	if (s->rtxn.txn)
		mdb_txn_abort(s->rtxn.txn);
	mdb_env_close(s->env);
	store_dir_unlock(s->lock_fd);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->pos_mu);
	free(s->cap);
	free(s->dir);
	free(s);
}

/*
 * store_submit appends the chain to the queue in one step (so a chain is
 * never split across two batches by another submitter) and wakes the writer.
 * Once close has begun, the chain is handed straight back to done with
 * ESCROW_ERR_NOT_READY, on the calling thread: the writer may be gone.
 * @locality any thread
 * @locks takes mu
 */
void store_submit(store *s, store_op *op)
{
	if (!op)
		return;
	store_op *last = op;
	while (last->next)
		last = last->next;

	pthread_mutex_lock(&s->mu);
	if (s->closing) {
		pthread_mutex_unlock(&s->mu);
		for (store_op *p = op; p; p = p->next)
			p->err = ESCROW_ERR_NOT_READY;
		s->o.done(s->o.done_arg, op);
		return;
	}
	if (s->qtail)
		s->qtail->next = op;
	else
		s->qhead = op;
	s->qtail = last;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void store_op_free(store_op *op)
{
	if (!op)
		return;
	if (op->kind == STORE_OP_GROUP_CREATE || op->kind == STORE_OP_GROUP_SET)
		free(op->u.group.push);
	if (op->kind == STORE_OP_APPEND) {
		free(op->u.append.key);
		free(op->u.append.rec);
	}
	if (op->kind >= STORE_OP_TX_HALF_ADD && op->kind <= STORE_OP_TX_GC) {
		free(op->u.tx.key);
		free(op->u.tx.rec);
		free(op->u.tx.out_topic);
		free(op->u.tx.out_seq);
	}
	if (op->kind == STORE_OP_META_SET)
		free(op->u.meta.value);
	if (op->kind == STORE_OP_REPL_APPLY)
		free(op->u.repl.data);
	free(op);
}

void store_get_stats(store *s, store_stats *st)
{
	memset(st, 0, sizeof *st);
	MDB_envinfo info;
	MDB_stat ms;
	if (mdb_env_info(s->env, &info) == 0) {
		st->map_size_bytes = info.me_mapsize;
		if (mdb_env_stat(s->env, &ms) == 0)
			st->used_bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
	}
	st->batches = __atomic_load_n(&s->n_batches, __ATOMIC_RELAXED);
	st->ops = __atomic_load_n(&s->n_ops, __ATOMIC_RELAXED);
	for (int i = 0; i <= STORE_HIST_N; i++) {
		st->commit_us_hist[i] = __atomic_load_n(&s->commit_us_hist[i], __ATOMIC_RELAXED);
		st->batch_ops_hist[i] = __atomic_load_n(&s->batch_ops_hist[i], __ATOMIC_RELAXED);
	}
	st->commit_us_sum = __atomic_load_n(&s->commit_us_sum, __ATOMIC_RELAXED);
}
