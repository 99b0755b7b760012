/*
 * err.c - the one table of error codes: name and sentence for each
 * escrow_err_t (include/escrow/common.h, doc/protocol.md §4).
 */
#include <stddef.h>

#include "escrow/common.h"
#include "escrow/version.h"

static const struct err_desc {
	int code;
	const char *name;
	const char *desc;
	int retriable;
} errs[] = {
	{ESCROW_OK, "OK", "success", 0},
	{ESCROW_ERR__TRANSPORT, "_TRANSPORT", "connection to the broker failed or broke", 1},
	{ESCROW_ERR__TIMED_OUT, "_TIMED_OUT", "timed out waiting for the broker", 1},
	{ESCROW_ERR__INVALID_ARG, "_INVALID_ARG", "invalid argument", 0},
	{ESCROW_ERR__NO_MEM, "_NO_MEM", "out of memory", 0},
	{ESCROW_ERR__DESTROYED, "_DESTROYED", "handle is being destroyed", 0},
	{ESCROW_ERR__QUEUE_FULL, "_QUEUE_FULL", "too many sends outstanding", 1},
	{ESCROW_ERR__BAD_CONF, "_BAD_CONF", "unknown configuration key or bad value", 0},
	{ESCROW_ERR__STATE, "_STATE", "not allowed in this state", 0},
	{ESCROW_ERR__BAD_REPLY, "_BAD_REPLY", "unreadable reply from the broker", 0},
	{ESCROW_ERR_BAD_REQUEST, "BAD_REQUEST", "malformed request", 0},
	{ESCROW_ERR_UNKNOWN_OP, "UNKNOWN_OP", "unknown op", 0},
	{ESCROW_ERR_FRAME_TOO_LARGE, "FRAME_TOO_LARGE", "frame larger than the broker's limit", 0},
	{ESCROW_ERR_PROTOCOL_VERSION, "PROTOCOL_VERSION", "protocol version not supported", 0},
	{ESCROW_ERR_NOT_FOUND, "NOT_FOUND", "topic, group, transaction or message not found", 0},
	{ESCROW_ERR_EXISTS, "EXISTS", "already exists", 0},
	{ESCROW_ERR_CONFLICT, "CONFLICT", "conflicts with an earlier decision", 0},
	{ESCROW_ERR_STORAGE_FULL, "STORAGE_FULL", "broker storage is full", 1},
	{ESCROW_ERR_STORAGE, "STORAGE", "broker storage error", 0},
	{ESCROW_ERR_TOO_LARGE, "TOO_LARGE", "value larger than its limit", 0},
	{ESCROW_ERR_INVALID, "INVALID", "invalid value", 0},
	{ESCROW_ERR_NOT_READY, "NOT_READY", "broker not ready (hello first, or shutting down)", 1},
	{ESCROW_ERR_INTERNAL, "INTERNAL", "internal broker error", 0},
	{ESCROW_ERR_BUSY, "BUSY", "broker busy, retry later", 1},
	{ESCROW_ERR_FORBIDDEN, "FORBIDDEN", "permission denied", 0},
	{ESCROW_ERR_UNAUTHENTICATED, "UNAUTHENTICATED", "not logged in, or the login failed", 0},
	{ESCROW_ERR_NOT_LEADER, "NOT_LEADER", "this cluster node does not lead", 1},
};

static const struct err_desc *find(int err)
{
	for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
		if (errs[i].code == err)
			return &errs[i];
	return NULL;
}

const char *escrow_err2str(int err)
{
	const struct err_desc *e = find(err);
	return e ? e->desc : "unknown error";
}

const char *escrow_err2name(int err)
{
	const struct err_desc *e = find(err);
	return e ? e->name : "UNKNOWN";
}

int escrow_err_is_retriable(int err)
{
	const struct err_desc *e = find(err);
	return e ? e->retriable : 0;
}

int escrow_version(void)
{
	return ESCROW_VERSION;
}

const char *escrow_version_str(void)
{
	return ESCROW_VERSION_STR;
}
