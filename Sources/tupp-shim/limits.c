// Resource limits of the container's processes. TuppRuntime writes every limit into the
// spec — the defaults it chose and the manifest's `ulimits` — so nothing is inherited
// from whoever ran tupp (a shell with nofile 20000, a CI runner with core unlimited).
// Set while the process is still root, before the switch to the container's user: a
// hard limit above the current one needs CAP_SYS_RESOURCE. Where tupp runs without it (a
// restricted service, some CI sandboxes), a default keeps the current hard limit — the
// soft limit is still tupp's — while a declared limit that cannot be set is an error.
#include "shim.h"

#include <errno.h>
#include <sys/resource.h>

int limits_apply(const struct shim_spec *spec, struct shim_failure *failure) {
    for (int i = 0; i < spec->rlimitc; i++) {
        const struct shim_rlimit *limit = &spec->rlimits[i];
        struct rlimit value = {.rlim_cur = limit->soft, .rlim_max = limit->hard}, current;
        int rc = setrlimit(limit->resource, &value);
        if (rc < 0 && errno == EPERM && limit->fallback && getrlimit(limit->resource, &current) == 0 &&
            current.rlim_max < value.rlim_max) {
            value.rlim_max = current.rlim_max;
            if (value.rlim_cur > value.rlim_max) value.rlim_cur = value.rlim_max;
            rc = setrlimit(limit->resource, &value);
        }
        if (rc < 0) {
            failure_set(failure, errno, "setrlimit", limit->resource == RLIMIT_NOFILE && errno == EPERM ? "nofile above fs.nr_open is refused" : NULL,
                        "resource %d to %llu:%llu", limit->resource, limit->soft, limit->hard);
            return -1;
        }
    }
    return 0;
}
