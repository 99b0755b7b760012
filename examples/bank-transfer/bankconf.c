/* bankconf.c - the --escrow-conf KEY=VALUE option of bank1 and bank2 (bankconf.h). */
#include "bankconf.h"

#include <stdio.h>
#include <string.h>

int bankconf_add(bankconf_t *bc, const char *prog, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv) {
		fprintf(stderr, "%s: --escrow-conf wants KEY=VALUE, got '%s'\n", prog, kv);
		return -1;
	}
	if (bc->n == BANKCONF_MAX) {
		fprintf(stderr, "%s: more than %d --escrow-conf options\n", prog, BANKCONF_MAX);
		return -1;
	}
	bc->items[bc->n++] = kv;
	return 0;
}

int bankconf_apply(const bankconf_t *bc, const char *prog, escrow_conf_t *conf)
{
	for (int i = 0; i < bc->n; i++) {
		const char *kv = bc->items[i], *eq = strchr(kv, '=');
		char key[128], errstr[256];
		size_t klen = (size_t)(eq - kv);
		if (klen >= sizeof key) {
			fprintf(stderr, "%s: --escrow-conf: key too long in '%s'\n", prog, kv);
			return -1;
		}
		memcpy(key, kv, klen);
		key[klen] = '\0';
		if (escrow_conf_set(conf, key, eq + 1, errstr, sizeof errstr)) {
			fprintf(stderr, "%s: --escrow-conf %s=...: %s\n", prog, key, errstr);
			return -1;
		}
	}
	return 0;
}
