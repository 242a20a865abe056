/*
 * sysmem.c - how much memory this process may use: physical memory, or less when its
 * control group says so.
 *
 * A batch job rarely owns the node: SLURM (and container runtimes) confine it to a cgroup
 * with a memory limit far below the node's memory, and a job that sizes its buffers from
 * physical memory is killed by the kernel's OOM killer with no message of its own. So the
 * defaults that scale with memory start from the lowest limit on the process's cgroup path:
 * cgroup v2's memory.max, or cgroup v1's memory.limit_in_bytes, in the cgroup and in each of
 * its ancestors (a parent's limit binds its children; v1 does not show it in the child), and
 * from the address-space limit (ulimit -v) when it is lower.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ingest_internal.h"

/* The number in file path ("max" or no file: no limit), or UINT64_MAX. */
static uint64_t read_limit(const char *path)
{
	char buf[64], *end;
	unsigned long long v;
	size_t n;
	FILE *f = fopen(path, "r");

	if (!f)
		return UINT64_MAX;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (end == buf || errno || (*end && *end != '\n') || v == 0)
		return UINT64_MAX; /* "max", empty, garbage */
	return (uint64_t)v;
}

/* The lowest of file name in dir and in its parents up to root (dir starts with root). */
static uint64_t lowest_up(char *dir, size_t root_len, const char *name)
{
	uint64_t low = UINT64_MAX, v;
	char path[4200];

	for (;;) {
		char *slash;

		if (snprintf(path, sizeof(path), "%s/%s", dir, name) < (int)sizeof(path)) {
			v = read_limit(path);
			if (v < low)
				low = v;
		}
		if (strlen(dir) <= root_len)
			return low;
		slash = strrchr(dir + root_len, '/');
		if (!slash)
			return low;
		*slash = 0;
	}
}

uint64_t pme_cgroup_limit(const char *root, const char *self_cgroup)
{
	uint64_t low = UINT64_MAX, v;
	char line[4096], dir[4096];
	FILE *f;

	f = fopen(self_cgroup, "r");
	if (!f)
		return UINT64_MAX;
	while (fgets(line, sizeof(line), f)) {
		char *ctl = strchr(line, ':'), *path, *nl;
		const char *sub = NULL, *name = NULL;
		size_t rl;

		if (!ctl || !(path = strchr(ctl + 1, ':')))
			continue;
		*ctl++ = 0;
		*path++ = 0;
		nl = strchr(path, '\n');
		if (nl)
			*nl = 0;
		if (*path != '/')
			continue;
		if (!strcmp(line, "0") && !*ctl) { /* v2: "0::/path" */
			sub = "";
			name = "memory.max";
		} else { /* v1: "N:ctl,ctl:/path", the memory controller's line */
			char *save;

			for (char *c = strtok_r(ctl, ",", &save); c; c = strtok_r(NULL, ",", &save))
				if (!strcmp(c, "memory"))
					sub = "/memory";
			name = "memory.limit_in_bytes";
		}
		if (!sub)
			continue;
		rl = (size_t)snprintf(dir, sizeof(dir), "%s%s", root, sub);
		if (rl >= sizeof(dir) ||
		    snprintf(dir + rl, sizeof(dir) - rl, "%s", strcmp(path, "/") ? path : "") >=
			(int)(sizeof(dir) - rl))
			continue;
		v = lowest_up(dir, rl, name);
		if (v < low)
			low = v;
	}
	fclose(f);
	return low;
}

uint64_t pme_memory_limit(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
	uint64_t phys =
	    pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : (uint64_t)1 << 32;
	uint64_t cg = pme_cgroup_limit("/sys/fs/cgroup", "/proc/self/cgroup");
	struct rlimit rl;

	if (cg < phys)
		phys = cg;
	/* an address-space limit (ulimit -v, set by some sites) binds as well */
	if (!getrlimit(RLIMIT_AS, &rl) && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < phys)
		phys = rl.rlim_cur;
	return phys;
}
